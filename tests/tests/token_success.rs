//! A successful token request over real HTTP: the RFC 6749 §5.1 response, the
//! RFC 9068 JWT (verified with jwt-simple against the server's JWKS), both
//! client authentication methods (`sha256:` and argon2id secrets, Basic
//! credentials form-encoded per §2.3.1), request ids, and the scope and
//! audience rules (requested ∩ granted; `resource` per RFC 8707).

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use support::*;
use tokenhook_tests::{TestServer, get_json, verified_claims};

fn server() -> (Clients, TestServer) {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    (clients, server)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_response_has_the_rfc_6749_fields_and_headers() {
    let (clients, server) = server();
    let reply = token(&server, &clients.app, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.headers["pragma"], "no-cache");
    assert!(!request_id(&reply).is_empty());
    assert!(
        reply.body["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], LIFETIME_SECS);
    assert_eq!(
        scope_set(&reply.body["scope"]),
        sorted(&["read:a", "write:a", "read:b"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_an_at_jwt_with_every_host_claim() {
    let (clients, server) = server();
    let before = now();
    let reply = token(&server, &clients.app, &[]).await;
    let after = now();
    let access_token = reply.body["access_token"].as_str().unwrap();
    let header = jwt_header(access_token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    let jwks = get_json(&server, "/.well-known/jwks.json").await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "the header's kid {} is published: {jwks}",
        header["kid"]
    );

    let claims = verified_claims(&server, &reply, API).await;
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "app");
    assert_eq!(claims["client_id"], "app");
    assert_eq!(claims["aud"], API);
    let iat = claims["iat"].as_u64().expect("iat is a number");
    assert!(
        (before..=after).contains(&iat),
        "iat {iat} is the issue time ({before}..={after})"
    );
    assert_eq!(claims["exp"].as_u64(), Some(iat + LIFETIME_SECS));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(claims["scope"], reply.body["scope"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_token_has_its_own_jti() {
    let (clients, server) = server();
    let first = verified_claims(&server, &token(&server, &clients.app, &[]).await, API).await;
    let second = verified_claims(&server, &token(&server, &clients.app, &[]).await, API).await;
    assert_ne!(first["jti"], second["jti"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_post_issues_the_same_token_as_basic() {
    let (clients, server) = server();
    let reply = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", API),
            ("client_id", "app"),
            ("client_secret", &clients.app.secret),
        ],
        &[],
    )
    .await;
    let claims = verified_claims(&server, &reply, API).await;
    assert_eq!(claims["sub"], "app");
    assert_eq!(claims["client_id"], "app");
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_may_repeat_its_client_id_in_the_body() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", API),
            ("client_id", "app"),
        ],
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(verified_claims(&server, &reply, API).await["sub"], "app");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_argon2_client_authenticates_with_basic_and_with_post() {
    let (clients, server) = server();
    // The secret has characters Basic credentials must form-encode (RFC 6749 §2.3.1).
    let basic = token(&server, &clients.legacy, &[]).await;
    assert_eq!(verified_claims(&server, &basic, API).await["sub"], "legacy");
    let post = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", API),
            ("client_id", "legacy"),
            ("client_secret", LEGACY_SECRET),
        ],
        &[],
    )
    .await;
    assert_eq!(verified_claims(&server, &post, API).await["sub"], "legacy");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remembered_argon2_success_does_not_admit_a_wrong_secret() {
    let (clients, server) = server();
    assert_eq!(token(&server, &clients.legacy, &[]).await.status, 200);
    let mut wrong = clients.legacy.clone();
    wrong.secret.push('x');
    assert_oauth_error(&token(&server, &wrong, &[]).await, 401, "invalid_client");
    assert_eq!(token(&server, &clients.legacy, &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lowercase_basic_scheme_is_accepted() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret).replacen("Basic", "basic", 1);
    let reply = post_form(
        &server,
        &[("grant_type", "client_credentials"), ("audience", API)],
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_content_type_with_a_charset_is_accepted() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_raw(
        &server,
        &[
            ("authorization", &auth),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            ),
        ],
        "grant_type=client_credentials&audience=https%3A%2F%2Fapi.test",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// The caller's `x-request-id` is kept beside ours (in the audit line as
/// `client_request_id`), never instead of it: a client cannot choose the id
/// that the issuer's logs and error descriptions use.
#[tokio::test(flavor = "multi_thread")]
async fn an_incoming_request_id_never_replaces_ours() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let id = "3f2c9a1e-7b4d-4e0a-9c8b-12ab34cd56ef";
    let reply = post_form(
        &server,
        &[("grant_type", "client_credentials"), ("audience", API)],
        &[("authorization", &auth), ("x-request-id", id)],
    )
    .await;
    assert_eq!(reply.status, 200);
    let ours = request_id(&reply);
    assert_ne!(ours, id);
    assert!(
        ours.len() == 24 && ours.chars().all(|c| c.is_ascii_hexdigit()),
        "{ours}"
    );
    let at_limit = "a".repeat(64);
    let reply = post_form(&server, &[], &[("x-request-id", &at_limit)]).await;
    assert_ne!(request_id(&reply), at_limit);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insane_incoming_request_id_is_replaced() {
    let (_, server) = server();
    for insane in ["has space", "semi;colon", "quote\"d", &"a".repeat(65)] {
        let reply = post_form(&server, &[], &[("x-request-id", insane)]).await;
        let id = request_id(&reply);
        assert_ne!(id, insane);
        assert!(!id.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_differ_between_requests() {
    let (clients, server) = server();
    let first = request_id(&token(&server, &clients.app, &[]).await);
    let second = request_id(&token(&server, &clients.app, &[]).await);
    assert_ne!(first, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_a_request_id() {
    let (clients, server) = server();
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for resp in [
        http.get(server.url("/healthz")).send().await.unwrap(),
        http.get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap(),
        http.get(server.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
        http.get(server.url("/no/such/path")).send().await.unwrap(),
        http.get(server.url("/oauth/token")).send().await.unwrap(),
        http.post(server.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("pad=".to_string() + &"x".repeat(17 << 10))
            .send()
            .await
            .unwrap(),
    ] {
        let status = resp.status().as_u16();
        assert!(
            resp.headers().contains_key("x-request-id"),
            "{status} has no x-request-id"
        );
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 404, 405, 413]);
    let ok = token(&server, &clients.app, &[]).await;
    let refused = token(&server, &clients.app, &[("scope", "admin:a")]).await;
    assert_eq!((ok.status, refused.status), (200, 400));
    request_id(&ok);
    request_id(&refused);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_scope_parameter_every_granted_scope_is_issued() {
    let (clients, server) = server();
    let reply = token(&server, &clients.app, &[]).await;
    let claims = verified_claims(&server, &reply, API).await;
    assert_eq!(
        scope_set(&claims["scope"]),
        sorted(&["read:a", "write:a", "read:b"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requested_scopes_are_issued_when_all_are_granted() {
    let (clients, server) = server();
    let reply = token(&server, &clients.app, &[("scope", "read:b read:a")]).await;
    assert_eq!(
        scope_set(&reply.body["scope"]),
        sorted(&["read:a", "read:b"])
    );
    let claims = verified_claims(&server, &reply, API).await;
    assert_eq!(scope_set(&claims["scope"]), sorted(&["read:a", "read:b"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_requested_twice_is_issued_once() {
    let (clients, server) = server();
    let reply = token(&server, &clients.app, &[("scope", "read:a read:a")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["scope"], "read:a");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_the_api_defines_but_the_grant_lacks_is_invalid_scope() {
    let (clients, server) = server();
    let reply = token(&server, &clients.app, &[("scope", "read:a admin:a")]).await;
    assert_oauth_error(&reply, 400, "invalid_scope");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_the_api_does_not_define_is_invalid_scope() {
    let (clients, server) = server();
    let reply = token(
        &server,
        &clients.app,
        &[("scope", "read:a delete:everything")],
    )
    .await;
    assert_oauth_error(&reply, 400, "invalid_scope");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_of_another_api_is_invalid_scope() {
    let (clients, server) = server();
    // ops holds read:o on other.test, but asks for it on api.test.
    let reply = token(&server, &clients.ops, &[("scope", "read:o")]).await;
    assert_oauth_error(&reply, 400, "invalid_scope");
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_chooses_the_api_like_audience() {
    let (clients, server) = server();
    let auth = basic_header("ops", &clients.ops.secret);
    let reply = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("resource", OTHER),
            ("scope", "read:o"),
        ],
        &[("authorization", &auth)],
    )
    .await;
    let claims = verified_claims(&server, &reply, OTHER).await;
    assert_eq!(claims["aud"], OTHER);
    assert_eq!(claims["scope"], "read:o");
}

#[tokio::test(flavor = "multi_thread")]
async fn audience_and_resource_naming_the_same_api_are_accepted() {
    let (clients, server) = server();
    let reply = token(&server, &clients.app, &[("resource", API)]).await;
    assert_eq!(verified_claims(&server, &reply, API).await["aud"], API);
}

#[tokio::test(flavor = "multi_thread")]
async fn audience_and_resource_naming_different_apis_is_invalid_request() {
    let (clients, server) = server();
    let reply = token(&server, &clients.ops, &[("resource", OTHER)]).await;
    assert_oauth_error(&reply, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_audience_is_invalid_target() {
    let (clients, server) = server();
    let reply = token_for(&server, &clients.app, "https://nowhere.test", &[]).await;
    assert_oauth_error(&reply, 400, "invalid_target");
    let auth = basic_header("app", &clients.app.secret);
    let by_resource = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://nowhere.test"),
        ],
        &[("authorization", &auth)],
    )
    .await;
    assert_oauth_error(&by_resource, 400, "invalid_target");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_without_a_grant_for_the_client_is_unauthorized_client() {
    let (clients, server) = server();
    let reply = token_for(&server, &clients.app, OTHER, &[]).await;
    assert_oauth_error(&reply, 400, "unauthorized_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_audience_is_invalid_request() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_form(
        &server,
        &[("grant_type", "client_credentials")],
        &[("authorization", &auth)],
    )
    .await;
    assert_oauth_error(&reply, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_gets_tokens_for_each_api_it_is_granted() {
    let (clients, server) = server();
    let on_api = token_for(&server, &clients.ops, API, &[]).await;
    let on_other = token_for(&server, &clients.ops, OTHER, &[]).await;
    let api_claims = verified_claims(&server, &on_api, API).await;
    let other_claims = verified_claims(&server, &on_other, OTHER).await;
    assert_eq!(
        scope_set(&api_claims["scope"]),
        sorted(&["read:a", "write:a", "admin:a"])
    );
    assert_eq!(
        scope_set(&other_claims["scope"]),
        sorted(&["read:o", "write:o"])
    );
}
