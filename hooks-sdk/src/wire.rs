//! The wire types of hook contract v1, shared by guests and the host.
//!
//! These are the only definitions of the JSON that crosses the sandbox boundary:
//! the host serializes an [`Event`] into the hook's memory and deserializes the
//! [`HookOutput`] it gets back. `docs/hook-abi.md` describes the same schema for
//! authors writing hooks in other languages.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The contract version this crate implements. A module marks it by exporting a
/// function named [`ABI_MARKER_EXPORT`].
pub const ABI_VERSION: u32 = 1;
/// The export that marks a module as implementing contract v1.
pub const ABI_MARKER_EXPORT: &str = "tokenhook_abi_v1";
/// Prefix of the version marker export: `tokenhook_abi_v<N>`.
pub const ABI_MARKER_PREFIX: &str = "tokenhook_abi_v";
/// `tokenhook_alloc(len: i32) -> i32`: reserve `len` bytes for the event.
pub const ALLOC_EXPORT: &str = "tokenhook_alloc";
/// `tokenhook_run(ptr: i32, len: i32) -> i64`: run the hook; returns `(out_ptr << 32) | out_len`.
pub const RUN_EXPORT: &str = "tokenhook_run";
/// Optional `tokenhook_init(ptr: i32, len: i32) -> i64`: called once when the
/// hook is loaded, with the hook's config JSON written as for `tokenhook_run`;
/// returns an output like `tokenhook_run`'s with no commands, or an error
/// (the config is refused and the hook does not load). The host keeps what
/// the call changed in linear memory and starts every call's fresh instance
/// from it, so a hook parses its config once, not per call. Only memory is
/// kept: prepared state must live there (statics, the heap), not in mutable
/// globals or tables. A hook with it gets no `config` in its events unless
/// it declares that it reads it.
pub const INIT_EXPORT: &str = "tokenhook_init";
/// The guest's linear memory export.
pub const MEMORY_EXPORT: &str = "memory";
/// The only import module the host provides.
pub const HOST_MODULE: &str = "tokenhook";
/// `tokenhook.log(level: i32, ptr: i32, len: i32)`: append one UTF-8 log line.
pub const LOG_IMPORT: &str = "log";
/// Optional export naming the parts of the event a hook reads:
/// `tokenhook_reads=<part>,<part>,...` (a function, never called; a trailing
/// comma is allowed). The host then sends only those parts (plus `version`,
/// `trigger` and `request_id`); the others take their defaults in the hook.
/// Without it a hook gets the whole event.
pub const READS_EXPORT_PREFIX: &str = "tokenhook_reads=";
/// The parts of the event a `tokenhook_reads=` export may name, in the order
/// the host writes them.
pub const EVENT_PARTS: [&str; 8] = [
    "client",
    "api",
    "requested_scopes",
    "granted_scopes",
    "context",
    "token",
    "config",
    "secrets",
];

/// What a hook sees: one token request, as the previous hooks left the token.
/// Missing fields deserialize to their defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// Contract version of this event ([`ABI_VERSION`]).
    pub version: u32,
    /// Which point of the flow the hook runs at.
    pub trigger: Trigger,
    /// Identifies the token request in the issuer's logs.
    pub request_id: String,
    /// The authenticated client.
    pub client: Client,
    /// The API (audience) the token is for.
    pub api: Api,
    /// Scopes the client asked for (empty: it asked for everything it was granted).
    #[serde(default)]
    pub requested_scopes: Vec<String>,
    /// Scopes the client was granted for this API.
    #[serde(default)]
    pub granted_scopes: Vec<String>,
    /// Where the request came from.
    #[serde(default)]
    pub context: RequestContext,
    /// The token so far: scopes and custom claims, after the previous hooks.
    /// (`token`, `config` and `secrets` are declared last: the host
    /// serializes the rest of an event once per request and appends these
    /// three per hook.)
    pub token: TokenState,
    /// This hook's own configuration from the manifest (`null` if none).
    #[serde(default)]
    pub config: Value,
    /// Only the secrets this hook was granted, by name.
    #[serde(default)]
    pub secrets: Secrets,
}

impl Default for Event {
    fn default() -> Self {
        Event {
            version: ABI_VERSION,
            trigger: Trigger::default(),
            request_id: String::new(),
            client: Client::default(),
            api: Api::default(),
            requested_scopes: Vec::new(),
            granted_scopes: Vec::new(),
            token: TokenState::default(),
            context: RequestContext::default(),
            config: Value::Null,
            secrets: Secrets::default(),
        }
    }
}

