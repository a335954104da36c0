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

use crate::http::{CurrentIssuer, PeerIp, router};
use crate::oauth::{ClientAuth, TokenRequest};

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
    let app = router(current.clone()).layer(axum::middleware::map_request(source_ip));
    let current = Arc::new(current);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (app, current) = (app.clone(), current.clone());
        async move { handle(event, app, &current).await }
    }))
    .await
}

async fn handle(
    event: LambdaEvent<Value>,
    app: axum::Router,
    current: &CurrentIssuer,
) -> Result<Value, lambda_runtime::Error> {
    let LambdaEvent { payload, context } = event;
    if payload.get("tokenhook").is_some() {
        return Ok(direct_invoke(payload, &context.request_id, current).await);
    }
    let request: LambdaRequest = serde_json::from_value(payload).map_err(|e| {
        format!(
            "not an HTTP event (API Gateway, Function URL, ALB) nor a tokenhook direct invoke: {e}"
        )
    })?;
    let mut adapter = Adapter::from(app);
    let response = adapter
        .ready()
        .await?
        .call(LambdaEvent::new(request, context))
        .await?;
    Ok(serde_json::to_value(response)?)
}

/// A token for an already-authenticated client: the token response, or the
/// OAuth error as data (not a function error).
pub async fn direct_invoke(
    payload: Value,
    lambda_request_id: &str,
    current: &CurrentIssuer,
) -> Value {
    let invoke = match serde_json::from_value::<DirectInvoke>(payload) {
        Ok(invoke) if invoke.tokenhook == "token_request" => invoke,
        Ok(invoke) => {
            return json!({"error": "invalid_request", "error_description": format!("unknown tokenhook event `{}`", invoke.tokenhook)});
        }
        Err(e) => {
            return json!({"error": "invalid_request", "error_description": format!("malformed direct invoke: {e}")});
        }
    };
    let request = TokenRequest {
        request_id: invoke
            .request_id
            .unwrap_or_else(|| lambda_request_id.to_string()),
        grant_type: Some("client_credentials".into()),
        client: ClientAuth::Trusted {
            id: invoke.client_id,
        },
        audience: Some(invoke.audience),
        scope: invoke.scope,
        context: invoke.context,
    };
    match current.get().issue(&request).await {
        Ok(token) => serde_json::to_value(token).unwrap_or(Value::Null),
        Err(err) => serde_json::to_value(err).unwrap_or(Value::Null),
    }
}

/// The caller's IP from the API Gateway / Function URL request context.
async fn source_ip(mut req: axum::extract::Request) -> axum::extract::Request {
    use lambda_http::request::RequestContext as Ctx;
    let ip = match req.request_context_ref() {
        Some(Ctx::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        Some(Ctx::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        _ => None,
    };
    if let Some(ip) = ip {
        req.extensions_mut().insert(PeerIp(ip));
    }
    req
}
