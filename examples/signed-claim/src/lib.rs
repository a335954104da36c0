//! A claim derived with a secret the hook was granted: lowercase hex
//! HMAC-SHA256(secret, client_id + "\n" + api identifier), so a resource
//! server holding the same secret can check the token was minted for this
//! client and API by this issuer's hook.
//!
//! Config (all optional): `{"secret": "signing_key", "claim": "https://example.com/client_sig"}`.
//! The secret value never appears in an error or a log line.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokenhook_sdk::prelude::*;
use tokenhook_sdk::view::Json;

/// Which secret and which claim, prepared once from the config when the hook
/// loads (a misspelt field stops the load, naming the hook).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_secret")]
    pub secret: String,
    #[serde(default = "default_claim")]
    pub claim: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            secret: default_secret(),
            claim: default_claim(),
        }
    }
}

fn default_secret() -> String {
    "signing_key".into()
}

fn default_claim() -> String {
    "https://example.com/client_sig".into()
}

pub fn config(config: Json<'_>) -> Result<Config, HookError> {
    if config.is_null() {
        return Ok(Config::default());
    }
    config.parse()
}

pub fn signed_claim(event: &Event, config: &Config) -> Result<Decision, HookError> {
    let key = event.secret(&config.secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .map_err(|_| HookError::new("unusable HMAC key"))?;
    mac.update(event.client.id.as_bytes());
    mac.update(b"\n");
    mac.update(event.api.identifier.as_bytes());
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let mut decision = Decision::new();
    decision.set_claim(config.claim.clone(), hex);
    Ok(decision)
}

// The owned `Event` (not the view): the secret is read through `Event::secret`,
// and this is the example of a prepared config on that form.
export_hook!(signed_claim, config: config, reads = [client, api, secrets]);

#[cfg(test)]
mod tests {
    use super::*;
    use tokenhook_sdk::testing::{self, EventBuilder};

    /// As the issuer runs it: the event's config prepared first.
    fn run(event: &Event) -> Result<Decision, HookError> {
        let config = testing::prepare(&event.config, config)?;
        signed_claim(event, &config)
    }

    #[test]
    fn matches_an_independently_computed_hmac() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"k3y", b"demo-client\nhttps://api.example.com", hashlib.sha256).hexdigest())'
        let expected = "1e44cca690d7a39e6e2847f05f9afbeca87d268e2c26aa22c4e3532214c927c6";
        let e = EventBuilder::new()
            .client_id("demo-client")
            .secret("signing_key", "k3y")
            .build();
        let d = run(&e).unwrap();
        assert_eq!(
            d.claim("https://example.com/client_sig"),
            Some(&json!(expected))
        );
    }

    #[test]
    fn names_a_missing_secret_without_revealing_values() {
        let e = EventBuilder::new().secret("other", "hunter2").build();
        let err = run(&e).unwrap_err();
        assert!(
            err.message.contains("signing_key") && !err.message.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn secret_and_claim_names_come_from_config() {
        let e = EventBuilder::new()
            .secret("k2", "x")
            .config(json!({"secret": "k2", "claim": "https://example.com/sig2"}))
            .build();
        assert!(run(&e).unwrap().claim("https://example.com/sig2").is_some());
    }

    #[test]
    fn a_misspelt_config_field_is_refused_when_prepared() {
        let err = testing::prepare(&json!({"secrett": "k2"}), config).unwrap_err();
        assert!(err.message.contains("secrett"), "{err}");
    }
}
