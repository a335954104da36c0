//! Signing keys: the key set the issuer signs with and publishes, and the
//! [`KeySource`] trait behind which a key store sits (a local file, AWS Secrets
//! Manager). Parsed keys are cached by the source; nothing is re-read per request.

pub mod file;
pub mod stored;

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaEncoding, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::signature::Signer;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::manifest::{KeysConfig, Manifest, ManifestError};
use crate::secrets::SecretStore;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported signing algorithm `{0}` (use ES256, RS256, PS256 or EdDSA)")]
    UnsupportedAlgorithm(String),
    #[error("{what}: not a usable PKCS#8 {alg} private key: {cause}")]
    BadKey {
        what: String,
        alg: String,
        cause: String,
    },
    #[error("{0}")]
    Io(String),
    #[error("key set unavailable: {0}")]
    Unavailable(String),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error(
        "{what}: key id `{kid}` is used by both `{first}` and `{second}`; every key needs its own kid (without `kid`, a key's id is its thumbprint, so the same key twice collides too)"
    )]
    DuplicateKid {
        what: String,
        kid: String,
        first: String,
        second: String,
    },
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); a signing key must be private: run `chmod 600 {path}`"
    )]
    Exposed { path: String, mode: u32 },
}

/// The algorithms tokens can be signed with.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, KeyError> {
    match name {
        "ES256" => Ok(Algorithm::ES256),
        "RS256" => Ok(Algorithm::RS256),
        "PS256" => Ok(Algorithm::PS256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(KeyError::UnsupportedAlgorithm(other.to_string())),
    }
}

pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        Algorithm::PS256 => "PS256",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// One private key, parsed once, with its public JWK and key id.
///
/// The signer is built once here, not per token: `jsonwebtoken::encode`
/// builds a fresh signer from the key bytes on every call (for ES256 it parses
/// the PKCS#8 key and re-derives the public key, for RS256/PS256 it parses and
/// validates the RSA key), which cost more CPU than the signature itself.
/// The header never changes either, so its base64url form is kept too; per
/// token only the claims are serialized, encoded and signed.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    signer: KeptSigner,
    /// `base64url(json(header))` of `{typ: at+jwt, alg, kid}`, as
    /// `jsonwebtoken::encode` writes it (the same `Header`, the same serde).
    header_b64: String,
    pub jwk: Jwk,
}

// The key set is shared by every request thread.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<SigningKey>();
};

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The parsed private key, ready to sign: the aws-lc-rs key pairs
/// jsonwebtoken's own aws-lc provider builds, built by the same calls on the
/// same key bytes (`EncodingKey::as_bytes`: PKCS#8 for EC and Ed25519, the
/// PKCS#1 key jsonwebtoken's PEM reader extracts for RSA), but kept.
///
/// Not jsonwebtoken's `signer_factory` output kept instead: it is a
/// `Box<dyn JwtSigner>` without `Send + Sync` bounds, so it cannot sit in a key
/// set shared across threads (and its RSA signer re-parses the key per
/// signature anyway). aws-lc-rs key pairs are `Send + Sync`. It implements
/// jsonwebtoken's `JwtSigner`, so it is a signer in jsonwebtoken's own terms.
enum KeptSigner {
    Es256(EcdsaKeyPair),
    /// RS256 or PS256: the padding is the algorithm.
    Rsa(RsaKeyPair, &'static dyn RsaEncoding, Algorithm),
    EdDsa(Ed25519KeyPair),
}

impl KeptSigner {
    fn new(alg: Algorithm, key: &EncodingKey) -> Result<Self, String> {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
        };
        let bytes = key.as_bytes();
        let rsa = |padding: &'static dyn RsaEncoding| {
            RsaKeyPair::from_der(bytes).map(|pair| KeptSigner::Rsa(pair, padding, alg))
        };
        match alg {
            Algorithm::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, bytes)
                .map(KeptSigner::Es256),
            Algorithm::RS256 => rsa(&RSA_PKCS1_SHA256),
            Algorithm::PS256 => rsa(&RSA_PSS_SHA256),
            Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8(bytes).map(KeptSigner::EdDsa),
            other => return Err(format!("unsupported algorithm {other:?}")),
        }
        .map_err(|e| e.to_string())
    }
}

