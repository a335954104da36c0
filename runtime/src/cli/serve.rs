//! `tokenhook serve`: the local HTTP server, or the Lambda runtime when
//! `AWS_LAMBDA_RUNTIME_API` is set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use crate::engine::{EngineSettings, HookEngine};
use crate::manifest::{Manifest, Overrides};
use crate::pipeline::{Issuer, Services};
use crate::reload::CurrentIssuer;

#[derive(Args)]
pub struct ServeArgs {
    /// The manifest to serve.
    #[arg(
        long,
        env = "TOKENHOOK_MANIFEST",
        default_value = "examples/manifest.toml"
    )]
    manifest: PathBuf,
    /// Address to listen on (ignored under Lambda).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Keep compiled hooks here between runs (a directory only tokenhook can write).
    #[arg(long, env = "TOKENHOOK_HOOK_CACHE")]
    hook_cache: Option<PathBuf>,
    /// Serve the playground page at /playground (loopback listen addresses only;
    /// its API answers loopback clients only).
    #[arg(long)]
    playground: bool,
    /// Allow --playground on a non-loopback listen address (the page still
    /// answers loopback clients only).
    #[arg(long, requires = "playground")]
    playground_force: bool,
}

impl ServeArgs {
    /// The arguments under Lambda, where there is no command line: all from the environment.
    pub fn from_env() -> Self {
        let var = |name| std::env::var_os(name).map(PathBuf::from);
        ServeArgs {
            manifest: var("TOKENHOOK_MANIFEST").unwrap_or_else(|| "manifest.toml".into()),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            hook_cache: var("TOKENHOOK_HOOK_CACHE"),
            playground: false,
            playground_force: false,
        }
    }
}

/// Whether this process is a Lambda function (the runtime API is set).
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

pub fn run(args: ServeArgs) -> ExitCode {
    let started = Instant::now();
    super::init_logging();
    if args.playground
        && !args.playground_force
        && !crate::playground::is_loopback(args.listen.ip())
    {
        eprintln!(
            "error: --playground runs hooks for anyone who can reach it; listen on a loopback address (127.0.0.1, [::1]) or add --playground-force"
        );
        return ExitCode::from(2);
    }
    // Metrics: EMF lines on Lambda, Prometheus text at /metrics locally.
    let installed = if in_lambda() {
        crate::metrics::install_emf(crate::metrics::lambda_route_enabled())
    } else {
        crate::metrics::install_prometheus()
    };
    if let Err(e) = installed {
        tracing::warn!(error = %e, "metrics are not recorded");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let lambda = in_lambda();
        let overrides = Overrides::from_env();
        // Secrets Manager only when something needs it: loading the AWS
        // config locally would probe for credentials and a region.
        let needs_aws = lambda
            || overrides.keyset_secret_id.is_some()
            || Manifest::load_with(&args.manifest, &overrides)
                .is_ok_and(|m| m.needs_secret_store());
        let secret_store: Option<Arc<dyn crate::secrets::SecretStore>> = if needs_aws {
            Some(Arc::new(
                crate::secrets::aws::SecretsManagerStore::from_env().await,
            ))
        } else {
            None
        };
        let services = Services {
            engine: HookEngine::new(EngineSettings {
                cache_dir: args.hook_cache.clone(),
                ..EngineSettings::default()
            }),
            secret_store,
            overrides,
        };
        // Manifest, keys and hooks load once per process (per Lambda
        // execution environment), before the first request.
        let issuer_start = Instant::now();
        services.engine.record_loads();
        let loaded = Issuer::load(&args.manifest, &services).await;
        let ready = Instant::now();
        crate::startup::ready(crate::startup::Startup {
            process_start: started,
            issuer_start,
            ready,
            hooks: services.engine.take_loads(),
            lambda,
        });
        let issuer = match loaded {
            Ok(issuer) => issuer,
            Err(err) => {
                tracing::error!(error = %err, "cannot start");
                eprintln!("error: {err}");
                if lambda {
                    crate::doors::lambda::report_init_error(
                        "Tokenhook.InitError",
                        &err.to_string(),
                    )
                    .await;
                }
                return ExitCode::from(2);
            }
        };
        tracing::info!(
            manifest = %args.manifest.display(), hooks = %issuer.hook_names().join(", "),
            init_ms = started.elapsed().as_millis() as u64, lambda, "ready"
        );
        let current = CurrentIssuer::new(issuer);
        if lambda {
            return match crate::doors::lambda::run(current).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(2);
            }
        };
        let addr = listener.local_addr().expect("bound address");
        print_banner(&current.get(), addr);
        let options = crate::doors::server::ServeOptions {
            metrics: true,
            playground: args.playground,
        };
        if args.playground {
            println!("playground: http://{addr}/playground");
        }
        match crate::doors::server::serve_with(listener, args.manifest, services, current, options)
            .await
        {
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
