//! The hook chain: the manifest's hooks, loaded and ready, each with its
//! filters, capabilities, config and secrets, behind the small [`HookRunner`]
//! trait so the pipeline does not depend on how a hook executes.
//!
//! The trait and what a call returns ([`HookCall`], [`HookFailure`],
//! [`FailureKind`], [`Usage`]) are defined here, in the pipeline's terms: the
//! wasm engine implements the trait (`engine::runner` maps its own results
//! onto these), and the pipeline's unit tests implement it with scripted
//! fakes. [`load_chain`] is the constructor that loads wasm modules;
//! [`ChainHook::new`] builds a hook of the chain around any runner.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use tokenhook_sdk::wire::{
    Command, EVENT_PARTS, Event, LogLevel, LogLine, READS_EXPORT_PREFIX, Secrets, TokenState,
};

use crate::engine::{self, HookEngine};
use crate::manifest::{HookConfig, Manifest, ManifestError, SecretRef};
use crate::secrets::SecretStore;
use crate::secrets::hooks::HookSecrets;

/// Runs one hook on one event. The wasm engine implements it; so could any
/// other sandbox, and so do the pipeline's tests. The chain holds runners as
/// `Box<dyn HookRunner>`: one dynamic call per hook call.
pub trait HookRunner: Send + Sync {
    /// Run the hook on `event_json` (a contract-v1 event). A hook's fault is
    /// never a panic here: it is a [`HookFailure`] in the result.
    fn call(&self, event_json: &[u8]) -> HookCall;

    /// Give the hook its config once, if it asks for that (contract v1's
    /// optional `tokenhook_init`): what it prepared, for
    /// [`HookRunner::call_prepared`]. `Ok(None)`: it reads its config from
    /// each event instead. The default: it never asks.
    fn prepare(&self, _config_json: &[u8]) -> Result<Option<Prepared>, HookFailure> {
        Ok(None)
    }

    /// [`HookRunner::call`] for a hook whose config was prepared.
    fn call_prepared(&self, _prepared: &Prepared, event_json: &[u8]) -> HookCall {
        self.call(event_json)
    }
}

/// A hook's config as the runner prepared it ([`HookRunner::prepare`]);
/// opaque to the chain.
pub struct Prepared(pub Box<dyn std::any::Any + Send + Sync>);

/// What one hook call produced, whatever ran it: the hook's commands or a
/// classified failure, its log lines, and what it used.
#[derive(Debug)]
pub struct HookCall {
    pub outcome: Result<Vec<Command>, HookFailure>,
    /// The hook's own log lines, as many as the runner keeps.
    pub logs: Vec<LogLine>,
    /// Log lines beyond what the runner keeps, dropped.
    pub logs_dropped: usize,
    pub usage: Usage,
}

impl HookCall {
    /// A call that did not run: its secrets are unavailable, or it refused
    /// the config an `explain` run gave it.
    pub fn not_run(failure: HookFailure) -> HookCall {
        HookCall {
            outcome: Err(failure),
            logs: Vec::new(),
            logs_dropped: 0,
            usage: Usage::default(),
        }
    }
}

/// Resources one call used, reported beside the hook's limits. All zero for
/// a hook that did not run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub fuel_used: u64,
    /// Largest linear-memory size the call reached, in bytes.
    pub memory_peak: u64,
    pub wall_time: Duration,
}

/// Why a call produced no usable commands: its kind and a cause for the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HookFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl HookFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        HookFailure {
            kind,
            message: message.into(),
        }
    }
}

