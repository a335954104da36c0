//! Client authentication under attack, over real HTTP: failures are
//! throttled per client id with the same answer for ids that exist and ids
//! that do not (429 `temporarily_unavailable` with `Retry-After`), a client
//! whose secret verifies is not locked out by someone else's wrong guesses,
//! a pasted argon2 hash with a huge cost is refused at load, and the
//! caller's address comes from the configured number of trusted proxies.

mod support;

use support::*;

const THROTTLE: &str = "[client_auth]\nfailure_burst = 3\nfailure_refill = \"1h\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secrets_are_throttled_alike_for_every_kind_of_id() {
    let clients = Clients::new();
    let server = clients.start(THROTTLE, &[]);
    let form = [("grant_type", "client_credentials"), ("audience", API)];
    // sha256 client, argon2 client, unknown id.
    for id in ["app", "legacy", "nobody"] {
        let auth = basic_header(id, "wrong-secret");
        for _ in 0..3 {
            let reply = post_form(&server, &form, &[("authorization", &auth)]).await;
            assert_oauth_error(&reply, 401, "invalid_client");
            assert_eq!(
                reply.body["error_description"],
                "client authentication failed"
            );
        }
        let reply = post_form(&server, &form, &[("authorization", &auth)]).await;
        assert_oauth_error(&reply, 429, "temporarily_unavailable");
        let retry: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry > 0 && retry <= 3600, "{retry}");
        assert_eq!(
            reply.body["error_description"],
            format!("too many failed authentications for this client id; retry in {retry} s")
        );
    }
    // `app`'s own secret still verifies (cheaply), so an attacker cannot lock it out.
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);
    // Other clients are not affected.
    assert_eq!(token(&server, &clients.ops, &[]).await.status, 200);
}

#[test]
fn an_argon2_hash_with_a_huge_cost_is_refused_at_load() {
    let clients = Clients::new();
    let huge = clients.legacy.hash.replacen("m=19456", "m=4194304", 1);
    assert_ne!(huge, clients.legacy.hash);
    let text = clients.manifest("").replace(&clients.legacy.hash, &huge);
    let err = tokenhook_tests::TestServer::start(&text)
        .err()
        .expect("the manifest is refused");
    assert!(err.contains("manifest.toml"), "{err}");
    assert!(err.contains("clients[2].secret_hash"), "{err}");
    assert!(err.contains("m=4194304"), "{err}");
}

/// deny-list refuses 192.0.2.0/24; the request carries `X-Forwarded-For:
/// 192.0.2.9` from 127.0.0.1.
#[tokio::test(flavor = "multi_thread")]
async fn the_caller_address_comes_from_the_configured_proxy_hops() {
    let clients = Clients::new();
    let deny = hook(
        "deny-list",
        &built("deny_list"),
        "config = { ips = [\"192.0.2.0/24\"] }",
    );
    let form = [("grant_type", "client_credentials"), ("audience", API)];
    let auth = basic_header("app", &clients.app.secret);
    let forwarded = |xff: &'static str| {
        [
            ("authorization", auth.clone()),
            ("x-forwarded-for", xff.to_string()),
        ]
    };
    let send = |server: &tokenhook_tests::TestServer, xff: &'static str| {
        let headers = forwarded(xff);
        let url = server.url("/oauth/token");
        async move {
            let mut req = reqwest::Client::new().post(url).form(&form);
            for (n, v) in &headers {
                req = req.header(*n, v);
            }
            reply(req.send().await.unwrap()).await
        }
    };
    // 0 hops (default): the socket peer, 127.0.0.1; the header is the client's word.
    let server = clients.start(&deny, &[]);
    assert_eq!(send(&server, "192.0.2.9").await.status, 200);
    // 1 trusted hop: the entry it appended.
    let server = clients.start(&format!("[http]\ntrusted_proxy_hops = 1\n{deny}"), &[]);
    assert_oauth_error(&send(&server, "192.0.2.9").await, 403, "access_denied");
    assert_eq!(send(&server, "192.0.2.9, 198.51.100.3").await.status, 200);
    // 2 hops but one entry: no address, and deny-list fails closed.
    let server = clients.start(&format!("[http]\ntrusted_proxy_hops = 2\n{deny}"), &[]);
    assert_oauth_error(&send(&server, "198.51.100.3").await, 403, "access_denied");
}
