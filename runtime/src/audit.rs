//! The audit log: exactly one line per token, revocation and introspection
//! request, whatever the outcome, including requests refused before they
//! could be parsed. Lines carry who asked (the presented client id and how
//! it authenticated), from where (IP), for what (audience), what was issued
//! (`jti`, `kid`), and both request ids: ours (`request_id`, always
//! generated here) and the caller's (`client_request_id`, bounded and
//! cleaned). Secrets, tokens and claim values are never logged.

use crate::oauth::{ClientAuth, OAuthError};

/// Longest client-supplied text kept in a log field (client ids, request ids).
pub const MAX_FIELD_CHARS: usize = 128;

/// Who asked, from where, under which ids: what every audit line carries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Caller<'a> {
    pub request_id: &'a str,
    pub client_request_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub auth: Option<&'a ClientAuth>,
}

impl Caller<'_> {
    fn client_id(&self) -> String {
        match self.auth {
            Some(ClientAuth::Basic { id, .. })
            | Some(ClientAuth::Post { id, .. })
            | Some(ClientAuth::Trusted { id }) => clean(id),
            _ => String::new(),
        }
    }

    fn auth_method(&self) -> &'static str {
        self.auth.map_or("unknown", auth_method)
    }
}

/// The RFC 7591 name of a client authentication method, `direct_invoke`
/// for a trusted Lambda invoke, `none` or `multiple` otherwise.
pub fn auth_method(auth: &ClientAuth) -> &'static str {
    match auth {
        ClientAuth::None => "none",
        ClientAuth::Basic { .. } => "client_secret_basic",
        ClientAuth::Post { .. } => "client_secret_post",
        ClientAuth::Multiple => "multiple",
        ClientAuth::Trusted { .. } => "direct_invoke",
    }
}

/// Client-supplied text made safe for a log line: at most
/// [`MAX_FIELD_CHARS`] characters, control characters replaced by `?`
/// (so it cannot forge lines in a text log).
pub fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_FIELD_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_FIELD_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A client-supplied request id as kept beside ours: up to 64 characters
/// of `A-Z a-z 0-9 - _ . : /`, others replaced by `_`; `None` if empty.
pub fn client_request_id(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let cleaned: String = text
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

pub struct Issued<'a> {
    pub audience: &'a str,
    pub scope: &'a str,
    pub jti: &'a str,
    pub kid: &'a str,
}

pub fn token_issued(caller: &Caller<'_>, issued: &Issued<'_>, elapsed_us: u64) {
    tracing::info!(
        request_id = caller.request_id,
        client_request_id = caller.client_request_id.unwrap_or(""),
        client_id = %caller.client_id(),
        auth_method = caller.auth_method(),
        ip = caller.ip.unwrap_or(""),
        audience = %clean(issued.audience),
        scope = issued.scope,
        jti = issued.jti,
        kid = issued.kid,
        elapsed_us,
        "token issued"
    );
}

/// `stage`: `parse` when the request could not be read, `issue` after.
pub fn token_refused(
    caller: &Caller<'_>,
    audience: Option<&str>,
    stage: &'static str,
    status: u16,
    error: &str,
    description: &str,
    elapsed_us: u64,
) {
    tracing::warn!(
        request_id = caller.request_id,
        client_request_id = caller.client_request_id.unwrap_or(""),
        client_id = %caller.client_id(),
        auth_method = caller.auth_method(),
        ip = caller.ip.unwrap_or(""),
        audience = %audience.map(clean).unwrap_or_default(),
        stage,
        status,
        error,
        description,
        elapsed_us,
        "token refused"
    );
}

/// One revocation (RFC 7009) or introspection (RFC 7662) request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    Revocation,
    Introspection,
}

/// The line for a revocation or introspection request. `outcome`: what was
/// done (`revoked`, `nothing to revoke`, `active`, `inactive`), or the
/// refusal; `stage`: `parse` or `answer`.
pub fn token_query(
    caller: &Caller<'_>,
    query: Query,
    outcome: Result<&str, &OAuthError>,
    stage: &'static str,
    jti: Option<&str>,
) {
    let (request_id, client_id, auth_method) =
        (caller.request_id, caller.client_id(), caller.auth_method());
    let client_request_id = caller.client_request_id.unwrap_or("");
    let ip = caller.ip.unwrap_or("");
    let jti = jti.unwrap_or("");
    match (query, outcome) {
        (Query::Revocation, Ok(outcome)) => tracing::info!(
            request_id, client_request_id, %client_id, auth_method, ip, outcome, jti,
            "token revocation done"
        ),
        (Query::Introspection, Ok(outcome)) => tracing::info!(
            request_id, client_request_id, %client_id, auth_method, ip, outcome, jti,
            "token introspected"
        ),
        (Query::Revocation, Err(err)) => tracing::warn!(
            request_id, client_request_id, %client_id, auth_method, ip, stage,
            status = err.status(), error = err.error.as_str(), description = %err.error_description,
            "token revocation refused"
        ),
        (Query::Introspection, Err(err)) => tracing::warn!(
            request_id, client_request_id, %client_id, auth_method, ip, stage,
            status = err.status(), error = err.error.as_str(), description = %err.error_description,
            "token introspection refused"
        ),
    }
}

/// A request refused before any route saw it (e.g. headers too large).
pub fn request_refused(caller: &Caller<'_>, path: &str, status: u16, reason: &str) {
    tracing::warn!(
        request_id = caller.request_id,
        client_request_id = caller.client_request_id.unwrap_or(""),
        ip = caller.ip.unwrap_or(""),
        path = %clean(path),
        status,
        reason,
        "request refused"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_bounded_and_cannot_break_lines() {
        assert_eq!(clean("a\nb\u{1b}c"), "a?b?c");
        let long = "x".repeat(1000);
        assert_eq!(clean(&long).chars().count(), MAX_FIELD_CHARS + 1);
    }

    #[test]
    fn client_request_ids_are_bounded_and_cleaned() {
        assert_eq!(client_request_id(b"abc-1.2"), Some("abc-1.2".into()));
        assert_eq!(
            client_request_id(b"a b\r\nc\"<x>"),
            Some("a_b__c__x_".into())
        );
        assert_eq!(client_request_id(&[b'a'; 500]).unwrap().len(), 64);
        assert_eq!(client_request_id(b"  "), None);
    }
}
