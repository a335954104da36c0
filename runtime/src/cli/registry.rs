//! `tokenhook clients …` and `tokenhook grants …`: the registry and
//! revocations in the store, changed without a restart or a deploy. Every
//! running issuer sees a change within its poll interval.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::manifest::{Manifest, Overrides, RegistrySource, StoreLocation};
use crate::store::registry;
use crate::store::{Change, GrantRecord, Store, StoreError, now_secs};

/// Which store to use: the manifest's `[store]`, or one named by a flag.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// The manifest whose `[store]` and APIs to use.
    #[arg(
        long,
        global = true,
        env = "TOKENHOOK_MANIFEST",
        default_value = "examples/manifest.toml"
    )]
    manifest: PathBuf,
    /// Use this SQLite file instead of the manifest's store.
    #[arg(long, global = true, conflicts_with = "dynamodb_table")]
    sqlite: Option<PathBuf>,
    /// Use this DynamoDB table (credentials and region from the usual AWS environment).
    #[arg(long, global = true, env = "TOKENHOOK_STORE_TABLE")]
    dynamodb_table: Option<String>,
    /// AWS region of the DynamoDB table (default: from the AWS environment).
    #[arg(long, global = true)]
    region: Option<String>,
}

#[derive(Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its secret once (only the hash is stored).
    Add {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// `key=value`, repeatable: handed to hooks as `client.metadata`.
        #[arg(long = "metadata", value_parser = parse_pair)]
        metadata: Vec<(String, String)>,
        /// Allow introspection and the revocation feed (resource servers).
        #[arg(long)]
        introspect: bool,
    },
    /// List registered clients (never their secrets).
    List,
    /// One client: record, grants and revocation state.
    Show { id: String },
    /// Replace a client's secret; prints the new one once. The old one stops working.
    RotateSecret { id: String },
    /// Revoke every token the client holds (for one API with --api) and refuse new ones.
    Revoke {
        id: String,
        #[arg(long)]
        api: Option<String>,
    },
    /// Allow new tokens again after `revoke`; earlier tokens stay revoked.
    Restore {
        id: String,
        #[arg(long)]
        api: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum GrantsCommand {
    /// Grant a client scopes on an API (replaces an earlier grant for that API).
    Add {
        client: String,
        api: String,
        /// Space-separated scopes the API defines.
        #[arg(long, default_value = "")]
        scopes: String,
    },
    /// Remove a client's grant on an API.
    Remove { client: String, api: String },
}

#[derive(Args)]
pub struct ClientsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: ClientsCommand,
}

#[derive(Args)]
pub struct GrantsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: GrantsCommand,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

/// A CLI failure: the message and the exit code.
struct Failure(String, u8);

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::Conflict(_) => 3,
            StoreError::NotFound(_) => 4,
            _ => 1,
        };
        Failure(e.to_string(), code)
    }
}

pub fn run_clients(args: ClientsArgs) -> ExitCode {
    run(args.store, |ctx| Box::pin(clients(ctx, args.command)))
}

pub fn run_grants(args: GrantsArgs) -> ExitCode {
    run(args.store, |ctx| Box::pin(grants(ctx, args.command)))
}

type Job = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Failure>>>>;

fn run(args: StoreArgs, job: impl FnOnce(Context) -> Job) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        let ctx = Context::open(&args).await?;
        job(ctx).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// The store and, when the manifest loads, its APIs and registry setting.
struct Context {
    store: Arc<dyn Store>,
    manifest: Option<Manifest>,
}

impl Context {
    async fn open(args: &StoreArgs) -> Result<Context, Failure> {
        let loaded = Manifest::load_with(&args.manifest, &Overrides::from_env());
        let store: Arc<dyn Store> = if let Some(path) = &args.sqlite {
            Arc::new(crate::store::sqlite::SqliteStore::open(path)?)
        } else if let Some(table) = &args.dynamodb_table {
            Arc::new(
                crate::store::dynamodb::DynamoStore::from_env_in_region(
                    table,
                    args.region.as_deref(),
                )
                .await,
            )
        } else {
            let manifest = loaded.as_ref().map_err(|e| {
                Failure(
                    format!("{e} (or name a store with --sqlite / --dynamodb-table)"),
                    2,
                )
            })?;
            let location = manifest
                .store_location()
                .map_err(|e| Failure(e.to_string(), 2))?;
            match &location {
                Some((StoreLocation::Sqlite(path), _)) => {
                    Arc::new(crate::store::sqlite::SqliteStore::open(path)?)
                }
                Some((StoreLocation::Dynamodb { table }, _)) => Arc::new(
                    crate::store::dynamodb::DynamoStore::from_env_in_region(
                        table,
                        args.region.as_deref(),
                    )
                    .await,
                ),
                None => {
                    return Err(Failure(
                        format!(
                            "{} has no store; add a [store] section or use --sqlite / --dynamodb-table",
                            args.manifest.display()
                        ),
                        2,
                    ));
                }
            }
        };
        let manifest = match loaded {
            Ok(manifest) => Some(manifest),
            Err(e) => {
                eprintln!("note: APIs and scopes are not checked: {e}");
                None
            }
        };
        Ok(Context { store, manifest })
    }

