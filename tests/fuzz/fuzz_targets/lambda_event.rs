//! The Lambda event decoder: a JSON payload becomes a direct invoke's token
//! request or, through lambda_http as the Adapter does it, the HTTP request
//! the router gets, whose token request is then parsed as the server would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokenhook::doors::lambda::{Decoded, decode, direct_request};
use tokenhook::oauth::ClientAuth;

#[path = "common/mod.rs"]
mod common;

/// `decode` converts a copy of each HTTP event under `catch_unwind`, because
/// lambda_http panics on some malformed events. libFuzzer's panic hook would
/// abort on that caught panic; this hook lets panics inside lambda_http (and
/// the aws_lambda_events it uses) unwind to `decode` without aborting, and
/// hands every other panic to libFuzzer's hook. A panic in lambda_http that
/// `decode` did not catch still reaches the harness, which aborts: a crash.
fn tolerate_panics_decode_catches() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let libfuzzer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map_or("", |l| l.file());
            if !(file.contains("/lambda_http-") || file.contains("/aws_lambda_events-")) {
                libfuzzer(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_panics_decode_catches();
    // Lambda hands the function a JSON document; anything else never reaches us.
    let Ok(payload) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let direct = payload.get("tokenhook").is_some();
    match decode(payload.clone()) {
        Ok(Decoded::Direct(payload)) => {
            assert!(direct, "not a direct invoke, decoded as one");
            match direct_request(payload, "lambda-request-id") {
                Ok(request) => {
                    assert!(matches!(request.client, ClientAuth::Trusted { .. }));
                    assert_eq!(request.grant_type.as_deref(), Some("client_credentials"));
                    assert!(request.audience.is_some());
                }
                Err(answer) => {
                    assert_eq!(answer["error"], "invalid_request", "{answer}");
                    let description = answer["error_description"].as_str().expect("a description");
                    common::assert_rfc6749_text(description);
                }
            }
        }
        Ok(Decoded::Http(event)) => {
            assert!(!direct, "a direct invoke decoded as HTTP");
            let request: lambda_http::Request = (*event).into();
            let (parts, body) = request.into_parts();
            let body = bytes::Bytes::copy_from_slice(body.as_ref());
            common::check_token_parsers(&parts.headers, &body);
        }
        Err(message) => {
            assert!(!direct, "a direct invoke refused as a function error");
            assert!(
                message.starts_with("not an HTTP event")
                    || message.starts_with("malformed HTTP event"),
                "{message}"
            );
        }
    }
});
