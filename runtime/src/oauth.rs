//! The OAuth 2.0 shapes every front door shares: the token request the
//! pipeline receives, its success response (RFC 6749 §5.1) and its errors (§5.2).

use serde::Serialize;
use tokenhook_sdk::wire::RequestContext;

/// How the client authenticated, as the front door saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No credentials were presented.
    None,
    /// HTTP Basic (`client_secret_basic`).
    Basic { id: String, secret: String },
    /// Form fields (`client_secret_post`).
    Post { id: String, secret: String },
    /// More than one method at once: RFC 6749 §2.3 forbids it.
    Multiple,
    /// Already authenticated by the caller (a direct Lambda invoke, allowed by IAM).
    Trusted { id: String },
}

/// One client-credentials token request, whatever door it came through.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub request_id: String,
    pub grant_type: Option<String>,
    pub client: ClientAuth,
    /// The API: `audience`, or RFC 8707 `resource`.
    pub audience: Option<String>,
    /// Space-separated scopes, as sent.
    pub scope: Option<String>,
    pub context: RequestContext,
}

/// RFC 6749 §5.1.
#[derive(Clone, Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}

/// RFC 6749 §5.2 error codes (and `server_error`, RFC 6749 §4.1.2.1, for hook failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status for this error.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::AccessDenied => 403,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// An OAuth error response body (RFC 6749 §5.2).
#[derive(Clone, Debug, Serialize, thiserror::Error)]
#[error("{error:?}: {error_description}")]
pub struct OAuthError {
    pub error: ErrorCode,
    pub error_description: String,
}

impl OAuthError {
    /// An error with `description` cut down to the characters RFC 6749 §5.2
    /// allows (`%x20-21 / %x23-5B / %x5D-7E`): client input and hook text are
    /// echoed in descriptions, and must not break clients that rely on it.
    pub fn new(error: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            error,
            error_description: rfc6749_text(&description.into()),
        }
    }
}

/// Replace every character outside RFC 6749's `error_description` set: `"`
/// becomes `'`, `\` becomes `/`, anything else (control, non-ASCII) `?`.
fn rfc6749_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_keep_to_the_rfc_6749_character_set() {
        let err = OAuthError::new(
            ErrorCode::InvalidRequest,
            "grant_type `pass\"wörd\\` \n is not supported",
        );
        assert_eq!(
            err.error_description,
            "grant_type `pass'w?rd/` ? is not supported"
        );
        assert!(err.error_description.bytes().all(|b| b == 0x20
            || b == 0x21
            || (0x23..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)));
    }
}