    /// Say when the manifest keeps its clients itself, so store clients are unused.
    fn note_registry(&self) {
        if let Some(m) = &self.manifest
            && m.registry() == RegistrySource::Manifest
        {
            eprintln!(
                "note: {} takes clients and grants from the manifest; registry clients are used with `[store] registry = \"store\"`",
                m.path.display()
            );
        }
    }

    /// Check `api` and `scopes` against the manifest's APIs, when it loaded.
    fn check_api(&self, api: &str, scopes: &[String]) -> Result<(), Failure> {
        let Some(manifest) = &self.manifest else {
            return Ok(());
        };
        let Some(defined) = manifest.api(api) else {
            return Err(Failure(
                format!("API `{api}` is not defined in {}", manifest.path.display()),
                2,
            ));
        };
        if let Some(scope) = scopes.iter().find(|s| !defined.scopes.contains(s)) {
            return Err(Failure(
                format!("scope `{scope}` is not defined by API `{api}`"),
                2,
            ));
        }
        Ok(())
    }
}

async fn clients(ctx: Context, command: ClientsCommand) -> Result<(), Failure> {
    let store = ctx.store.as_ref();
    match command {
        ClientsCommand::Add {
            id,
            name,
            metadata,
            introspect,
        } => {
            ctx.note_registry();
            let metadata: BTreeMap<String, String> = metadata.into_iter().collect();
            let (record, secret) =
                registry::add_client(store, &id, name, metadata, introspect).await?;
            println!(
                "{}",
                json!({"client_id": record.id, "client_secret": secret, "version": record.version})
            );
            eprintln!(
                "note: the secret is shown once; {} keeps only its hash",
                store.describe()
            );
        }
        ClientsCommand::List => {
            ctx.note_registry();
            for c in store.clients().await? {
                println!(
                    "{}",
                    json!({"client_id": c.id, "name": c.name, "metadata": c.metadata,
                           "introspect": c.introspect, "version": c.version})
                );
            }
        }
        ClientsCommand::Show { id } => {
            let entry = store.client(&id).await?;
            let now = now_secs();
            let revocations: Vec<_> = store
                .feed_since(0, now)
                .await?
                .into_iter()
                .filter(|e| {
                    e.change.client_id() == id && !matches!(e.change, Change::ClientChanged { .. })
                })
                .map(|e| e.change)
                .collect();
            let Some(entry) = entry else {
                if revocations.is_empty() {
                    return Err(StoreError::NotFound(format!("client `{id}`")).into());
                }
                println!(
                    "{}",
                    json!({"client_id": id, "registered": false, "revocations": revocations})
                );
                return Ok(());
            };
            let c = entry.client;
            let kind = c
                .secret_hash
                .split(['$', ':'])
                .find(|s| !s.is_empty())
                .unwrap_or("");
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "client_id": c.id, "name": c.name, "metadata": c.metadata,
                    "introspect": c.introspect, "version": c.version, "secret_hash": kind,
                    "grants": entry.grants.iter().map(|g| json!({"api": g.api, "scopes": g.scopes})).collect::<Vec<_>>(),
                    "revocations": revocations,
                }))
                .expect("json")
            );
        }
        ClientsCommand::RotateSecret { id } => {
            let (record, secret) = registry::rotate_secret(store, &id).await?;
            println!(
                "{}",
                json!({"client_id": record.id, "client_secret": secret, "version": record.version})
            );
            eprintln!(
                "note: the secret is shown once; the old one stops working within the issuers' poll interval"
            );
        }
        ClientsCommand::Revoke { id, api } => {
            if let Some(api) = &api {
                ctx.check_api(api, &[])?;
            }
            let entry = registry::revoke_client(store, &id, api.as_deref()).await?;
            println!("{}", json!({"revoked": entry.change, "at_ms": entry.at_ms}));
        }
        ClientsCommand::Restore { id, api } => {
            let entry = registry::restore_client(store, &id, api.as_deref()).await?;
            println!(
                "{}",
                json!({"restored": entry.change, "at_ms": entry.at_ms})
            );
        }
    }
    Ok(())
}

async fn grants(ctx: Context, command: GrantsCommand) -> Result<(), Failure> {
    let store = ctx.store.as_ref();
    match command {
        GrantsCommand::Add {
            client,
            api,
            scopes,
        } => {
            let mut list: Vec<String> = Vec::new();
            for s in scopes.split(' ').filter(|s| !s.is_empty()) {
                if !crate::policy::is_scope_token(s) {
                    return Err(Failure(format!("`{s}` is not a valid scope"), 2));
                }
                if !list.iter().any(|x| x == s) {
                    list.push(s.to_string());
                }
            }
            ctx.check_api(&api, &list)?;
            ctx.note_registry();
            let grant = GrantRecord {
                client,
                api,
                scopes: list,
            };
            registry::put_grant(store, &grant).await?;
            println!("{}", json!({"granted": grant}));
        }
        GrantsCommand::Remove { client, api } => {
            let removed = registry::remove_grant(store, &client, &api).await?;
            if !removed {
                return Err(StoreError::NotFound(format!("grant of `{client}` on `{api}`")).into());
            }
            println!("{}", json!({"removed": {"client": client, "api": api}}));
        }
    }
    Ok(())
}
