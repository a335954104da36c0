//! Manifests: bad ones are refused with the file, the field and the cause;
//! a running server reloads good ones (revoking a grant takes effect without
//! a restart) and keeps its configuration when a bad one is written.

use std::time::{Duration, Instant};

use tokenhook::pipeline::{Issuer, Services};
use tokenhook_tests::{TestServer, app_token, hook_wasm, hostile, manifest};

/// Load `text` (with `{dir}` = a temp dir) and return the error message.
async fn load_error(text: &str, files: &[(&str, &[u8])]) -> String {
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
    let services = Services::local();
    match Issuer::load(&path, &services).await {
        Ok(_) => panic!("manifest should be refused:\n{text}"),
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.contains("tokenhook.toml"),
                "names the file: {message}"
            );
            message
        }
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "`{message}` should mention `{part}`"
        );
    }
}

#[tokio::test]
async fn shape_errors_name_the_field() {
    let typo = manifest("").replace("token_lifetime", "token_lifetim");
    assert_mentions(
        &load_error(&typo, &[]).await,
        &["token_lifetim", "unknown field"],
    );
    let bad_lifetime = manifest("").replace("\"10m\"", "\"ten minutes\"");
    assert_mentions(
        &load_error(&bad_lifetime, &[]).await,
        &["token_lifetime", "ten minutes"],
    );
    let bad_issuer = manifest("").replace("https://issuer.test/", "issuer.test");
    assert_mentions(
        &load_error(&bad_issuer, &[]).await,
        &["`issuer`", "http(s) URL"],
    );
}

#[tokio::test]
async fn references_must_exist() {
    let grant_to_nowhere = manifest("").replace(
        "api = \"https://other.test\"",
        "api = \"https://nowhere.test\"",
    );
    assert_mentions(
        &load_error(&grant_to_nowhere, &[]).await,
        &["grants[1].api", "https://nowhere.test", "not defined"],
    );
    let undefined_scope = manifest("").replace(
        "scopes = [\"read:a\", \"write:a\", \"read:b\"]",
        "scopes = [\"read:a\", \"write:everything\"]",
    );
    assert_mentions(
        &load_error(&undefined_scope, &[]).await,
        &["grants[0].scopes[1]", "write:everything"],
    );
    let hook_filter = manifest(&format!(
        "[[hooks]]\nname = \"h\"\nmodule = {:?}\nmatch = {{ apis = [\"https://nowhere.test\"] }}\n",
        hostile("ok_minimal").display().to_string()
    ));
    assert_mentions(
        &load_error(&hook_filter, &[]).await,
        &["hooks[0].match.apis[0]", "nowhere"],
    );
}

#[tokio::test]
async fn clients_must_be_unique_with_hashed_secrets() {
    let duplicate = manifest("").replace("id = \"ops\"", "id = \"app\"");
    assert_mentions(
        &load_error(&duplicate, &[]).await,
        &["clients[1].id", "twice"],
    );
    let plain = manifest("").replacen(&tokenhook_tests::client_secret_hash(), "hunter2", 1);
    let message = load_error(&plain, &[]).await;
    assert_mentions(
        &message,
        &["clients[0].secret_hash", "plain secrets are not accepted"],
    );
}

#[tokio::test]
async fn hook_limits_and_modules_are_checked() {
    let ok = format!("{:?}", hostile("ok_minimal").display().to_string());
    let above = manifest(&format!(
        "[[hooks]]\nname = \"h\"\nmodule = {ok}\nlimits = {{ memory = \"2GiB\" }}\n"
    ));
    assert_mentions(
        &load_error(&above, &[]).await,
        &["hooks[0].limits.memory", "ceiling"],
    );
    let unparsable = manifest(&format!(
        "[[hooks]]\nname = \"h\"\nmodule = {ok}\nlimits = {{ timeout = \"soon\" }}\n"
    ));
    assert_mentions(
        &load_error(&unparsable, &[]).await,
        &["hooks[0].limits.timeout", "soon"],
    );
    let missing = manifest("[[hooks]]\nname = \"h\"\nmodule = \"{dir}/nope.wasm\"\n");
    assert_mentions(
        &load_error(&missing, &[]).await,
        &["hooks[0].module", "hook `h`", "nope.wasm"],
    );
    let pinned = manifest(&format!(
        "[[hooks]]\nname = \"h\"\nmodule = {ok}\nsha256 = \"{}\"\n",
        "0".repeat(64)
    ));
    assert_mentions(
        &load_error(&pinned, &[]).await,
        &["hooks[0].module", "digest_mismatch"],
    );
    let wasi = manifest(&format!(
        "[[hooks]]\nname = \"wasi\"\nmodule = {:?}\n",
        hostile("wasi_import").display().to_string()
    ));
    assert_mentions(
        &load_error(&wasi, &[]).await,
        &[
            "hook `wasi`",
            "forbidden_import",
            "wasi_snapshot_preview1.fd_write",
        ],
    );
    let secret = manifest(&format!(
        "[[hooks]]\nname = \"s\"\nmodule = {ok}\nsecrets = {{ key = {{ env = \"TOKENHOOK_TEST_UNSET_VARIABLE\" }} }}\n"
    ));
    assert_mentions(
        &load_error(&secret, &[]).await,
        &[
            "hooks[0].secrets.key",
            "hook `s`",
            "TOKENHOOK_TEST_UNSET_VARIABLE",
        ],
    );
}

/// Poll until `check` holds, for at most 15 s (the server polls files every second).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_grant_revokes_access_without_a_restart() {
    hook_wasm("tenant_claims");
    let original = manifest("");
    let server = TestServer::start(&original).unwrap();
    assert_eq!(app_token(&server, &[]).await.status, 200);

    // A broken manifest is refused; the running configuration keeps serving.
    server.rewrite_manifest(&original.replace(
        "api = \"https://api.test\"",
        "api = \"https://nowhere.test\"",
    ));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        app_token(&server, &[]).await.status,
        200,
        "bad manifest must not take effect"
    );

    // Revoke: the same manifest without app's grant.
    let revoked = original.replace(
        "[[grants]]\nclient = \"app\"\napi = \"https://api.test\"\nscopes = [\"read:a\", \"write:a\", \"read:b\"]\n",
        "",
    );
    assert_ne!(revoked, original);
    server.rewrite_manifest(&revoked);
    eventually("the grant to be revoked", async || {
        let reply = app_token(&server, &[]).await;
        reply.status == 400 && reply.body["error"] == "unauthorized_client"
    })
    .await;

    // And back.
    server.rewrite_manifest(&original);
    eventually("the grant to be restored", async || {
        app_token(&server, &[]).await.status == 200
    })
    .await;
}