impl Signer<Vec<u8>> for KeptSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, jsonwebtoken::signature::Error> {
        // aws-lc-rs ignores the rng argument (it draws its own randomness);
        // `SystemRandom` is zero-sized.
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            KeptSigner::Es256(pair) => pair
                .sign(&rng, msg)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(jsonwebtoken::signature::Error::from_source),
            KeptSigner::Rsa(pair, padding, _) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(*padding, &rng, msg, &mut sig)
                    .map_err(jsonwebtoken::signature::Error::from_source)?;
                Ok(sig)
            }
            KeptSigner::EdDsa(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for KeptSigner {
    fn algorithm(&self) -> Algorithm {
        match self {
            KeptSigner::Es256(_) => Algorithm::ES256,
            KeptSigner::Rsa(_, _, alg) => *alg,
            KeptSigner::EdDsa(_) => Algorithm::EdDSA,
        }
    }
}

impl SigningKey {
    /// Parse a PKCS#8 PEM private key. Without `kid`, the key id is the key's
    /// RFC 7638 JWK thumbprint, so it changes exactly when the key does.
    /// `what` names the key in errors (a file, a secret field).
    pub fn from_pkcs8_pem(
        pem: &str,
        alg: Algorithm,
        kid: Option<String>,
        what: &str,
    ) -> Result<Self, KeyError> {
        let bad = |cause: String| KeyError::BadKey {
            what: what.to_string(),
            alg: algorithm_name(alg).to_string(),
            cause,
        };
        if !pem.contains("-----BEGIN PRIVATE KEY-----") {
            return Err(bad(
                "expected a PEM block `BEGIN PRIVATE KEY` (PKCS#8); convert with `openssl pkcs8 -topk8 -nocrypt`".into(),
            ));
        }
        // The key bytes live only until the signer and the JWK are built
        // (`EncodingKey` zeroizes them on drop).
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            other => return Err(KeyError::UnsupportedAlgorithm(format!("{other:?}"))),
        }
        .map_err(|e| bad(e.to_string()))?;
        let signer = KeptSigner::new(alg, &encoding).map_err(bad)?;
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).map_err(|e| bad(e.to_string()))?;
        let kid = match kid {
            Some(kid) => kid,
            None => jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|e| bad(e.to_string()))?,
        };
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let mut header = Header::new(alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.clone());
        let header_json = serde_json::to_vec(&header).map_err(|e| bad(e.to_string()))?;
        let key = SigningKey {
            kid,
            alg,
            signer,
            header_b64: URL_SAFE_NO_PAD.encode(header_json),
            jwk,
        };
        // Prove the key signs now, not at the first token request.
        key.sign(&serde_json::json!({}))
            .map_err(|e| bad(e.to_string()))?;
        Ok(key)
    }

    /// A compact JWS of `claims` with header `{typ: at+jwt, alg, kid}`, the
    /// same bytes `jsonwebtoken::encode` writes: `base64url(header) "."
    /// base64url(json(claims))`, signed, `"." base64url(signature)`.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, KeyError> {
        let claims = serde_json::to_vec(claims).map_err(|e| KeyError::Signing(e.to_string()))?;
        // 342 characters: an RSA-2048 signature, the longest we make.
        let mut token = String::with_capacity(
            self.header_b64.len() + 2 + base64::encoded_len(claims.len(), false).unwrap_or(0) + 342,
        );
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature = self
            .signer
            .try_sign(token.as_bytes())
            .map_err(|e| KeyError::Signing(e.to_string()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// The keys in force. Only `active` signs. All are published: `next` so
/// verifiers know it before it signs, `retired` so tokens a retired key signed
/// keep verifying until they expire; the operator deletes a retired key once
/// the longest token lifetime has passed (docs/deploy.md).
#[derive(Debug)]
pub struct KeySet {
    pub active: SigningKey,
    pub next: Option<SigningKey>,
    /// Public keys of retired keys: published for verification, never used to sign.
    pub retired: Vec<Jwk>,
}

impl KeySet {
    pub fn single(active: SigningKey) -> Self {
        KeySet {
            active,
            next: None,
            retired: Vec::new(),
        }
    }

    /// Verify a token this issuer signed with any published key (the one
    /// its `kid` names, with that key's own algorithm, never the header's),
    /// for issuer `iss`, unexpired and already valid. Its claims, or why not.
    pub fn verify(
        &self,
        token: &str,
        iss: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        if header.typ.as_deref() != Some("at+jwt") {
            return Err("not an RFC 9068 access token (typ)".into());
        }
        let kid = header.kid.ok_or("no kid")?;
        let jwk = self
            .jwks()
            .keys
            .into_iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
            .ok_or("unknown kid")?;
        let alg = match &jwk.common.key_algorithm {
            Some(a) => jsonwebtoken::Algorithm::from_str(&a.to_string())
                .map_err(|e| format!("key algorithm: {e}"))?,
            None => return Err("key without algorithm".into()),
        };
        if header.alg != alg {
            return Err("algorithm does not match the key".into());
        }
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| format!("key: {e}"))?;
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_issuer(&[iss]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "jti"]);
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }

    pub fn jwks(&self) -> JwkSet {
        let mut keys = vec![self.active.jwk.clone()];
        keys.extend(self.next.iter().map(|k| k.jwk.clone()));
        keys.extend(self.retired.iter().cloned());
        JwkSet { keys }
    }
}