/// How a call failed. The names are stable: logs, metrics, captures and
/// `docs/hook-abi.md` use them (the engine's kinds of the same name map
/// onto these; its load-time kinds cannot happen in a call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The wall-clock deadline passed.
    Timeout,
    /// The fuel budget ran out.
    OutOfFuel,
    /// Linear memory would have grown past the cap.
    MemoryLimit,
    /// The stack cap was exceeded.
    StackOverflow,
    /// Any other trap (a panic, `unreachable`, out-of-bounds access...).
    Trap,
    /// The event is larger than the hook's input cap.
    InputTooLarge,
    /// The hook's output is larger than its output cap.
    OutputTooLarge,
    /// The output is not valid contract-v1 JSON, or lies outside memory.
    InvalidOutput,
    /// The hook returned `{"error": ...}`.
    HookError,
    /// The module does not keep the call contract (missing or mistyped exports).
    ContractMismatch,
    /// A host resource ran out (instance slots, table size).
    ResourceLimit,
    /// The hook was not run: its Secrets Manager secrets could not be read
    /// for longer than `hook_secret_max_stale`.
    SecretsUnavailable,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::StackOverflow => "stack_overflow",
            FailureKind::Trap => "trap",
            FailureKind::InputTooLarge => "input_too_large",
            FailureKind::OutputTooLarge => "output_too_large",
            FailureKind::InvalidOutput => "invalid_output",
            FailureKind::HookError => "hook_error",
            FailureKind::ContractMismatch => "contract_mismatch",
            FailureKind::ResourceLimit => "resource_limit",
            FailureKind::SecretsUnavailable => "secrets_unavailable",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One hook of the chain, as the manifest configured it.
pub struct ChainHook {
    pub config: HookConfig,
    pub runner: Box<dyn HookRunner>,
    /// `config.config` serialized once at load (`null` if none).
    config_json: Vec<u8>,
    /// What the hook prepared from `config_json` at load, if it prepares
    /// its config once ([`HookRunner::prepare`]).
    prepared: Option<Prepared>,
    /// The parts of the event this hook's module declares it reads.
    pub reads: EventParts,
    /// Its secrets, refreshed in the background (`secrets::hooks`).
    secrets: HookSecrets,
    /// Where sampled events go, if `capture` is configured.
    pub capture: Option<crate::capture::Capture>,
    /// Its metric handles, resolved once.
    pub metrics: crate::metrics::HookMetrics,
}

