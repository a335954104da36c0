//! A running server follows its manifest and hook files (checked every
//! second): revoking a grant or a client takes effect without a restart, a
//! changed hook module is picked up, tokens from before a reload still
//! verify, and a manifest or module that fails to load is refused while the
//! running configuration keeps serving exactly as before. Every wait is a
//! bounded poll for the reload's outcome (`GET /status/reload`: the
//! generation in force, refusals so far, the latest error), so a refusal is
//! seen to happen rather than inferred from nothing changing for a while.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokenhook_tests::{TestServer, fixed_output_hook, get_json, verified_claims};

/// How long a reload may take to happen (the watcher polls every second).
const WITHIN: Duration = Duration::from_secs(10);

const APP_GRANT: &str = "[[grants]]\nclient = \"app\"\napi = \"https://api.test\"\nscopes = [\"read:a\", \"write:a\", \"read:b\"]\n";

fn without_app_grant(text: &str) -> String {
    let out = text.replace(APP_GRANT, "");
    assert_ne!(out, text, "the fixture has app's grant");
    out
}

/// The server's reload status: `generation`, `failures`, `last_error`.
async fn reload_status(server: &TestServer) -> Value {
    get_json(server, "/status/reload").await
}

/// Wait for the next reload outcome after `before` (a status read before the
/// change was made): a new generation or one more refusal.
async fn next_outcome(server: &TestServer, before: &Value) -> Value {
    let mut now = Value::Null;
    eventually("a reload happens", WITHIN, async || {
        now = reload_status(server).await;
        now["generation"] != before["generation"] || now["failures"] != before["failures"]
    })
    .await;
    now
}

/// Wait for the change made after `before` to be loaded: exactly one new
/// generation, no refusal.
async fn reloaded(server: &TestServer, before: &Value) -> Value {
    let now = next_outcome(server, before).await;
    assert_eq!(now["failures"], before["failures"], "refused: {now}");
    assert_eq!(
        now["generation"],
        before["generation"].as_u64().unwrap() + 1
    );
    assert!(now["last_error"].is_null(), "{now}");
    now
}

/// Wait for the change made after `before` to be refused; returns the error
/// (`field`, `message`). The generation in force stays.
async fn refused(server: &TestServer, before: &Value) -> Value {
    let now = next_outcome(server, before).await;
    assert_eq!(now["generation"], before["generation"], "loaded: {now}");
    assert_eq!(now["failures"], before["failures"].as_u64().unwrap() + 1);
    now["last_error"].clone()
}

fn version_hook(version: &str) -> String {
    fixed_output_hook(
        &json!({"commands": [{"set_claim": {"name": format!("{NS}version"), "value": version}}]})
            .to_string(),
    )
}

