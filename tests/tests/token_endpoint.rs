//! The OAuth 2.0 token endpoint over real HTTP: success per RFC 6749 §5.1 and
//! RFC 9068, scope rules, every error path of §5.2, discovery documents.

use serde_json::Value;
use tokenhook_tests::{
    CLIENT_SECRET, TestServer, app_token, get_json, manifest, post_token, verified_claims,
};

fn server() -> TestServer {
    TestServer::start(&manifest("")).unwrap()
}

fn assert_error(reply: &tokenhook_tests::Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["error"], error, "{}", reply.body);
    assert!(
        reply.body["error_description"].is_string(),
        "{}",
        reply.body
    );
    assert_eq!(reply.headers["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_response_follows_rfc_6749_and_the_token_rfc_9068() {
    let server = server();
    let reply = app_token(&server, &[]).await;
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 600);
    assert_eq!(reply.body["scope"], "read:a write:a read:b");
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert!(reply.headers.contains_key("x-request-id"));
    let claims = verified_claims(&server, &reply, "https://api.test").await;
    assert_eq!(claims["iss"], "https://issuer.test/");
    assert_eq!(claims["sub"], "app");
    assert_eq!(claims["client_id"], "app");
    assert_eq!(claims["aud"], "https://api.test");
    assert_eq!(claims["scope"], "read:a write:a read:b");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    let jti = claims["jti"].as_str().unwrap().to_string();
    let again = verified_claims(&server, &app_token(&server, &[]).await, "https://api.test").await;
    assert_ne!(again["jti"], Value::String(jti), "jti must be unique");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_post_works_like_basic() {
    let server = server();
    let reply = post_token(
        &server,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://api.test"),
            ("client_id", "app"),
            ("client_secret", CLIENT_SECRET),
        ],
    )
    .await;
    verified_claims(&server, &reply, "https://api.test").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incoming_request_id_is_echoed() {
    let server = server();
    let resp = reqwest::Client::new()
        .get(server.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = reqwest::Client::new()
        .get(server.url("/healthz"))
        .header("x-request-id", "not ok; injected")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "not ok; injected");
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_are_requested_intersect_granted() {
    let server = server();
    let reply = app_token(&server, &[("scope", "read:b read:a read:a")]).await;
    assert_eq!(reply.body["scope"], "read:b read:a");
    let claims = verified_claims(&server, &reply, "https://api.test").await;
    assert_eq!(claims["scope"], "read:b read:a");
    // Defined by the API but not granted, and not defined at all.
    assert_error(
        &app_token(&server, &[("scope", "read:a admin:a")]).await,
        400,
        "invalid_scope",
    );
    assert_error(
        &app_token(&server, &[("scope", "delete:everything")]).await,
        400,
        "invalid_scope",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_chosen_by_audience_or_resource() {
    let server = server();
    let by_resource = post_token(
        &server,
        Some(("app", CLIENT_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://api.test"),
        ],
    )
    .await;
    verified_claims(&server, &by_resource, "https://api.test").await;
    let both = post_token(
        &server,
        Some(("app", CLIENT_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://api.test"),
            ("audience", "https://other.test"),
        ],
    )
    .await;
    assert_error(&both, 400, "invalid_request");
    let none = post_token(
        &server,
        Some(("app", CLIENT_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_error(&none, 400, "invalid_request");
    let unknown = post_token(
        &server,
        Some(("app", CLIENT_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://nowhere.test"),
        ],
    )
    .await;
    assert_error(&unknown, 400, "invalid_target");
    let ungranted = post_token(
        &server,
        Some(("app", CLIENT_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://other.test"),
        ],
    )
    .await;
    assert_error(&ungranted, 400, "unauthorized_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn grant_type_errors() {
    let server = server();
    let missing = post_token(
        &server,
        Some(("app", CLIENT_SECRET)),
        &[("audience", "https://api.test")],
    )
    .await;
    assert_error(&missing, 400, "invalid_request");
    let password = post_token(
        &server,
        Some(("app", CLIENT_SECRET)),
        &[("grant_type", "password"), ("audience", "https://api.test")],
    )
    .await;
    assert_error(&password, 400, "unsupported_grant_type");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_authentication_errors() {
    let server = server();
    let form = [
        ("grant_type", "client_credentials"),
        ("audience", "https://api.test"),
    ];
    let wrong_basic = post_token(&server, Some(("app", "wrong")), &form).await;
    assert_error(&wrong_basic, 401, "invalid_client");
    assert!(
        wrong_basic.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let unknown = post_token(&server, Some(("ghost", CLIENT_SECRET)), &form).await;
    assert_error(&unknown, 401, "invalid_client");
    assert_eq!(
        unknown.body["error_description"], wrong_basic.body["error_description"],
        "no client enumeration"
    );
    let wrong_post = post_token(
        &server,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://api.test"),
            ("client_id", "app"),
            ("client_secret", "nope"),
        ],
    )
    .await;
    assert_error(&wrong_post, 401, "invalid_client");
    assert!(!wrong_post.headers.contains_key("www-authenticate"));
    let anonymous = post_token(&server, None, &form).await;
    assert_error(&anonymous, 401, "invalid_client");
    let both = post_token(
        &server,
        Some(("app", CLIENT_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://api.test"),
            ("client_secret", CLIENT_SECRET),
        ],
    )
    .await;
    assert_error(&both, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_invalid_requests() {
    let server = server();
    let client = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.headers().clone(),
            resp.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let (status, _, body) = send(
        client
            .post(server.url("/oauth/token"))
            .basic_auth("app", Some(CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&audience=https%3A%2F%2Fapi.test&scope=read:a&scope=read:b"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "repeated parameter: {body}"
    );
    let (status, _, body) = send(
        client
            .post(server.url("/oauth/token"))
            .basic_auth("app", Some(CLIENT_SECRET))
            .json(&serde_json::json!({"grant_type": "client_credentials"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "JSON body: {body}"
    );
    let (status, headers, body) = send(
        client
            .post(server.url("/oauth/token"))
            .header("authorization", "Basic !!!not-base64")
            .form(&[
                ("grant_type", "client_credentials"),
                ("audience", "https://api.test"),
            ]),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = send(
        client
            .post(server.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&pad={}",
                "x".repeat(20_000)
            )),
    )
    .await;
    assert_eq!(status, 413, "oversized body");
    let (status, _, _) = send(client.get(server.url("/oauth/token"))).await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_documents_publish_public_keys_and_metadata() {
    let server = server();
    let jwks = get_json(&server, "/.well-known/jwks.json").await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0]["kid"].is_string());
    assert!(keys[0].get("d").is_none(), "no private parts in the JWKS");
    let meta = get_json(&server, "/.well-known/oauth-authorization-server").await;
    assert_eq!(meta["issuer"], "https://issuer.test/");
    assert_eq!(meta["token_endpoint"], "https://issuer.test/oauth/token");
    assert_eq!(
        meta["jwks_uri"],
        "https://issuer.test/.well-known/jwks.json"
    );
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    let health = get_json(&server, "/healthz").await;
    assert_eq!(health["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_supported_algorithm_signs_verifiable_tokens() {
    for alg in ["ES256", "EdDSA", "RS256", "PS256"] {
        let text = manifest("").replace(
            r#"keys = { source = "file", path = "{dir}/key.pem" }"#,
            &format!(r#"keys = {{ source = "file", path = "{{dir}}/key.pem", alg = "{alg}" }}"#),
        );
        let server = TestServer::start(&text).unwrap();
        let reply = app_token(&server, &[]).await;
        let header: Value = {
            use base64::Engine;
            let head = reply.body["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(head)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(header["alg"], alg);
        assert_eq!(header["typ"], "at+jwt");
        verified_claims(&server, &reply, "https://api.test").await;
    }
}
