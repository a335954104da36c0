//! `tokenhook keys generate`.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use crate::keys::{StoredKey, StoredKeySet, generate_pkcs8_pem, parse_algorithm};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key: a PKCS#8 PEM, or a ready Secrets Manager key set.
    Generate {
        /// ES256 (default), RS256, PS256 or EdDSA.
        #[arg(long, default_value = "ES256")]
        alg: String,
        #[arg(long, value_enum, default_value_t = Format::Pem)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// A PKCS#8 PEM private key, for `keys = { source = "file" }`.
    Pem,
    /// A JSON key set `{active, next, retired}` for a Secrets Manager secret.
    Secretsmanager,
}

pub fn run(cmd: KeysCommand) -> ExitCode {
    let KeysCommand::Generate { alg, format } = cmd;
    let result = parse_algorithm(&alg).and_then(|a| {
        let pem = generate_pkcs8_pem(a)?;
        let key = crate::keys::SigningKey::from_pkcs8_pem(&pem, a, None, "generated key")?;
        Ok(match format {
            Format::Pem => pem,
            Format::Secretsmanager => {
                let set = StoredKeySet {
                    active: StoredKey {
                        kid: Some(key.kid),
                        alg: alg.clone(),
                        private_key_pem: pem,
                    },
                    next: None,
                    retired: Vec::new(),
                };
                serde_json::to_string_pretty(&set).expect("key set serializes")
            }
        })
    });
    match result {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
