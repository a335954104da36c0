//! Client secrets: stored hashed, verified in constant time.
//!
//! Secrets tokenhook generates (`tokenhook secret new`, 256 random bits) are
//! stored as SHA-256: a slow hash adds nothing to a secret that cannot be
//! guessed, and costs tens of milliseconds per token. Operator-chosen secrets
//! are stored as argon2id; a successful verification is remembered, keyed by a
//! digest of the presented secret, so the hot path stays microseconds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};

/// A stored client secret hash.
#[derive(Clone, Debug)]
pub enum SecretHash {
    Sha256([u8; 32]),
    Argon2(String),
}

impl SecretHash {
    pub fn parse(text: &str) -> Result<SecretHash, String> {
        if let Some(hex) = text.strip_prefix("sha256:") {
            let mut out = [0u8; 32];
            hex::decode_to_slice(hex, &mut out)
                .map_err(|_| "`sha256:` must be followed by 64 hex digits".to_string())?;
            return Ok(SecretHash::Sha256(out));
        }
        if text.starts_with("$argon2id$") {
            PasswordHash::new(text).map_err(|e| format!("not a valid argon2id hash: {e}"))?;
            return Ok(SecretHash::Argon2(text.to_string()));
        }
        Err("must be `sha256:<hex>` (tokenhook secret new) or `$argon2id$...` (tokenhook secret hash); plain secrets are not accepted".into())
    }
}

/// A client as authentication and the grant check need it, from the
/// manifest or the store.
#[derive(Clone, Debug)]
pub struct KnownClient {
    pub id: String,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// May introspect tokens and read the revocation feed.
    pub introspect: bool,
    pub hash: SecretHash,
    /// API identifier → granted scopes.
    pub grants: HashMap<String, Vec<String>>,
}

impl KnownClient {
    /// From a store entry; the error names the client.
    pub fn from_store(entry: crate::store::ClientEntry) -> Result<KnownClient, (String, String)> {
        let c = entry.client;
        let hash = SecretHash::parse(&c.secret_hash).map_err(|e| (c.id.clone(), e))?;
        Ok(KnownClient {
            grants: entry
                .grants
                .into_iter()
                .map(|g| (g.api, g.scopes))
                .collect(),
            id: c.id,
            name: c.name,
            metadata: c.metadata,
            introspect: c.introspect,
            hash,
        })
    }
}

/// Verifies presented secrets; remembers argon2id successes.
#[derive(Default)]
pub struct SecretVerifier {
    /// Digests of (client, presented secret, stored hash) that verified.
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// Bound on remembered successes; the set is cleared when full.
const MAX_REMEMBERED: usize = 4096;

impl SecretVerifier {
    pub fn verify(&self, client_id: &str, presented: &str, stored: &SecretHash) -> bool {
        match stored {
            SecretHash::Sha256(expected) => {
                let actual = digest(&SHA256, presented.as_bytes());
                verify_slices_are_equal(actual.as_ref(), expected).is_ok()
            }
            SecretHash::Argon2(phc) => {
                let key = remember_key(client_id, presented, phc);
                if self.verified.lock().expect("verifier lock").contains(&key) {
                    return true;
                }
                let ok = PasswordHash::new(phc)
                    .map(|hash| {
                        Argon2::default()
                            .verify_password(presented.as_bytes(), &hash)
                            .is_ok()
                    })
                    .unwrap_or(false);
                if ok {
                    let mut set = self.verified.lock().expect("verifier lock");
                    if set.len() >= MAX_REMEMBERED {
                        set.clear();
                    }
                    set.insert(key);
                }
                ok
            }
        }
    }
}

fn remember_key(client_id: &str, presented: &str, phc: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(client_id.len() + presented.len() + phc.len() + 2);
    for part in [client_id, presented, phc] {
        input.extend_from_slice(part.as_bytes());
        input.push(0);
    }
    let d = digest(&SHA256, &input);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// argon2id PHC string for an operator-chosen secret.
pub fn hash_argon2(secret: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt_bytes).map_err(|e| e.to_string())?;
    let salt =
        argon2::password_hash::SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A new random client secret (256 bits, base64url) and its `sha256:` hash.
pub fn new_secret() -> (String, String) {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random");
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = format!("sha256:{}", hex::encode(digest(&SHA256, secret.as_bytes())));
    (secret, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_secrets_verify_exactly() {
        let (secret, hash) = new_secret();
        let stored = SecretHash::parse(&hash).unwrap();
        let v = SecretVerifier::default();
        assert!(v.verify("c", &secret, &stored));
        assert!(!v.verify("c", &format!("{secret}x"), &stored));
        assert!(!v.verify("c", "", &stored));
    }

    #[test]
    fn argon2_secrets_verify_and_are_remembered() {
        let stored = SecretHash::parse(&hash_argon2("demo-secret").unwrap()).unwrap();
        let v = SecretVerifier::default();
        assert!(v.verify("c", "demo-secret", &stored));
        assert!(v.verify("c", "demo-secret", &stored));
        assert!(!v.verify("c", "demo-secreT", &stored));
        assert_eq!(v.verified.lock().unwrap().len(), 1);
    }

    #[test]
    fn plain_secrets_are_refused() {
        assert!(SecretHash::parse("demo-secret").is_err());
        assert!(SecretHash::parse("sha256:abc").is_err());
    }
}
