//! The hook chain: the manifest's hooks, loaded and ready, each with its
//! filters, capabilities, config and secrets, behind the small [`HookRunner`]
//! trait so the pipeline does not depend on how a hook executes.

use std::sync::Arc;

use serde_json::Value;

use tokenhook_sdk::wire::{Event, LogLevel, Secrets, TokenState};

use crate::engine::{HookCall, HookEngine, HookFailure, HookModule};
use crate::hook_secrets::{self, HookSecrets};
use crate::manifest::{HookConfig, Manifest, ManifestError, SecretRef};
use crate::secrets::SecretStore;

/// Runs one hook on one event. The wasm engine implements it; so could any
/// other sandbox.
pub trait HookRunner: Send + Sync {
    fn call(&self, event_json: &[u8]) -> HookCall;
}

impl HookRunner for HookModule {
    fn call(&self, event_json: &[u8]) -> HookCall {
        HookModule::call(self, event_json)
    }
}

/// One hook of the chain, as the manifest configured it.
pub struct ChainHook {
    pub config: HookConfig,
    pub runner: Box<dyn HookRunner>,
    /// `config.config` serialized once at load (`null` if none).
    config_json: Vec<u8>,
    /// Its secrets, refreshed in the background (`hook_secrets`).
    secrets: HookSecrets,
}

impl ChainHook {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether this hook runs for this client and API.
    pub fn matches(&self, client_id: &str, api: &str) -> bool {
        let filter = &self.config.filter;
        (filter.apis.is_empty() || filter.apis.iter().any(|a| a == api))
            && (filter.clients.is_empty() || filter.clients.iter().any(|c| c == client_id))
    }

    /// Run the hook on the request's event with the token as it stands and
    /// this hook's config and secrets filled in.
    pub fn call(&self, frame: &EventFrame, token: &TokenState) -> HookCall {
        let secrets = match self.secrets.current() {
            Ok(secrets) => secrets,
            Err(failure) => return hook_secrets::not_run(failure),
        };
        // The buffer holds this hook's secrets: it is dropped after the call,
        // so the next hook never sees them.
        let json = frame.event_json(token, &self.config_json, &secrets.values);
        let mut call = self.runner.call(&json);
        // Redacted with the values this call was given, before anything reads it.
        secrets.redactor.redact_call(&mut call);
        call
    }

    /// Text about this hook (a policy violation naming its commands) with
    /// its secret values blanked out. A call's logs, failure cause and deny
    /// descriptions are already redacted by [`ChainHook::call`].
    pub fn redact(&self, message: &str) -> String {
        self.secrets.latest().redactor.redact(message)
    }
}

/// One request's event, serialized once and completed per hook.
///
/// Between the hooks of a request only the token, the hook's config and its
/// secrets change. The rest (client, API, scopes, context: most of the
/// bytes) is serialized once into `head`; each call appends the three
/// changing fields. The result is byte for byte what serializing the whole
/// [`Event`] gives (the SDK declares those three fields last).
pub struct EventFrame {
    /// The event without its last three fields and closing brace.
    head: Vec<u8>,
}

/// How a serialized [`Event`] ends when `token`, `config` and `secrets` are
/// at their defaults: what [`EventFrame::new`] cuts off.
const DEFAULT_TAIL: &[u8] = br#","token":{"scopes":[],"claims":{}},"config":null,"secrets":{}}"#;

impl EventFrame {
    /// Serialize `event`'s request-wide fields; its `token`, `config` and
    /// `secrets` are ignored (each call supplies its own).
    pub fn new(event: Event) -> EventFrame {
        let bare = Event {
            token: TokenState::default(),
            config: Value::Null,
            secrets: Secrets::default(),
            ..event
        };
        let mut head = serde_json::to_vec(&bare).expect("events serialize");
        assert!(
            head.ends_with(DEFAULT_TAIL),
            "the SDK's Event no longer ends with token, config, secrets"
        );
        head.truncate(head.len() - DEFAULT_TAIL.len());
        EventFrame { head }
    }

