//! `tokenhook serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::engine::{EngineSettings, HookEngine};
use crate::http::CurrentIssuer;
use crate::pipeline::{Issuer, Services};

#[derive(Args)]
pub struct ServeArgs {
    /// The manifest to serve.
    #[arg(
        long,
        env = "TOKENHOOK_MANIFEST",
        default_value = "examples/manifest.toml"
    )]
    manifest: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Keep compiled hooks here between runs (a directory only tokenhook can write).
    #[arg(long, env = "TOKENHOOK_HOOK_CACHE")]
    hook_cache: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> ExitCode {
    super::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let services = Services {
            engine: HookEngine::new(EngineSettings {
                cache_dir: args.hook_cache.clone(),
                ..EngineSettings::default()
            }),
            secret_store: None,
        };
        let issuer = match Issuer::load(&args.manifest, &services).await {
            Ok(issuer) => issuer,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
        };
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(2);
            }
        };
        let addr = listener.local_addr().expect("bound address");
        print_banner(&issuer, addr);
        let current = CurrentIssuer::new(issuer);
        match crate::serve::serve(listener, args.manifest, services, current).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn print_banner(issuer: &Issuer, addr: SocketAddr) {
    let manifest = issuer.manifest();
    println!(
        "tokenhook listening on http://{addr} (issuer {})",
        manifest.issuer
    );
    println!("hooks: {}", issuer.hook_names().join(", "));
    if let (Some(client), Some(api)) = (
        manifest.clients.iter().find(|c| c.id == "demo-client"),
        manifest.apis.first(),
    ) {
        println!("get a token:");
        println!(
            "  curl -s -u {}:demo-secret -d grant_type=client_credentials -d audience={} http://{addr}/oauth/token",
            client.id, api.identifier
        );
    }
    println!("keys: curl -s http://{addr}/.well-known/jwks.json");
}
