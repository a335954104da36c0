//! Every way a token request can be refused, over real HTTP: each answer is an
//! RFC 6749 §5.2 error (status, JSON `error` and `error_description` within
//! the allowed characters, `Cache-Control: no-store`, a request id), 401
//! `invalid_client` carries `WWW-Authenticate: Basic` when Basic was tried,
//! and transport limits (16 KiB body, POST only) hold.

mod support;

use support::*;
use tokenhook_tests::{Reply, TestServer};

fn server() -> (Clients, TestServer) {
    let clients = Clients::new();
    let server = clients.start("", &[]);
    (clients, server)
}

const CC: (&str, &str) = ("grant_type", "client_credentials");
const AUD: (&str, &str) = ("audience", API);

fn assert_basic_challenge(reply: &Reply) {
    let challenge = reply
        .headers
        .get("www-authenticate")
        .unwrap_or_else(|| {
            panic!(
                "401 after Basic carries WWW-Authenticate: {:?}",
                reply.headers
            )
        })
        .to_str()
        .unwrap();
    assert!(
        challenge.to_ascii_lowercase().starts_with("basic"),
        "challenge: {challenge}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_grant_type_is_invalid_request() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_form(&server, &[AUD], &[("authorization", &auth)]).await;
    assert_oauth_error(&reply, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_grant_types_are_unsupported_grant_type() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    for grant in [
        "password",
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ] {
        let reply = post_form(
            &server,
            &[("grant_type", grant), AUD],
            &[("authorization", &auth)],
        )
        .await;
        assert_oauth_error(&reply, 400, "unsupported_grant_type");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_via_basic_is_invalid_client_with_a_basic_challenge() {
    let (clients, server) = server();
    let mut wrong = clients.app.clone();
    wrong.secret = tokenhook::clients::new_secret().0;
    let reply = token(&server, &wrong, &[]).await;
    assert_oauth_error(&reply, 401, "invalid_client");
    assert_basic_challenge(&reply);
    assert!(reply.body.get("access_token").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_via_post_is_invalid_client() {
    let (_, server) = server();
    let reply = post_form(
        &server,
        &[
            CC,
            AUD,
            ("client_id", "app"),
            ("client_secret", "not-the-secret"),
        ],
        &[],
    )
    .await;
    assert_oauth_error(&reply, 401, "invalid_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_argon2_secret_is_invalid_client() {
    let (_, server) = server();
    let reply = post_form(
        &server,
        &[
            CC,
            AUD,
            ("client_id", "legacy"),
            ("client_secret", "p@ss w%rd"),
        ],
        &[],
    )
    .await;
    assert_oauth_error(&reply, 401, "invalid_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_client_is_refused_exactly_like_a_wrong_secret() {
    let (clients, server) = server();
    let ghost = Client {
        id: "ghost",
        secret: clients.app.secret.clone(),
        hash: String::new(),
    };
    let unknown = token(&server, &ghost, &[]).await;
    assert_oauth_error(&unknown, 401, "invalid_client");
    assert_basic_challenge(&unknown);
    let mut wrong = clients.app.clone();
    wrong.secret.push('x');
    let wrong = token(&server, &wrong, &[]).await;
    assert_eq!(
        unknown.body, wrong.body,
        "no client enumeration through the error"
    );
    let unknown_post = post_form(
        &server,
        &[CC, AUD, ("client_id", "ghost"), ("client_secret", "x")],
        &[],
    )
    .await;
    assert_oauth_error(&unknown_post, 401, "invalid_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_credentials_is_invalid_client() {
    let (_, server) = server();
    assert_oauth_error(
        &post_form(&server, &[CC, AUD], &[]).await,
        401,
        "invalid_client",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_id_without_a_secret_is_invalid_client() {
    let (_, server) = server();
    let reply = post_form(&server, &[CC, AUD, ("client_id", "app")], &[]).await;
    assert_oauth_error(&reply, 401, "invalid_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_and_a_body_secret_at_once_is_invalid_request() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_form(
        &server,
        &[CC, AUD, ("client_secret", &clients.app.secret)],
        &[("authorization", &auth)],
    )
    .await;
    assert_oauth_error(&reply, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_with_another_client_id_in_the_body_is_invalid_request() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_form(
        &server,
        &[CC, AUD, ("client_id", "ops")],
        &[("authorization", &auth)],
    )
    .await;
    assert_oauth_error(&reply, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_parameter_is_invalid_request() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    for body in [
        "grant_type=client_credentials&audience=https%3A%2F%2Fapi.test&scope=read:a&scope=read:b",
        "grant_type=client_credentials&grant_type=client_credentials&audience=https%3A%2F%2Fapi.test",
        "grant_type=client_credentials&audience=https%3A%2F%2Fapi.test&audience=https%3A%2F%2Fapi.test",
    ] {
        let reply = post_raw(
            &server,
            &[
                ("authorization", &auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body,
        )
        .await;
        assert_oauth_error(&reply, 400, "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_body_is_invalid_request() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_raw(
        &server,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        r#"{"grant_type":"client_credentials","audience":"https://api.test"}"#,
    )
    .await;
    assert_oauth_error(&reply, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_without_a_content_type_is_invalid_request() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_raw(
        &server,
        &[("authorization", &auth)],
        "grant_type=client_credentials&audience=https%3A%2F%2Fapi.test",
    )
    .await;
    assert_oauth_error(&reply, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_basic_header_is_invalid_client_with_a_challenge() {
    let (_, server) = server();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for header in [
        "Basic !!!not-base64".to_string(),
        format!("Basic {}", b64("no-colon-here")),
        format!("Basic {}", b64(":secret-without-id")),
        "Basic".to_string(),
        "Bearer some.jwt.token".to_string(),
    ] {
        let reply = post_form(&server, &[CC, AUD], &[("authorization", &header)]).await;
        assert_oauth_error(&reply, 401, "invalid_client");
        assert_basic_challenge(&reply);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_with_forbidden_characters_is_invalid_scope() {
    let (clients, server) = server();
    for scope in ["read:a\\", "read:\"a\"", "read:é"] {
        let reply = token(&server, &clients.app, &[("scope", scope)]).await;
        assert_oauth_error(&reply, 400, "invalid_scope");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_16_kib_is_413() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let body = format!(
        "grant_type=client_credentials&audience=https%3A%2F%2Fapi.test&pad={}",
        "x".repeat(16 << 10)
    );
    let reply = post_raw(
        &server,
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        body,
    )
    .await;
    assert_eq!(reply.status, 413);
    request_id(&reply);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_of_exactly_16_kib_is_read_and_unknown_parameters_are_ignored() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let head = "grant_type=client_credentials&audience=https%3A%2F%2Fapi.test&pad=";
    let body = format!("{head}{}", "x".repeat((16 << 10) - head.len()));
    assert_eq!(body.len(), 16 << 10);
    let reply = post_raw(
        &server,
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_on_the_token_endpoint_is_405() {
    let (_, server) = server();
    let resp = reqwest::get(server.url("/oauth/token")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let allow = resp.headers()["allow"].to_str().unwrap().to_string();
    assert!(allow.contains("POST"), "Allow: {allow}");
    assert!(resp.headers().contains_key("x-request-id"));
    let put = reqwest::Client::new()
        .put(server.url("/oauth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_attempts_do_not_lock_the_right_secret_out() {
    let (clients, server) = server();
    let mut wrong = clients.app.clone();
    wrong.secret.push('x');
    for _ in 0..3 {
        assert_eq!(token(&server, &wrong, &[]).await.status, 401);
    }
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);
}

// RFC 6749 §5.2: "Values for the error_description parameter MUST NOT include
// characters outside the set %x20-21 / %x23-5B / %x5D-7E." The descriptions
// below quote what the client sent; they must stay within the set anyway.

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_grant_type_with_quotes_and_non_ascii_gets_an_rfc_6749_description() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_form(
        &server,
        &[("grant_type", "pass\"wörd\\"), AUD],
        &[("authorization", &auth)],
    )
    .await;
    assert_oauth_error(&reply, 400, "unsupported_grant_type");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_audience_with_quotes_gets_an_rfc_6749_description() {
    let (clients, server) = server();
    let reply = token_for(&server, &clients.app, "https://x.test/\"ü\\", &[]).await;
    assert_oauth_error(&reply, 400, "invalid_target");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_non_ascii_parameter_gets_an_rfc_6749_description() {
    let (clients, server) = server();
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_raw(
        &server,
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "grant_type=client_credentials&audience=https%3A%2F%2Fapi.test&%C3%BC%22=1&%C3%BC%22=2",
    )
    .await;
    assert_oauth_error(&reply, 400, "invalid_request");
}