    /// The whole event for one hook. `config_json` must be valid JSON.
    pub fn event_json(&self, token: &TokenState, config_json: &[u8], secrets: &Secrets) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + config_json.len() + 256);
        out.extend_from_slice(&self.head);
        out.extend_from_slice(br#","token":"#);
        serde_json::to_writer(&mut out, token).expect("tokens serialize");
        out.extend_from_slice(br#","config":"#);
        out.extend_from_slice(config_json);
        out.extend_from_slice(br#","secrets":"#);
        serde_json::to_writer(&mut out, secrets).expect("secrets serialize");
        out.push(b'}');
        out
    }
}

/// Load every hook of the manifest: read, pin-check, compile, pre-link, and
/// resolve its secrets. The first failure names the hook and the cause.
pub async fn load_chain(
    manifest: &Manifest,
    checked: &crate::manifest::Checked,
    engine: &HookEngine,
    store: Option<&Arc<dyn SecretStore>>,
) -> Result<Vec<ChainHook>, ManifestError> {
    let mut chain = Vec::with_capacity(manifest.hooks.len());
    for (i, (config, limits)) in manifest.hooks.iter().zip(&checked.hook_limits).enumerate() {
        let err = |field: &str, message: String| ManifestError {
            file: manifest.path.clone(),
            field: format!("hooks[{i}].{field}"),
            message: format!("hook `{}`: {message}", config.name),
        };
        let path = manifest.resolve(&config.module);
        let bytes = std::fs::read(&path)
            .map_err(|e| err("module", format!("cannot read {}: {e}", path.display())))?;
        let engine = engine.clone();
        let (sha, limits) = (config.sha256.clone(), *limits);
        // The bundle's precompiled artifact, when it verifies (engine::precompiled).
        let (name, precompiled) = (config.name.clone(), manifest.precompiled(config));
        let module = tokio::task::spawn_blocking(move || {
            engine.load_hook(&name, &bytes, sha.as_deref(), limits, precompiled.as_ref())
        })
        .await
        .map_err(|e| err("module", format!("loading panicked: {e}")))?
        .map_err(|f: HookFailure| err("module", format!("{} refused: {f}", path.display())))?;
        let mut values = Secrets::default();
        for (name, source) in &config.secrets {
            let value = resolve_secret(manifest, source, store.map(|s| s.as_ref()))
                .await
                .map_err(|e| {
                    err(
                        &format!("secrets.{name}"),
                        format!("secret `{name}` cannot be read: {e}"),
                    )
                })?;
            values.0.insert(name.clone(), value);
        }
        let refreshed = config
            .secrets
            .iter()
            .filter_map(|(name, source)| match source {
                SecretRef::SecretsManager(id) => Some((name.clone(), id.clone())),
                _ => None,
            })
            .collect();
        let secrets = HookSecrets::new(
            &config.name,
            values,
            refreshed,
            store.cloned(),
            checked.hook_secret_ttl,
            checked.hook_secret_max_stale,
        );
        let config_json = serde_json::to_vec(config.config.as_ref().unwrap_or(&Value::Null))
            .expect("config serializes");
        chain.push(ChainHook {
            config: config.clone(),
            config_json,
            runner: Box::new(module),
            secrets,
        });
    }
    Ok(chain)
}

async fn resolve_secret(
    manifest: &Manifest,
    source: &SecretRef,
    store: Option<&dyn SecretStore>,
) -> Result<String, String> {
    match source {
        SecretRef::Env { env } => {
            std::env::var(env).map_err(|_| format!("environment variable `{env}` is not set"))
        }
        SecretRef::File { file } => {
            let path = manifest.resolve(file);
            std::fs::read_to_string(&path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        SecretRef::SecretsManager(id) => match store {
            Some(store) => store.get_secret_string(id).await,
            None => Err(format!(
                "Secrets Manager secret `{id}` needs AWS configuration, which this process does not have"
            )),
        },
    }
}

/// The tracing level for a hook's own log line.
pub fn log_hook_line(request_id: &str, hook: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Debug => tracing::debug!(request_id, hook, line = message, "hook log"),
        LogLevel::Info => tracing::info!(request_id, hook, line = message, "hook log"),
        LogLevel::Warn => tracing::warn!(request_id, hook, line = message, "hook log"),
        LogLevel::Error => tracing::error!(request_id, hook, line = message, "hook log"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokenhook_sdk::testing::EventBuilder;

    /// The frame must produce exactly what serializing the whole event does,
    /// whatever the token, config and secrets are.
    #[test]
    fn frame_bytes_equal_the_whole_event() {
        let mut event = EventBuilder::new()
            .client_id("c\"1")
            .client_name("Name \u{e9}")
            .client_metadata("tenant", "acme")
            .requested_scopes(["read:orders"])
            .scopes(["read:orders", "write:orders"])
            .claim("https://x/\"q", json!({"a": [1, 2.5, null]}))
            .ip("203.0.113.42")
            .user_agent("ua")
            .config(json!({"ignored": "by the frame"}))
            .build();
        event.secrets.0.insert("key".into(), "v\nal".into());
        let frame = EventFrame::new(event.clone());
        let config = json!({"namespace": "https://example.com/", "n": [1, {"x": true}]});
        let config_json = serde_json::to_vec(&config).unwrap();
        event.config = config;
        let bytes = frame.event_json(&event.token, &config_json, &event.secrets);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            serde_json::to_string(&event).unwrap()
        );

        // No config, no secrets, an empty token.
        event.config = Value::Null;
        event.secrets = Secrets::default();
        event.token = TokenState::default();
        let bytes = frame.event_json(&event.token, b"null", &event.secrets);
        assert_eq!(bytes, serde_json::to_vec(&event).unwrap());
    }
}
