//! The example in docs/revocation.md: a resource server that verifies access
//! tokens locally (signature through the JWKS, with jwt-simple, not
//! tokenhook's code) and honours revocations by polling the issuer's
//! revocation feed. Tested against a running issuer in tests/tests/revocation.rs.

use std::collections::HashMap;

use serde_json::Value;

/// What a resource server keeps: the JWKS and the live revocations.
pub struct FeedVerifier {
    issuer_url: String,
    issuer: String,
    audience: String,
    /// This resource server's own client credentials (`introspect = true`).
    credentials: (String, String),
    jwks: Value,
    /// Revoked `jti` → the token's `exp` (forgotten after it).
    revoked: HashMap<String, u64>,
    /// (client, API or `None` for all) → tokens issued at or before this are revoked.
    cutoffs: HashMap<(String, Option<String>), u64>,
    /// The feed cursor: the `next` of the last answer.
    next: u64,
}

impl FeedVerifier {
    pub fn new(issuer_url: &str, issuer: &str, audience: &str, id: &str, secret: &str) -> Self {
        FeedVerifier {
            issuer_url: issuer_url.trim_end_matches('/').to_string(),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            credentials: (id.to_string(), secret.to_string()),
            jwks: Value::Null,
            revoked: HashMap::new(),
            cutoffs: HashMap::new(),
            next: 0,
        }
    }

    /// Fetch the JWKS and what was revoked since the last call. Call it every
    /// `poll_interval_ms` (the feed says how often the issuer itself polls).
    pub async fn refresh(&mut self, http: &reqwest::Client) -> Result<(), String> {
        let get = |path: String| http.get(format!("{}{path}", self.issuer_url));
        self.jwks = get("/.well-known/jwks.json".into())
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let feed: Value = get(format!("/oauth/revocations?since={}", self.next))
            .basic_auth(&self.credentials.0, Some(&self.credentials.1))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .error_for_status()
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        // Entries can repeat across answers; applying one twice changes nothing.
        for t in feed["tokens"].as_array().into_iter().flatten() {
            if let (Some(jti), Some(exp)) = (t["jti"].as_str(), t["exp"].as_u64()) {
                self.revoked.insert(jti.to_string(), exp);
            }
        }
        for c in feed["clients"].as_array().into_iter().flatten() {
            if let (Some(client), Some(before)) =
                (c["client_id"].as_str(), c["issued_before"].as_u64())
            {
                let key = (client.to_string(), c["api"].as_str().map(str::to_string));
                let entry = self.cutoffs.entry(key).or_insert(before);
                *entry = (*entry).max(before);
            }
        }
        self.next = feed["next"].as_u64().unwrap_or(self.next);
        let now = now();
        self.revoked.retain(|_, exp| *exp > now);
        Ok(())
    }

    /// The token's claims if it is well signed, for us, unexpired and not revoked.
    pub fn check(&self, token: &str) -> Result<Value, String> {
        let claims = crate::jose::verify(token, &self.jwks, &self.issuer, &self.audience)?;
        let jti = claims["jti"].as_str().ok_or("no jti")?;
        if self.revoked.contains_key(jti) {
            return Err("revoked".into());
        }
        let client = claims["client_id"].as_str().ok_or("no client_id")?;
        let iat = claims["iat"].as_u64().ok_or("no iat")?;
        for api in [None, Some(self.audience.clone())] {
            if self
                .cutoffs
                .get(&(client.to_string(), api))
                .is_some_and(|before| iat <= *before)
            {
                return Err("the client's tokens are revoked".into());
            }
        }
        Ok(claims)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