impl ChainHook {
    /// A hook of the chain: its manifest config, whatever runs it, the
    /// event parts it reads, its secrets and its capture. [`load_chain`]
    /// gives wasm modules; the pipeline's tests give scripted fakes. A hook
    /// that prepares its config once does so here; if it refuses the
    /// config, so does this.
    pub fn new(
        config: HookConfig,
        runner: Box<dyn HookRunner>,
        reads: EventParts,
        secrets: HookSecrets,
        capture: Option<crate::capture::Capture>,
    ) -> Result<ChainHook, HookFailure> {
        let config_json = serde_json::to_vec(config.config.as_ref().unwrap_or(&Value::Null))
            .expect("config serializes");
        let prepared = runner.prepare(&config_json)?;
        Ok(ChainHook {
            config,
            runner,
            config_json,
            prepared,
            reads,
            secrets,
            capture,
            metrics: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether this hook runs for this client and API.
    pub fn matches(&self, client_id: &str, api: &str) -> bool {
        self.filter_miss(client_id, api).is_none()
    }

    /// Which filter keeps this hook from running for this client and API
    /// (`match.apis` or `match.clients`); `None` when it runs.
    pub fn filter_miss(&self, client_id: &str, api: &str) -> Option<&'static str> {
        let filter = &self.config.filter;
        if !(filter.apis.is_empty() || filter.apis.iter().any(|a| a == api)) {
            Some("match.apis")
        } else if !(filter.clients.is_empty() || filter.clients.iter().any(|c| c == client_id)) {
            Some("match.clients")
        } else {
            None
        }
    }

    /// Run the hook on the request's event with the token as it stands and
    /// this hook's config and secrets filled in.
    pub fn call(&self, frame: &EventFrame, token: &TokenState) -> HookCall {
        self.call_with_config(frame, token, None)
    }

    /// [`ChainHook::call`], with another config (JSON text) in place of the
    /// manifest's if `config_override` is given (`explain`): a hook that
    /// prepares its config has it prepared for this call only.
    pub fn call_with_config(
        &self,
        frame: &EventFrame,
        token: &TokenState,
        config_override: Option<&[u8]>,
    ) -> HookCall {
        let secrets = match self.secrets.current() {
            Ok(secrets) => secrets,
            Err(failure) => return HookCall::not_run(failure),
        };
        let config_json = config_override.unwrap_or(&self.config_json);
        // The buffer holds this hook's secrets: it is dropped after the call,
        // so the next hook never sees them.
        let json = frame.event_json(self.reads, token, config_json, &secrets.values);
        let mut call = match (&self.prepared, config_override) {
            (None, _) => self.runner.call(&json),
            (Some(prepared), None) => self.runner.call_prepared(prepared, &json),
            (Some(_), Some(config)) => match self.runner.prepare(config) {
                Ok(Some(prepared)) => self.runner.call_prepared(&prepared, &json),
                Ok(None) => self.runner.call(&json),
                Err(failure) => HookCall::not_run(failure),
            },
        };
        // Redacted with the values this call was given, before anything reads it.
        secrets.redactor.redact_call(&mut call);
        call
    }

    /// The whole event as a capture records it: every part, the manifest's
    /// config, and never the hook's secrets.
    pub fn captured_event(&self, frame: &EventFrame, token: &TokenState) -> Vec<u8> {
        frame.event_json(
            EventParts::ALL,
            token,
            &self.config_json,
            &Secrets::default(),
        )
    }

    /// Text about this hook (a policy violation naming its commands) with
    /// its secret values blanked out. A call's logs, failure cause and deny
    /// descriptions are already redacted by [`ChainHook::call`], once, with
    /// the values that call was given: do not redact them again.
    pub fn redact(&self, message: &str) -> String {
        self.secrets.latest().redactor.redact(message)
    }
}

/// Which parts of the event a hook gets: all of them, unless its module
/// declares what it reads with a `tokenhook_reads=` export (see
/// `docs/hook-abi.md`). Bit `i` stands for [`EVENT_PARTS`]`[i]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventParts(u16);

impl EventParts {
    pub const ALL: EventParts = EventParts(u16::MAX);

    /// The parts a module's exports declare; [`EventParts::ALL`] without a
    /// declaration. An unknown part or a second declaration is an error: a
    /// hook must not silently get less than it expects.
    pub fn declared<'a>(exports: impl Iterator<Item = &'a str>) -> Result<EventParts, String> {
        let mut declared: Option<EventParts> = None;
        for list in exports.filter_map(|name| name.strip_prefix(READS_EXPORT_PREFIX)) {
            if declared.is_some() {
                return Err(format!("more than one `{READS_EXPORT_PREFIX}` export"));
            }
            let mut bits = 0u16;
            for part in list.split(',').filter(|p| !p.is_empty()) {
                let i = EVENT_PARTS.iter().position(|p| *p == part).ok_or_else(|| {
                    format!(
                        "`{READS_EXPORT_PREFIX}` names `{part}`, which is not one of {}",
                        EVENT_PARTS.join(", ")
                    )
                })?;
                bits |= 1 << i;
            }
            declared = Some(EventParts(bits));
        }
        Ok(declared.unwrap_or(EventParts::ALL))
    }

    fn has(self, part: &str) -> bool {
        EVENT_PARTS
            .iter()
            .position(|p| *p == part)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    /// The declared part names (all of them for [`EventParts::ALL`]).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        EVENT_PARTS.into_iter().filter(move |p| self.has(p))
    }
}

/// One request's event, serialized once and completed per hook.
///
/// Between the hooks of a request only the token, the hook's config and its
/// secrets change. The rest (client, API, scopes, context: most of the
/// bytes) is serialized once, one segment per part; each call copies the
/// segments of the parts the hook reads and appends the three that change.
/// With every part, the result is byte for byte what serializing the whole
/// [`Event`] gives (the SDK declares `token`, `config`, `secrets` last).
pub struct EventFrame {
    /// `{"version":…,"trigger":…,"request_id":…` then, per request-wide
    /// part, `,"name":value`.
    bytes: Vec<u8>,
    /// End of the always-sent members in `bytes`.
    always: usize,
    /// Per request-wide part (in [`EVENT_PARTS`] order), its segment.
    parts: Vec<(&'static str, std::ops::Range<usize>)>,
}

impl EventFrame {
    /// Serialize `event`'s request-wide fields; its `token`, `config` and
    /// `secrets` are ignored (each call supplies its own).
    pub fn new(event: Event) -> EventFrame {
        let mut bytes = Vec::with_capacity(1024);
        bytes.push(b'{');
        member(&mut bytes, "version", &event.version, false);
        member(&mut bytes, "trigger", &event.trigger, true);
        member(&mut bytes, "request_id", &event.request_id, true);
        let always = bytes.len();
        let mut parts = Vec::with_capacity(5);
        let mut part = |name: &'static str, value: &dyn ErasedField| {
            let start = bytes.len();
            bytes.extend_from_slice(b",\"");
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(b"\":");
            value.write(&mut bytes);
            parts.push((name, start..bytes.len()));
        };
        part("client", &event.client);
        part("api", &event.api);
        part("requested_scopes", &event.requested_scopes);
        part("granted_scopes", &event.granted_scopes);
        part("context", &event.context);
        EventFrame {
            bytes,
            always,
            parts,
        }
    }

