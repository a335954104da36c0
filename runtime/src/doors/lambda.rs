//! The Lambda front door. HTTP events (API Gateway REST v1 and HTTP v2,
//! Function URLs, ALB) go through lambda_http to the same axum router as the
//! local server; a direct invoke from a trusted issuer (already authorised by
//! IAM to invoke the function) goes straight to the pipeline. No logic of its own.

use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, RequestExt};
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Deserialize;
use serde_json::{Value, json};
use tokenhook_sdk::wire::RequestContext;
use tower::{Service, ServiceExt};

use crate::doors::http::{DoorRequestId, PeerIp, router};
use crate::oauth::{ClientAuth, ErrorCode, OAuthError, TokenRequest};
use crate::reload::CurrentIssuer;

/// The event a trusted issuer sends with `lambda:InvokeFunction`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectInvoke {
    /// Always `"token_request"`; marks the event as ours.
    pub tokenhook: String,
    pub client_id: String,
    pub audience: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub context: RequestContext,
}

/// Serve Lambda events until the runtime stops us.
pub async fn run(current: CurrentIssuer) -> Result<(), lambda_runtime::Error> {
    let app = http_app(current.clone(), crate::metrics::lambda_route_enabled());
    let current = Arc::new(current);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (app, current) = (app.clone(), current.clone());
        async move {
            let started = std::time::Instant::now();
            let response = handle(event, app, &current).await;
            // Before answering: once answered, the environment may be frozen.
            crate::metrics::flush_emf();
            crate::startup::request_done(started.elapsed());
            response
        }
    }))
    .await
}

/// The router Lambda HTTP events go to: the HTTP door, plus `GET /metrics`
/// only when `metrics_route` (off by default: on Lambda, metrics are EMF lines).
pub fn http_app(current: CurrentIssuer, metrics_route: bool) -> axum::Router {
    let mut app = router(current);
    if metrics_route {
        app = app.merge(crate::metrics::routes());
    }
    app.layer(axum::middleware::map_request(from_event))
}

async fn handle(
    event: LambdaEvent<Value>,
    app: axum::Router,
    current: &CurrentIssuer,
) -> Result<Value, lambda_runtime::Error> {
    let LambdaEvent { payload, context } = event;
    let request = match decode(payload)? {
        Decoded::Direct(payload) => {
            return Ok(direct_invoke(payload, &context.request_id, current).await);
        }
        Decoded::Http(request) => *request,
    };
    let mut adapter = Adapter::from(app);
    let response = adapter
        .ready()
        .await?
        .call(LambdaEvent::new(request, context))
        .await?;
    Ok(serde_json::to_value(response)?)
}

/// A Lambda payload as [`handle`] reads it, before anything runs.
pub enum Decoded {
    /// It has a `tokenhook` field: a direct invoke, read by [`direct_request`].
    Direct(Value),
    /// An HTTP event; lambda_http turns it into the router's `http::Request`.
    Http(Box<LambdaRequest>),
}

/// Tell a direct invoke from an HTTP event (API Gateway, Function URL, ALB).
/// Pure, so the fuzzer can drive it; `Err` is the function error Lambda reports.
pub fn decode(payload: Value) -> Result<Decoded, String> {
    if payload.get("tokenhook").is_some() {
        return Ok(Decoded::Direct(payload));
    }
    let parse = |payload: Value| {
        serde_json::from_value::<LambdaRequest>(payload).map_err(|e| {
            format!(
                "not an HTTP event (API Gateway, Function URL, ALB) nor a tokenhook direct invoke: {e}"
            )
        })
    };
    // lambda_http builds the `http::Request` with `unwrap`/`expect`: it panics
    // on a body marked base64 that is not, a Host or X-Forwarded-Proto that
    // makes no URL, a query no URI holds (found by fuzzing, tests/fuzz). AWS
    // sends none of these, but a panic is no answer: convert a copy first and
    // refuse the event as malformed if that panics. Costs one more parse of
    // an event of a few KiB.
    let probe = parse(payload.clone())?;
    let converts = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        drop(lambda_http::Request::from(probe))
    }));
    if converts.is_err() {
        return Err("malformed HTTP event: lambda_http cannot turn it into an HTTP request (body marked base64 but not, or no valid URL)".into());
    }
    let request = parse(payload)?;
    Ok(Decoded::Http(Box::new(request)))
}