/// The flow a hook runs in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A client-credentials token request (machine to machine).
    #[default]
    ClientCredentials,
}

/// The client the token is issued to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The API (audience) a token is requested for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Api {
    /// The API identifier, which becomes the token's `aud`.
    pub identifier: String,
    /// Every scope the API defines.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The token as it stands: what the next hook sees and may change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenState {
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Custom claims only; the host's reserved claims are never here.
    #[serde(default)]
    pub claims: Map<String, Value>,
}

/// Facts about the transport the request came in on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Secret values by name. `Debug` never prints a value.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secrets(pub BTreeMap<String, String>);

impl Secrets {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// One change a hook asks for. Serialized externally tagged:
/// `{"add_scope": "read:x"}`, `{"set_claim": {"name": "...", "value": ...}}`, ...
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    AddScope(String),
    RemoveScope(String),
    SetClaim { name: String, value: Value },
    RemoveClaim(String),
    Deny(Deny),
}

/// A hook's refusal of the request; the client gets an OAuth error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    /// The OAuth error code returned to the client.
    #[serde(default)]
    pub error: DenyCode,
    /// Human-readable reason, returned as `error_description`.
    pub description: String,
}

/// The OAuth error codes a hook may deny with (RFC 6749 §5.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyCode {
    #[default]
    AccessDenied,
    InvalidScope,
    UnauthorizedClient,
}

impl DenyCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::AccessDenied => "access_denied",
            DenyCode::InvalidScope => "invalid_scope",
            DenyCode::UnauthorizedClient => "unauthorized_client",
        }
    }
}

/// What a hook returns: its commands, or an error that the host treats as the
/// hook's failure (handled by its `on_error`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HookOutput {
    Commands(Vec<Command>),
    Error(HookError),
}

/// A hook's own failure: not a deny, but "I could not decide".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookError {
    pub message: String,
}

impl HookError {
    pub fn new(message: impl Into<String>) -> Self {
        HookError {
            message: message.into(),
        }
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HookError {}

impl From<String> for HookError {
    fn from(message: String) -> Self {
        HookError { message }
    }
}

impl From<&str> for HookError {
    fn from(message: &str) -> Self {
        HookError::new(message)
    }
}

impl From<serde_json::Error> for HookError {
    fn from(err: serde_json::Error) -> Self {
        HookError::new(err.to_string())
    }
}

/// Severity of a hook's log line; the `level` argument of `tokenhook.log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl LogLevel {
    /// The level for a raw `tokenhook.log` argument; unknown values are `Info`.
    pub fn from_raw(raw: i32) -> LogLevel {
        match raw {
            0 => LogLevel::Debug,
            2 => LogLevel::Warn,
            3 => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

/// One line a hook logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_have_the_documented_shape() {
        let out = HookOutput::Commands(vec![
            Command::AddScope("read:a".into()),
            Command::RemoveScope("write:a".into()),
            Command::SetClaim {
                name: "https://x/t".into(),
                value: json!({"k": 1}),
            },
            Command::RemoveClaim("https://x/old".into()),
            Command::Deny(Deny {
                error: DenyCode::AccessDenied,
                description: "no".into(),
            }),
        ]);
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"commands": [
                {"add_scope": "read:a"},
                {"remove_scope": "write:a"},
                {"set_claim": {"name": "https://x/t", "value": {"k": 1}}},
                {"remove_claim": "https://x/old"},
                {"deny": {"error": "access_denied", "description": "no"}}
            ]})
        );
    }

    #[test]
    fn deny_code_defaults_to_access_denied() {
        let cmd: Command = serde_json::from_value(json!({"deny": {"description": "x"}})).unwrap();
        assert_eq!(
            cmd,
            Command::Deny(Deny {
                error: DenyCode::AccessDenied,
                description: "x".into()
            })
        );
    }

    #[test]
    fn unknown_commands_are_rejected() {
        assert!(serde_json::from_value::<Command>(json!({"grant_admin": true})).is_err());
        assert!(serde_json::from_value::<HookOutput>(json!({"commands": [], "extra": 1})).is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut s = Secrets::default();
        s.0.insert("key".into(), "hunter2".into());
        let shown = format!("{s:?}");
        assert!(shown.contains("key") && !shown.contains("hunter2"));
    }
}
