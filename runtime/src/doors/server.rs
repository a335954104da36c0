//! The local server: bind, serve the HTTP door, run the reload watcher
//! ([`crate::reload`]) and report its outcome, shut down on Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::doors::http::{PeerIp, router_with};
use crate::pipeline::Services;
use crate::reload::{CurrentIssuer, ReloadStatus};

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
    tokio::spawn(crate::reload::watch(
        manifest_path,
        services,
        current.clone(),
    ));
    let own = axum::Router::new().route("/status/reload", get(reload_status));
    let mut app = router_with(current.clone(), own);
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

/// `GET /status/reload`: the generation in force, refusals so far and why
/// the latest attempt was refused ([`ReloadStatus`]). Local server only: Lambda
/// never reloads.
async fn reload_status(State(current): State<CurrentIssuer>) -> Json<ReloadStatus> {
    Json(current.status())
}
