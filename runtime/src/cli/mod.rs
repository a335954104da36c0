//! The `tokenhook` command line: a thin layer over the library.

mod hook;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tokenhook",
    version,
    about = "OAuth 2.0 client-credentials tokens, customised by sandboxed wasm hooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and try hook modules locally.
    #[command(subcommand)]
    Hook(hook::HookCommand),
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hook(cmd) => hook::run(cmd),
    }
}
