//! Token verification with jwt-simple, an independent JOSE implementation
//! (not the jsonwebtoken crate tokenhook signs with), against a JWKS.

use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::Value;

fn b64(field: &Value) -> Vec<u8> {
    let text = field.as_str().expect("JWK field is a string");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

/// Verify `token` against the key of `jwks` named by its `kid`, requiring
/// `typ: at+jwt`, the issuer and the audience. Returns the claims.
pub fn verify(token: &str, jwks: &Value, issuer: &str, audience: &str) -> Result<Value, String> {
    let meta = Token::decode_metadata(token).map_err(|e| e.to_string())?;
    if meta.signature_type() != Some("at+jwt") {
        return Err(format!(
            "typ is {:?}, expected at+jwt",
            meta.signature_type()
        ));
    }
    let kid = meta.key_id().ok_or("token has no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("JWKS has no keys")?
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from_strings(&[issuer])),
        allowed_audiences: Some(HashSet::from_strings(&[audience])),
        ..Default::default()
    };
    let claims: JWTClaims<Value> = match (meta.algorithm(), jwk["kty"].as_str()) {
        ("ES256", Some("EC")) => {
            let mut point = vec![0x04];
            point.extend(b64(&jwk["x"]));
            point.extend(b64(&jwk["y"]));
            ES256PublicKey::from_bytes(&point)
                .map_err(|e| e.to_string())?
                .verify_token(token, Some(options))
        }
        ("EdDSA", Some("OKP")) => Ed25519PublicKey::from_bytes(&b64(&jwk["x"]))
            .map_err(|e| e.to_string())?
            .verify_token(token, Some(options)),
        ("RS256", Some("RSA")) => RS256PublicKey::from_components(&b64(&jwk["n"]), &b64(&jwk["e"]))
            .map_err(|e| e.to_string())?
            .verify_token(token, Some(options)),
        ("PS256", Some("RSA")) => PS256PublicKey::from_components(&b64(&jwk["n"]), &b64(&jwk["e"]))
            .map_err(|e| e.to_string())?
            .verify_token(token, Some(options)),
        (alg, kty) => return Err(format!("unexpected alg {alg} for key type {kty:?}")),
    }
    .map_err(|e| e.to_string())?;
    // Re-read the full claim set (registered claims included) for assertions.
    let payload = token.split('.').nth(1).ok_or("not a JWS")?;
    let full: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let _ = claims;
    Ok(full)
}
