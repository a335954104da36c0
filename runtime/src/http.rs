//! The HTTP front door (axum): turns HTTP into [`TokenRequest`]s and pipeline
//! results into RFC 6749 responses. The same router serves the local server
//! and Lambda HTTP events.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::json;
use tokenhook_sdk::wire::RequestContext;
use tower_http::timeout::TimeoutLayer;

use crate::oauth::{ClientAuth, ErrorCode, OAuthError, TokenRequest};
use crate::pipeline::Issuer;
use crate::revocation::TokenQuery;

/// Largest accepted request body (a token request is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 16 << 10;
/// Largest accepted total size of request headers.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Requests taking longer than this are answered with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The issuer in force; a reload swaps it whole, requests in flight keep theirs.
#[derive(Clone)]
pub struct CurrentIssuer(Arc<RwLock<Arc<Issuer>>>);

impl CurrentIssuer {
    pub fn new(issuer: Issuer) -> Self {
        CurrentIssuer(Arc::new(RwLock::new(Arc::new(issuer))))
    }

    pub fn get(&self) -> Arc<Issuer> {
        self.0.read().expect("issuer lock").clone()
    }

    pub fn replace(&self, issuer: Issuer) {
        *self.0.write().expect("issuer lock") = Arc::new(issuer);
    }
}

/// The caller's IP address, as the transport knows it (socket peer locally,
/// the request context on Lambda). Set by the door, read by the token route.
#[derive(Clone, Debug)]
pub struct PeerIp(pub String);

/// The request id of this request (from `x-request-id` if sane, else new).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub fn router(current: CurrentIssuer) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revocations", get(revocations))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/healthz", get(health))
        .with_state(current)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(request_id_and_limits))
}

/// Give every request an id (echoed in `x-request-id`) and refuse oversized headers.
async fn request_id_and_limits(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let mut response = if header_bytes > MAX_HEADER_BYTES {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.into_response()
    } else {
        req.extensions_mut().insert(RequestId(id.clone()));
        next.run(req).await
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random");
    hex::encode(bytes)
}

async fn token(State(current): State<CurrentIssuer>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(new_request_id);
    let ip = parts.extensions.get::<PeerIp>().map(|p| p.0.clone());
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let request = match parse_token_request(&parts.headers, &body, request_id, ip) {
        Ok(request) => request,
        Err(err) => return error_response(&err),
    };
    let issuer = current.get();
    match issuer.issue(&request).await {
        Ok(token) => no_store((StatusCode::OK, axum::Json(token)).into_response()),
        Err(err) => error_response(&err),
    }
}

/// The body and request id of a form POST, or the response that refuses it.
async fn read_form(req: Request) -> Result<(axum::http::request::Parts, Bytes, String), Response> {
    let (parts, body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(new_request_id);
    match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Ok(body) => Ok((parts, body, request_id)),
        Err(_) => Err(StatusCode::PAYLOAD_TOO_LARGE.into_response()),
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 with an empty body when done.
async fn revoke(State(current): State<CurrentIssuer>, req: Request) -> Response {
    let (parts, body, request_id) = match read_form(req).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let query = match parse_token_query(&parts.headers, &body, request_id) {
        Ok(query) => query,
        Err(err) => return error_response(&err),
    };
    match current.get().revoke(&query).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(err) => error_response(&err),
    }
}

/// `POST /oauth/introspect` (RFC 7662).
async fn introspect(State(current): State<CurrentIssuer>, req: Request) -> Response {
    let (parts, body, request_id) = match read_form(req).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let query = match parse_token_query(&parts.headers, &body, request_id) {
        Ok(query) => query,
        Err(err) => return error_response(&err),
    };
    match current.get().introspect(&query).await {
        Ok(answer) => no_store(axum::Json(answer).into_response()),
        Err(err) => error_response(&err),
    }
}

/// `GET /oauth/revocations?since=MS`: revoked tokens and client cut-offs
/// since a cursor, for resource servers (the ones allowed to introspect).
async fn revocations(State(current): State<CurrentIssuer>, req: Request) -> Response {
    let headers = req.headers();
    let mut since = 0u64;
    for (name, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match (name.as_ref(), value.parse::<u64>()) {
            ("since", Ok(v)) => since = v,
            ("since", Err(_)) => {
                return error_response(&OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "`since` must be the `next` value of an earlier answer (milliseconds)",
                ));
            }
            _ => {}
        }
    }
    let client = match client_auth(headers, &mut HashMap::new()) {
        Ok(client) => client,
        Err(err) => return error_response(&err),
    };
    match current.get().revocation_feed(&client, since).await {
        Ok(feed) => {
            let mut response = axum::Json(feed).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=1"),
            );
            response
        }
        Err(err) => error_response(&err),
    }
}