/// The token request a direct invoke asks for, or the OAuth error to answer
/// as data. Pure, like [`decode`].
pub fn direct_request(payload: Value, lambda_request_id: &str) -> Result<TokenRequest, Value> {
    let invoke = match serde_json::from_value::<DirectInvoke>(payload) {
        Ok(invoke) if invoke.tokenhook == "token_request" => invoke,
        Ok(invoke) => {
            return Err(error_answer(&OAuthError::new(
                ErrorCode::InvalidRequest,
                format!("unknown tokenhook event `{}`", invoke.tokenhook),
            )));
        }
        Err(e) => {
            return Err(error_answer(&OAuthError::new(
                ErrorCode::InvalidRequest,
                format!("malformed direct invoke: {e}"),
            )));
        }
    };
    Ok(TokenRequest {
        // Ours is the Lambda request id; the caller's is kept beside it.
        request_id: lambda_request_id.to_string(),
        client_request_id: invoke
            .request_id
            .and_then(|id| crate::audit::client_request_id(id.as_bytes())),
        grant_type: Some("client_credentials".into()),
        client: ClientAuth::Trusted {
            id: invoke.client_id,
        },
        audience: Some(invoke.audience),
        scope: invoke.scope,
        context: invoke.context,
    })
}

/// A token for an already-authenticated client: the token response, or the
/// OAuth error as data (not a function error).
pub async fn direct_invoke(
    payload: Value,
    lambda_request_id: &str,
    current: &CurrentIssuer,
) -> Value {
    let issuer = current.get();
    let request = match direct_request(payload, lambda_request_id) {
        Ok(request) => request,
        Err(answer) => {
            log_unreadable(lambda_request_id, &answer);
            return answer;
        }
    };
    // The caller's word for the end client's address reaches hooks only if
    // the manifest trusts it; otherwise it is refused, not silently dropped,
    // so an integration never believes an IP rule is applied when it is not.
    if request.context.ip.is_some() && !issuer.manifest().direct_invoke.trust_caller_ip {
        let err = OAuthError::new(
            ErrorCode::InvalidRequest,
            "context.ip is not accepted from a direct invoke unless [direct_invoke] trust_caller_ip = true",
        );
        let caller = crate::audit::Caller {
            request_id: &request.request_id,
            client_request_id: request.client_request_id.as_deref(),
            ip: None,
            auth: Some(&request.client),
        };
        crate::audit::token_refused(
            &caller,
            request.audience.as_deref(),
            "parse",
            err.status(),
            err.error.as_str(),
            &err.error_description,
            0,
        );
        return error_answer(&err);
    }
    match issuer.issue(&request).await {
        Ok(token) => serde_json::to_value(token).unwrap_or(Value::Null),
        Err(err) => error_answer(&err),
    }
}

/// The audit line for a direct invoke that could not be read.
fn log_unreadable(lambda_request_id: &str, answer: &Value) {
    let text = |name: &str| answer[name].as_str().unwrap_or("").to_string();
    crate::audit::token_refused(
        &crate::audit::Caller {
            request_id: lambda_request_id,
            client_request_id: None,
            ip: None,
            auth: Some(&ClientAuth::Trusted { id: String::new() }),
        },
        None,
        "parse",
        400,
        &text("error"),
        &text("error_description"),
        0,
    );
}

/// A direct invoke's OAuth error as data. Every error answer is built from an
/// [`OAuthError`], so its description has been through `OAuthError::new`'s
/// RFC 6749 character filter (it echoes the caller's payload).
fn error_answer(err: &OAuthError) -> Value {
    json!({"error": err.error.as_str(), "error_description": err.error_description})
}

