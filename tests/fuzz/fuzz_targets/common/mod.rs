//! Helpers shared by the fuzz targets (each target includes this module).
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokenhook::oauth::{ClientAuth, TokenRequest};
use tokenhook::revocation::TokenQuery;

/// Split an input written like an HTTP/1.1 message without its request line:
/// `Name: value` lines, an empty line, then the body. Lines that are not a
/// valid header are skipped (the transport would have refused them).
pub fn http_message(data: &[u8]) -> (HeaderMap, Bytes) {
    let (head, body) = match find(data, b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (headers, Bytes::copy_from_slice(body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// RFC 6749 §5.2: `error_description` keeps to `%x20-21 / %x23-5B / %x5D-7E`.
pub fn assert_rfc6749_text(text: &str) {
    assert!(
        text.bytes().all(|b| b == 0x20
            || b == 0x21
            || (0x23..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)),
        "error_description outside RFC 6749's character set: {text:?}"
    );
}

/// Check one front-door parse of `headers` + `body` against what the form and
/// the headers say, independently of the parser:
/// - an error's description is RFC 6749 text;
/// - a repeated form parameter, or a body that is not a form, is refused;
/// - the client authentication method matches what was presented;
/// - the token request and the revoke/introspect query agree on the client.
pub fn check_token_parsers(headers: &HeaderMap, body: &Bytes) {
    let request = tokenhook::doors::http::parse_token_request(headers, body, "fuzz".into(), None);
    let query = tokenhook::doors::http::parse_token_query(headers, body, "fuzz".into());
    if let Err(err) = &request {
        assert_rfc6749_text(&err.error_description);
    }
    if let Err(err) = &query {
        assert_rfc6749_text(&err.error_description);
    }

    let is_form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let params: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let repeated = names.windows(2).any(|w| w[0] == w[1]);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    if !is_form || repeated {
        assert!(
            request.is_err(),
            "accepted a non-form body or a repeated parameter"
        );
        assert!(
            query.is_err(),
            "accepted a non-form body or a repeated parameter"
        );
        return;
    }
    // The token request refuses everything the query refuses (and more: audience/resource).
    match (&request, &query) {
        (Ok(r), Ok(q)) => assert_eq!(r.client, q.client),
        (Ok(_), Err(e)) => panic!("query refused what the token request accepted: {e:?}"),
        _ => {}
    }
    if let Ok(query) = &query {
        check_client(
            headers,
            &query.client,
            param("client_id"),
            param("client_secret"),
        );
        check_query(query, param("token"));
    }
    if let Ok(request) = &request {
        check_request(
            request,
            param("grant_type"),
            param("scope"),
            param("audience"),
            param("resource"),
        );
    }
}

fn check_client(headers: &HeaderMap, client: &ClientAuth, id: Option<&str>, secret: Option<&str>) {
    let basic = headers.contains_key(http::header::AUTHORIZATION);
    match client {
        ClientAuth::None => assert!(!basic && !(id.is_some() && secret.is_some())),
        ClientAuth::Basic { id: basic_id, .. } => {
            assert!(basic, "Basic credentials without an Authorization header");
            assert!(!basic_id.is_empty(), "an empty client id from Basic");
            assert!(
                secret.is_none(),
                "Basic and client_secret together must be Multiple"
            );
            if let Some(id) = id {
                assert_eq!(id, basic_id, "client_id differs from the Basic id");
            }
        }
        ClientAuth::Post {
            id: post_id,
            secret: post_secret,
        } => {
            assert!(!basic, "client_secret_post despite an Authorization header");
            assert_eq!(Some(post_id.as_str()), id);
            assert_eq!(Some(post_secret.as_str()), secret);
        }
        ClientAuth::Multiple => assert!(basic && secret.is_some()),
        ClientAuth::Trusted { .. } => panic!("an HTTP request can never be trusted"),
    }
}

fn check_query(query: &TokenQuery, token: Option<&str>) {
    assert_eq!(query.token.as_deref(), token);
}

fn check_request(
    request: &TokenRequest,
    grant_type: Option<&str>,
    scope: Option<&str>,
    audience: Option<&str>,
    resource: Option<&str>,
) {
    assert_eq!(request.grant_type.as_deref(), grant_type);
    assert_eq!(request.scope.as_deref(), scope);
    if let (Some(a), Some(r)) = (audience, resource) {
        assert_eq!(
            a, r,
            "audience and resource differ but the request was accepted"
        );
    }
    assert_eq!(request.audience.as_deref(), audience.or(resource));
}
