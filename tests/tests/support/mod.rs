//! Helpers shared by the token-endpoint suites: the fixture clients and
//! manifest (re-exported from `tokenhook_tests`, the one set of fixtures),
//! requests that encode Basic credentials exactly as RFC 6749 §2.3.1 says,
//! RFC 6749 §5.2 error checks, and small contract-v1 hooks written in wat.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;
use tokenhook_tests::{Reply, TestServer};

// Every suite takes what it needs of the one set (`use support::*`).
#[allow(unused_imports)]
pub use tokenhook_tests::{API, Client, Clients, ISSUER, LEGACY_SECRET, LIFETIME_SECS, NS, OTHER};

/// Percent-encode everything but RFC 3986 unreserved characters, as
/// `application/x-www-form-urlencoded` allows.
pub fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
pub fn basic_header(id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", urlencode(id), urlencode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The reply to a finished request.
pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// POST `form` to the token endpoint with `headers`.
pub async fn post_form(
    server: &TestServer,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .form(form);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    reply(req.send().await.expect("token request")).await
}

/// POST a raw body to the token endpoint.
pub async fn post_raw(
    server: &TestServer,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut req = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    reply(req.send().await.expect("token request")).await
}

/// A client-credentials request for `audience` with Basic credentials and `extra` fields.
pub async fn token_for(
    server: &TestServer,
    client: &Client,
    audience: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut form = vec![("grant_type", "client_credentials"), ("audience", audience)];
    form.extend_from_slice(extra);
    let auth = basic_header(client.id, &client.secret);
    post_form(server, &form, &[("authorization", &auth)]).await
}

/// [`token_for`] on `https://api.test`.
pub async fn token(server: &TestServer, client: &Client, extra: &[(&str, &str)]) -> Reply {
    token_for(server, client, API, extra).await
}

/// The request id the server answered with.
pub fn request_id(reply: &Reply) -> String {
    reply
        .headers
        .get("x-request-id")
        .expect("every response carries x-request-id")
        .to_str()
        .expect("ASCII request id")
        .to_string()
}

/// The JOSE header of a compact JWS.
pub fn jwt_header(token: &str) -> Value {
    let head = token.split('.').next().expect("JWS header");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .expect("base64url header"),
    )
    .expect("JSON header")
}

/// The scope string as a sorted list (RFC 6749 §3.3: order does not matter).
pub fn scope_set(scope: &Value) -> Vec<String> {
    let mut scopes: Vec<String> = scope
        .as_str()
        .unwrap_or_else(|| panic!("scope is a string: {scope}"))
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    scopes.sort();
    scopes
}

