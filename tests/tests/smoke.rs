//! The embedded default works: a token from the example manifest, verified
//! against the JWKS by an independent JOSE implementation.

use tokenhook_tests::{TestServer, get_json, jose, post_token};

#[tokio::test(flavor = "multi_thread")]
async fn example_manifest_issues_a_verifiable_token() {
    let text = tokenhook_tests::example_manifest();
    let server = TestServer::start(&text).unwrap();
    let reply = post_token(
        &server,
        Some(("demo-client", "demo-secret")),
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://api.example.com"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.body["token_type"], "Bearer");
    let jwks = get_json(&server, "/.well-known/jwks.json").await;
    let claims = jose::verify(
        reply.body["access_token"].as_str().unwrap(),
        &jwks,
        "http://127.0.0.1:8080/",
        "https://api.example.com",
    )
    .unwrap();
    assert_eq!(claims["sub"], "demo-client");
    assert_eq!(claims["client_id"], "demo-client");
    assert_eq!(claims["https://example.com/tenant"], "acme");
    // Free plan: the tenant-claims hook removed the write scope.
    assert_eq!(claims["scope"], "read:orders read:status");
    // signed-claim: HMAC-SHA256 of "demo-client\nhttps://api.example.com" with the dev key,
    // computed independently with Python's hmac module.
    assert_eq!(
        claims["https://example.com/client_sig"],
        "1237d9d37297539261133ceb41bac4658f4fd15cd20e2b8e35374020b64cc8a7"
    );

    // deny-list: the revoked client is refused with the hook's description.
    let denied = post_token(
        &server,
        Some(("revoked-client", "revoked-secret")),
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://api.example.com"),
        ],
    )
    .await;
    assert_eq!(denied.status, 403, "{:?}", denied.body);
    assert_eq!(denied.body["error"], "access_denied");
    assert_eq!(
        denied.body["error_description"],
        "access from this client or network is blocked"
    );
}
