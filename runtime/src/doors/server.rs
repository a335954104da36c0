//! The local server: bind, serve the HTTP door, reload the manifest on SIGHUP
//! or when it (or a hook module) changes, shut down on Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;

use crate::doors::http::{CurrentIssuer, PeerIp, router};
use crate::pipeline::{Issuer, Services, SourceFiles};

/// How often the manifest and hook files are checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Optional routes of the local server.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeOptions {
    /// `GET /metrics` (Prometheus text; 404 unless a Prometheus recorder is installed).
    pub metrics: bool,
    /// The playground page and its API (`playground.rs`; loopback peers only).
    pub playground: bool,
}

pub async fn serve(
    listener: TcpListener,
    manifest_path: PathBuf,
    services: Services,
    current: CurrentIssuer,
) -> std::io::Result<()> {
    serve_with(
        listener,
        manifest_path,
        services,
        current,
        ServeOptions::default(),
    )
    .await
}

/// [`serve`] with optional routes.
pub async fn serve_with(
    listener: TcpListener,
    manifest_path: PathBuf,
    services: Services,
    current: CurrentIssuer,
    options: ServeOptions,
) -> std::io::Result<()> {
    tokio::spawn(watch_manifest(manifest_path, services, current.clone()));
    let mut app = router(current.clone());
    if options.metrics {
        app = app.merge(crate::metrics::routes());
    }
    if options.playground {
        app = app.merge(crate::playground::routes(current));
    }
    let app = app
        .layer(middleware::from_fn(peer_ip))
        .layer(middleware::from_fn(first_request));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
}

async fn peer_ip(mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>().cloned() {
        req.extensions_mut().insert(PeerIp(addr.ip().to_string()));
    }
    next.run(req).await
}

/// The first answered request completes the start-up breakdown (`startup`).
async fn first_request(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    crate::startup::request_done(started.elapsed());
    response
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

/// Reload on SIGHUP or on a change to the manifest or any hook module it
/// names. A manifest that fails to load is refused and the running one stays.
async fn watch_manifest(path: PathBuf, services: Services, current: CurrentIssuer) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP handler");
    // What the running issuer was loaded from, so a change made while it was
    // loading is not missed.
    let mut seen = current.get().sources().clone();
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        let reason = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = tick.tick() => {
                let now = SourceFiles::read(&path);
                if now == seen { continue; }
                "file change"
            }
        };
        // What this attempt reads: a change made while it loads differs from
        // it, so a refused load is retried once the files change again.
        let attempted = SourceFiles::read(&path);
        match Issuer::load(&path, &services).await {
            Ok(issuer) => {
                let hooks = issuer.hook_names().join(", ");
                seen = issuer.sources().clone();
                current.replace(issuer);
                tracing::info!(manifest = %path.display(), reason, hooks, "manifest reloaded");
            }
            Err(err) => {
                // Do not retry until something changes again.
                seen = attempted;
                tracing::error!(manifest = %path.display(), reason, error = %err, "manifest refused; the running configuration stays");
            }
        }
    }
}
