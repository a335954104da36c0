//! `tokenhook explain` as a process, with the example hooks: hook by hook
//! what the chain does (skips and their filter, changes before → after,
//! usage against limits, denies, failures and their on_error, shadow hooks),
//! and final claims equal to those of a token the server really signs.

use std::process::Command;

use serde_json::{Value, json};
use tokenhook_tests::{
    ServerProcess, example_manifest, hook_wasm, hostile, manifest, tokenhook_bin, write_manifest_in,
};

/// Run `tokenhook explain` on `manifest` with `args`; (exit code, stdout, stderr).
fn explain(manifest: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tokenhook_bin())
        .arg("explain")
        .arg("--manifest")
        .arg(manifest)
        .args(args)
        .output()
        .expect("run tokenhook explain");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn explain_json(manifest: &std::path::Path, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, stdout, stderr) = explain(manifest, &all);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("explain --json printed no JSON ({e}): {stdout}\n{stderr}"));
    (code, value)
}

fn step<'a>(e: &'a Value, hook: &str) -> &'a Value {
    e["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hook"] == hook)
        .unwrap_or_else(|| panic!("no step for {hook} in {e:#}"))
}

const API: &str = "https://api.example.com";

/// The example chain for demo-client: every hook's step, and final claims
/// equal to those of a token the server signs for the same request.
#[tokio::test(flavor = "multi_thread")]
async fn the_example_chain_explained_matches_a_real_token() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest_in(dir.path(), &example_manifest());
    let (code, e) = explain_json(
        &manifest,
        // The deny-list refuses requests without an IP; the server sees 127.0.0.1.
        &[
            "--client",
            "demo-client",
            "--audience",
            API,
            "--ip",
            "127.0.0.1",
        ],
    );
    assert_eq!(code, 0, "{e:#}");
    assert!(e["refused"].is_null());
    assert_eq!(
        e["initial_scopes"],
        json!(["read:orders", "write:orders", "read:status"])
    );
    let names: Vec<&str> = e["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hook"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["tenant-claims", "scope-policy", "deny-list", "signed-claim"]
    );

    // tenant-claims: two claims from absent to the metadata values, and the
    // free plan's write scope removed, with its own log line.
    let tenant = step(&e, "tenant-claims");
    assert_eq!(tenant["result"], "applied");
    assert_eq!(tenant["effect"], "applied");
    let changes = &tenant["changes"];
    assert_eq!(changes["scopes_removed"], json!(["write:orders"]));
    assert_eq!(
        changes["scopes_before"],
        json!(["read:orders", "write:orders", "read:status"])
    );
    assert_eq!(
        changes["scopes_after"],
        json!(["read:orders", "read:status"])
    );
    let set = changes["claims_set"].as_array().unwrap();
    assert!(
        set.contains(&json!({"name": "https://example.com/tenant", "old": null, "new": "acme"}))
    );
    assert!(set.contains(&json!({"name": "https://example.com/plan", "old": null, "new": "free"})));
    assert!(
        tenant["logs"]
            .to_string()
            .contains("free plan: removing write:orders"),
        "{tenant:#}"
    );
    // Usage against the manifest's limits for this hook.
    let usage = &tenant["usage"];
    assert!(usage["fuel_used"].as_u64().unwrap() > 0);
    assert_eq!(usage["fuel_limit"], 5_000_000);
    assert_eq!(usage["memory_limit"], 4 << 20);
    assert_eq!(usage["timeout_us"], 20_000);
    assert!(usage["memory_peak"].as_u64().unwrap() > 0);

    assert_eq!(step(&e, "deny-list")["result"], "applied");
    let signed = step(&e, "signed-claim");
    assert_eq!(
        signed["changes"]["claims_set"][0]["name"],
        "https://example.com/client_sig"
    );

    // The same request through a real server: the signed token's claims are
    // the explained ones, but for the per-token iat, nbf, exp and jti.
    let server = ServerProcess::spawn(&manifest, &[]).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/oauth/token", server.addr))
        .basic_auth("demo-client", Some("demo-secret"))
        .form(&[("grant_type", "client_credentials"), ("audience", API)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let jwks: Value = reqwest::get(format!("http://{}/.well-known/jwks.json", server.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut real = tokenhook_tests::jose::verify(
        body["access_token"].as_str().unwrap(),
        &jwks,
        "http://127.0.0.1:8080/",
        API,
    )
    .expect("token verifies");
    let mut explained = e["claims"].clone();
    for volatile in ["iat", "nbf", "exp", "jti"] {
        assert!(explained[volatile].is_number() || explained[volatile].is_string());
        real.as_object_mut().unwrap().remove(volatile);
        explained.as_object_mut().unwrap().remove(volatile);
    }
    assert_eq!(explained, real, "explained claims differ from the token's");
    assert_eq!(e["scopes"], json!(["read:orders", "read:status"]));
    assert_eq!(body["scope"], "read:orders read:status");
}

/// The readable report, a skip by filter, a deny with its request-level
/// effect, and config overrides.
#[test]
fn report_skips_denies_and_overrides() {
    hook_wasm("tenant_claims");
    let dir = tempfile::tempdir().unwrap();
    let hooks = r#"
[[hooks]]
name = "other-api-only"
module = "{hooks}/tenant_claims.wasm"
match = { apis = ["https://other.test"] }
capabilities = { claims = ["https://claims.test/"] }

[[hooks]]
name = "tenant"
module = "{hooks}/tenant_claims.wasm"
limits = { fuel = 3_000_000 }
capabilities = { claims = ["https://claims.test/"], scopes = ["write:*"] }
config = { namespace = "https://claims.test/" }

[[hooks]]
name = "deny-list"
module = "{hooks}/deny_list.wasm"
config = { ips = ["192.0.2.0/24"] }

[[hooks]]
name = "after"
module = "{hooks}/tenant_claims.wasm"
capabilities = { claims = ["https://claims.test/"] }
config = { namespace = "https://claims.test/after/" }
"#;
    let manifest = write_manifest_in(dir.path(), &manifest(hooks));
    let (code, out, err) = explain(
        &manifest,
        &[
            "--client",
            "app",
            "--audience",
            "https://api.test",
            "--scope",
            "read:a write:a",
            "--ip",
            "203.0.113.5",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "explain: client app → https://api.test",
        "requested: read:a write:a",
        "1. other-api-only (on_error deny): skipped: match.apis does not match",
        "2. tenant (on_error deny): applied",
        "   scopes: read:a write:a → read:a",
        "     - write:a",
        "   claim https://claims.test/tenant: (absent) → \"acme\"",
        "   log [Info]: free plan: removing write:a",
        " / 3,000,000 · memory ",
        "4. after (on_error deny): applied",
        "result: token issued",
        "  scope: read:a",
        "\"sub\": \"app\"",
        "\"https://claims.test/after/plan\": \"free\"",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }

    // From a listed network the deny-list refuses: exit 1, the later hook never runs.
    let (code, e) = explain_json(
        &manifest,
        &[
            "--client",
            "app",
            "--audience",
            "https://api.test",
            "--ip",
            "192.0.2.7",
            "--user-agent",
            "t/1",
        ],
    );
    assert_eq!(code, 1, "{e:#}");
    let deny = step(&e, "deny-list");
    assert_eq!(deny["result"], "denied");
    assert_eq!(deny["effect"], "request_denied");
    assert_eq!(deny["deny"]["error"], "access_denied");
    assert_eq!(e["refused"]["error"], "access_denied");
    assert!(e["claims"].is_null());
    assert_eq!(
        e["hooks"].as_array().unwrap().len(),
        3,
        "the chain stops at a deny"
    );

    // A config override for one hook, for this run only.
    let (code, e) = explain_json(
        &manifest,
        &[
            "--client",
            "app",
            "--audience",
            "https://api.test",
            "--ip",
            "203.0.113.5",
            "--config",
            r#"tenant={"namespace": "https://claims.test/o/"}"#,
        ],
    );
    assert_eq!(code, 0, "{e:#}");
    let tenant = step(&e, "tenant");
    assert_eq!(tenant["config_overridden"], true);
    assert_eq!(step(&e, "after")["config_overridden"], false);
    assert_eq!(e["claims"]["https://claims.test/o/tenant"], "acme");
    assert!(e["claims"].get("https://claims.test/tenant").is_none());

    // What cannot be explained: exit 2, saying why.
    for (args, needle) in [
        (
            vec!["--client", "nobody", "--audience", "https://api.test"],
            "no client `nobody`",
        ),
        (
            vec!["--client", "app", "--audience", "https://nope.test"],
            "invalid_target",
        ),
        (
            vec![
                "--client",
                "app",
                "--audience",
                "https://api.test",
                "--scope",
                "admin:a",
            ],
            "invalid_scope",
        ),
        (
            vec![
                "--client",
                "app",
                "--audience",
                "https://api.test",
                "--config",
                "ghost={}",
            ],
            "no hook of that name",
        ),
        (
            vec![
                "--client",
                "app",
                "--audience",
                "https://api.test",
                "--config",
                "tenant={",
            ],
            "not JSON",
        ),
    ] {
        let (code, out, err) = explain(&manifest, &args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
    }
}

/// Failures: the kind, the cause, what on_error made of it; a shadow hook's
/// deny is shown and ignored.
#[test]
fn failures_and_shadow_hooks_are_explained() {
    hook_wasm("tenant_claims");
    let dir = tempfile::tempdir().unwrap();
    let hooks = format!(
        r#"
[[hooks]]
name = "loop"
module = "{}"
on_error = "skip"
limits = {{ fuel = 100_000, timeout = "5s" }}

[[hooks]]
name = "would-deny"
module = "{{hooks}}/deny_list.wasm"
mode = "shadow"
config = {{ clients = ["app"] }}

[[hooks]]
name = "tenant"
module = "{{hooks}}/tenant_claims.wasm"
capabilities = {{ claims = ["https://claims.test/"], scopes = ["write:*"] }}
config = {{ namespace = "https://claims.test/" }}
"#,
        hostile("infinite_loop").display()
    );
    let manifest = write_manifest_in(dir.path(), &manifest(&hooks));
    let (code, e) = explain_json(
        &manifest,
        &["--client", "app", "--audience", "https://api.test"],
    );
    assert_eq!(code, 0, "{e:#}");
    let lp = step(&e, "loop");
    assert_eq!(lp["result"], "failed");
    assert_eq!(lp["failure"]["kind"], "out_of_fuel");
    assert_eq!(lp["effect"], "changes_skipped");
    assert_eq!(lp["on_error"], "skip");
    assert_eq!(lp["usage"]["fuel_limit"], 100_000);
    let shadow = step(&e, "would-deny");
    assert_eq!(shadow["mode"], "shadow");
    assert_eq!(shadow["result"], "denied");
    assert_eq!(shadow["effect"], "ignored");
    assert_eq!(e["claims"]["https://claims.test/tenant"], "acme");

    let (code, out, _) = explain(
        &manifest,
        &["--client", "app", "--audience", "https://api.test"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("1. loop (on_error skip): failed → its changes are skipped"),
        "{out}"
    );
    assert!(out.contains("   failure: out_of_fuel:"), "{out}");
    assert!(
        out.contains(
            "2. would-deny (on_error deny, shadow): denied → ignored (shadow: nothing applied)"
        ),
        "{out}"
    );
}
