//! `tokenhook secret new` and `tokenhook secret hash`.

use std::io::BufRead;
use std::process::ExitCode;

use clap::Subcommand;

use crate::clients::{hash_argon2, new_secret};

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Generate a client secret (256 random bits) and its `sha256:` hash for
    /// the manifest. Prefer this: verifying it costs microseconds.
    New,
    /// Hash an operator-chosen client secret (read from stdin) with argon2id.
    Hash,
}

pub fn run(cmd: SecretCommand) -> ExitCode {
    match cmd {
        SecretCommand::New => {
            let (secret, hash) = new_secret();
            println!("secret:      {secret}");
            println!("secret_hash: \"{hash}\"");
            ExitCode::SUCCESS
        }
        SecretCommand::Hash => {
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).is_err() {
                eprintln!("error: cannot read the secret from stdin");
                return ExitCode::from(2);
            }
            let secret = line.trim_end_matches(['\n', '\r']);
            if secret.is_empty() {
                eprintln!(
                    "error: empty secret; pipe it in, e.g. `printf %s \"$SECRET\" | tokenhook secret hash`"
                );
                return ExitCode::from(2);
            }
            match hash_argon2(secret) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