pub fn sorted(scopes: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

/// RFC 6749 §5.2: `error_description` is limited to %x20-21 / %x23-5B / %x5D-7E.
pub fn is_rfc6749_description(text: &str) -> bool {
    text.bytes()
        .all(|b| b == 0x20 || b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// An RFC 6749 §5.2 error response: the status, a JSON body with `error` and
/// a non-empty `error_description` within the allowed characters,
/// `Cache-Control: no-store`, and a request id.
pub fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "status: {}", reply.body);
    assert_eq!(reply.body["error"], error, "error code: {}", reply.body);
    let description = reply.body["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("error_description is a string: {}", reply.body));
    assert!(!description.is_empty(), "empty error_description");
    assert!(
        is_rfc6749_description(description),
        "error_description has characters RFC 6749 §5.2 forbids: {description:?}"
    );
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "content-type: {content_type}"
    );
    assert_eq!(reply.headers["cache-control"], "no-store");
    request_id(reply);
}

/// A `[[hooks]]` entry; `extra` is more TOML lines.
pub fn hook(name: &str, module: &str, extra: &str) -> String {
    format!("[[hooks]]\nname = \"{name}\"\nmodule = {module:?}\n{extra}\n")
}

/// The path of a hook built from the workspace by `cargo hooks`.
pub fn built(name: &str) -> String {
    tokenhook_tests::hook_wasm(name).display().to_string()
}

/// The path of a hostile module from `tests/hostile/`, if it exists.
pub fn hostile(name: &str) -> String {
    tokenhook_tests::hostile(name).display().to_string()
}

/// A path inside the server's directory (for files written with the server).
pub fn in_dir(file: &str) -> String {
    format!("{{dir}}/{file}")
}

fn wat_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A hook that sets the custom claim `claim` to the whole event it received,
/// so a test can read, from the verified token, exactly what the hook saw.
pub fn echo_hook(claim: &str) -> String {
    let prefix = format!(r#"{{"commands":[{{"set_claim":{{"name":"{claim}","value":"#);
    let suffix = "}}]}";
    let (p, s) = (prefix.len(), suffix.len());
    let out = 65536u64;
    format!(
        r#"(module
  (memory (export "memory") 2)
  (data (i32.const 0) "{prefix}")
  (data (i32.const 1024) "{suffix}")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "tokenhook_run") (param $ptr i32) (param $len i32) (result i64)
    (memory.copy (i32.const {out}) (i32.const 0) (i32.const {p}))
    (memory.copy (i32.const {body}) (local.get $ptr) (local.get $len))
    (memory.copy (i32.add (i32.const {body}) (local.get $len)) (i32.const 1024) (i32.const {s}))
    (i64.or
      (i64.const {hi})
      (i64.extend_i32_u (i32.add (local.get $len) (i32.const {ps}))))))"#,
        prefix = wat_string(&prefix),
        suffix = wat_string(suffix),
        body = out + p as u64,
        hi = out << 32,
        ps = p + s,
    )
}

/// A hook that reports whether its instance is fresh: its mutable global, a
/// word of memory and the memory size are as declared. It then dirties all
/// three (and grows memory), so a reused instance or memory would show.
/// Sets `https://claims.test/state` to "fresh" or "dirty".
pub fn state_probe_hook() -> String {
    let fresh =
        format!(r#"{{"commands":[{{"set_claim":{{"name":"{NS}state","value":"fresh"}}}}]}}"#);
    let dirty = fresh.replace("fresh", "dirty");
    let len = fresh.len() as u64;
    format!(
        r#"(module
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (data (i32.const 16) "{fresh_text}")
  (data (i32.const 512) "{dirty_text}")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (local $dirty i32)
    (local.set $dirty
      (i32.or
        (i32.or (global.get $calls) (i32.load (i32.const 60000)))
        (i32.ne (memory.size) (i32.const 1))))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store (i32.const 60000) (i32.const 57005))
    (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1))
      (then (i32.store (i32.const 70000) (i32.const 48879))))
    (if (result i64) (local.get $dirty)
      (then (i64.const {dirty_packed}))
      (else (i64.const {fresh_packed})))))"#,
        fresh_text = wat_string(&fresh),
        dirty_text = wat_string(&dirty),
        fresh_packed = (16u64 << 32) | len,
        dirty_packed = (512u64 << 32) | len,
    )
}

/// A hook that traps (`unreachable`) in `tokenhook_run`.
pub fn trap_hook() -> String {
    r#"(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64) unreachable))"#
        .to_string()
}

/// The claim value `claim` of `claims`, as an echoed event.
pub fn echoed<'a>(claims: &'a Value, claim: &str) -> &'a Value {
    let seen = &claims[claim];
    assert!(
        seen.is_object(),
        "claim {claim} holds the echoed event: {claims}"
    );
    seen
}

/// HMAC-SHA256 as lowercase hex, with aws-lc-rs: an implementation
/// independent of the hook's RustCrypto `hmac` crate.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Poll `check` every 100 ms until it holds or `within` passes.
pub async fn eventually(
    what: &str,
    within: std::time::Duration,
    mut check: impl AsyncFnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Write `contents` to `path` atomically (write aside, then rename).
pub fn replace_file(path: &Path, contents: &[u8]) {
    let tmp: PathBuf = path.with_extension("tmp-new");
    std::fs::write(&tmp, contents).expect("write file");
    std::fs::rename(&tmp, path).expect("replace file");
}