const VERSION_CAPS: &str = "capabilities = { claims = [\"https://claims.test/version\"] }";

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_grant_revokes_it_without_a_restart() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);

    let before = reload_status(&server).await;
    server.rewrite_manifest(&without_app_grant(&clients.manifest("")));
    let before = reloaded(&server, &before).await;
    assert_oauth_error(
        &token(&server, &clients.app, &[]).await,
        400,
        "unauthorized_client",
    );
    assert_eq!(
        token(&server, &clients.ops, &[]).await.status,
        200,
        "other grants stay"
    );

    server.rewrite_manifest(&clients.manifest(""));
    reloaded(&server, &before).await;
    assert_eq!(
        token(&server, &clients.app, &[]).await.status,
        200,
        "app's grant is restored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_client_revokes_its_credentials_without_a_restart() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);
    let client_block = format!(
        "[[clients]]\nid = \"app\"\nname = \"The app\"\nsecret_hash = \"{}\"\nmetadata = {{ tenant = \"acme\", plan = \"free\" }}\n",
        clients.app.hash
    );
    let text = without_app_grant(&clients.manifest(""));
    let without_client = text.replace(&client_block, "");
    assert_ne!(without_client, text);
    let before = reload_status(&server).await;
    server.rewrite_manifest(&without_client);
    reloaded(&server, &before).await;
    assert_oauth_error(
        &token(&server, &clients.app, &[]).await,
        401,
        "invalid_client",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_client_secret_takes_over_without_a_restart() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);
    let mut rotated = clients.clone();
    let (secret, hash) = tokenhook::clients::new_secret();
    rotated.app.secret = secret;
    rotated.app.hash = hash;
    let before = reload_status(&server).await;
    server.rewrite_manifest(&rotated.manifest(""));
    reloaded(&server, &before).await;
    assert_eq!(
        token(&server, &rotated.app, &[]).await.status,
        200,
        "the new secret works"
    );
    assert_oauth_error(
        &token(&server, &clients.app, &[]).await,
        401,
        "invalid_client",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_manifest_is_refused_and_the_running_config_keeps_serving() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);

    // Had it been loaded, this manifest would also have revoked app's grant.
    let invalid = without_app_grant(&clients.manifest("")).replace(
        "api = \"https://other.test\"",
        "api = \"https://nowhere.test\"",
    );
    let before = reload_status(&server).await;
    server.rewrite_manifest(&invalid);
    let error = refused(&server, &before).await;
    // app's grant is gone, so ops' grant for other.test is the second.
    assert_eq!(error["field"], "grants[1].api", "{error}");
    assert_eq!(error["reason"], "file change");
    assert_eq!(
        token(&server, &clients.app, &[]).await.status,
        200,
        "app keeps its grant"
    );
    assert_eq!(
        token_for(&server, &clients.ops, OTHER, &[]).await.status,
        200,
        "the running configuration is whole"
    );

    // The watcher is still alive: a valid change after the refusal applies.
    let before = reload_status(&server).await;
    server.rewrite_manifest(&without_app_grant(&clients.manifest("")));
    reloaded(&server, &before).await;
    assert_eq!(token(&server, &clients.app, &[]).await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_written_manifest_is_refused_and_the_running_config_keeps_serving() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);
    let text = clients.manifest("");
    let half = &text[..text.find(APP_GRANT).expect("app grant") + 20];
    let before = reload_status(&server).await;
    server.rewrite_manifest(half);
    let error = refused(&server, &before).await;
    assert!(!error["message"].as_str().unwrap().is_empty(), "{error}");
    assert_eq!(
        token(&server, &clients.app, &[]).await.status,
        200,
        "app keeps its grant"
    );
    // Finishing the write applies it.
    let before = reload_status(&server).await;
    server.rewrite_manifest(&without_app_grant(&text));
    reloaded(&server, &before).await;
    assert_eq!(token(&server, &clients.app, &[]).await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_issued_before_a_reload_still_verify_after_it() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    let before = token(&server, &clients.app, &[]).await;
    assert_eq!(before.body["expires_in"], LIFETIME_SECS);
    let status = reload_status(&server).await;
    server.rewrite_manifest(
        &clients
            .manifest("")
            .replace("token_lifetime = \"15m\"", "token_lifetime = \"5m\""),
    );
    reloaded(&server, &status).await;
    // Same key file, same key: the old token verifies against the JWKS now served.
    verified_claims(&server, &before, API).await;
    let after = token(&server, &clients.app, &[]).await;
    let claims = verified_claims(&server, &after, API).await;
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_hook_module_is_picked_up_without_touching_the_manifest() {
    let clients = Clients::new();
    let server = clients.start(
        &hook("versioned", &in_dir("versioned.wat"), VERSION_CAPS),
        &[("versioned.wat", &version_hook("v1"))],
    );
    let claims = verified_claims(&server, &token(&server, &clients.app, &[]).await, API).await;
    assert_eq!(claims[format!("{NS}version")], "v1");

    let before = reload_status(&server).await;
    replace_file(
        &server.dir.path().join("versioned.wat"),
        version_hook("v2-longer").as_bytes(),
    );
    reloaded(&server, &before).await;
    let reply = token(&server, &clients.app, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let claims = verified_claims(&server, &reply, API).await;
    assert_eq!(claims[format!("{NS}version")], "v2-longer");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_module_replaced_on_disk_is_refused_and_the_old_one_keeps_running() {
    let clients = Clients::new();
    let v1 = version_hook("v1");
    let v2 = version_hook("v2-longer");
    let pinned = |module: &str| {
        hook(
            "versioned",
            &in_dir("versioned.wat"),
            &format!(
                "{VERSION_CAPS}\nsha256 = \"{}\"",
                tokenhook::engine::sha256_hex(module.as_bytes())
            ),
        )
    };
    let server = clients.start(&pinned(&v1), &[("versioned.wat", &v1)]);
    let version = async || {
        let reply = token(&server, &clients.app, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        verified_claims(&server, &reply, API).await[format!("{NS}version")].clone()
    };
    assert_eq!(version().await, "v1");

    let before = reload_status(&server).await;
    replace_file(&server.dir.path().join("versioned.wat"), v2.as_bytes());
    let error = refused(&server, &before).await;
    assert_eq!(error["field"], "hooks[0].module", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("the manifest pins"), "{message}");
    assert_eq!(version().await, "v1", "the pinned v1 keeps running");

    // Pinning the new digest lets it in.
    let before = reload_status(&server).await;
    server.rewrite_manifest(&clients.manifest(&pinned(&v2)));
    reloaded(&server, &before).await;
    assert_eq!(version().await, "v2-longer", "v2 runs once pinned");
}

/// A pinned module deleted under a running server: the reload it triggers
/// fails (the module cannot be read), so the running chain, which holds the
/// compiled module, keeps serving; putting the same module back is a change
/// that loads, and the same module runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_module_deleted_on_disk_is_refused_and_the_old_one_keeps_running() {
    let clients = Clients::new();
    let v1 = version_hook("v1");
    let pinned = hook(
        "versioned",
        &in_dir("versioned.wat"),
        &format!(
            "{VERSION_CAPS}\nsha256 = \"{}\"",
            tokenhook::engine::sha256_hex(v1.as_bytes())
        ),
    );
    let server = clients.start(&pinned, &[("versioned.wat", &v1)]);
    let version = async || {
        let reply = token(&server, &clients.app, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        verified_claims(&server, &reply, API).await[format!("{NS}version")].clone()
    };
    assert_eq!(version().await, "v1");

    let module = server.dir.path().join("versioned.wat");
    let before = reload_status(&server).await;
    std::fs::remove_file(&module).unwrap();
    refused(&server, &before).await;
    assert_eq!(version().await, "v1", "the loaded v1 keeps running");
    let before = reload_status(&server).await;
    replace_file(&module, v1.as_bytes());
    reloaded(&server, &before).await;
    assert_eq!(version().await, "v1", "v1 still runs once it is back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_refused_for_a_missing_module_loads_once_the_module_appears() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);
    let with_hook = clients.manifest(&hook("late", &in_dir("late.wat"), VERSION_CAPS));
    let before = reload_status(&server).await;
    server.rewrite_manifest(&with_hook);
    refused(&server, &before).await;
    let reply = token(&server, &clients.app, &[]).await;
    assert_eq!(reply.status, 200, "the old configuration serves");
    let claims = verified_claims(&server, &reply, API).await;
    assert!(claims.get(format!("{NS}version")).is_none(), "{claims}");

    // The module the manifest on disk names now exists: that is a change to
    // a hook module of the manifest, and it should be loaded.
    let before = reload_status(&server).await;
    replace_file(
        &server.dir.path().join("late.wat"),
        version_hook("late").as_bytes(),
    );
    reloaded(&server, &before).await;
    let reply = token(&server, &clients.app, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let claims = verified_claims(&server, &reply, API).await;
    assert_eq!(claims[format!("{NS}version")], "late");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_replaces_the_hook_chain_as_a_whole() {
    let clients = Clients::new();
    let server = clients.start(
        &hook("one", &in_dir("one.wat"), VERSION_CAPS),
        &[
            ("one.wat", &version_hook("one")),
            ("two.wat", &version_hook("two")),
        ],
    );
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);
    let before = reload_status(&server).await;
    server.rewrite_manifest(&clients.manifest(&hook("two", &in_dir("two.wat"), VERSION_CAPS)));
    reloaded(&server, &before).await;
    let reply = token(&server, &clients.app, &[]).await;
    let claims = verified_claims(&server, &reply, API).await;
    assert_eq!(claims[format!("{NS}version")], "two", "the new chain runs");
    let health = tokenhook_tests::get_json(&server, "/healthz").await;
    assert_eq!(health["hooks"], json!(["two"]));
}

/// The watcher must compare the files against what was loaded, not against
/// what is on disk when it first looks: a change made as the server comes up
/// counts. The window is short, so several servers try it.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_change_right_after_the_server_starts_is_not_lost() {
    let clients = Clients::new();
    let revoked = without_app_grant(&clients.manifest(""));
    let servers: Vec<TestServer> = (0..8)
        .map(|_| {
            let server = clients.start("", &[]);
            server.rewrite_manifest(&revoked);
            server
        })
        .collect();
    for (i, server) in servers.iter().enumerate() {
        // Generation 1 is the issuer the server started with.
        let started = json!({"generation": 1, "failures": 0});
        reloaded(server, &started).await;
        let status = token(server, &clients.app, &[]).await.status;
        assert_eq!(status, 400, "server {i}: app's grant is revoked");
    }
}

#[test]
fn a_server_cannot_start_on_a_bad_manifest() {
    let clients = Clients::new();
    let text = clients.manifest("").replace(
        "api = \"https://other.test\"",
        "api = \"https://nowhere.test\"",
    );
    match TestServer::start(&text) {
        Ok(_) => panic!("a bad manifest must not start a server"),
        Err(err) => assert!(err.contains("grants[2].api"), "{err}"),
    }
}
