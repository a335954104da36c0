//! The arm64 deployment artifact, run: the bootstrap built as `sam build`
//! builds it for template.yaml (`cargo lambda build --release --arm64 --bin
//! tokenhook`), the layer made by `tokenhook bundle --target
//! aarch64-unknown-linux-gnu` from the example manifest, the bootstrap run
//! under `qemu-aarch64-static` (Debian's qemu-user-static, with the arm64
//! glibc of libc6-arm64-cross) against the `cargo lambda watch` Runtime API
//! emulator. The token it issues must verify through its own JWKS, and its
//! start-up line must show every hook precompiled, none compiled.
//!
//! Times under emulation mean nothing and are not checked. The release build
//! goes to `target/arm64` (its own directory, so it neither waits for nor
//! blocks the workspace's `target/` lock; `TOKENHOOK_ARM64_TARGET_DIR`
//! overrides it); it takes minutes the first time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokenhook_tests::{
    ChildGroup, example_manifest, free_port, jose, python_tool, tokenhook_bin, wait_for_port,
    without_test_cargo_env, workspace_root, write_manifest_in,
};

const ISSUER: &str = "https://auth.example.com/";
const TARGET: &str = "aarch64-unknown-linux-gnu";
/// Where Debian's libc6-arm64-cross puts the arm64 dynamic loader and glibc.
const ARM64_SYSROOT: &str = "/usr/aarch64-linux-gnu";

fn tool(name: &str) -> PathBuf {
    python_tool(name)
}

/// `which`, for system tools; missing ones fail the test.
fn system_tool(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|p| p.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is missing: tests/run.sh installs it (apt-get)"))
}

/// Where the arm64 release build goes: `target/arm64`, or
/// `TOKENHOOK_ARM64_TARGET_DIR` (e.g. to reuse a warm build when the test
/// runs from another checkout of the same sources).
fn arm64_target_dir() -> PathBuf {
    match std::env::var_os("TOKENHOOK_ARM64_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target/arm64"),
    }
}

/// What `sam build` does for template.yaml, into [`arm64_target_dir`].
fn build_bootstrap(cargo_lambda: &Path) -> PathBuf {
    let target_dir = arm64_target_dir();
    let mut build = Command::new(cargo_lambda);
    without_test_cargo_env(&mut build);
    let status = build
        .args([
            "lambda",
            "build",
            "--release",
            "--arm64",
            "--bin",
            "tokenhook",
        ])
        // cargo-lambda passes `--target-dir` on to `cargo metadata`, which
        // refuses it; the variable reaches only the build.
        .env("CARGO_TARGET_DIR", &target_dir)
        // cargo-lambda finds zig (its cross linker) beside itself.
        .env("PATH", path_with(cargo_lambda.parent().unwrap()))
        .current_dir(workspace_root())
        .status()
        .expect("run cargo lambda build");
    assert!(status.success(), "cargo lambda build --arm64 failed");
    let bootstrap = target_dir.join("lambda/tokenhook/bootstrap");
    assert!(bootstrap.exists(), "{} missing", bootstrap.display());
    bootstrap
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

async fn invoke(port: u16, event: Vec<u8>) -> Value {
    let resp = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/2015-03-31/functions/_/invocations"
        ))
        .body(event)
        // Emulated: start-up and the first invoke take seconds.
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .expect("invoke");
    assert!(resp.status().is_success(), "invoke: {}", resp.status());
    resp.json().await.expect("JSON response")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("tests/fixtures/lambda").join(name)).unwrap()
}

