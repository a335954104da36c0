//! Bad manifests are refused before anything serves, and every refusal says
//! where and why: the error names the file, the field (a dotted path such as
//! `grants[0].api` or `hooks[0].limits.memory`) and the cause. Shape and
//! meaning are checked by `Manifest::load`; key files and hook modules by
//! `Issuer::load`. Each case is the fixture manifest with one thing wrong.

mod support;

use std::path::PathBuf;

use support::*;
use tokenhook::manifest::{Manifest, ManifestError};
use tokenhook::pipeline::{Issuer, Services};

/// The fixture manifest (and `files`) written into a fresh directory.
struct Written {
    dir: tempfile::TempDir,
    path: PathBuf,
}

fn write(text: &str, files: &[(&str, &[u8])]) -> Written {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let path = dir.path().join("tokenhook.toml");
    std::fs::write(
        &path,
        text.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    Written { dir, path }
}

/// The error `Manifest::load` gives for `text`.
fn validation_error(text: &str) -> (Written, ManifestError) {
    let written = write(text, &[]);
    match Manifest::load(&written.path) {
        Ok(_) => panic!("the manifest should be refused:\n{text}"),
        Err(err) => (written, err),
    }
}

/// The error `Issuer::load` gives for `text` with `files`.
async fn load_error(text: &str, files: &[(&str, &[u8])]) -> (Written, ManifestError) {
    let written = write(text, files);
    match Issuer::load(&written.path, &Services::local()).await {
        Ok(_) => panic!("the manifest should be refused:\n{text}"),
        Err(err) => (written, err),
    }
}

/// The error names `written`'s file and exactly `field`, and its message and
/// display mention every one of `causes`.
fn assert_names(written: &Written, err: &ManifestError, field: &str, causes: &[&str]) {
    let shown = err.to_string();
    assert_eq!(err.file, written.path, "{shown}");
    assert!(
        shown.contains(&written.path.display().to_string()),
        "names the file: {shown}"
    );
    assert_eq!(err.field, field, "{shown}");
    assert!(
        shown.contains(&format!("`{field}`")),
        "names the field: {shown}"
    );
    for cause in causes {
        assert!(err.message.contains(cause), "says `{cause}`: {shown}");
    }
}

/// A shape error from the TOML parser: the file, the offending key and the cause.
fn assert_parse_error(written: &Written, err: &ManifestError, causes: &[&str]) {
    let shown = err.to_string();
    assert_eq!(err.file, written.path, "{shown}");
    assert!(
        shown.contains(&written.path.display().to_string()),
        "names the file: {shown}"
    );
    for cause in causes {
        assert!(shown.contains(cause), "says `{cause}`: {shown}");
    }
}

fn base() -> String {
    Clients::new().manifest("")
}

fn with_hook(extra: &str) -> String {
    Clients::new().manifest(&hook("h", &in_dir("h.wat"), extra))
}

fn minimal_hook() -> Vec<u8> {
    tokenhook_tests::fixed_output_hook(r#"{"commands":[]}"#).into_bytes()
}

// ---- shape ----

#[test]
fn a_misspelt_top_level_field_is_an_unknown_field() {
    let text = base().replace("token_lifetime", "token_lifetim");
    let (written, err) = validation_error(&text);
    assert_parse_error(&written, &err, &["unknown field", "token_lifetim"]);
}

#[test]
fn a_misspelt_client_field_is_an_unknown_field() {
    let text = base().replacen("secret_hash", "secret_hsh", 1);
    let (written, err) = validation_error(&text);
    assert_parse_error(&written, &err, &["unknown field", "secret_hsh"]);
}

#[test]
fn a_misspelt_hook_limit_is_an_unknown_field() {
    let (written, err) = validation_error(&with_hook("limits = { memroy = \"4MiB\" }"));
    assert_parse_error(&written, &err, &["unknown field", "memroy"]);
}

/// `ManifestError::field` is empty only for whole-file problems; a misspelt
/// key deep inside the manifest is located by its dotted path, like every
/// other field error.
#[test]
fn a_misspelt_nested_field_is_located_by_its_dotted_path() {
    let (written, err) = validation_error(&with_hook("limits = { memroy = \"4MiB\" }"));
    assert_parse_error(&written, &err, &["memroy"]);
    assert!(
        err.field.starts_with("hooks[0].limits"),
        "field is {:?}: {err}",
        err.field
    );
}

#[test]
fn an_unknown_on_error_value_is_refused_with_the_allowed_ones() {
    let (written, err) = validation_error(&with_hook("on_error = \"ignore\""));
    assert_parse_error(&written, &err, &["ignore", "deny", "skip"]);
}

#[test]
fn a_missing_manifest_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let err = Manifest::load(&path).expect_err("no such file");
    assert_eq!(err.file, path);
    assert!(err.to_string().contains("absent.toml"), "{err}");
}

// ---- issuer and lifetime ----

#[test]
fn an_issuer_that_is_not_a_url_is_refused() {
    for issuer in ["issuer.test", "ftp://issuer.test/", "//issuer.test/"] {
        let text = base().replace(
            "issuer = \"https://issuer.test/\"",
            &format!("issuer = \"{issuer}\""),
        );
        let (written, err) = validation_error(&text);
        assert_names(&written, &err, "issuer", &["URL"]);
    }
}

#[test]
fn an_issuer_without_a_host_is_refused() {
    for issuer in ["https://", "http://"] {
        let text = base().replace(
            "issuer = \"https://issuer.test/\"",
            &format!("issuer = \"{issuer}\""),
        );
        let written = write(&text, &[]);
        match Manifest::load(&written.path) {
            Ok(_) => panic!("issuer {issuer:?} has no host and must be refused"),
            Err(err) => assert_names(&written, &err, "issuer", &[]),
        }
    }
}

/// RFC 8414 §2: the issuer identifier is a URL "that uses the https scheme
/// and has no query or fragment components"; tokens and metadata carry it.
#[test]
fn an_issuer_with_a_query_or_fragment_is_refused() {
    for issuer in ["https://issuer.test/?tenant=1", "https://issuer.test/#main"] {
        let text = base().replace(
            "issuer = \"https://issuer.test/\"",
            &format!("issuer = \"{issuer}\""),
        );
        let written = write(&text, &[]);
        match Manifest::load(&written.path) {
            Ok(_) => panic!("issuer {issuer:?} has a query or fragment and must be refused"),
            Err(err) => assert_names(&written, &err, "issuer", &[]),
        }
    }
}

#[test]
fn a_token_lifetime_that_is_not_a_duration_is_refused() {
    let text = base().replace(
        "token_lifetime = \"15m\"",
        "token_lifetime = \"ten minutes\"",
    );
    let (written, err) = validation_error(&text);
    assert_names(
        &written,
        &err,
        "token_lifetime",
        &["ten minutes", "duration"],
    );
}

#[test]
fn a_token_lifetime_outside_one_second_to_a_day_is_refused() {
    for lifetime in ["0s", "500ms", "25h"] {
        let text = base().replace(
            "token_lifetime = \"15m\"",
            &format!("token_lifetime = \"{lifetime}\""),
        );
        let (written, err) = validation_error(&text);
        assert_names(&written, &err, "token_lifetime", &["between"]);
    }
}

// ---- APIs, clients, grants ----

#[test]
fn a_grant_to_an_undefined_api_is_refused() {
    let text = base().replacen(
        "api = \"https://api.test\"",
        "api = \"https://nowhere.test\"",
        1,
    );
    let (written, err) = validation_error(&text);
    assert_names(
        &written,
        &err,
        "grants[0].api",
        &["https://nowhere.test", "not defined"],
    );
}

#[test]
fn a_grant_to_an_undefined_client_is_refused() {
    let text = base().replacen("client = \"app\"", "client = \"ghost\"", 1);
    let (written, err) = validation_error(&text);
    assert_names(
        &written,
        &err,
        "grants[0].client",
        &["ghost", "not defined"],
    );
}

#[test]
fn a_grant_scope_the_api_does_not_define_is_refused() {
    let text = base().replacen(
        "scopes = [\"read:a\", \"write:a\", \"read:b\"]",
        "scopes = [\"read:a\", \"write:everything\"]",
        1,
    );
    let (written, err) = validation_error(&text);
    assert_names(
        &written,
        &err,
        "grants[0].scopes[1]",
        &["write:everything", "https://api.test"],
    );
}

#[test]
fn a_second_grant_for_the_same_client_and_api_is_refused() {
    let text = base()
        + "\n[[grants]]\nclient = \"app\"\napi = \"https://api.test\"\nscopes = [\"read:a\"]\n";
    let (written, err) = validation_error(&text);
    assert_names(&written, &err, "grants[4]", &["app", "already"]);
}

#[test]
fn a_duplicate_client_is_refused() {
    let text = base().replace("id = \"ops\"", "id = \"app\"");
    let (written, err) = validation_error(&text);
    assert_names(&written, &err, "clients[1].id", &["app", "twice"]);
}

#[test]
fn a_plain_text_secret_hash_is_refused() {
    let clients = Clients::new();
    let text = clients.manifest("").replace(&clients.app.hash, "hunter2");
    let (written, err) = validation_error(&text);
    assert_names(
        &written,
        &err,
        "clients[0].secret_hash",
        &["plain secrets are not accepted"],
    );
}

#[test]
fn a_truncated_sha256_secret_hash_is_refused() {
    let clients = Clients::new();
    let short = &clients.ops.hash[..clients.ops.hash.len() - 2];
    let text = clients.manifest("").replace(&clients.ops.hash, short);
    let (written, err) = validation_error(&text);
    assert_names(&written, &err, "clients[1].secret_hash", &["64 hex digits"]);
}

#[test]
fn a_client_id_with_a_colon_is_refused() {
    let text = base().replace("id = \"ops\"", "id = \"ops:1\"");
    let (written, err) = validation_error(&text);
    assert_names(&written, &err, "clients[1].id", &[":"]);
}

#[test]
fn a_duplicate_api_is_refused() {
    let text = base().replace(
        "identifier = \"https://other.test\"",
        "identifier = \"https://api.test\"",
    );
    let (written, err) = validation_error(&text);
    assert_names(
        &written,
        &err,
        "apis[1].identifier",
        &["https://api.test", "twice"],
    );
}

#[test]
fn an_api_scope_with_a_space_is_refused() {
    let text = base().replace("\"admin:a\", \"read:b\"]", "\"admin:a\", \"read b\"]");
    let (written, err) = validation_error(&text);
    assert_names(&written, &err, "apis[0].scopes[3]", &["read b"]);
}

// ---- hooks: validation ----

#[test]
fn a_hook_duration_that_is_not_a_duration_is_refused() {
    let (written, err) = validation_error(&with_hook("limits = { timeout = \"soon\" }"));
    assert_names(&written, &err, "hooks[0].limits.timeout", &["soon"]);
}

#[test]
fn a_hook_size_that_is_not_a_size_is_refused() {
    let (written, err) = validation_error(&with_hook("limits = { memory = \"lots\" }"));
    assert_names(&written, &err, "hooks[0].limits.memory", &["lots"]);
}

#[test]
fn hook_limits_above_the_host_ceiling_are_refused() {
    for (limit, field) in [
        ("memory = \"1GiB\"", "hooks[0].limits.memory"),
        ("fuel = 2_000_000_000", "hooks[0].limits.fuel"),
        ("timeout = \"10s\"", "hooks[0].limits.timeout"),
        ("stack = \"64MiB\"", "hooks[0].limits.stack"),
        ("max_output = \"8MiB\"", "hooks[0].limits.max_output"),
    ] {
        let (written, err) = validation_error(&with_hook(&format!("limits = {{ {limit} }}")));
        assert_names(&written, &err, field, &["ceiling"]);
    }
}

#[test]
fn a_hook_filter_naming_an_undefined_api_or_client_is_refused() {
    let (written, err) =
        validation_error(&with_hook("match = { apis = [\"https://nowhere.test\"] }"));
    assert_names(
        &written,
        &err,
        "hooks[0].match.apis[0]",
        &["https://nowhere.test"],
    );
    let (written, err) = validation_error(&with_hook("match = { clients = [\"ghost\"] }"));
    assert_names(&written, &err, "hooks[0].match.clients[0]", &["ghost"]);
}

#[test]
fn a_reserved_claim_cannot_be_granted_as_a_capability() {
    let (written, err) = validation_error(&with_hook("capabilities = { claims = [\"sub\"] }"));
    assert_names(
        &written,
        &err,
        "hooks[0].capabilities.claims[0]",
        &["sub", "reserved"],
    );
}

#[test]
fn two_hooks_with_one_name_are_refused() {
    let text = Clients::new()
        .manifest(&(hook("h", &in_dir("h.wat"), "") + &hook("h", &in_dir("h.wat"), "")));
    let (written, err) = validation_error(&text);
    assert_names(&written, &err, "hooks[1].name", &["twice"]);
}

#[test]
fn a_malformed_sha256_pin_is_refused() {
    let (written, err) = validation_error(&with_hook("sha256 = \"abc123\""));
    assert_names(&written, &err, "hooks[0].sha256", &["64 hex digits"]);
}

// ---- hooks: loading ----

#[tokio::test]
async fn a_missing_hook_module_is_refused_naming_the_hook_and_path() {
    let (written, err) = load_error(&with_hook(""), &[]).await;
    assert_names(
        &written,
        &err,
        "hooks[0].module",
        &["hook `h`", "h.wat", "cannot read"],
    );
    drop(written.dir);
}

#[tokio::test]
async fn a_module_whose_digest_differs_from_the_pin_is_refused() {
    let module = minimal_hook();
    let actual = tokenhook::engine::sha256_hex(&module);
    let pinned = "ab".repeat(32);
    let (written, err) = load_error(
        &with_hook(&format!("sha256 = \"{pinned}\"")),
        &[("h.wat", &module)],
    )
    .await;
    assert_names(
        &written,
        &err,
        "hooks[0].module",
        &["hook `h`", "digest_mismatch", &actual, &pinned],
    );
}

#[tokio::test]
async fn a_module_matching_its_pin_loads() {
    let module = minimal_hook();
    let pin = tokenhook::engine::sha256_hex(&module);
    let written = write(
        &with_hook(&format!("sha256 = \"{pin}\"")),
        &[("h.wat", &module)],
    );
    let issuer = Issuer::load(&written.path, &Services::local())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(issuer.hook_names(), ["h"]);
}

#[tokio::test]
async fn a_module_importing_wasi_is_refused_naming_the_import() {
    let wasi = br#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64) (i64.const 0)))"#;
    let (written, err) = load_error(&with_hook(""), &[("h.wat", wasi)]).await;
    assert_names(
        &written,
        &err,
        "hooks[0].module",
        &[
            "hook `h`",
            "forbidden_import",
            "wasi_snapshot_preview1.fd_write",
        ],
    );
}

#[tokio::test]
async fn a_module_importing_an_unknown_host_function_is_refused() {
    let module = br#"(module
  (import "tokenhook" "http_get" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64) (i64.const 0)))"#;
    let (written, err) = load_error(&with_hook(""), &[("h.wat", module)]).await;
    assert_names(
        &written,
        &err,
        "hooks[0].module",
        &["forbidden_import", "tokenhook.http_get"],
    );
}

