//! Every signing algorithm, end to end: a manifest with a file key source of
//! ES256, EdDSA, RS256 or PS256 generates its key into the server's directory
//! (private mode), publishes the matching public JWK, and issues tokens whose
//! header names that algorithm and that jwt-simple verifies. A key file is
//! reused across restarts, and a key file of another algorithm is refused.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::*;
use tokenhook_tests::{TestServer, get_json, verified_claims};

fn with_key(clients: &Clients, alg: &str, path: &str) -> String {
    clients.manifest("").replace(
        tokenhook_tests::FILE_KEYS,
        &format!(r#"keys = {{ source = "file", path = "{path}", alg = "{alg}" }}"#),
    )
}

/// Issue a token with `alg` and check header, JWKS and verification.
async fn issues_verifiable_tokens(alg: &str, kty: &str) {
    let clients = Clients::new();
    let server = TestServer::start(&with_key(&clients, alg, "{dir}/keys/signing.pem")).unwrap();
    let key_file = server.dir.path().join("keys/signing.pem");
    let mode = std::fs::metadata(&key_file)
        .expect("the key was generated into the server's directory")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key file mode {mode:o} is private");
    assert!(
        std::fs::read_to_string(&key_file)
            .unwrap()
            .contains("-----BEGIN PRIVATE KEY-----")
    );

    let reply = token(&server, &clients.app, &[]).await;
    assert_eq!(reply.status, 200, "{alg}: {}", reply.body);
    let header = jwt_header(reply.body["access_token"].as_str().unwrap());
    assert_eq!(header["alg"], alg);
    assert_eq!(header["typ"], "at+jwt");

    let jwks = get_json(&server, "/.well-known/jwks.json").await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("{alg}: kid {} not in {jwks}", header["kid"]))
        .clone();
    assert_eq!(jwk["kty"], kty, "{jwk}");
    assert_eq!(jwk["alg"], alg, "{jwk}");
    assert_eq!(jwk["use"], "sig", "{jwk}");
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(
            jwk.get(private).is_none(),
            "{alg}: private `{private}` in {jwk}"
        );
    }

    let claims = verified_claims(&server, &reply, API).await;
    assert_eq!(claims["sub"], "app");
}

#[tokio::test(flavor = "multi_thread")]
async fn es256_tokens_verify() {
    issues_verifiable_tokens("ES256", "EC").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn eddsa_tokens_verify() {
    issues_verifiable_tokens("EdDSA", "OKP").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rs256_tokens_verify() {
    issues_verifiable_tokens("RS256", "RSA").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ps256_tokens_verify() {
    issues_verifiable_tokens("PS256", "RSA").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_reuses_its_key_file_and_old_tokens_still_verify() {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("key.pem").display().to_string();
    let clients = Clients::new();
    let manifest = with_key(&clients, "EdDSA", &path);

    let first = TestServer::start(&manifest).unwrap();
    let reply = token(&first, &clients.app, &[]).await;
    let kid = jwt_header(reply.body["access_token"].as_str().unwrap())["kid"].clone();
    let pem = std::fs::read(&path).unwrap();
    drop(first);

    let second = TestServer::start(&manifest).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        pem,
        "the key file is not rewritten"
    );
    let jwks = get_json(&second, "/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"][0]["kid"], kid);
    // A token from before the restart verifies against the new server's JWKS.
    verified_claims(&second, &reply, API).await;
    let again = token(&second, &clients.app, &[]).await;
    assert_eq!(
        jwt_header(again.body["access_token"].as_str().unwrap())["kid"],
        kid
    );
}

// A plain test: the harness reports a refused start from synchronous code.
#[test]
fn a_key_file_of_another_algorithm_is_refused_naming_keys_path() {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("key.pem").display().to_string();
    let clients = Clients::new();
    drop(TestServer::start(&with_key(&clients, "ES256", &path)).unwrap());
    let err = match TestServer::start(&with_key(&clients, "EdDSA", &path)) {
        Ok(_) => panic!("an ES256 key must not load as EdDSA"),
        Err(err) => err,
    };
    assert!(err.contains("manifest.toml"), "names the file: {err}");
    assert!(err.contains("keys.path"), "names the field: {err}");
    assert!(err.contains("key.pem"), "names the key file: {err}");
}

// A plain test: the harness reports a refused start from synchronous code.
#[test]
fn an_unsupported_algorithm_is_refused_naming_keys_alg() {
    let clients = Clients::new();
    for alg in ["HS256", "none", "ES384"] {
        let err = match TestServer::start(&with_key(&clients, alg, "{dir}/key.pem")) {
            Ok(_) => panic!("{alg} must be refused"),
            Err(err) => err,
        };
        assert!(err.contains("keys.alg"), "{alg}: {err}");
        assert!(err.contains(alg), "{alg}: {err}");
    }
}
