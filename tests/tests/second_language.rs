//! The hook contract is language-neutral: examples/zig-tenant-claims, written
//! in Zig from docs/hook-abi.md alone, is built here with its own build script
//! (zig from tests/run.sh's .venv, or `zig`/`$ZIG`; a missing zig fails), then
//! passes `tokenhook hook check`, gives the same commands and logs as the Rust
//! examples/tenant-claims on the same events, and customises real tokens
//! through the real pipeline, verified with jwt-simple. Its own failure
//! (`{"error": …}`) reaches the host as `hook_error` and follows `on_error`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use tokenhook::engine::{EngineSettings, HookEngine, Limits};
use tokenhook_tests::{
    TestServer, app_token, hook_wasm, manifest, tokenhook_bin, verified_claims, workspace_root,
};

/// The Zig hook, built once per test process by examples/zig-tenant-claims/build.sh.
fn zig_hook() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = workspace_root().join("target/zig-hooks/zig_tenant_claims.wasm");
            let output = Command::new("bash")
                .arg(workspace_root().join("examples/zig-tenant-claims/build.sh"))
                .arg(&out)
                .output()
                .expect("run examples/zig-tenant-claims/build.sh");
            assert!(
                output.status.success(),
                "building the Zig hook failed (tests/run.sh installs zig into .venv):\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            out
        })
        .clone()
}

fn hook_entry(module: &PathBuf, on_error: &str, config: &str) -> String {
    let sha256 = tokenhook::engine::sha256_hex(&std::fs::read(module).unwrap());
    format!(
        r#"[[hooks]]
name = "zig-tenant-claims"
module = "{}"
sha256 = "{sha256}"
on_error = "{on_error}"
limits = {{ fuel = 5_000_000, timeout = "20ms", memory = "4MiB" }}
capabilities = {{ claims = ["https://claims.test/"], scopes = ["write:*"] }}
config = {config}
"#,
        module.display()
    )
}

#[test]
fn hook_check_accepts_the_zig_module() {
    let output = std::process::Command::new(tokenhook_bin())
        .args(["hook", "check"])
        .arg(zig_hook())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("ok, hook contract v1"), "{stderr}");
    let info: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["abi_version"], 1);
    assert_eq!(
        info["imports"],
        json!([{"module": "tokenhook", "name": "log", "kind": "func", "signature": "(i32, i32, i32) -> ()"}])
    );
    let exports: Vec<(&str, &str)> = info["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["signature"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for required in [
        ("memory", ""),
        ("tokenhook_abi_v1", "() -> ()"),
        ("tokenhook_alloc", "(i32) -> (i32)"),
        ("tokenhook_run", "(i32, i32) -> (i64)"),
    ] {
        assert!(exports.contains(&required), "{required:?} in {exports:?}");
    }
}

#[test]
fn the_zig_hook_does_what_the_rust_example_does() {
    let engine = HookEngine::new(EngineSettings::default());
    let load = |path: PathBuf| {
        engine
            .load(&std::fs::read(path).unwrap(), None, Limits::default())
            .unwrap()
    };
    let zig = load(zig_hook());
    let rust = load(hook_wasm("tenant_claims"));
    let base = json!({
        "version": 1, "trigger": "client_credentials", "request_id": "r1",
        "client": {"id": "c", "metadata": {}},
        "api": {"identifier": "https://api.test", "scopes": ["read:a", "write:a", "write:b"]},
        "requested_scopes": [], "granted_scopes": ["read:a", "write:a", "write:b"],
        "token": {"scopes": ["read:a", "write:a", "write:b"], "claims": {}},
        "context": {}, "config": null, "secrets": {}
    });
    let cases = [
        json!({}),
        json!({"client": {"id": "c", "metadata": {"tenant": "acme", "plan": "free"}}}),
        json!({"client": {"id": "c", "metadata": {"tenant": "a \"quoted\" \u{e9}\u{1F600}", "plan": "pro"}}}),
        json!({"client": {"id": "c", "metadata": {"plan": "free"}}, "config": {"namespace": "urn:x:"}}),
    ];
    for case in cases {
        let mut event = base.clone();
        for (key, value) in case.as_object().unwrap() {
            event[key] = value.clone();
        }
        let input = serde_json::to_vec(&event).unwrap();
        // Each with its config as the issuer gives it: the Rust example
        // prepares it once (tokenhook_init), the Zig hook reads the event's.
        let config = serde_json::to_vec(&event["config"]).unwrap();
        let call = |module: &tokenhook::engine::HookModule| {
            module.call_prepared(module.prepare(&config).unwrap().as_ref(), &input)
        };
        let (z, r) = (call(&zig), call(&rust));
        let z_commands = z.outcome.expect("zig hook succeeds");
        assert_eq!(
            z_commands,
            r.outcome.expect("rust hook succeeds"),
            "{event}"
        );
        assert_eq!(z.logs, r.logs, "{event}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_zig_hook_customises_real_tokens() {
    let module = zig_hook();
    let server = TestServer::start(&manifest(&hook_entry(
        &module,
        "deny",
        r#"{ namespace = "https://claims.test/" }"#,
    )))
    .unwrap();
    // `app`: tenant acme on the free plan, granted read:a write:a read:b.
    let reply = app_token(&server, &[("scope", "read:a write:a")]).await;
    assert_eq!(reply.body["scope"], "read:a");
    let claims = verified_claims(&server, &reply, "https://api.test").await;
    assert_eq!(claims["https://claims.test/tenant"], "acme");
    assert_eq!(claims["https://claims.test/plan"], "free");
    assert_eq!(claims["scope"], "read:a");
    // Everything granted: only the write scope goes.
    let reply = app_token(&server, &[]).await;
    let claims = verified_claims(&server, &reply, "https://api.test").await;
    let mut scopes: Vec<&str> = claims["scope"].as_str().unwrap().split(' ').collect();
    scopes.sort();
    assert_eq!(scopes, ["read:a", "read:b"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_zig_hooks_own_error_follows_on_error() {
    let module = zig_hook();
    // A namespace that is not a string: the hook answers {"error": …}.
    let bad_config = "{ namespace = 5 }";
    let denying = TestServer::start(&manifest(&hook_entry(&module, "deny", bad_config))).unwrap();
    let reply = app_token(&denying, &[]).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(reply.body["error"], "server_error");
    let skipping = TestServer::start(&manifest(&hook_entry(&module, "skip", bad_config))).unwrap();
    let reply = app_token(&skipping, &[]).await;
    let claims = verified_claims(&skipping, &reply, "https://api.test").await;
    assert!(claims.get("https://claims.test/tenant").is_none());
    assert!(claims["scope"].as_str().unwrap().contains("write:a"));
}