#[test]
fn sam_build_and_the_layer_are_what_this_test_runs() {
    let template = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    for expected in [
        "BuildMethod: rust-cargolambda",
        "Binary: tokenhook",
        "Architectures: [arm64]",
        "ContentUri: target/lambda-bundle",
        "CompatibleArchitectures: [arm64]",
    ] {
        assert!(
            template.contains(expected),
            "template.yaml lacks {expected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_arm64_bootstrap_runs_precompiled_hooks_under_qemu_and_issues_a_verifiable_token() {
    let qemu = system_tool("qemu-aarch64-static");
    assert!(
        Path::new(ARM64_SYSROOT)
            .join("lib/ld-linux-aarch64.so.1")
            .exists(),
        "{ARM64_SYSROOT} is missing: tests/run.sh installs libc6-arm64-cross"
    );
    let cargo_lambda = tool("cargo-lambda");
    let bootstrap = build_bootstrap(&cargo_lambda);

    // The layer: the example manifest bundled for arm64 by this workspace's binary.
    let dir = tempfile::tempdir().unwrap();
    // Emulated, a hook call takes tens of milliseconds: the examples' 20 ms
    // deadline would (rightly) fail the request closed. The host ceiling
    // instead; fuel, which counts instructions, stays as deployed.
    let example = example_manifest();
    assert_eq!(
        example.matches("timeout = \"20ms\"").count(),
        4,
        "{example}"
    );
    let example = example.replace("timeout = \"20ms\"", "timeout = \"5s\"");
    // Direct invokes are refused unless enabled; the fixture carries
    // `context.ip`, which needs `trust_caller_ip` (as in tests/tests/lambda.rs).
    let example = format!("{example}\n[direct_invoke]\nenabled = true\ntrust_caller_ip = true\n");
    let manifest = write_manifest_in(dir.path(), &example);
    let layer = dir.path().join("layer");
    let status = Command::new(tokenhook_bin())
        .args(["bundle", "--target", TARGET, "--manifest"])
        .arg(&manifest)
        .arg("--out")
        .arg(&layer)
        .status()
        .unwrap();
    assert!(status.success(), "bundle --target {TARGET}");
    let bundled = std::fs::read_to_string(layer.join("manifest.toml")).unwrap();
    assert_eq!(
        bundled.matches(&format!("target = \"{TARGET}\"")).count(),
        4,
        "{bundled}"
    );

    let port = free_port();
    let _emulator = ChildGroup::spawn(
        Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--quiet",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(workspace_root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null()),
    );
    assert!(
        wait_for_port(port, Duration::from_secs(60)),
        "the emulator did not start"
    );
    let log_path = dir.path().join("function.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _function = ChildGroup::spawn(
        Command::new(&qemu)
            .arg("-L")
            .arg(ARM64_SYSROOT)
            .arg(&bootstrap)
            // What Lambda and template.yaml set (the emulator names the function `_`).
            .env_clear()
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_REGION", "us-east-1")
            .env("HOME", dir.path())
            .env("TOKENHOOK_MANIFEST", layer.join("manifest.toml"))
            .env("TOKENHOOK_ISSUER", ISSUER)
            .env("TOKENHOOK_HOOK_CACHE", dir.path().join("hook-cache"))
            .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null()),
    );

    let direct = invoke(port, fixture("direct_invoke_token.json")).await;
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let jwks_response = invoke(port, fixture("apigw_http_v2_jwks.json")).await;
    assert_eq!(jwks_response["statusCode"], 200, "{jwks_response}");
    let body = jwks_response["body"].as_str().expect("body");
    let jwks: Value = if jwks_response["isBase64Encoded"] == true {
        serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap(),
        )
        .unwrap()
    } else {
        serde_json::from_str(body).unwrap()
    };
    let token = direct["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {direct}\n{}", log()));
    let claims = jose::verify(token, &jwks, ISSUER, "https://api.example.com").unwrap();
    assert_eq!(claims["sub"], "demo-client");
    assert_eq!(claims["https://example.com/tenant"], "acme", "hooks ran");
    assert!(
        claims["https://example.com/client_sig"].is_string(),
        "all four hooks ran: {claims}"
    );

    // No hook was compiled at start: all four came from the layer's artifacts.
    let log = log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let startup = lines
        .iter()
        .find(|l| l["fields"]["message"] == "start-up")
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    let fields = &startup["fields"];
    assert_eq!(fields["precompiled"], 4, "{startup}");
    assert_eq!(fields["compiled"], 0, "{startup}");
    assert_eq!(fields["lambda"], true, "{startup}");
    assert!(
        !log.contains("precompiled hook not used"),
        "an artifact was refused:\n{log}"
    );
    eprintln!("start-up under qemu-aarch64 (emulated; times mean nothing): {fields}");
}
