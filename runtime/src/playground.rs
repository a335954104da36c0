//! `tokenhook serve --playground`: a page at `/playground` where a person
//! picks a client and an API of the manifest, edits scopes, the request
//! context and hooks' configs, runs the chain without signing
//! (`Issuer::explain`) and sees each hook's diff and usage and the claims the
//! token would carry: the Actions editor's "Test" button, for wasm hooks.
//!
//! Loopback only. The CLI refuses `--playground` on a non-loopback listen
//! address unless `--playground-force`; whatever the address, the page and
//! its API answer only loopback peers whose `Host` is a loopback name (a DNS
//! rebinding page in the browser cannot reach it), and the run endpoint takes
//! only `application/json` from the page's own origin (a cross-site form
//! cannot post to it). The page is one static file, included at build time;
//! its one inline script is allowed by hash in the Content-Security-Policy.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tokenhook_sdk::wire::RequestContext;

use crate::explain::ExplainRequest;
use crate::reload::CurrentIssuer;

/// The page: HTML, CSS and plain JavaScript in one file, no build step.
pub const PAGE: &str = include_str!("playground.html");

/// Largest accepted run request (configs are small JSON documents).
pub const MAX_BODY_BYTES: usize = 64 << 10;

/// The playground's routes, answering loopback peers only.
pub fn routes(current: CurrentIssuer) -> Router {
    Router::new()
        .route("/playground", get(page))
        .route("/playground/api/options", get(options))
        .route("/playground/api/run", post(run))
        .with_state(current)
        .layer(middleware::from_fn(loopback_only))
}

/// Whether an address is loopback (127.0.0.0/8, ::1, or v4-mapped loopback).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a `Host` header names this machine's loopback: `localhost`, a
/// loopback IP, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(json!({"error": "forbidden", "error_description": why})),
    )
        .into_response()
}

async fn loopback_only(req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if !peer.is_some_and(is_loopback) {
        return forbidden("the playground answers loopback clients only");
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !loopback_host(host) {
        return forbidden("the playground answers only requests for a loopback host name");
    }
    // A browser sends Origin on cross-origin requests (and on every POST):
    // it must be this page's own.
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let own = format!("http://{host}");
        if origin.to_str().ok() != Some(own.as_str()) {
            return forbidden("cross-origin requests are refused");
        }
    }
    next.run(req).await
}

/// The CSP hash of the page's one inline `<script>`.
fn script_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let start = PAGE.find("<script>").expect("the page has a script") + "<script>".len();
        let end = PAGE[start..].find("</script>").expect("script closes") + start;
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &PAGE.as_bytes()[start..end]);
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    })
}

async fn page() -> Response {
    let mut response = axum::response::Html(PAGE).into_response();
    let headers = response.headers_mut();
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'unsafe-inline'; connect-src 'self'; \
         img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        script_hash()
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).expect("ASCII policy"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// What the page offers: the manifest's clients (with their grants), APIs
/// and hooks (with config and filters). Client secrets are not included.
async fn options(State(current): State<CurrentIssuer>) -> Response {
    let issuer = current.get();
    let manifest = issuer.manifest();
    let clients: Vec<Value> = manifest
        .clients
        .iter()
        .map(|c| {
            let grants: BTreeMap<&str, &Vec<String>> = manifest
                .grants
                .iter()
                .filter(|g| g.client == c.id)
                .map(|g| (g.api.as_str(), &g.scopes))
                .collect();
            json!({"id": c.id, "name": c.name, "grants": grants})
        })
        .collect();
    let apis: Vec<Value> = manifest
        .apis
        .iter()
        .map(|a| json!({"identifier": a.identifier, "name": a.name, "scopes": a.scopes}))
        .collect();
    let hooks: Vec<Value> = manifest
        .hooks
        .iter()
        .map(|h| {
            json!({
                "name": h.name,
                "config": h.config.clone().unwrap_or(Value::Null),
                "apis": h.filter.apis,
                "clients": h.filter.clients,
            })
        })
        .collect();
    let mut response = axum::Json(json!({
        "issuer": manifest.issuer,
        "registry": format!("{:?}", manifest.registry()).to_lowercase(),
        "clients": clients,
        "apis": apis,
        "hooks": hooks,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A run as the page sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub client_id: String,
    pub audience: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub context: RequestContext,
    /// Hook name → the config to use instead of the manifest's for this run.
    #[serde(default)]
    pub config_overrides: BTreeMap<String, Value>,
}

fn bad_request(description: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_request", "error_description": description.into()})),
    )
        .into_response()
}

async fn run(State(current): State<CurrentIssuer>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if !is_json(&parts.headers) {
        return bad_request("the body must be application/json");
    }
    let body: Bytes = match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let run: RunRequest = match serde_json::from_slice(&body) {
        Ok(run) => run,
        Err(e) => return bad_request(format!("malformed run request: {e}")),
    };
    let issuer = current.get();
    let mut response = explain(&issuer, run).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Run the chain for `run` without signing: the explanation as JSON, or the
/// OAuth error that refuses it before any hook runs (with its status).
async fn explain(issuer: &crate::pipeline::Issuer, run: RunRequest) -> Response {
    let request = ExplainRequest {
        client_id: run.client_id,
        audience: run.audience,
        scope: run.scope.filter(|s| !s.trim().is_empty()),
        context: run.context,
        config_overrides: run.config_overrides,
    };
    match issuer.explain(&request).await {
        Ok(explanation) => axum::Json(explanation).into_response(),
        Err(err) => {
            let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, axum::Json(err)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:8080",
            "[::1]",
            "LOCALHOST",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "",
            "example.com",
            "127.0.0.1.evil.test",
            "10.0.0.1:80",
            "[::2]:1",
            "localhost.evil.test",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn the_page_has_one_inline_script_and_no_remote_resources() {
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "no CDN"
        );
        assert_eq!(script_hash().len(), 44);
    }
}
