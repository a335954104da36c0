//! The binary under a Lambda Runtime API emulator (`cargo lambda watch`, from
//! PyPI `cargo-lambda`), invoked with the real event shapes in
//! `tests/fixtures/lambda/`: API Gateway HTTP API v2, REST API v1, Function
//! URL, and direct invokes from a trusted issuer. Also measures cold start.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenhook_tests::lambda_emulator::{
    DIRECT_INVOKE, LAMBDA_ISSUER as ISSUER, RuntimeEmulator, fixture, http_body,
};
use tokenhook_tests::{ChildGroup, example_manifest, jose, python_tool, write_manifest_in};

#[tokio::test(flavor = "multi_thread")]
async fn every_event_shape_gets_a_verifiable_token_under_the_runtime_emulator() {
    let cargo_lambda = python_tool("cargo-lambda");
    let binary = tokenhook_tests::tokenhook_bin();
    let dir = tempfile::tempdir().unwrap();
    let manifest: PathBuf = write_manifest_in(
        dir.path(),
        &format!("{}{DIRECT_INVOKE}", example_manifest()),
    );
    let started = Instant::now();
    // The function is this workspace's binary. `cargo lambda watch` could
    // build and start it too, but with `-p tokenhook` alone cargo would
    // rebuild every dependency with other features than the test build's.
    let emulator = RuntimeEmulator::start(&cargo_lambda);
    let invoke = |event| emulator.invoke(event, Duration::from_secs(120));
    let emulator_up = started.elapsed();
    let log = std::fs::File::create(dir.path().join("function.log")).unwrap();
    let spawned = Instant::now();
    let _function = ChildGroup::spawn(
        Command::new(&binary)
            .envs(emulator.function_env())
            .env("TOKENHOOK_MANIFEST", &manifest)
            .env("TOKENHOOK_ISSUER", ISSUER)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null()),
    );

    // Cold start: the first invoke waits for the function's init.
    let first = Instant::now();
    let direct = invoke(fixture("direct_invoke_token.json")).await;
    let first_token = first.elapsed();
    let first_token_since_start = spawned.elapsed();
    let jwks_response = invoke(fixture("apigw_http_v2_jwks.json")).await;
    assert_eq!(jwks_response["statusCode"], 200);
    let jwks = http_body(&jwks_response);
    let claims = jose::verify(
        direct["access_token"].as_str().expect("token"),
        &jwks,
        ISSUER,
        "https://api.example.com",
    )
    .unwrap();
    assert_eq!(claims["sub"], "demo-client");
    assert_eq!(claims["scope"], "read:orders read:status");
    assert_eq!(direct["token_type"], "Bearer");

    let warm = Instant::now();
    let again = invoke(fixture("direct_invoke_token.json")).await;
    let warm_token = warm.elapsed();
    assert!(again["access_token"].is_string());

    for name in [
        "apigw_http_v2_token.json",
        "function_url_token.json",
        "apigw_rest_v1_token.json",
    ] {
        let response = invoke(fixture(name)).await;
        assert_eq!(response["statusCode"], 200, "{name}: {response}");
        let body = http_body(&response);
        let claims = jose::verify(
            body["access_token"].as_str().unwrap(),
            &jwks,
            ISSUER,
            "https://api.example.com",
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(claims["https://example.com/tenant"], "acme", "{name}");
        let cache = response["headers"]["cache-control"]
            .as_str()
            .or(response["multiValueHeaders"]["cache-control"][0].as_str());
        assert_eq!(cache, Some("no-store"), "{name}: {response}");
    }

    // OAuth errors from a direct invoke are data, not function errors.
    let unknown = invoke(fixture("direct_invoke_unknown_client.json")).await;
    assert_eq!(unknown["error"], "invalid_client", "{unknown}");
    // The request context's IP reaches the hooks: deny-list refuses 192.0.2.0/24.
    let denied = invoke(fixture("direct_invoke_denied_ip.json")).await;
    assert_eq!(denied["error"], "access_denied", "{denied}");
    // Without an IP, deny-list (which has IP rules) fails closed.
    let no_ip = invoke(fixture("direct_invoke_no_ip.json")).await;
    assert_eq!(no_ip["error"], "access_denied", "{no_ip}");

    let log = std::fs::read_to_string(dir.path().join("function.log")).unwrap_or_default();
    // Every trusted issuance is logged as such; the caller's request id is
    // kept beside ours (the Lambda request id), not instead of it.
    let issued = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["fields"]["message"] == "token issued"
                && l["fields"]["client_request_id"] == "issuer-7f3a"
        })
        .unwrap_or_else(|| panic!("no audit line for the direct invoke:\n{log}"));
    assert_eq!(issued["fields"]["auth_method"], "direct_invoke", "{issued}");
    assert_eq!(issued["fields"]["client_id"], "demo-client", "{issued}");
    assert_ne!(issued["fields"]["request_id"], "issuer-7f3a", "{issued}");
    let init_ms = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "ready")
        .and_then(|l| l["fields"]["init_ms"].as_u64());
    eprintln!(
        "cold start under the cargo lambda Runtime API emulator (debug build): emulator up {emulator_up:?}; process start → ready (manifest, keys, 4 hooks compiled) {init_ms:?} ms; process start → first token {first_token_since_start:?}; first invoke → token {first_token:?}; warm token {warm_token:?}"
    );
    assert!(
        init_ms.is_some(),
        "the function logs when it is ready:\n{log}"
    );
}