    /// The event for one hook: the parts it reads, with `token`,
    /// `config_json` (valid JSON) and `secrets`.
    pub fn event_json(
        &self,
        reads: EventParts,
        token: &TokenState,
        config_json: &[u8],
        secrets: &Secrets,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + config_json.len() + 256);
        out.extend_from_slice(&self.bytes[..self.always]);
        for (name, range) in &self.parts {
            if reads.has(name) {
                out.extend_from_slice(&self.bytes[range.clone()]);
            }
        }
        if reads.has("token") {
            member(&mut out, "token", token, true);
        }
        if reads.has("config") {
            out.extend_from_slice(br#","config":"#);
            out.extend_from_slice(config_json);
        }
        if reads.has("secrets") {
            member(&mut out, "secrets", secrets, true);
        }
        out.push(b'}');
        out
    }
}

/// Append `"name":value`, after a comma if `comma`.
fn member(out: &mut Vec<u8>, name: &str, value: &impl serde::Serialize, comma: bool) {
    if comma {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    serde_json::to_writer(&mut *out, value).expect("event parts serialize");
}

/// A serializable value behind `dyn` (serde's trait is not object safe).
trait ErasedField {
    fn write(&self, out: &mut Vec<u8>);
}

impl<T: serde::Serialize> ErasedField for T {
    fn write(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self).expect("event parts serialize");
    }
}

/// Load every hook of the manifest: read, pin-check, compile, pre-link, and
/// resolve its secrets. The first failure names the hook and the cause.
pub async fn load_chain(
    manifest: &Manifest,
    engine: &HookEngine,
    store: Option<&Arc<dyn SecretStore>>,
) -> Result<Vec<ChainHook>, ManifestError> {
    let mut chain = Vec::with_capacity(manifest.hooks.len());
    for (i, config) in manifest.hooks.iter().enumerate() {
        let err = |field: &str, message: String| ManifestError {
            file: manifest.path.clone(),
            field: format!("hooks[{i}].{field}"),
            message: format!("hook `{}`: {message}", config.name),
        };
        let path = manifest.resolve(&config.module);
        let bytes = std::fs::read(&path)
            .map_err(|e| err("module", format!("cannot read {}: {e}", path.display())))?;
        let engine = engine.clone();
        let (sha, limits) = (config.sha256.clone(), config.limits);
        // The bundle's precompiled artifact, when it verifies (engine::precompiled).
        let (name, precompiled) = (config.name.clone(), manifest.precompiled(config));
        let module = tokio::task::spawn_blocking(move || {
            engine.load_hook(&name, &bytes, sha.as_deref(), limits, precompiled.as_ref())
        })
        .await
        .map_err(|e| err("module", format!("loading panicked: {e}")))?
        .map_err(|f: engine::HookFailure| {
            err("module", format!("{} refused: {f}", path.display()))
        })?;
        let reads = EventParts::declared(module.export_names()).map_err(|e| {
            let failure = engine::HookFailure::new(engine::FailureKind::ContractMismatch, e);
            err("module", format!("{} refused: {failure}", path.display()))
        })?;
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
            manifest.hook_secret_ttl,
            manifest.hook_secret_max_stale(),
        );
        let capture = match &config.capture {
            Some(settings) => Some(
                crate::capture::Capture::open(manifest, config, settings, limits)
                    .map_err(|(field, message)| err(&format!("capture.{field}"), message))?,
            ),
            None => None,
        };
        let hook = ChainHook::new(config.clone(), Box::new(module), reads, secrets, capture)
            .map_err(|f| err("config", format!("its config was refused: {f}")))?;
        chain.push(hook);
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
        let bytes = frame.event_json(EventParts::ALL, &event.token, &config_json, &event.secrets);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            serde_json::to_string(&event).unwrap()
        );