/// A key set as stored in a secret (and printed by
/// `tokenhook keys generate --format secretsmanager`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKeySet {
    pub active: StoredKey,
    #[serde(default)]
    pub next: Option<StoredKey>,
    #[serde(default)]
    pub retired: Vec<StoredKey>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default = "default_alg")]
    pub alg: String,
    pub private_key_pem: String,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The signing algorithm when a key file or stored key names none.
pub const DEFAULT_ALGORITHM: Algorithm = Algorithm::ES256;

fn default_alg() -> String {
    algorithm_name(DEFAULT_ALGORITHM).into()
}

impl StoredKeySet {
    /// Parse every key; `what` names the store in errors. Every key id must
    /// be unique across `active`, `next` and `retired`: a verifier picks the
    /// key by `kid`, so two keys with one id would make tokens of one fail
    /// (or a retired key shadow the active one). The error names both slots.
    pub fn into_key_set(self, what: &str) -> Result<KeySet, KeyError> {
        let parse = |k: StoredKey, slot: &str| {
            let alg = parse_algorithm(&k.alg)?;
            SigningKey::from_pkcs8_pem(&k.private_key_pem, alg, k.kid, &format!("{what} `{slot}`"))
        };
        let active = parse(self.active, "active")?;
        let next = self.next.map(|k| parse(k, "next")).transpose()?;
        let retired = self
            .retired
            .into_iter()
            .enumerate()
            .map(|(i, k)| parse(k, &format!("retired[{i}]")).map(|k| k.jwk))
            .collect::<Result<Vec<_>, _>>()?;
        let mut slots: Vec<(String, &str)> = vec![("active".into(), active.kid.as_str())];
        slots.extend(next.iter().map(|k| ("next".to_string(), k.kid.as_str())));
        slots.extend(retired.iter().enumerate().map(|(i, k)| {
            (
                format!("retired[{i}]"),
                k.common.key_id.as_deref().unwrap_or_default(),
            )
        }));
        // Key sets hold a handful of keys: the pairwise check is cheapest.
        for (i, (slot, kid)) in slots.iter().enumerate() {
            if let Some((other, _)) = slots[..i].iter().find(|(_, k)| k == kid) {
                return Err(KeyError::DuplicateKid {
                    what: what.to_string(),
                    kid: kid.to_string(),
                    first: other.clone(),
                    second: slot.clone(),
                });
            }
        }
        Ok(KeySet {
            active,
            next,
            retired,
        })
    }
}

pub type KeyFuture<'a> = Pin<Box<dyn Future<Output = Result<Arc<KeySet>, KeyError>> + Send + 'a>>;

/// Where signing keys come from. Implementations cache the parsed set; the
/// pipeline asks for it once per token.
pub trait KeySource: Send + Sync {
    /// The key set to sign with now.
    fn key_set(&self) -> KeyFuture<'_>;
    /// A short description for logs (never key material).
    fn describe(&self) -> String;
}