/// Read a token request from form-encoded HTTP (RFC 6749 §4.4.2, §2.3.1).
pub fn parse_token_request(
    headers: &HeaderMap,
    body: &Bytes,
    request_id: String,
    ip: Option<String>,
) -> Result<TokenRequest, OAuthError> {
    let invalid = |d: &str| OAuthError::new(ErrorCode::InvalidRequest, d);
    let mut params = parse_form(headers, body)?;
    let client = client_auth(headers, &mut params)?;
    let audience = match (params.remove("audience"), params.remove("resource")) {
        (Some(a), Some(r)) if a != r => {
            return Err(invalid("audience and resource name different APIs"));
        }
        (a, r) => a.or(r),
    };
    Ok(TokenRequest {
        request_id,
        grant_type: params.remove("grant_type"),
        client,
        audience,
        scope: params.remove("scope"),
        context: RequestContext {
            ip,
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        },
    })
}

/// Read a revocation (RFC 7009 §2.1) or introspection (RFC 7662 §2.1) request.
pub fn parse_token_query(
    headers: &HeaderMap,
    body: &Bytes,
    request_id: String,
) -> Result<TokenQuery, OAuthError> {
    let mut params = parse_form(headers, body)?;
    let client = client_auth(headers, &mut params)?;
    Ok(TokenQuery {
        request_id,
        client,
        token: params.remove("token"),
    })
}

/// A form-encoded body's parameters; a repeated parameter is an error (RFC 6749 §3.2).
fn parse_form(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    let invalid = |d: &str| OAuthError::new(ErrorCode::InvalidRequest, d);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(invalid(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        if params.insert(name.to_string(), value.to_string()).is_some() {
            return Err(invalid(&format!("parameter `{name}` is repeated")));
        }
    }
    Ok(params)
}

/// How the client authenticated: HTTP Basic or form fields (RFC 6749 §2.3.1).
/// Takes `client_id` and `client_secret` out of `params`.
fn client_auth(
    headers: &HeaderMap,
    params: &mut HashMap<String, String>,
) -> Result<ClientAuth, OAuthError> {
    let invalid = |d: &str| OAuthError::new(ErrorCode::InvalidRequest, d);
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(parse_basic(value).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidClient,
                "malformed Basic authorization header",
            )
        })?),
    };
    let post_id = params.remove("client_id");
    let post_secret = params.remove("client_secret");
    let client = match (basic, post_id, post_secret) {
        (Some(_), _, Some(_)) => ClientAuth::Multiple,
        (Some((id, _)), Some(post_id), None) if post_id != id => {
            return Err(invalid("client_id does not match the Basic credentials"));
        }
        (Some((id, secret)), _, None) => ClientAuth::Basic { id, secret },
        (None, Some(id), Some(secret)) => ClientAuth::Post { id, secret },
        (None, _, _) => ClientAuth::None,
    };
    Ok(client)
}

/// `Basic base64(urlencode(id):urlencode(secret))` → (id, secret).
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let id = unescape(id)?;
    (!id.is_empty()).then_some(())?;
    Some((id, unescape(secret)?))
}

pub fn error_response(err: &OAuthError) -> Response {
    let status = StatusCode::from_u16(err.error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(err)).into_response();
    // RFC 9110 §15.5.2: every 401 carries a challenge (RFC 6749 requires it
    // when the client tried Basic; we send it for every invalid_client).
    if err.error == ErrorCode::InvalidClient {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tokenhook\""),
        );
    }
    no_store(response)
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn jwks(State(current): State<CurrentIssuer>) -> Response {
    match current.get().key_set().await {
        Ok(set) => {
            let mut response = axum::Json(set.jwks()).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            response
        }
        Err(err) => error_response(&err),
    }
}

async fn metadata(State(current): State<CurrentIssuer>) -> Response {
    let issuer = current.get();
    let base = issuer.manifest().issuer.clone();
    axum::Json(issuer.metadata(&base).await).into_response()
}

async fn health(State(current): State<CurrentIssuer>) -> Response {
    let issuer = current.get();
    axum::Json(json!({"status": "ok", "hooks": issuer.hook_names()})).into_response()
}