        // No config, no secrets, an empty token.
        event.config = Value::Null;
        event.secrets = Secrets::default();
        event.token = TokenState::default();
        let bytes = frame.event_json(EventParts::ALL, &event.token, b"null", &event.secrets);
        assert_eq!(bytes, serde_json::to_vec(&event).unwrap());
    }

    /// A hook that declares what it reads gets those parts (and version,
    /// trigger, request id); the rest read as defaults.
    #[test]
    fn declared_parts_only() {
        let event = EventBuilder::new()
            .client_metadata("tenant", "acme")
            .scopes(["read:orders"])
            .ip("203.0.113.42")
            .build();
        let frame = EventFrame::new(event.clone());
        let reads = EventParts::declared(
            [
                "memory",
                "tokenhook_reads=client,token,config,",
                "tokenhook_run",
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(
            reads.names().collect::<Vec<_>>(),
            ["client", "token", "config"]
        );
        let config = serde_json::json!({"namespace": "https://x/"});
        let bytes = frame.event_json(
            reads,
            &event.token,
            &serde_json::to_vec(&config).unwrap(),
            &event.secrets,
        );
        let seen: Value = serde_json::from_slice(&bytes).unwrap();
        let keys: Vec<&str> = seen
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "client",
                "config",
                "request_id",
                "token",
                "trigger",
                "version"
            ]
        );
        let parsed: Event = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed.client, event.client);
        assert_eq!(parsed.token, event.token);
        assert_eq!(parsed.config, config);
        assert_eq!(parsed.context, Default::default());
        assert!(parsed.api.scopes.is_empty());
    }

    #[test]
    fn reads_declarations_are_checked() {
        let declared = |names: &[&'static str]| EventParts::declared(names.iter().copied());
        assert_eq!(declared(&["memory", "tokenhook_run"]), Ok(EventParts::ALL));
        assert_eq!(
            declared(&["tokenhook_reads="]).unwrap().names().count(),
            0,
            "an empty list declares nothing is read"
        );
        let err = declared(&["tokenhook_reads=client,tokn"]).unwrap_err();
        assert!(err.contains("`tokn`"), "{err}");
        assert!(declared(&["tokenhook_reads=client", "tokenhook_reads=api"]).is_err());
    }
}