/// The key source a manifest's `keys` names, as [`crate::hooks::load_chain`]
/// builds its hooks: a PKCS#8 file (generated on first run; read on the
/// blocking pool) or a Secrets Manager key set (fetched once here, so a
/// missing or malformed set refuses the manifest). Errors name the field.
pub async fn from_manifest(
    manifest: &Manifest,
    secret_store: Option<&Arc<dyn SecretStore>>,
) -> Result<Arc<dyn KeySource>, ManifestError> {
    let err = |field: &str, message: String| ManifestError {
        file: manifest.path.clone(),
        field: field.to_string(),
        message,
    };
    match &manifest.keys {
        KeysConfig::File { path, alg } => {
            let alg = *alg;
            let path = manifest.resolve(std::path::Path::new(path));
            let source = tokio::task::spawn_blocking(move || {
                file::FileKeySource::open_or_generate(&path, alg)
            })
            .await
            .map_err(|e| err("keys", e.to_string()))?
            .map_err(|e| err("keys.path", e.to_string()))?;
            Ok(Arc::new(source))
        }
        KeysConfig::Secretsmanager {
            secret_id,
            cache_ttl,
            max_stale,
        } => {
            let Some(store) = secret_store.cloned() else {
                return Err(err(
                    "keys.secret_id",
                    format!(
                        "Secrets Manager key set `{secret_id}` needs AWS configuration, which this process does not have"
                    ),
                ));
            };
            let source =
                stored::StoredSecretKeySource::open(store, secret_id, *cache_ttl, *max_stale)
                    .await
                    .map_err(|e| err("keys.secret_id", e.to_string()))?;
            Ok(Arc::new(source))
        }
    }
}

