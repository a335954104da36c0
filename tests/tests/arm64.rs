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

use serde_json::Value;
use tokenhook_tests::lambda_emulator::{
    DIRECT_INVOKE, LAMBDA_ISSUER as ISSUER, RuntimeEmulator, fixture, http_body,
};
use tokenhook_tests::{
    ChildGroup, example_manifest, jose, python_tool, tokenhook_bin, without_test_cargo_env,
    workspace_root, write_manifest_in,
};

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
    let example = format!("{example}{DIRECT_INVOKE}");
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

    let emulator = RuntimeEmulator::start(&cargo_lambda);
    // Emulated: start-up and the first invoke take seconds.
    let invoke = |event| emulator.invoke(event, Duration::from_secs(300));
    let log_path = dir.path().join("function.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _function = ChildGroup::spawn(
        Command::new(&qemu)
            .arg("-L")
            .arg(ARM64_SYSROOT)
            .arg(&bootstrap)
            .env_clear()
            .envs(emulator.function_env())
            .env("HOME", dir.path())
            .env("TOKENHOOK_MANIFEST", layer.join("manifest.toml"))
            .env("TOKENHOOK_ISSUER", ISSUER)
            .env("TOKENHOOK_HOOK_CACHE", dir.path().join("hook-cache"))
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null()),
    );

    let direct = invoke(fixture("direct_invoke_token.json")).await;
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let jwks_response = invoke(fixture("apigw_http_v2_jwks.json")).await;
    assert_eq!(jwks_response["statusCode"], 200, "{jwks_response}");
    let jwks = http_body(&jwks_response);
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
