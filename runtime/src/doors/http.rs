//! The HTTP front door (axum): turns HTTP into [`TokenRequest`]s and pipeline
//! results into RFC 6749 responses. The same router serves the local server
//! and Lambda HTTP events.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{RequestExt, Router};
use base64::Engine;
use serde_json::json;
use tokenhook_sdk::wire::RequestContext;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;

use crate::audit::{self, Caller, Query};
use crate::oauth::{ClientAuth, ErrorCode, OAuthError, TokenRequest, server_metadata};
use crate::reload::CurrentIssuer;
use crate::revocation::TokenQuery;

/// Largest accepted request body (a token request is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 16 << 10;
/// Largest accepted total size of request headers.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Requests taking longer than this are answered with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The caller's IP address, as the transport knows it (socket peer locally,
/// the request context on Lambda). Set by the door, read by the token route.
#[derive(Clone, Debug)]
pub struct PeerIp(pub String);

/// A request id the door already has (on Lambda, the Lambda request id):
/// it becomes ours, so logs correlate with Lambda's own.
#[derive(Clone, Debug)]
pub struct DoorRequestId(pub String);

/// The caller's `x-request-id`, bounded and cleaned
/// ([`audit::client_request_id`]): logged beside ours, never instead of it.
#[derive(Clone, Debug)]
pub struct ClientRequestId(pub String);

pub fn router(current: CurrentIssuer) -> Router {
    router_with(current, Router::new())
}

/// [`router`] with a door's own routes (`extra`) behind the same layers, so
/// they too get request ids, limits, and a 404 that carries `x-request-id`.
pub fn router_with(current: CurrentIssuer, extra: Router<CurrentIssuer>) -> Router {
    // Layers run outermost (last) first: the caller's id is moved aside,
    // ours is set (tower-http) and echoed in the response's `x-request-id`,
    // then oversized headers are refused with our id in the log.
    extra
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
        .layer(middleware::from_fn(header_limit))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(NewRequestId))
        .layer(middleware::map_request(move_client_request_id))
}

/// Take the caller's `x-request-id` out of the headers (so tower-http's
/// `SetRequestId` always makes ours) and keep it, cleaned, beside.
async fn move_client_request_id(mut req: Request) -> Request {
    let raw = req
        .headers_mut()
        .remove("x-request-id")
        .and_then(|v| audit::client_request_id(v.as_bytes()));
    if let Some(id) = raw {
        req.extensions_mut().insert(ClientRequestId(id));
    }
    req
}

/// Our request ids: the door's (Lambda) if it has one, else 96 random bits.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, req: &axum::http::Request<B>) -> Option<RequestId> {
        let id = req
            .extensions()
            .get::<DoorRequestId>()
            .and_then(|d| audit::client_request_id(d.0.as_bytes()))
            .unwrap_or_else(new_request_id);
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Refuse oversized headers (431), with an audit line.
async fn header_limit(req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        let (request_id, client_request_id) = request_ids(req.extensions());
        let ip = req.extensions().get::<PeerIp>().map(|p| p.0.clone());
        audit::request_refused(
            &Caller {
                request_id: &request_id,
                client_request_id: client_request_id.as_deref(),
                ip: ip.as_deref(),
                auth: None,
            },
            req.uri().path(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.as_u16(),
            "request headers too large",
        );
        return StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.into_response();
    }
    next.run(req).await
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random");
    hex::encode(bytes)
}