/// A fresh PKCS#8 PEM private key for `alg`.
pub fn generate_pkcs8_pem(alg: Algorithm) -> Result<String, KeyError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    let failed =
        |e: aws_lc_rs::error::Unspecified| KeyError::Signing(format!("key generation failed: {e}"));
    let rng = SystemRandom::new();
    let der: Vec<u8> = match alg {
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 | Algorithm::PS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(failed)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair.as_der().map_err(failed)?;
            der.as_ref().to_vec()
        }
        other => return Err(KeyError::UnsupportedAlgorithm(format!("{other:?}"))),
    };
    Ok(pem_encode("PRIVATE KEY", &der))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every algorithm the issuer signs with.
    const SIGNING_ALGORITHMS: [Algorithm; 4] = [
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::RS256,
        Algorithm::PS256,
    ];

    #[test]
    fn every_algorithm_generates_signs_and_publishes() {
        for alg in SIGNING_ALGORITHMS {
            let pem = generate_pkcs8_pem(alg).unwrap();
            let key = SigningKey::from_pkcs8_pem(&pem, alg, None, "test").unwrap();
            assert_eq!(key.jwk.common.key_id.as_deref(), Some(key.kid.as_str()));
            let token = key.sign(&serde_json::json!({"sub": "x"})).unwrap();
            assert_eq!(token.split('.').count(), 3, "{alg:?}");
        }
    }

    /// The kept signer writes what `jsonwebtoken::encode` writes, token after
    /// token: the same header and claims bytes (the whole token where the
    /// signature is deterministic: RS256, EdDSA), and signatures that
    /// `jsonwebtoken::decode` accepts with the published key.
    #[test]
    fn kept_signer_tokens_match_jsonwebtoken_and_verify() {
        let claims = serde_json::json!({
            "iss": "https://auth.example.com/", "sub": "svc", "exp": 4_000_000_000u64,
            "scope": "a b", "https://example.com/t": "é<>&?/+",
        });
        for alg in SIGNING_ALGORITHMS {
            let pem = generate_pkcs8_pem(alg).unwrap();
            let key = SigningKey::from_pkcs8_pem(&pem, alg, Some("k1".into()), "test").unwrap();
            assert_eq!(key.signer.algorithm(), alg);
            let encoding = match alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
                _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
            }
            .unwrap();
            let mut header = Header::new(alg);
            header.typ = Some("at+jwt".into());
            header.kid = Some("k1".into());
            let reference = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&key.jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(alg);
            validation.set_issuer(&["https://auth.example.com/"]);
            // Two tokens from one key: the kept signer signs again.
            let tokens = [key.sign(&claims).unwrap(), key.sign(&claims).unwrap()];
            for token in &tokens {
                let (message, _) = token.rsplit_once('.').unwrap();
                let (reference_message, _) = reference.rsplit_once('.').unwrap();
                assert_eq!(message, reference_message, "{alg:?}");
                if matches!(alg, Algorithm::RS256 | Algorithm::EdDSA) {
                    assert_eq!(token, &reference, "{alg:?}");
                }
                let data = jsonwebtoken::decode::<serde_json::Value>(token, &decoding, &validation)
                    .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
                assert_eq!(data.claims, claims);
                assert_eq!(data.header.kid.as_deref(), Some("k1"));
                assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
            }
            if matches!(alg, Algorithm::ES256 | Algorithm::PS256) {
                assert_ne!(tokens[0], tokens[1], "{alg:?}: randomized signatures");
            }
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let pem = generate_pkcs8_pem(Algorithm::ES256).unwrap();
        let key = SigningKey::from_pkcs8_pem(&pem, Algorithm::ES256, None, "t").unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.kid), "{debug}");
        assert!(
            !debug.contains("signer") && !debug.contains("header"),
            "{debug}"
        );
    }

    #[test]
    fn kid_is_stable_for_a_key() {
        let pem = generate_pkcs8_pem(Algorithm::ES256).unwrap();
        let a = SigningKey::from_pkcs8_pem(&pem, Algorithm::ES256, None, "t").unwrap();
        let b = SigningKey::from_pkcs8_pem(&pem, Algorithm::ES256, None, "t").unwrap();
        assert_eq!(a.kid, b.kid);
    }

    fn stored(kid: Option<&str>, pem: &str) -> StoredKey {
        StoredKey {
            kid: kid.map(str::to_string),
            alg: "ES256".into(),
            private_key_pem: pem.to_string(),
        }
    }

    /// Two keys with one kid in a set: a verifier could pick the wrong one.
    #[test]
    fn key_ids_are_unique_across_the_slots() {
        let pems: Vec<String> = (0..3)
            .map(|_| generate_pkcs8_pem(Algorithm::ES256).unwrap())
            .collect();
        let cases = [
            // The same key in two slots has the same thumbprint.
            (
                StoredKeySet {
                    active: stored(None, &pems[0]),
                    next: None,
                    retired: vec![stored(None, &pems[1]), stored(None, &pems[0])],
                },
                ("active", "retired[1]"),
            ),
            // Different keys, one explicit kid.
            (
                StoredKeySet {
                    active: stored(Some("k1"), &pems[0]),
                    next: Some(stored(Some("k1"), &pems[1])),
                    retired: vec![],
                },
                ("active", "next"),
            ),
            (
                StoredKeySet {
                    active: stored(None, &pems[0]),
                    next: Some(stored(Some("old"), &pems[1])),
                    retired: vec![stored(Some("x"), &pems[2]), stored(Some("old"), &pems[0])],
                },
                ("next", "retired[1]"),
            ),
        ];
        for (set, (first, second)) in cases {
            let err = set.into_key_set("secret `keys`").unwrap_err().to_string();
            assert!(
                err.contains("secret `keys`")
                    && err.contains(&format!("both `{first}` and `{second}`")),
                "{err}"
            );
            assert!(!err.contains("BEGIN"), "{err}");
        }
        let fine = StoredKeySet {
            active: stored(None, &pems[0]),
            next: Some(stored(None, &pems[1])),
            retired: vec![stored(None, &pems[2])],
        };
        assert_eq!(fine.into_key_set("t").unwrap().jwks().keys.len(), 3);
    }

    #[test]
    fn wrong_key_type_names_the_key() {
        let pem = generate_pkcs8_pem(Algorithm::EdDSA).unwrap();
        let err =
            SigningKey::from_pkcs8_pem(&pem, Algorithm::ES256, None, "secret `k`").unwrap_err();
        assert!(err.to_string().contains("secret `k`"), "{err}");
    }
}