/// What the event knows about an HTTP request that a socket would have told
/// the local server: the source address API Gateway or the Function URL saw
/// (as the `PeerIp` extension; an ALB event has none: with
/// `http.trusted_proxy_hops` the token route reads `X-Forwarded-For`
/// instead), and the Lambda request id, which becomes our request id so
/// logs correlate.
async fn from_event(mut req: axum::extract::Request) -> axum::extract::Request {
    use lambda_http::request::RequestContext as Ctx;
    let ip = match req.request_context_ref() {
        Some(Ctx::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        Some(Ctx::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        _ => None,
    };
    if let Some(ip) = ip.filter(|ip| !ip.is_empty()) {
        req.extensions_mut().insert(PeerIp(ip));
    }
    if let Some(id) = req.lambda_context_ref().map(|c| c.request_id.clone()) {
        req.extensions_mut().insert(DoorRequestId(id));
    }
    req
}

/// Tell Lambda why initialisation failed (`/runtime/init/error`), so the
/// invoke that started this environment reports the cause, not just an exit.
pub async fn report_init_error(error_type: &str, message: &str) {
    use lambda_runtime_api_client::{Client, body::Body, build_request};
    let diagnostic = lambda_runtime::Diagnostic {
        error_type: error_type.to_string(),
        error_message: message.to_string(),
    };
    let request = serde_json::to_vec(&diagnostic)
        .map_err(|e| e.to_string())
        .and_then(|body| {
            build_request()
                .method("POST")
                .uri("/2018-06-01/runtime/init/error")
                .header("lambda-runtime-function-error-type", error_type)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .map_err(|e| e.to_string())
        });
    let sent = match (Client::builder().build(), request) {
        (Ok(client), Ok(request)) => client.call(request).await.map_err(|e| e.to_string()),
        (Err(e), _) => Err(e.to_string()),
        (_, Err(e)) => Err(e),
    };
    if let Err(e) = sent {
        tracing::error!(error = %e, "cannot report the init error to the Lambda runtime API");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (tests/fuzz, target lambda_event): lambda_http panics
    /// turning these events into HTTP requests. `decode` refuses them as
    /// malformed instead; a well-formed event still decodes.
    #[test]
    fn events_lambda_http_cannot_convert_are_refused_not_panicked_on() {
        let alb = |host: &str, body: &str| {
            json!({
                "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/6d0ecf831eec9f09"}},
                "httpMethod": "POST", "path": "/oauth/token", "queryStringParameters": {},
                "headers": {"content-type": "application/x-www-form-urlencoded", "host": host},
                "body": body, "isBase64Encoded": true
            })
        };
        let good = "Z3JhbnRfdHlwZT1jbGllbnRfY3JlZGVudGlhbHM=";
        assert!(matches!(
            decode(alb("auth.example.com", good)),
            Ok(Decoded::Http(_))
        ));
        for event in [
            alb("auth.example.com", "Z3JhbnRfdHlwZT1jbGllbR0cHMlM0E="),
            alb("auth.exam]ple.com", good),
        ] {
            match decode(event) {
                Err(message) => assert!(message.starts_with("malformed HTTP event"), "{message}"),
                Ok(_) => panic!("a malformed event was accepted"),
            }
        }
    }

    /// Direct-invoke errors echo the payload; their descriptions must keep to
    /// RFC 6749's character set like every other error.
    #[test]
    fn direct_invoke_errors_keep_to_the_rfc_6749_character_set() {
        let hostile = "x\"\n\\\u{1}\u{e9}\u{202e}";
        for payload in [
            json!({"tokenhook": hostile, "client_id": "a", "audience": "b"}),
            json!({"tokenhook": "token_request", "client_id": "a", "audience": "b", hostile: 1}),
        ] {
            let Err(answer) = direct_request(payload, "req") else {
                panic!("a hostile payload must be refused")
            };
            assert_eq!(answer["error"], "invalid_request");
            let description = answer["error_description"].as_str().unwrap();
            assert!(description.contains("x'?/??"), "{description}");
            assert!(
                description.bytes().all(|b| b == 0x20
                    || b == 0x21
                    || (0x23..=0x5b).contains(&b)
                    || (0x5d..=0x7e).contains(&b)),
                "{description:?}"
            );
        }
    }

    async fn issuer_with(extra: &str) -> (CurrentIssuer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (_, hash) = crate::clients::new_secret();
        let text = format!(
            r#"issuer = "https://issuer.test/"
keys = {{ source = "file", path = "{key}" }}
{extra}
[store]
kind = "none"

[[apis]]
identifier = "https://api.test"
scopes = ["read:a"]

[[clients]]
id = "app"
secret_hash = "{hash}"

[[clients]]
id = "trusted"
secret_hash = "{hash}"
direct_invoke = true

[[grants]]
client = "app"
api = "https://api.test"
scopes = ["read:a"]

[[grants]]
client = "trusted"
api = "https://api.test"
scopes = ["read:a"]
"#,
            key = dir.path().join("key.pem").display()
        );
        let path = dir.path().join("manifest.toml");
        std::fs::write(&path, text).unwrap();
        let issuer = crate::pipeline::Issuer::load(&path, &crate::pipeline::Services::local())
            .await
            .unwrap();
        (CurrentIssuer::new(issuer), dir)
    }

    fn invoke(client: &str, context: Value) -> Value {
        json!({"tokenhook": "token_request", "client_id": client, "audience": "https://api.test",
               "request_id": "caller-1", "context": context})
    }

    #[tokio::test]
    async fn a_direct_invoke_is_refused_unless_the_manifest_enables_it() {
        let (current, _dir) = issuer_with("").await;
        let answer = direct_invoke(invoke("app", json!({})), "lambda-1", &current).await;
        assert_eq!(answer["error"], "unauthorized_client", "{answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .unwrap()
                .contains("direct_invoke")
        );
        // Per client.
        let answer = direct_invoke(invoke("trusted", json!({})), "lambda-2", &current).await;
        assert!(answer["access_token"].is_string(), "{answer}");
        // Globally.
        let (current, _dir) = issuer_with("[direct_invoke]\nenabled = true\n").await;
        let answer = direct_invoke(invoke("app", json!({})), "lambda-3", &current).await;
        assert!(answer["access_token"].is_string(), "{answer}");
    }

    #[tokio::test]
    async fn a_direct_invoke_sets_the_ip_only_where_the_manifest_trusts_the_caller() {
        let ip = json!({"ip": "192.0.2.1"});
        let (current, _dir) = issuer_with("[direct_invoke]\nenabled = true\n").await;
        let answer = direct_invoke(invoke("app", ip.clone()), "lambda-1", &current).await;
        assert_eq!(answer["error"], "invalid_request", "{answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .unwrap()
                .contains("trust_caller_ip")
        );
        let (current, _dir) =
            issuer_with("[direct_invoke]\nenabled = true\ntrust_caller_ip = true\n").await;
        let answer = direct_invoke(invoke("app", ip), "lambda-2", &current).await;
        assert!(answer["access_token"].is_string(), "{answer}");
    }

    #[test]
    fn our_request_id_is_lambda_s_and_the_caller_s_is_kept_beside() {
        let req = direct_request(invoke("app", json!({})), "lambda-9").unwrap();
        assert_eq!(req.request_id, "lambda-9");
        assert_eq!(req.client_request_id.as_deref(), Some("caller-1"));
    }

    #[test]
    fn a_direct_invoke_refuses_unknown_fields() {
        let err = serde_json::from_value::<DirectInvoke>(json!({
            "tokenhook": "token_request", "client_id": "a", "audience": "b", "client_secret": "x"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("client_secret"), "{err}");
    }
}
