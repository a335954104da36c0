//! The Lambda Runtime API emulator (`cargo lambda watch --only-lambda-apis`,
//! PyPI `cargo-lambda`) on 127.0.0.1, the environment Lambda gives a
//! function, invokes and the checked-in event fixtures: what the Lambda tests
//! (native and arm64 under qemu) share.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::{ChildGroup, free_port, wait_for_port, workspace_root};

/// The emulator, killed with its children on drop. It serves only the Lambda
/// APIs (invoke and the Runtime API); the function is started separately, as
/// Lambda starts a `provided.al2023` bootstrap, pointed at [`Self::function_env`].
pub struct RuntimeEmulator {
    pub port: u16,
    _process: ChildGroup,
}

impl RuntimeEmulator {
    /// Start `cargo lambda watch` (the `cargo-lambda` binary at `cargo_lambda`)
    /// on a free port and wait until it listens.
    pub fn start(cargo_lambda: &Path) -> RuntimeEmulator {
        let port = free_port();
        let process = ChildGroup::spawn(
            Command::new(cargo_lambda)
                .args([
                    "lambda",
                    "watch",
                    "--only-lambda-apis",
                    "--quiet",
                    "-A",
                    "127.0.0.1",
                    "-P",
                ])
                .arg(port.to_string())
                .current_dir(workspace_root())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .stdin(Stdio::null()),
        );
        assert!(
            wait_for_port(port, Duration::from_secs(60)),
            "the Runtime API emulator did not start on port {port}"
        );
        RuntimeEmulator {
            port,
            _process: process,
        }
    }

    /// What Lambda (and template.yaml) set for a function; the emulator names
    /// the function `_`. REST API v1 paths carry the stage, which the
    /// template tells lambda_http to ignore.
    pub fn function_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME", "_".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
        ]
    }

    /// Invoke the function with `event`; waits up to `timeout` (the first
    /// invoke waits for the function's init). The function's result, which
    /// for OAuth errors of a direct invoke is data, not a function error.
    pub async fn invoke(&self, event: Vec<u8>, timeout: Duration) -> Value {
        let resp = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
                self.port
            ))
            .body(event)
            .timeout(timeout)
            .send()
            .await
            .expect("invoke");
        assert!(
            resp.status().is_success(),
            "invoke status {}",
            resp.status()
        );
        resp.json().await.expect("JSON response")
    }
}

/// An event from `tests/fixtures/lambda/`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("tests/fixtures/lambda").join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The JSON body of an HTTP-shaped Lambda response (base64 or not).
pub fn http_body(response: &Value) -> Value {
    let body = response["body"].as_str().expect("body");
    let bytes = if response["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64 body")
    } else {
        body.as_bytes().to_vec()
    };
    serde_json::from_slice(&bytes).expect("JSON body")
}

/// The direct-invoke lines the Lambda tests add to a manifest: direct invokes
/// are refused unless enabled, and the fixtures carry `context.ip`, which
/// needs `trust_caller_ip`.
pub const DIRECT_INVOKE: &str = "\n[direct_invoke]\nenabled = true\ntrust_caller_ip = true\n";

/// The issuer the Lambda tests give the function (in `TOKENHOOK_ISSUER`, the
/// variable `template.yaml` sets) and verify its tokens against.
pub const LAMBDA_ISSUER: &str = "https://auth.example.com/";