/// Ours (set by [`NewRequestId`]) and the caller's.
fn request_ids(ext: &axum::http::Extensions) -> (String, Option<String>) {
    let ours = ext
        .get::<RequestId>()
        .and_then(|r| r.header_value().to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    (ours, ext.get::<ClientRequestId>().map(|c| c.0.clone()))
}

/// The caller's address: with `hops` = 0 the door's own source address
/// ([`PeerIp`]); with N trusted proxies, the Nth entry from the right of
/// `X-Forwarded-For` (each proxy appends the address it was connected from;
/// entries further left come from the client and are not trusted). Fewer
/// entries than hops, or an entry that is not an address: none.
pub fn client_ip(headers: &HeaderMap, peer: Option<&PeerIp>, hops: usize) -> Option<String> {
    if hops == 0 {
        return peer.map(|p| p.0.clone());
    }
    let mut entries = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        entries.extend(value.to_str().ok()?.split(',').map(str::trim));
    }
    let entry = *entries.iter().rev().nth(hops - 1)?;
    entry
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

/// The audit line for a request refused before the pipeline saw it.
fn refused_early(query: Option<Query>, headers: &HeaderMap, caller: Caller<'_>, err: &OAuthError) {
    // What is known: the client id of a readable Basic header.
    let known = client_auth(headers, &mut HashMap::new()).ok();
    let caller = Caller {
        auth: known.as_ref(),
        ..caller
    };
    match query {
        None => audit::token_refused(
            &caller,
            None,
            "parse",
            err.status(),
            err.error.as_str(),
            &err.error_description,
            0,
        ),
        Some(query) => audit::token_query(&caller, query, Err(err), "parse", None),
    }
}

/// A request's parts and its body, read within the router's one body limit
/// (axum's [`DefaultBodyLimit`], [`MAX_BODY_BYTES`]): the same limit the
/// router's extractors apply, so no route keeps a second one. Over it (or a
/// body that cannot be read): `413 invalid_request`.
async fn read_body(req: Request) -> (Parts, Result<Bytes, OAuthError>) {
    let (parts, body) = req.with_limited_body().into_parts();
    // The limit is in the body now (`http_body_util::Limited`).
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| body_too_large());
    (parts, body)
}

fn body_too_large() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidRequest,
        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    )
    .with_status(413, None)
}

async fn token(State(current): State<CurrentIssuer>, req: Request) -> Response {
    let issuer = current.get();
    let (parts, body) = read_body(req).await;
    let (request_id, client_request_id) = request_ids(&parts.extensions);
    let ip = client_ip(
        &parts.headers,
        parts.extensions.get::<PeerIp>(),
        issuer.manifest().trusted_proxy_hops(),
    );
    let caller = Caller {
        request_id: &request_id,
        client_request_id: client_request_id.as_deref(),
        ip: ip.as_deref(),
        auth: None,
    };
    let parsed = body.and_then(|body| {
        parse_token_request(&parts.headers, &body, request_id.clone(), ip.clone())
    });
    let mut request = match parsed {
        Ok(request) => request,
        Err(err) => {
            refused_early(None, &parts.headers, caller, &err);
            return error_response(&err);
        }
    };
    request.client_request_id = client_request_id.clone();
    match issuer.issue(&request).await {
        Ok(token) => no_store((StatusCode::OK, axum::Json(token)).into_response()),
        Err(err) => error_response(&err),
    }
}

/// A revocation or introspection request read from its form, with who sent it.
struct QueryRequest {
    query: TokenQuery,
    client_request_id: Option<String>,
    ip: Option<String>,
}