#[tokio::test]
async fn a_module_without_the_run_export_is_refused_naming_it() {
    let module = br#"(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024))"#;
    let (written, err) = load_error(&with_hook(""), &[("h.wat", module)]).await;
    assert_names(
        &written,
        &err,
        "hooks[0].module",
        &["contract_mismatch", "tokenhook_run"],
    );
}

#[tokio::test]
async fn a_file_that_is_not_wasm_is_refused() {
    let (written, err) = load_error(
        &with_hook(""),
        &[("h.wat", b"\x00\x01 definitely not wasm")],
    )
    .await;
    assert_names(
        &written,
        &err,
        "hooks[0].module",
        &["hook `h`", "invalid_module"],
    );
}

#[tokio::test]
async fn a_module_declaring_more_memory_than_its_cap_is_refused() {
    let module = br#"(module
  (memory (export "memory") 100)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64) (i64.const 0)))"#;
    let (written, err) = load_error(
        &with_hook("limits = { memory = \"4MiB\" }"),
        &[("h.wat", module)],
    )
    .await;
    assert_names(
        &written,
        &err,
        "hooks[0].module",
        &["resource_limit", "memory cap"],
    );
}

#[tokio::test]
async fn a_hook_secret_file_that_is_missing_is_refused_naming_the_secret() {
    let (written, err) = load_error(
        &with_hook("secrets = { signing_key = { file = \"absent.key\" } }"),
        &[("h.wat", &minimal_hook())],
    )
    .await;
    assert_names(
        &written,
        &err,
        "hooks[0].secrets.signing_key",
        &["hook `h`", "signing_key", "absent.key"],
    );
}

#[tokio::test]
async fn the_first_bad_hook_is_the_one_named() {
    let text = Clients::new()
        .manifest(&(hook("good", &in_dir("good.wat"), "") + &hook("bad", &in_dir("bad.wat"), "")));
    let (written, err) = load_error(&text, &[("good.wat", &minimal_hook())]).await;
    assert_names(
        &written,
        &err,
        "hooks[1].module",
        &["hook `bad`", "bad.wat"],
    );
}
