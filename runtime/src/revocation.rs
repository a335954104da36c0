//! Revocation (RFC 7009), introspection (RFC 7662) and the revocation feed,
//! on top of the issuer's store view. Like the token pipeline, nothing here
//! knows which door a request came through.

use serde_json::{Value, json};

use crate::oauth::{ClientAuth, ErrorCode, OAuthError};
use crate::pipeline::Issuer;
use crate::store::view::{POLL_OVERLAP_MS, StoreView};
use crate::store::{Change, StoreError};

/// A request to the revocation or introspection endpoint.
#[derive(Clone, Debug)]
pub struct TokenQuery {
    pub request_id: String,
    pub client: ClientAuth,
    /// The `token` parameter.
    pub token: Option<String>,
}

impl Issuer {
    /// RFC 7009: the client revokes one of its own access tokens. A token
    /// that does not verify (malformed, foreign, expired) is answered with
    /// success, as §2.2 says: there is nothing left to revoke. Returns the
    /// revoked `jti`, or `None` when there was nothing to revoke; the front
    /// door writes the one audit line.
    pub async fn revoke(&self, req: &TokenQuery) -> Result<Option<String>, OAuthError> {
        let caller = self.authenticate(&req.client).await?;
        let token = required_token(req)?;
        let store = self.require_store()?;
        let keys = self.key_set().await?;
        let Ok(claims) = keys.verify(token, &self.manifest().issuer) else {
            return Ok(None);
        };
        let (Some(jti), Some(owner), Some(exp)) = (
            claims.get("jti").and_then(Value::as_str),
            claims.get("client_id").and_then(Value::as_str),
            claims.get("exp").and_then(Value::as_u64),
        ) else {
            return Ok(None);
        };
        if owner != caller.id {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the token was not issued to this client",
            ));
        }
        store
            .publish(Change::Token {
                jti: jti.to_string(),
                client_id: owner.to_string(),
                expires_at: exp,
            })
            .await
            .map_err(store_error)?;
        Ok(Some(jti.to_string()))
    }

    /// RFC 7662: `active` and the token's claims, for a client allowed to
    /// introspect; `{"active": false}` for a token that is revoked, expired,
    /// not yet valid, from another issuer, badly signed, or whose client is
    /// gone.
    pub async fn introspect(&self, req: &TokenQuery) -> Result<Value, OAuthError> {
        self.authenticate_introspector(&req.client).await?;
        let token = required_token(req)?;
        let inactive = json!({"active": false});
        let keys = self.key_set().await?;
        let Ok(mut claims) = keys.verify(token, &self.manifest().issuer) else {
            return Ok(inactive);
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let (Some(jti), Some(client_id), Some(aud), Some(iat)) = (
            text("jti"),
            text("client_id"),
            text("aud"),
            claims.get("iat").and_then(Value::as_u64),
        ) else {
            return Ok(inactive);
        };
        if let Some(store) = self.store()
            && store
                .is_revoked(&jti, &client_id, &aud, iat)
                .await
                .map_err(store_error)?
        {
            return Ok(inactive);
        }
        if self.find_client(&client_id).await?.is_none() {
            return Ok(inactive);
        }
        claims.insert("active".into(), Value::Bool(true));
        claims.insert("token_type".into(), json!("Bearer"));
        Ok(Value::Object(claims))
    }

    /// The revocation feed for resource servers that verify tokens locally:
    /// revoked tokens and client cut-offs written at or after `since_ms`.
    pub async fn revocation_feed(
        &self,
        client: &ClientAuth,
        since_ms: u64,
    ) -> Result<Value, OAuthError> {
        self.authenticate_introspector(client).await?;
        let store = self.require_store()?;
        let (tokens, clients) = store
            .revocations_since(since_ms)
            .await
            .map_err(store_error)?;
        let newest = tokens
            .iter()
            .map(|t| t.at_ms)
            .chain(clients.iter().map(|c| c.at_ms))
            .max();
        // Ask again from a little before the newest entry: a writer whose
        // clock lags may still add entries stamped there. Entries repeat;
        // applying one twice changes nothing.
        let next = newest.map_or(since_ms, |n| {
            n.saturating_sub(POLL_OVERLAP_MS).max(since_ms)
        });
        Ok(json!({
            "tokens": tokens,
            "clients": clients,
            "next": next,
            "poll_interval_ms": store.settings().poll_interval.as_millis() as u64,
        }))
    }

    async fn authenticate_introspector(&self, client: &ClientAuth) -> Result<(), OAuthError> {
        let caller = self.authenticate(client).await?;
        if !caller.introspect {
            return Err(OAuthError::new(
                ErrorCode::AccessDenied,
                format!("client `{}` may not introspect tokens", caller.id),
            ));
        }
        Ok(())
    }

    fn require_store(&self) -> Result<&StoreView, OAuthError> {
        self.store().ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidRequest,
                "this issuer has no store: revocation is not configured ([store] in the manifest)",
            )
        })
    }
}

fn required_token(req: &TokenQuery) -> Result<&str, OAuthError> {
    match req.token.as_deref() {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "the `token` parameter is required",
        )),
    }
}

fn store_error(error: StoreError) -> OAuthError {
    tracing::error!(%error, "store unavailable");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the issuer's store is unavailable; try again later",
    )
}