/// What a revocation or introspection answered: the response, the outcome
/// and the token's `jti` for the audit line.
type QueryAnswer = Result<(Response, &'static str, Option<String>), OAuthError>;

impl QueryRequest {
    /// Read and parse the form, or the refusal (already logged).
    async fn read(kind: Query, req: Request, hops: usize) -> Result<Self, Response> {
        let (parts, body) = read_body(req).await;
        let (request_id, client_request_id) = request_ids(&parts.extensions);
        let ip = client_ip(&parts.headers, parts.extensions.get::<PeerIp>(), hops);
        let parsed =
            body.and_then(|body| parse_token_query(&parts.headers, &body, request_id.clone()));
        match parsed {
            Ok(query) => Ok(QueryRequest {
                query,
                client_request_id,
                ip,
            }),
            Err(err) => {
                let caller = Caller {
                    request_id: &request_id,
                    client_request_id: client_request_id.as_deref(),
                    ip: ip.as_deref(),
                    auth: None,
                };
                refused_early(Some(kind), &parts.headers, caller, &err);
                Err(error_response(&err))
            }
        }
    }

    /// Log the one audit line for the answer and turn it into the response.
    fn respond(&self, kind: Query, answer: QueryAnswer) -> Response {
        let caller = Caller {
            request_id: &self.query.request_id,
            client_request_id: self.client_request_id.as_deref(),
            ip: self.ip.as_deref(),
            auth: Some(&self.query.client),
        };
        match answer {
            Ok((response, outcome, jti)) => {
                audit::token_query(&caller, kind, Ok(outcome), "answer", jti.as_deref());
                response
            }
            Err(err) => {
                audit::token_query(&caller, kind, Err(&err), "answer", None);
                error_response(&err)
            }
        }
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 with an empty body when done.
async fn revoke(State(current): State<CurrentIssuer>, req: Request) -> Response {
    let issuer = current.get();
    let hops = issuer.manifest().trusted_proxy_hops();
    let request = match QueryRequest::read(Query::Revocation, req, hops).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let answer = issuer.revoke(&request.query).await.map(|jti| {
        let outcome = match jti {
            Some(_) => "revoked",
            None => "nothing to revoke",
        };
        (no_store(StatusCode::OK.into_response()), outcome, jti)
    });
    request.respond(Query::Revocation, answer)
}

/// `POST /oauth/introspect` (RFC 7662).
async fn introspect(State(current): State<CurrentIssuer>, req: Request) -> Response {
    let issuer = current.get();
    let hops = issuer.manifest().trusted_proxy_hops();
    let request = match QueryRequest::read(Query::Introspection, req, hops).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let answer = issuer.introspect(&request.query).await.map(|answer| {
        let outcome = if answer["active"] == true {
            "active"
        } else {
            "inactive"
        };
        let jti = answer["jti"].as_str().map(str::to_owned);
        (no_store(axum::Json(answer).into_response()), outcome, jti)
    });
    request.respond(Query::Introspection, answer)
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
        client_request_id: None,
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
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(err)).into_response();
    if let Some(seconds) = err.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
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

/// RFC 8414 metadata; the issuer identifier is also where it is reachable.
async fn metadata(State(current): State<CurrentIssuer>) -> Response {
    let issuer = current.get();
    let manifest = issuer.manifest();
    let scopes = manifest.apis.iter().flat_map(|a| a.scopes.iter());
    axum::Json(server_metadata(&manifest.issuer, &manifest.issuer, scopes)).into_response()
}

async fn health(State(current): State<CurrentIssuer>) -> Response {
    let issuer = current.get();
    axum::Json(json!({"status": "ok", "hooks": issuer.hook_names()})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn without_trusted_hops_the_door_s_own_address_is_used() {
        let peer = PeerIp("198.51.100.1".into());
        let headers = xff(&["192.0.2.9"]);
        assert_eq!(
            client_ip(&headers, Some(&peer), 0).as_deref(),
            Some("198.51.100.1")
        );
        assert_eq!(
            client_ip(&headers, None, 0),
            None,
            "an ALB event has no source field"
        );
    }

    #[test]
    fn trusted_hops_count_from_the_right_of_x_forwarded_for() {
        let headers = xff(&["10.9.9.9, 192.0.2.9", " 203.0.113.20 "]);
        assert_eq!(
            client_ip(&headers, None, 1).as_deref(),
            Some("203.0.113.20")
        );
        assert_eq!(client_ip(&headers, None, 2).as_deref(), Some("192.0.2.9"));
        assert_eq!(client_ip(&headers, None, 3).as_deref(), Some("10.9.9.9"));
        assert_eq!(
            client_ip(&headers, None, 4),
            None,
            "fewer entries than hops"
        );
        assert_eq!(client_ip(&xff(&["not-an-ip"]), None, 1), None);
        assert_eq!(client_ip(&HeaderMap::new(), None, 1), None);
    }
}
