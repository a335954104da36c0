//! The `tokenhook` command line: a thin layer over the library.

mod bundle;
mod explain;
mod hook;
mod keys;
mod registry;
mod replay;
mod scaffold;
mod secret;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tokenhook",
    version,
    about = "OAuth 2.0 client-credentials tokens, customised by sandboxed wasm hooks"
)]
struct Cli {
    /// Without a command: `serve` under Lambda (the binary is `bootstrap` there), help otherwise.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the token endpoint locally (or under Lambda, when AWS_LAMBDA_RUNTIME_API is set).
    Serve(serve::ServeArgs),
    /// Inspect and try hook modules locally.
    #[command(subcommand)]
    Hook(hook::HookCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Client secrets.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Copy a manifest and its hook modules into one deployable directory, digests pinned.
    Bundle(bundle::BundleArgs),
    /// Clients in the store: add, list, show, rotate-secret, revoke, restore.
    Clients(registry::ClientsArgs),
    /// Grants in the store: add, remove.
    Grants(registry::GrantsArgs),
    /// Run the configured hook chain for one request without signing, and say what each hook did.
    Explain(explain::ExplainArgs),
    /// Run captured hook events through a new module and report how outcomes change.
    Replay(replay::ReplayArgs),
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        if serve::in_lambda() {
            return serve::run(serve::ServeArgs::from_env());
        }
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    };
    match command {
        Command::Serve(args) => serve::run(args),
        Command::Hook(cmd) => hook::run(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Secret(cmd) => secret::run(cmd),
        Command::Bundle(args) => bundle::run(args),
        Command::Clients(args) => registry::run_clients(args),
        Command::Grants(args) => registry::run_grants(args),
        Command::Explain(args) => explain::run(args),
        Command::Replay(args) => replay::run(args),
    }
}

/// Structured JSON logs on stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    crate::logging::init();
}
