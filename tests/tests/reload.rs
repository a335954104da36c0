//! A running server follows its manifest and hook files (checked every
//! second): revoking a grant or a client takes effect without a restart, a
//! changed hook module is picked up, tokens from before a reload still
//! verify, and a manifest or module that fails to load is refused while the
//! running configuration keeps serving exactly as before. Every wait is a
//! bounded poll.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tokenhook_tests::{TestServer, fixed_output_hook, verified_claims};

/// How long a change may take to show (the watcher polls every second).
const WITHIN: Duration = Duration::from_secs(10);
/// How long a refused change is watched for not taking effect: several
/// watcher periods.
const REFUSED_FOR: Duration = Duration::from_millis(3500);

const APP_GRANT: &str = "[[grants]]\nclient = \"app\"\napi = \"https://api.test\"\nscopes = [\"read:a\", \"write:a\", \"read:b\"]\n";

fn without_app_grant(text: &str) -> String {
    let out = text.replace(APP_GRANT, "");
    assert_ne!(out, text, "the fixture has app's grant");
    out
}

/// Poll for `window`: every answer to `check` must be true.
async fn holds_throughout(what: &str, window: Duration, mut check: impl AsyncFnMut() -> bool) {
    let until = std::time::Instant::now() + window;
    while std::time::Instant::now() < until {
        assert!(check().await, "stopped holding: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

    server.rewrite_manifest(&without_app_grant(&clients.manifest("")));
    eventually("app's grant is revoked", WITHIN, async || {
        let reply = token(&server, &clients.app, &[]).await;
        reply.status == 400 && reply.body["error"] == "unauthorized_client"
    })
    .await;
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
    eventually("app's grant is restored", WITHIN, async || {
        token(&server, &clients.app, &[]).await.status == 200
    })
    .await;
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
    server.rewrite_manifest(&without_client);
    eventually("app can no longer authenticate", WITHIN, async || {
        token(&server, &clients.app, &[]).await.status == 401
    })
    .await;
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
    server.rewrite_manifest(&rotated.manifest(""));
    eventually("the new secret works", WITHIN, async || {
        token(&server, &rotated.app, &[]).await.status == 200
    })
    .await;
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
    server.rewrite_manifest(&invalid);
    holds_throughout("app keeps its grant", REFUSED_FOR, async || {
        token(&server, &clients.app, &[]).await.status == 200
    })
    .await;
    assert_eq!(
        token_for(&server, &clients.ops, OTHER, &[]).await.status,
        200,
        "the running configuration is whole"
    );

    // The watcher is still alive: a valid change after the refusal applies.
    server.rewrite_manifest(&without_app_grant(&clients.manifest("")));
    eventually("the valid change applies", WITHIN, async || {
        token(&server, &clients.app, &[]).await.status == 400
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_written_manifest_is_refused_and_the_running_config_keeps_serving() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);
    let text = clients.manifest("");
    let half = &text[..text.find(APP_GRANT).expect("app grant") + 20];
    server.rewrite_manifest(half);
    holds_throughout("app keeps its grant", REFUSED_FOR, async || {
        token(&server, &clients.app, &[]).await.status == 200
    })
    .await;
    // Finishing the write applies it.
    server.rewrite_manifest(&without_app_grant(&text));
    eventually("the finished manifest applies", WITHIN, async || {
        token(&server, &clients.app, &[]).await.status == 400
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_issued_before_a_reload_still_verify_after_it() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    let before = token(&server, &clients.app, &[]).await;
    assert_eq!(before.body["expires_in"], LIFETIME_SECS);
    server.rewrite_manifest(
        &clients
            .manifest("")
            .replace("token_lifetime = \"15m\"", "token_lifetime = \"5m\""),
    );
    eventually("the new lifetime applies", WITHIN, async || {
        token(&server, &clients.app, &[]).await.body["expires_in"] == 300
    })
    .await;
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

    replace_file(
        &server.dir.path().join("versioned.wat"),
        version_hook("v2-longer").as_bytes(),
    );
    eventually("the new module runs", WITHIN, async || {
        let reply = token(&server, &clients.app, &[]).await;
        reply.status == 200
            && verified_claims(&server, &reply, API).await[format!("{NS}version")] == "v2-longer"
    })
    .await;
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

    replace_file(&server.dir.path().join("versioned.wat"), v2.as_bytes());
    holds_throughout("the pinned v1 keeps running", REFUSED_FOR, async || {
        version().await == "v1"
    })
    .await;

    // Pinning the new digest lets it in.
    server.rewrite_manifest(&clients.manifest(&pinned(&v2)));
    eventually("v2 runs once pinned", WITHIN, async || {
        version().await == "v2-longer"
    })
    .await;
}

/// A pinned module deleted under a running server: the reload it triggers
/// fails (the module cannot be read), so the running chain, which holds the
/// compiled module, keeps serving; putting the same module back changes
/// nothing visible.
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
    std::fs::remove_file(&module).unwrap();
    holds_throughout("the loaded v1 keeps running", REFUSED_FOR, async || {
        version().await == "v1"
    })
    .await;
    replace_file(&module, v1.as_bytes());
    holds_throughout("v1 still runs once it is back", REFUSED_FOR, async || {
        version().await == "v1"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_refused_for_a_missing_module_loads_once_the_module_appears() {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);
    let with_hook = clients.manifest(&hook("late", &in_dir("late.wat"), VERSION_CAPS));
    server.rewrite_manifest(&with_hook);
    holds_throughout(
        "the old configuration serves",
        Duration::from_millis(1500),
        async || {
            let reply = token(&server, &clients.app, &[]).await;
            reply.status == 200
                && verified_claims(&server, &reply, API)
                    .await
                    .get(format!("{NS}version"))
                    .is_none()
        },
    )
    .await;

    // The module the manifest on disk names now exists: that is a change to
    // a hook module of the manifest, and it should be loaded.
    replace_file(
        &server.dir.path().join("late.wat"),
        version_hook("late").as_bytes(),
    );
    eventually(
        "the manifest with its module is loaded",
        WITHIN,
        async || {
            let reply = token(&server, &clients.app, &[]).await;
            reply.status == 200
                && verified_claims(&server, &reply, API).await[format!("{NS}version")] == "late"
        },
    )
    .await;
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
    server.rewrite_manifest(&clients.manifest(&hook("two", &in_dir("two.wat"), VERSION_CAPS)));
    eventually("the new chain runs", WITHIN, async || {
        let reply = token(&server, &clients.app, &[]).await;
        verified_claims(&server, &reply, API).await[format!("{NS}version")] == "two"
    })
    .await;
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
        eventually(
            &format!("server {i}: app's grant is revoked"),
            WITHIN,
            async || token(server, &clients.app, &[]).await.status == 400,
        )
        .await;
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
