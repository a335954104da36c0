//! The discovery documents over real HTTP: the JWKS publishes only public key
//! material with `kid`/`alg`/`use`, the RFC 8414 metadata describes exactly
//! what the token endpoint supports, and `/healthz` lists the hooks in order.

mod support;

use serde_json::{Value, json};
use support::*;
use tokenhook_tests::get_json;

/// JWK members that carry private key material (RFC 7518 §6).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

#[tokio::test(flavor = "multi_thread")]
async fn the_jwks_publishes_public_keys_with_kid_alg_and_use() {
    let server = Clients::new().start("", &[]);
    let resp = reqwest::get(server.url("/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let jwks: Value = resp.json().await.unwrap();
    let keys = jwks["keys"].as_array().expect("keys array");
    assert!(!keys.is_empty());
    for key in keys {
        assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()), "{key}");
        assert_eq!(key["alg"], "ES256", "{key}");
        assert_eq!(key["use"], "sig", "{key}");
        assert_eq!(key["kty"], "EC", "{key}");
        assert_eq!(key["crv"], "P-256", "{key}");
        for member in PRIVATE_MEMBERS {
            assert!(key.get(member).is_none(), "private member {member}: {key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_names_the_issuer_endpoints_grant_and_auth_methods() {
    let server = Clients::new().start("", &[]);
    let meta = get_json(&server, "/.well-known/oauth-authorization-server").await;
    assert_eq!(meta["issuer"], ISSUER);
    assert_eq!(meta["token_endpoint"], "https://issuer.test/oauth/token");
    assert_eq!(
        meta["jwks_uri"],
        "https://issuer.test/.well-known/jwks.json"
    );
    assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
    let mut methods: Vec<&str> = meta["token_endpoint_auth_methods_supported"]
        .as_array()
        .expect("auth methods")
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    methods.sort();
    assert_eq!(methods, ["client_secret_basic", "client_secret_post"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_lists_every_scope_the_apis_define() {
    let server = Clients::new().start("", &[]);
    let meta = get_json(&server, "/.well-known/oauth-authorization-server").await;
    let mut scopes: Vec<&str> = meta["scopes_supported"]
        .as_array()
        .expect("scopes_supported")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    scopes.sort();
    assert_eq!(
        scopes,
        [
            "admin:a", "read:a", "read:b", "read:o", "write:a", "write:o"
        ]
    );
}

/// RFC 8414 §2: `token_endpoint_auth_signing_alg_values_supported` lists the
/// algorithms accepted for the *client's* authentication JWT
/// (`private_key_jwt`, `client_secret_jwt`). This server accepts neither, so
/// advertising algorithms there tells clients something false.
#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_does_not_advertise_jwt_client_authentication_it_lacks() {
    let server = Clients::new().start("", &[]);
    let meta = get_json(&server, "/.well-known/oauth-authorization-server").await;
    let methods = &meta["token_endpoint_auth_methods_supported"];
    let jwt_auth = methods
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "private_key_jwt" || m == "client_secret_jwt");
    if !jwt_auth {
        let algs = meta.get("token_endpoint_auth_signing_alg_values_supported");
        assert!(
            algs.is_none_or(|a| a.as_array().is_some_and(Vec::is_empty)),
            "advertises client-assertion algorithms {algs:?} without a JWT client authentication method ({methods})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_is_ok_and_lists_the_hooks_in_manifest_order() {
    let hooks =
        hook("second-in-name", &in_dir("a.wat"), "") + &hook("first-in-name", &in_dir("b.wat"), "");
    let noop = tokenhook_tests::fixed_output_hook(r#"{"commands":[]}"#);
    let server = Clients::new().start(&hooks, &[("a.wat", &noop), ("b.wat", &noop)]);
    let resp = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let health: Value = resp.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["hooks"], json!(["second-in-name", "first-in-name"]));
}
