//! Every log line of a full run of `tokenhook serve` (as a process, logging
//! at `debug`) is captured and searched for secrets: client secrets
//! (sha256: and argon2id clients, right and wrong guesses that contain the
//! real secret), the signing key (PEM body, the JWK `d` in base64url and
//! hex) and hook secret values. The run covers tokens with
//! client_secret_basic and client_secret_post, wrong secrets and unknown
//! ids, the four example hooks, a hostile hook that logs its whole event
//! (secrets included) and answers with it as output, a deny, malformed
//! requests, revocation and introspection.

use std::io::Read;

use base64::Engine;
use tokenhook_tests::{ServerProcess, hook_wasm, hostile, workspace_root};

const LEAK_SECRET: &str = "hook-secret-value-7d41c0ffee";

/// Logs its whole input (the event, with its secrets) and returns it as its
/// output, which is not a command list: a failure whose cause quotes it.
const LEAKER: &str = r#"(module
  (import "tokenhook" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (call $log (i32.const 2) (local.get 0) (local.get 1))
    (i64.or (i64.shl (i64.extend_i32_u (local.get 0)) (i64.const 32))
            (i64.extend_i32_u (local.get 1)))))"#;

fn sha(secret: &str) -> String {
    format!(
        "sha256:{}",
        tokenhook::engine::sha256_hex(secret.as_bytes())
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_any_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let app = "app-secret-Q2hlY2tlZCBpbiBsb2dz";
    let poster = "poster-secret-bm8gbGVha3MgaGVyZQ";
    let legacy = "legacy secret: p@ss w%rd";
    let rs = "rs-secret-aW50cm9zcGVjdG9y";
    let denied = "denied-secret-ZGVuaWVkIGNsaWVudA";
    std::fs::write(dir.path().join("leak-secret.txt"), LEAK_SECRET).unwrap();
    std::fs::write(dir.path().join("leaker.wat"), LEAKER).unwrap();
    let hmac = workspace_root().join("examples/dev-hmac-key.txt");
    let hmac_value = std::fs::read_to_string(&hmac).unwrap().trim().to_string();
    let argon = tokenhook::clients::hash_argon2(legacy).unwrap();
    let wasm = |name: &str| format!("{:?}", hook_wasm(name).display().to_string());
    let manifest = format!(
        r#"issuer = "https://issuer.test/"
keys = {{ source = "file", path = "key.pem", alg = "ES256" }}

[policy]
claim_namespaces = ["https://example.com/"]

[[apis]]
identifier = "https://api.test"
scopes = ["read:orders", "write:orders", "read:status"]

[[clients]]
id = "app"
secret_hash = "{app_hash}"
metadata = {{ tenant = "acme" }}

[[clients]]
id = "poster"
secret_hash = "{poster_hash}"

[[clients]]
id = "legacy"
secret_hash = "{argon}"

[[clients]]
id = "denied"
secret_hash = "{denied_hash}"

[[clients]]
id = "rs"
secret_hash = "{rs_hash}"
introspect = true

[[grants]]
client = "app"
api = "https://api.test"
scopes = ["read:orders", "write:orders"]

[[grants]]
client = "poster"
api = "https://api.test"
scopes = ["read:orders"]

[[grants]]
client = "legacy"
api = "https://api.test"
scopes = ["read:orders"]

[[grants]]
client = "denied"
api = "https://api.test"
scopes = ["read:orders"]

[[hooks]]
name = "tenant-claims"
module = {tenant}
capabilities = {{ claims = ["https://example.com/"], scopes = ["write:*"] }}
config = {{ namespace = "https://example.com/" }}

[[hooks]]
name = "scope-policy"
module = {scope}
capabilities = {{ scopes = ["write:*", "read:status"] }}
config = {{ write_requires = {{ metadata_key = "tier", values = ["gold"] }}, add_scopes = ["read:status"] }}

[[hooks]]
name = "deny-list"
module = {deny}
config = {{ clients = ["denied"], ips = ["192.0.2.0/24"] }}

[[hooks]]
name = "signed-claim"
module = {signed}
capabilities = {{ claims = ["https://example.com/client_sig"] }}
secrets = {{ signing_key = {{ file = {hmac:?} }} }}

[[hooks]]
name = "leaker"
module = "leaker.wat"
on_error = "skip"
secrets = {{ leak = {{ file = "leak-secret.txt" }} }}

[[hooks]]
name = "error-output"
module = {error_output:?}
on_error = "skip"
"#,
        app_hash = sha(app),
        poster_hash = sha(poster),
        denied_hash = sha(denied),
        rs_hash = sha(rs),
        tenant = wasm("tenant_claims"),
        scope = wasm("scope_policy"),
        deny = wasm("deny_list"),
        signed = wasm("signed_claim"),
        hmac = hmac.display().to_string(),
        error_output = hostile("error_output").display().to_string(),
    );
    let path = dir.path().join("manifest.toml");
    std::fs::write(&path, manifest).unwrap();
    let mut server = ServerProcess::spawn(&path, &[("RUST_LOG", "debug")]).expect("server starts");
    let url = |p: &str| format!("http://{}{p}", server.addr);
    let http = reqwest::Client::new();
    let form = [
        ("grant_type", "client_credentials"),
        ("audience", "https://api.test"),
    ];
    let basic = |id: &str, secret: &str| {
        http.post(url("/oauth/token"))
            .basic_auth(id, Some(secret))
            .header("x-request-id", "caller-req-1")
            .form(&form)
    };
    let mut statuses = Vec::new();
    let mut tokens = Vec::new();
    for (id, secret) in [
        ("app", app.to_string()),
        ("legacy", legacy.to_string()),
        ("legacy", legacy.to_string()),
        ("app", format!("{app}x")),
        ("legacy", format!("{legacy}x")),
        ("nobody", format!("{app}{poster}")),
        ("denied", denied.to_string()),
    ] {
        let resp = basic(id, &secret).send().await.unwrap();
        statuses.push((id, resp.status().as_u16()));
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if let Some(t) = body["access_token"].as_str() {
            tokens.push(t.to_string());
        }
    }
    // client_secret_post, right and wrong.
    for secret in [poster.to_string(), format!("x{poster}")] {
        let mut post = form.to_vec();
        post.extend([("client_id", "poster"), ("client_secret", &secret)]);
        let resp = http
            .post(url("/oauth/token"))
            .form(&post)
            .send()
            .await
            .unwrap();
        statuses.push(("poster", resp.status().as_u16()));
    }
    // Malformed: a Basic header that is not base64, a secret in a repeated
    // parameter, an oversized body.
    let resp = http
        .post(url("/oauth/token"))
        .header("authorization", format!("Basic {app}!!"))
        .form(&form)
        .send()
        .await
        .unwrap();
    statuses.push(("bad-basic", resp.status().as_u16()));
    let body = format!(
        "grant_type=client_credentials&client_id=app&client_secret={app}&client_secret={app}"
    );
    let resp = http
        .post(url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    statuses.push(("repeated", resp.status().as_u16()));
    let resp = http
        .post(url("/oauth/token"))
        .basic_auth("app", Some(app))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("client_secret={}", app.repeat(2000)))
        .send()
        .await
        .unwrap();
    statuses.push(("oversized", resp.status().as_u16()));
    // Revocation and introspection.
    let token = tokens.first().expect("app got a token").clone();
    let introspected = http
        .post(url("/oauth/introspect"))
        .basic_auth("rs", Some(rs))
        .form(&[("token", &token)])
        .send()
        .await
        .unwrap();
    statuses.push(("introspect", introspected.status().as_u16()));
    let revoked = http
        .post(url("/oauth/revoke"))
        .basic_auth("app", Some(app))
        .form(&[("token", &token)])
        .send()
        .await
        .unwrap();
    statuses.push(("revoke", revoked.status().as_u16()));
    let wrong = http
        .post(url("/oauth/introspect"))
        .basic_auth("rs", Some(&format!("{rs}-")))
        .form(&[("token", &token)])
        .send()
        .await
        .unwrap();
    statuses.push(("introspect-wrong", wrong.status().as_u16()));
    assert_eq!(
        statuses,
        vec![
            ("app", 200),
            ("legacy", 200),
            ("legacy", 200),
            ("app", 401),
            ("legacy", 401),
            ("nobody", 401),
            ("denied", 403),
            ("poster", 200),
            ("poster", 401),
            ("bad-basic", 401),
            ("repeated", 400),
            ("oversized", 413),
            ("introspect", 200),
            ("revoke", 200),
            ("introspect-wrong", 401),
        ]
    );

    server.signal("-TERM");
    let _ = server.child.0.wait();
    let mut log = String::new();
    for pipe in [
        server
            .child
            .0
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read>),
        server
            .child
            .0
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut pipe = pipe;
        pipe.read_to_string(&mut log).unwrap();
    }

    // The run was logged: one audit line per request, hook failures included.
    for expected in [
        "token issued",
        "token refused",
        "token revocation done",
        "token introspected",
        "token introspection refused",
        "client_secret_post",
        "caller-req-1",
        "leaker",
        "hook denied the request",
    ] {
        assert!(
            log.contains(expected),
            "the log has no `{expected}`:\n{log}"
        );
    }

    let pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&der_b64)
        .unwrap();
    // PKCS#8 EC key: the private scalar is the 32-byte OCTET STRING `04 20 …`.
    let at = der
        .windows(2)
        .position(|w| w == [0x04, 0x20])
        .expect("EC private scalar");
    let d = &der[at + 2..at + 34];
    let d_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let d_b64_std = base64::engine::general_purpose::STANDARD.encode(d);
    let d_hex = hex_lower(d);
    let mut secrets: Vec<(&str, String)> = vec![
        ("app secret", app.into()),
        ("poster secret", poster.into()),
        ("legacy secret", legacy.into()),
        ("rs secret", rs.into()),
        ("denied secret", denied.into()),
        ("hook secret", LEAK_SECRET.into()),
        ("hmac hook secret", hmac_value),
        ("jwk d", d_b64),
        ("d base64", d_b64_std),
        ("d hex", d_hex),
    ];
    // Every 24-character piece of the PEM body.
    for chunk in der_b64.as_bytes().chunks(24) {
        if chunk.len() == 24 {
            secrets.push(("pem body", String::from_utf8(chunk.to_vec()).unwrap()));
        }
    }
    // Percent- and JSON-escaped forms of the argon2 secret too.
    secrets.push(("legacy secret, form-encoded", "p%40ss".into()));
    for (what, secret) in &secrets {
        for (n, line) in log.lines().enumerate() {
            assert!(
                !line.contains(secret.as_str()),
                "{what} appears in log line {n}: {line}"
            );
        }
    }
    eprintln!(
        "{} log lines checked against {} secret strings",
        log.lines().count(),
        secrets.len()
    );
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
