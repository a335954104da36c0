//! Shadow hooks in the real pipeline: a server whose chain adds shadow
//! copies of an example hook and hostile shadow hooks (a loop, a memory bomb,
//! a deny, a policy violation, all under `on_error = "deny"`) issues exactly
//! the tokens a server without them issues, and logs a "hook shadow" line
//! for each with what it would have done.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenhook_tests::{
    CLIENT_SECRET, ServerProcess, TENANT_HOOK, hook_wasm, hostile, manifest,
    tenant_and_broken_hooks, write_manifest_in,
};

/// The hooks that decide the token: the tests' tenant hook, then scope-policy.
fn enforced() -> String {
    format!(
        r#"{TENANT_HOOK}
[[hooks]]
name = "scopes"
module = "{{hooks}}/scope_policy.wasm"
capabilities = {{ scopes = ["write:*", "read:b"] }}
config = {{ add_scopes = ["read:b"] }}
"#
    )
}

/// Shadow hooks first, so the enforced ones run after them: they must see
/// the token as if the shadow hooks had not run.
fn shadow_hooks() -> String {
    format!(
        r#"
[[hooks]]
name = "tenant-v2"
module = "{{hooks}}/tenant_claims.wasm"
mode = "shadow"
capabilities = {{ claims = ["https://claims.test/"], scopes = ["write:*"] }}
config = {{ namespace = "https://claims.test/v2/" }}

[[hooks]]
name = "loop"
module = "{loop_}"
mode = "shadow"
on_error = "deny"
limits = {{ fuel = 200_000, timeout = "5s" }}

[[hooks]]
name = "bomb"
module = "{bomb}"
mode = "shadow"
on_error = "deny"
limits = {{ memory = "1MiB" }}

[[hooks]]
name = "refuser"
module = "{{hooks}}/deny_list.wasm"
mode = "shadow"
on_error = "deny"
config = {{ clients = ["app", "ops"] }}

[[hooks]]
name = "grabber"
module = "{{dir}}/broken.wat"
mode = "shadow"
on_error = "deny"
capabilities = {{ claims = ["https://claims.test/"] }}
"#,
        loop_ = hostile("infinite_loop").display(),
        bomb = hostile("memory_bomb").display(),
    )
}

async fn token(server: &ServerProcess, client: &str, form: &[(&str, &str)]) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/oauth/token", server.addr))
        .basic_auth(client, Some(CLIENT_SECRET))
        .form(form)
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200, "a shadow hook must never refuse");
    let body: Value = resp.json().await.unwrap();
    let jwks: Value = reqwest::get(format!("http://{}/.well-known/jwks.json", server.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let audience = form.iter().find(|(k, _)| *k == "audience").unwrap().1;
    let mut claims = tokenhook_tests::jose::verify(
        body["access_token"].as_str().unwrap(),
        &jwks,
        "https://issuer.test/",
        audience,
    )
    .expect("token verifies");
    for volatile in ["iat", "nbf", "exp", "jti"] {
        claims.as_object_mut().unwrap().remove(volatile);
    }
    serde_json::json!({ "scope": body["scope"], "claims": claims })
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_hooks_log_what_they_would_do_and_never_change_a_token() {
    // The shadow `grabber` is broken.wat: it sets the reserved claim `sub`.
    let shadow_dir = tempfile::tempdir().unwrap();
    tenant_and_broken_hooks(shadow_dir.path());
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = ServerProcess::spawn(
        &write_manifest_in(plain_dir.path(), &manifest(&enforced())),
        &[],
    )
    .unwrap();
    let mut shadowed = ServerProcess::spawn(
        &write_manifest_in(
            shadow_dir.path(),
            &manifest(&format!("{}{}", shadow_hooks(), enforced())),
        ),
        &[],
    )
    .unwrap();

    let api = [
        ("grant_type", "client_credentials"),
        ("audience", "https://api.test"),
    ];
    let scoped = [
        ("grant_type", "client_credentials"),
        ("audience", "https://api.test"),
        ("scope", "read:a write:a"),
    ];
    let other = [
        ("grant_type", "client_credentials"),
        ("audience", "https://other.test"),
    ];
    for (client, form) in [("app", &api[..]), ("app", &scoped[..]), ("ops", &other[..])] {
        let want = token(&plain, client, form).await;
        let got = token(&shadowed, client, form).await;
        assert_eq!(
            got, want,
            "{client} {form:?}: shadow hooks changed the token"
        );
    }

    // Each shadow hook logged what it would have done.
    let stderr = BufReader::new(shadowed.child.0.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut shadow_lines: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // 5 shadow hooks × 3 requests.
    while shadow_lines.len() < 15 && Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
            assert_ne!(
                v["fields"]["message"], "hook failed; request denied",
                "a shadow failure reached on_error: {v}"
            );
            if v["fields"]["message"] == "hook shadow" {
                shadow_lines.push(v);
            }
        }
    }
    assert_eq!(shadow_lines.len(), 15, "{shadow_lines:#?}");
    let of = |hook: &str| -> Vec<&Value> {
        shadow_lines
            .iter()
            .map(|l| &l["fields"])
            .filter(|f| f["hook"] == hook)
            .collect()
    };
    for f in of("tenant-v2") {
        assert!(f["fuel_used"].as_u64().unwrap() > 0, "{f}");
        assert!(f["memory_peak"].as_u64().unwrap() > 0, "{f}");
        assert!(f["duration_us"].is_u64(), "{f}");
        assert!(
            f.get("would_deny").is_none() && f.get("would_fail").is_none(),
            "{f}"
        );
    }
    let app_v2 = of("tenant-v2")[0];
    assert!(
        app_v2["claims_set"]
            .as_str()
            .unwrap()
            .contains("https://claims.test/v2/tenant"),
        "{app_v2}"
    );
    assert_eq!(app_v2["scopes_removed"], "write:a");
    for f in of("loop") {
        assert_eq!(f["would_fail"], "out_of_fuel", "{f}");
    }
    for f in of("bomb") {
        assert_eq!(f["would_fail"], "memory_limit", "{f}");
    }
    for f in of("refuser") {
        assert_eq!(f["would_deny"], "access_denied", "{f}");
    }
    for f in of("grabber") {
        assert_eq!(f["would_fail"], "policy_violation", "{f}");
        assert!(
            f["cause"].as_str().unwrap().contains("reserved claim"),
            "{f}"
        );
    }
}

/// `mode` is typed: anything but enforce or shadow is refused at load.
#[test]
fn an_unknown_mode_is_a_manifest_error() {
    hook_wasm("tenant_claims");
    let dir = tempfile::tempdir().unwrap();
    let path = write_manifest_in(
        dir.path(),
        &manifest(
            r#"
[[hooks]]
name = "t"
module = "{hooks}/tenant_claims.wasm"
mode = "dry-run"
"#,
        ),
    );
    let err = match ServerProcess::spawn(&path, &[]) {
        Ok(_) => panic!("a manifest with mode = \"dry-run\" loaded"),
        Err(err) => err,
    };
    assert!(
        err.contains("hooks[0].mode") || err.contains("mode"),
        "{err}"
    );
    assert!(err.contains("dry-run"), "{err}");
}
