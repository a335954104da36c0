//! The manifest: one TOML file describing issuer, keys, APIs, clients, grants
//! and the ordered hooks. It deserialises into typed values: durations,
//! sizes, the signing algorithm, client secret hashes and per-hook limits are
//! parsed (and range-checked) while the file is read, so unknown fields and
//! bad values are refused with the field's path. [`Manifest::validate`] then
//! checks what spans fields: references, duplicates, combinations. Every
//! error names the file, the field and what is wrong.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::clients::{GuardSettings, SecretHash};
use crate::engine::Limits;
use crate::policy::{RESERVED_CLAIMS, is_scope_token};
use crate::store::view::ViewSettings;
use crate::units::{parse_duration, show_count, show_size, text};

/// A manifest problem: which file, which field, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// Dotted path of the field, e.g. `hooks[1].limits.memory`; empty for
    /// whole-file problems.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: `{}`: {}",
                self.file.display(),
                self.field,
                self.message
            )
        }
    }
}

impl std::error::Error for ManifestError {}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The `iss` of every token, and the RFC 8414 issuer identifier.
    pub issuer: String,
    /// Token lifetime, e.g. "1h" (1 s to 24 h). Default 1 h.
    #[serde(default = "default_lifetime", deserialize_with = "token_lifetime")]
    pub token_lifetime: Duration,
    pub keys: KeysConfig,
    /// How long hook secrets from Secrets Manager are used before they are
    /// read again, e.g. "5m" (the default).
    #[serde(
        default = "default_hook_secret_ttl",
        deserialize_with = "text::duration"
    )]
    pub hook_secret_ttl: Duration,
    /// How long hook secrets from Secrets Manager keep serving while they
    /// cannot be read again, e.g. "1h" (the default). At least the TTL: use
    /// [`Manifest::hook_secret_max_stale`]. After that the hook fails with
    /// `secrets_unavailable` (its `on_error` decides).
    #[serde(
        default = "default_hook_secret_max_stale",
        deserialize_with = "text::duration"
    )]
    pub hook_secret_max_stale: Duration,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Where revocations (and, with `registry = "store"`, clients and grants)
    /// live. Default: SQLite beside a file key; none with a Secrets Manager
    /// key set (on Lambda, `TOKENHOOK_STORE_TABLE` names the DynamoDB table).
    #[serde(default)]
    pub store: Option<StoreConfig>,
    /// How client authentication defends itself under attack. Defaults below.
    #[serde(default)]
    pub client_auth: ClientAuthConfig,
    /// Direct Lambda invokes (a token for a client without its secret).
    /// Default: refused.
    #[serde(default)]
    pub direct_invoke: DirectInvokeConfig,
    /// The HTTP door: which proxies are trusted. Defaults below.
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub apis: Vec<ApiConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub grants: Vec<GrantConfig>,
    #[serde(default)]
    pub hooks: Vec<HookConfig>,
    /// Where the manifest was read from; relative paths resolve against its directory.
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_lifetime() -> Duration {
    Duration::from_secs(3600)
}
fn default_hook_secret_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_hook_secret_max_stale() -> Duration {
    crate::secrets::hooks::DEFAULT_MAX_STALE
}

/// Shortest and longest `token_lifetime`.
const LIFETIME_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 3600));

/// `token_lifetime` from the manifest or `TOKENHOOK_TOKEN_LIFETIME`.
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < LIFETIME_RANGE.0 || d > LIFETIME_RANGE.1 {
        return Err(format!("`{text}` is not between 1s and 24h"));
    }
    Ok(d)
}

fn token_lifetime<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = text::duration(d)?;
    if v < LIFETIME_RANGE.0 || v > LIFETIME_RANGE.1 {
        return Err(D::Error::custom(format!(
            "{} is not between 1s and 24h",
            humantime::format_duration(v)
        )));
    }
    Ok(v)
}

/// `keys`: where the signing keys come from. Read as one table (so that each
/// field's error carries its path), then checked as a whole.
#[derive(Clone, Debug)]
pub enum KeysConfig {
    /// A PKCS#8 PEM file, generated on first run if absent.
    File {
        path: String,
        /// ES256 (the default), RS256, PS256 or EdDSA.
        alg: Algorithm,
    },
    /// A JSON key set `{active, next, retired}` in AWS Secrets Manager.
    Secretsmanager {
        secret_id: String,
        /// How long a fetched key set is used before it is fetched again. Default 5 min.
        cache_ttl: Duration,
        /// How long a cached key set may keep serving when refreshes fail. Default 1 h.
        max_stale: Duration,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum KeySourceKind {
    File,
    Secretsmanager,
}

/// `keys` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysTable {
    source: KeySourceKind,
    #[serde(default, deserialize_with = "some_non_empty")]
    path: Option<String>,
    #[serde(default, deserialize_with = "some_algorithm")]
    alg: Option<Algorithm>,
    #[serde(default, deserialize_with = "some_non_empty")]
    secret_id: Option<String>,
    #[serde(default, deserialize_with = "some_duration")]
    cache_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "some_duration")]
    max_stale: Option<Duration>,
}

impl<'de> Deserialize<'de> for KeysConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = KeysTable::deserialize(d)?;
        let only = |present: &[(&str, bool)], source: &str| match present.iter().find(|(_, p)| *p) {
            Some((field, _)) => Err(D::Error::custom(format!(
                "`{field}` is not used with source = \"{source}\""
            ))),
            None => Ok(()),
        };
        match t.source {
            KeySourceKind::File => {
                only(
                    &[
                        ("secret_id", t.secret_id.is_some()),
                        ("cache_ttl", t.cache_ttl.is_some()),
                        ("max_stale", t.max_stale.is_some()),
                    ],
                    "file",
                )?;
                Ok(KeysConfig::File {
                    path: t.path.ok_or_else(|| D::Error::missing_field("path"))?,
                    alg: t.alg.unwrap_or(crate::keys::DEFAULT_ALGORITHM),
                })
            }
            KeySourceKind::Secretsmanager => {
                only(
                    &[("path", t.path.is_some()), ("alg", t.alg.is_some())],
                    "secretsmanager",
                )?;
                Ok(KeysConfig::Secretsmanager {
                    secret_id: t
                        .secret_id
                        .ok_or_else(|| D::Error::missing_field("secret_id"))?,
                    cache_ttl: t
                        .cache_ttl
                        .unwrap_or(crate::keys::stored::DEFAULT_CACHE_TTL),
                    max_stale: t
                        .max_stale
                        .unwrap_or(crate::keys::stored::DEFAULT_MAX_STALE),
                })
            }
        }
    }
}

fn some_algorithm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Algorithm>, D::Error> {
    let name = String::deserialize(d)?;
    crate::keys::parse_algorithm(&name)
        .map(Some)
        .map_err(D::Error::custom)
}

fn some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    text::duration(d).map(Some)
}

fn some_non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = String::deserialize(d)?;
    if v.trim().is_empty() {
        return Err(D::Error::custom("must not be empty"));
    }
    Ok(Some(v))
}

/// A value that must be at least 1.
fn at_least_one<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + From<u8>,
{
    let v = T::deserialize(d)?;
    if v < T::from(1) {
        return Err(D::Error::custom("must be at least 1"));
    }
    Ok(v)
}

/// Lowercase hex SHA-256 (64 digits, either case accepted).
fn sha256_hex<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    if !is_sha256_hex(&v) {
        return Err(D::Error::custom("must be 64 hex digits"));
    }
    Ok(v.to_ascii_lowercase())
}

/// Host rules applied after every hook; hooks cannot bypass them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Prefixes every custom claim name must start with. Default: collision-
    /// resistant names only (`https://`, `http://`, `urn:`; RFC 7519 §4.2).
    #[serde(default = "default_namespaces")]
    pub claim_namespaces: Vec<String>,
    /// Hooks may add only scopes the client was granted for the API. Default true.
    #[serde(default = "yes")]
    pub added_scopes_within_grant: bool,
    /// Most custom claims in one token. Default 32.
    #[serde(default = "default_max_claims")]
    pub max_claims: usize,
    /// Largest serialized custom-claims object, e.g. "4KiB" (the default).
    #[serde(default = "default_max_claims_size", deserialize_with = "text::size")]
    pub max_claims_size: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            claim_namespaces: default_namespaces(),
            added_scopes_within_grant: true,
            max_claims: default_max_claims(),
            max_claims_size: default_max_claims_size(),
        }
    }
}

fn default_namespaces() -> Vec<String> {
    vec!["https://".into(), "http://".into(), "urn:".into()]
}
fn yes() -> bool {
    true
}
fn default_max_claims() -> usize {
    32
}
fn default_max_claims_size() -> u64 {
    4 << 10
}

/// `[store]`: the shared state every issuer instance reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// SQLite: the database file (relative to the manifest). Default
    /// `tokenhook.sqlite` beside the file key.
    #[serde(default)]
    pub path: Option<String>,
    /// DynamoDB: the table name (region and credentials from the AWS environment).
    #[serde(default)]
    pub table: Option<String>,
    /// Where clients and grants live. Default `manifest`.
    #[serde(default)]
    pub registry: RegistrySource,
    /// How often the feed is polled (50 ms to 60 s): the bound on how long a
    /// revocation takes to reach this instance. Default "500ms".
    #[serde(default = "default_poll_interval", deserialize_with = "poll_interval")]
    pub poll_interval: Duration,
    /// How long a client read from the store is used before it is read
    /// again. Default "30s" (CLI changes arrive sooner, through the feed).
    #[serde(
        default = "default_client_cache_ttl",
        deserialize_with = "text::duration"
    )]
    pub client_cache_ttl: Duration,
    /// How long cached state keeps serving while the store cannot be read;
    /// then token requests fail with 503. Default "5m"; at least `poll_interval`.
    #[serde(
        default = "default_store_max_stale",
        deserialize_with = "text::duration"
    )]
    pub max_stale: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let view = ViewSettings::default();
        StoreConfig {
            kind: StoreKind::default(),
            path: None,
            table: None,
            registry: RegistrySource::default(),
            poll_interval: view.poll_interval,
            client_cache_ttl: view.client_cache_ttl,
            max_stale: view.max_stale,
        }
    }
}

impl StoreConfig {
    /// The view's timing settings.
    pub fn settings(&self) -> ViewSettings {
        ViewSettings {
            poll_interval: self.poll_interval,
            client_cache_ttl: self.client_cache_ttl,
            max_stale: self.max_stale,
        }
    }
}

fn default_poll_interval() -> Duration {
    ViewSettings::default().poll_interval
}
fn default_client_cache_ttl() -> Duration {
    ViewSettings::default().client_cache_ttl
}
fn default_store_max_stale() -> Duration {
    ViewSettings::default().max_stale
}

fn poll_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = text::duration(d)?;
    if v < Duration::from_millis(50) || v > Duration::from_secs(60) {
        return Err(D::Error::custom("must be between 50ms and 60s"));
    }
    Ok(v)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded SQLite file: the local default.
    #[default]
    Sqlite,
    /// One AWS DynamoDB table: for Lambda, where instances share no disk.
    Dynamodb,
    /// No store: no revocation, clients and grants from the manifest only.
    None,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrySource {
    /// `[[clients]]` and `[[grants]]` of this manifest.
    #[default]
    Manifest,
    /// The store, managed with `tokenhook clients` and `tokenhook grants`.
    Store,
}

/// `[client_auth]`: limits that keep a flood of wrong secrets from taking the
/// issuer down (docs/architecture.md, "Client authentication under attack").
/// Defaults are [`GuardSettings::default`]'s.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// argon2 verifications running at once. Default: half the CPUs, at
    /// least 1. Each allocates its hash's `m` (19 MiB for the default cost).
    #[serde(deserialize_with = "at_least_one")]
    pub hash_concurrency: usize,
    /// Requests that may wait for a hashing slot; one more gets 503
    /// `temporarily_unavailable`. Default 8.
    pub hash_queue: usize,
    /// Longest wait for a hashing slot before 503. Default "250ms".
    #[serde(deserialize_with = "text::duration")]
    pub hash_wait: Duration,
    /// Failed authentications one client id may have in a burst before it
    /// is throttled (429). Default 10.
    #[serde(deserialize_with = "at_least_one")]
    pub failure_burst: u32,
    /// One failure is forgiven per this interval. Default "6s" (10 a minute).
    #[serde(deserialize_with = "above_zero")]
    pub failure_refill: Duration,
    /// Client ids whose failures are tracked at once; further ids share one
    /// bucket. Default 10000 (about 1 MiB).
    #[serde(deserialize_with = "at_least_one")]
    pub max_tracked_clients: usize,
}

impl Default for ClientAuthConfig {
    fn default() -> Self {
        let d = GuardSettings::default();
        ClientAuthConfig {
            hash_concurrency: d.hash_concurrency,
            hash_queue: d.hash_queue,
            hash_wait: d.hash_wait,
            failure_burst: d.failure_burst,
            failure_refill: d.failure_refill,
            max_tracked_clients: d.max_tracked,
        }
    }
}

impl ClientAuthConfig {
    /// What [`crate::clients::ClientGuard`] runs with.
    pub fn settings(&self) -> GuardSettings {
        GuardSettings {
            hash_concurrency: self.hash_concurrency,
            hash_queue: self.hash_queue,
            hash_wait: self.hash_wait,
            failure_burst: self.failure_burst,
            failure_refill: self.failure_refill,
            max_tracked: self.max_tracked_clients,
        }
    }
}

fn above_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = text::duration(d)?;
    if v.is_zero() {
        return Err(D::Error::custom("must be above zero"));
    }
    Ok(v)
}

/// `[direct_invoke]`: a trusted caller (allowed by IAM to invoke the
/// function) asks for a token naming a client, without the client's secret.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectInvokeConfig {
    /// Every client may be named by a direct invoke. Default false: only
    /// clients with `direct_invoke = true` may; with neither, a direct
    /// invoke is refused.
    #[serde(default)]
    pub enabled: bool,
    /// Pass the event's `context.ip` to hooks as the request's IP. Default
    /// false: an event carrying `context.ip` is refused, since the address
    /// is the caller's word, not something tokenhook saw.
    #[serde(default)]
    pub trust_caller_ip: bool,
}

/// `[http]`: the HTTP door (local server, API Gateway, Function URL, ALB).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Proxies in front of tokenhook that append to `X-Forwarded-For` and
    /// are trusted (an ALB counts as one). 0 (the default): the door's own
    /// source address (the socket peer locally, API Gateway's / the Function
    /// URL's `sourceIp`; none under an ALB). N: the Nth entry from the right
    /// of `X-Forwarded-For`; with fewer entries, no IP. Overridden by
    /// `TOKENHOOK_TRUSTED_PROXY_HOPS`.
    #[serde(default)]
    pub trusted_proxy_hops: usize,
}

/// A `[store]` with its values parsed, or the default one.
#[derive(Clone, Debug)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Dynamodb { table: String },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// The API identifier: the token's `aud`, chosen by `audience` or `resource`.
    pub identifier: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `sha256:<hex>` (secrets from `tokenhook secret new`) or an argon2id PHC
    /// string (from `tokenhook secret hash`), with a bounded cost.
    #[serde(deserialize_with = "secret_hash")]
    pub secret_hash: SecretHash,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// May call `/oauth/introspect` and read `/oauth/revocations` (resource
    /// servers). Default false.
    #[serde(default)]
    pub introspect: bool,
    /// May be named by a direct Lambda invoke (no secret) even when
    /// `[direct_invoke] enabled` is false. Default false.
    #[serde(default)]
    pub direct_invoke: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    pub client: String,
    pub api: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail closed: the request fails with `server_error`.
    #[default]
    Deny,
    /// Drop this hook's changes, log the failure, go on.
    Skip,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub name: String,
    /// The wasm module, relative to the manifest's directory.
    pub module: PathBuf,
    /// Pin: hex SHA-256 of the module file (kept lowercase).
    #[serde(default, deserialize_with = "pin")]
    pub sha256: Option<String>,
    #[serde(default)]
    pub on_error: OnError,
    /// `enforce` (the default) or `shadow`: a shadow hook runs on live
    /// requests and logs what it would have done ("hook shadow"), but nothing
    /// it does reaches the token or the response, and `on_error` does not apply.
    #[serde(default)]
    pub mode: HookMode,
    /// Opt-in capture of this hook's events for `tokenhook replay`. Default none.
    #[serde(default)]
    pub capture: Option<CaptureConfig>,
    /// Run only for these APIs / clients (empty: all).
    #[serde(default, rename = "match")]
    pub filter: HookMatch,
    /// Per-call limits; each unset one is [`Limits::default`]'s, none may
    /// exceed [`Limits::CEILING`].
    #[serde(default, deserialize_with = "hook_limits")]
    pub limits: Limits,
    /// What the hook may change. Default: nothing but deny.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Free-form configuration handed to the hook as `event.config`.
    #[serde(default)]
    pub config: Option<Value>,
    /// Secrets this hook may read: the name it sees → where the value lives.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Native code for this hook, made ahead of time by `tokenhook bundle
    /// --target` (which writes this table; not meant to be written by hand).
    /// Default none: the hook is compiled when the manifest loads. Used only
    /// when it verifies, else the pinned module is compiled with a warning.
    #[serde(default)]
    pub precompiled: Option<PrecompiledConfig>,
}

/// How a hook's decisions count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookMode {
    /// Its changes apply, its denies refuse, its failures follow `on_error`.
    #[default]
    Enforce,
    /// It runs and is logged, with would-be changes, denies and failures,
    /// but the token is issued as if it had not run: a new hook (or version)
    /// tried on real traffic before it takes effect.
    Shadow,
}

/// `hooks[i].capture`: a sample of this hook's events, each with the hook's
/// outcome, written for `tokenhook replay`. Events are copied off the request
/// path through a bounded queue: when it is full they are dropped (and
/// counted), never waited for. The event's `secrets` are never captured.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Fraction of this hook's calls captured, above 0 and at most 1.
    #[serde(deserialize_with = "fraction")]
    pub sample: f64,
    /// JSON Lines file, relative to the manifest's directory, created 0600.
    /// On Lambda (`AWS_LAMBDA_RUNTIME_API` set) events go to the log instead,
    /// as "hook event captured" lines.
    #[serde(deserialize_with = "non_empty_path")]
    pub file: PathBuf,
    /// Fields removed from the event before it is written: JSON Pointers
    /// (RFC 6901), e.g. "/client/metadata/email", "/context/ip",
    /// "/token/claims/https:~1~1example.com~1email" (`~1` is `/`). A pointer
    /// under `/token/` is also removed from the recorded outcome. Default none.
    #[serde(default)]
    pub omit: Vec<JsonPointer>,
    /// When the file reaches this size it is renamed to `<file>.1` (replacing
    /// the previous one) and a new file is started, so captures take at most
    /// twice this on disk. Default "16MiB", at least "64KiB".
    #[serde(
        default = "default_capture_max_size",
        deserialize_with = "capture_max_size"
    )]
    pub max_size: u64,
    /// Events that may wait for the writer; more are dropped. Default 1024.
    #[serde(default = "default_capture_queue", deserialize_with = "at_least_one")]
    pub queue: usize,
}

/// A JSON Pointer (RFC 6901) to a field: `/` then at least one character.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct JsonPointer(pub String);

impl<'de> Deserialize<'de> for JsonPointer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pointer = String::deserialize(d)?;
        if !pointer.starts_with('/') || pointer.len() < 2 {
            return Err(D::Error::custom(format!(
                "`{pointer}` is not a JSON Pointer to a field, like \"/client/metadata/email\""
            )));
        }
        Ok(JsonPointer(pointer))
    }
}

fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(D::Error::custom(format!(
            "{v} must be above 0 and at most 1"
        )));
    }
    Ok(v)
}

fn non_empty_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let v = PathBuf::deserialize(d)?;
    if v.as_os_str().is_empty() {
        return Err(D::Error::custom("must not be empty"));
    }
    Ok(v)
}

fn default_capture_max_size() -> u64 {
    crate::capture::DEFAULT_MAX_SIZE
}
fn default_capture_queue() -> usize {
    crate::capture::DEFAULT_QUEUE
}

fn capture_max_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = text::size(d)?;
    if v < crate::capture::MIN_MAX_SIZE {
        return Err(D::Error::custom(format!(
            "must be at least {}",
            show_size(crate::capture::MIN_MAX_SIZE)
        )));
    }
    Ok(v)
}

/// `hooks[i].precompiled`: an artifact made by `tokenhook bundle --target`,
/// and what it must be to be used instead of compiling the module: these
/// bytes (`sha256`), made from the pinned module (`module_sha256` equal to the
/// hook's `sha256`), for this host (`target`), by an engine configured as the
/// issuer's (`engine`). Requires the hook's `sha256` pin.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrecompiledConfig {
    /// The artifact (a wasmtime `.cwasm`), relative to the manifest's directory.
    #[serde(deserialize_with = "non_empty_path")]
    pub artifact: PathBuf,
    /// Hex SHA-256 of the artifact file (kept lowercase).
    #[serde(deserialize_with = "sha256_hex")]
    pub sha256: String,
    /// Hex SHA-256 of the wasm module it was compiled from (kept lowercase).
    #[serde(deserialize_with = "sha256_hex")]
    pub module_sha256: String,
    /// The target triple it was compiled for, e.g. `aarch64-unknown-linux-gnu`.
    #[serde(deserialize_with = "target_triple")]
    pub target: String,
    /// The compatibility fingerprint (64 hex digits, kept lowercase) of the
    /// engine that made it; see `docs/architecture.md` (hook engine).
    #[serde(deserialize_with = "sha256_hex")]
    pub engine: String,
}

fn target_triple<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    crate::engine::precompiled::parse_target(&v).map_err(D::Error::custom)?;
    Ok(v)
}

fn pin<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = String::deserialize(d)?;
    if !is_sha256_hex(&v) {
        return Err(D::Error::custom(
            "must be 64 hex digits (see `tokenhook hook check`)",
        ));
    }
    Ok(Some(v.to_ascii_lowercase()))
}

fn secret_hash<'de, D: Deserializer<'de>>(d: D) -> Result<SecretHash, D::Error> {
    let v = String::deserialize(d)?;
    SecretHash::parse(&v).map_err(D::Error::custom)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookMatch {
    #[serde(default)]
    pub apis: Vec<String>,
    #[serde(default)]
    pub clients: Vec<String>,
}

/// `hooks[i].limits` as written: each limit optional, none above the
/// host's ceiling (checked as it is read, so the error names it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsTable {
    #[serde(default, deserialize_with = "limit_fuel")]
    fuel: Option<u64>,
    #[serde(default, deserialize_with = "limit_timeout")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "limit_memory")]
    memory: Option<u64>,
    #[serde(default, deserialize_with = "limit_stack")]
    stack: Option<u64>,
    #[serde(default, deserialize_with = "limit_table_elements")]
    table_elements: Option<u64>,
    #[serde(default, deserialize_with = "limit_max_input")]
    max_input: Option<u64>,
    #[serde(default, deserialize_with = "limit_max_output")]
    max_output: Option<u64>,
}

fn hook_limits<'de, D: Deserializer<'de>>(d: D) -> Result<Limits, D::Error> {
    let t = LimitsTable::deserialize(d)?;
    let l = Limits::default();
    Ok(Limits {
        fuel: t.fuel.unwrap_or(l.fuel),
        timeout: t.timeout.unwrap_or(l.timeout),
        memory: t.memory.unwrap_or(l.memory),
        stack: t.stack.unwrap_or(l.stack),
        table_elements: t.table_elements.unwrap_or(l.table_elements),
        max_input: t.max_input.unwrap_or(l.max_input),
        max_output: t.max_output.unwrap_or(l.max_output),
    })
}

/// `value` if within `ceiling`, else an error showing both with `show`.
fn capped<T: PartialOrd + Copy, E: serde::de::Error>(
    value: T,
    ceiling: T,
    show: impl Fn(T) -> String,
) -> Result<Option<T>, E> {
    if value > ceiling {
        return Err(E::custom(format!(
            "{} is above the host ceiling of {}",
            show(value),
            show(ceiling)
        )));
    }
    Ok(Some(value))
}

fn limit_fuel<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    capped(u64::deserialize(d)?, Limits::CEILING.fuel, show_count)
}
fn limit_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    capped(text::duration(d)?, Limits::CEILING.timeout, |v| {
        humantime::format_duration(v).to_string()
    })
}
fn limit_memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    capped(text::size(d)?, Limits::CEILING.memory, show_size)
}
fn limit_stack<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    capped(text::size(d)?, Limits::CEILING.stack, show_size)
}
fn limit_table_elements<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    capped(
        u64::deserialize(d)?,
        Limits::CEILING.table_elements,
        show_count,
    )
}
fn limit_max_input<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    capped(text::size(d)?, Limits::CEILING.max_input, show_size)
}
fn limit_max_output<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    capped(text::size(d)?, Limits::CEILING.max_output, show_size)
}

/// Least privilege for hooks: which claims and scopes a hook may touch.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Claim-name prefixes the hook may set or remove.
    #[serde(default)]
    pub claims: Vec<String>,
    /// Scopes the hook may add or remove; `prefix*` matches by prefix, `*` any.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Where a hook secret's value lives.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SecretRef {
    /// A Secrets Manager secret id or ARN.
    SecretsManager(String),
    /// An environment variable of the tokenhook process.
    Env { env: String },
    /// A file, relative to the manifest's directory (development).
    File { file: PathBuf },
}

/// Deployment settings that replace the manifest's own, so one manifest
/// serves every stage (on Lambda they come from the function's environment).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `TOKENHOOK_ISSUER`
    pub issuer: Option<String>,
    /// `TOKENHOOK_TOKEN_LIFETIME`: seconds, or a duration like "1h".
    pub token_lifetime: Option<String>,
    /// `TOKENHOOK_KEYSET_SECRET_ID`: sign with this Secrets Manager key set.
    pub keyset_secret_id: Option<String>,
    /// `TOKENHOOK_STORE_TABLE`: use this DynamoDB table as the store.
    pub store_table: Option<String>,
    /// `TOKENHOOK_TRUSTED_PROXY_HOPS`: `http.trusted_proxy_hops`.
    pub trusted_proxy_hops: Option<String>,
}

impl Overrides {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Overrides {
            issuer: var("TOKENHOOK_ISSUER"),
            token_lifetime: var("TOKENHOOK_TOKEN_LIFETIME").map(|v| {
                if v.chars().all(|c| c.is_ascii_digit()) {
                    format!("{v}s")
                } else {
                    v
                }
            }),
            keyset_secret_id: var("TOKENHOOK_KEYSET_SECRET_ID"),
            store_table: var("TOKENHOOK_STORE_TABLE"),
            trusted_proxy_hops: var("TOKENHOOK_TRUSTED_PROXY_HOPS"),
        }
    }

    fn apply(&self, manifest: &mut Manifest) -> Result<(), ManifestError> {
        if let Some(hops) = &self.trusted_proxy_hops {
            manifest.http.trusted_proxy_hops = hops.trim().parse().map_err(|_| {
                manifest.err(
                    "http.trusted_proxy_hops",
                    format!("TOKENHOOK_TRUSTED_PROXY_HOPS=`{hops}` is not a number"),
                )
            })?;
        }
        if let Some(table) = &self.store_table {
            let mut store = manifest.store.take().unwrap_or_default();
            store.kind = StoreKind::Dynamodb;
            store.table = Some(table.clone());
            store.path = None;
            manifest.store = Some(store);
        }
        if let Some(issuer) = &self.issuer {
            manifest.issuer = issuer.clone();
        }
        if let Some(lifetime) = &self.token_lifetime {
            manifest.token_lifetime = parse_lifetime(lifetime).map_err(|e| {
                manifest.err("token_lifetime", format!("TOKENHOOK_TOKEN_LIFETIME: {e}"))
            })?;
        }
        if let Some(secret_id) = &self.keyset_secret_id {
            let (cache_ttl, max_stale) = match &manifest.keys {
                KeysConfig::Secretsmanager {
                    cache_ttl,
                    max_stale,
                    ..
                } => (*cache_ttl, *max_stale),
                KeysConfig::File { .. } => (
                    crate::keys::stored::DEFAULT_CACHE_TTL,
                    crate::keys::stored::DEFAULT_MAX_STALE,
                ),
            };
            manifest.keys = KeysConfig::Secretsmanager {
                secret_id: secret_id.clone(),
                cache_ttl,
                max_stale,
            };
        }
        Ok(())
    }
}

impl Manifest {
    /// Read and parse a manifest file; then [`Manifest::validate`] it.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        Manifest::load_with(path, &Overrides::default())
    }

    /// [`Manifest::load`], with deployment `overrides` applied before validation.
    pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let mut manifest = Manifest::parse(&text, path)?;
        overrides.apply(&mut manifest)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Whether loading this manifest reads AWS Secrets Manager.
    pub fn needs_secret_store(&self) -> bool {
        matches!(self.keys, KeysConfig::Secretsmanager { .. })
            || self
                .hooks
                .iter()
                .flat_map(|h| h.secrets.values())
                .any(|s| matches!(s, SecretRef::SecretsManager(_)))
    }

    /// Deserialise `text` into typed values. An error names the field by its
    /// path (serde_path_to_error: `hooks[0].limits.memory`) and says where in
    /// the file it is (toml's span, as a line number).
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let error = |field: String, e: toml::de::Error| {
            let line = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1);
            let message = e.message().trim_end().replace('\n', " ");
            ManifestError {
                file: path.to_path_buf(),
                field,
                message: match line {
                    Some(line) => format!("{message} (line {line})"),
                    None => message,
                },
            }
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| error(String::new(), e))?;
        let mut manifest: Manifest =
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                let field = e.path().to_string();
                let field = if field == "." { String::new() } else { field };
                error(field, e.into_inner())
            })?;
        manifest.path = path.to_path_buf();
        Ok(manifest)
    }

    /// `hooks[i].precompiled` with its artifact path resolved.
    pub fn precompiled(&self, hook: &HookConfig) -> Option<crate::engine::Precompiled> {
        hook.precompiled
            .as_ref()
            .map(|p| crate::engine::Precompiled {
                artifact: self.resolve(&p.artifact),
                sha256: p.sha256.clone(),
                module_sha256: p.module_sha256.clone(),
                target: p.target.clone(),
                engine: p.engine.clone(),
            })
    }

    /// Resolve a path from the manifest against the manifest's directory; `~/`
    /// is the user's home.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if let Ok(rest) = path.strip_prefix("~")
            && let Some(home) = std::env::var_os("HOME")
        {
            return PathBuf::from(home).join(rest);
        }
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// An error about `field` of this manifest.
    pub fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.path.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// How long hook secrets keep serving while they cannot be read again:
    /// `hook_secret_max_stale`, at least `hook_secret_ttl`.
    pub fn hook_secret_max_stale(&self) -> Duration {
        self.hook_secret_max_stale.max(self.hook_secret_ttl)
    }

    /// Check what the types cannot: references, duplicates, combinations of
    /// fields. Values were parsed and range-checked by [`Manifest::parse`].
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !is_issuer_url(&self.issuer) {
            return Err(self.err(
                "issuer",
                "must be an http(s) URL with a host and no query or fragment (RFC 8414 §2), e.g. \"https://auth.example.com/\"",
            ));
        }
        if self.policy.claim_namespaces.iter().any(|n| n.is_empty()) {
            return Err(self.err("policy.claim_namespaces", "a namespace must not be empty"));
        }
        self.store_location()?;
        let registry = self.registry();
        if registry == RegistrySource::Store {
            for (field, empty) in [
                ("clients", self.clients.is_empty()),
                ("grants", self.grants.is_empty()),
            ] {
                if !empty {
                    return Err(self.err(
                        field,
                        "must be empty with `store.registry = \"store\"`: clients and grants live in the store (tokenhook clients / grants)",
                    ));
                }
            }
        }

        let mut api_ids = HashSet::new();
        for (i, api) in self.apis.iter().enumerate() {
            if api.identifier.is_empty() {
                return Err(self.err(format!("apis[{i}].identifier"), "must not be empty"));
            }
            if !api_ids.insert(api.identifier.as_str()) {
                return Err(self.err(
                    format!("apis[{i}].identifier"),
                    format!("API `{}` is defined twice", api.identifier),
                ));
            }
            let mut seen = HashSet::new();
            for (j, scope) in api.scopes.iter().enumerate() {
                if !is_scope_token(scope) {
                    return Err(self.err(format!("apis[{i}].scopes[{j}]"), format!("`{scope}` is not a valid scope (RFC 6749 §3.3: printable, no spaces, quotes or backslashes)")));
                }
                if !seen.insert(scope) {
                    return Err(self.err(
                        format!("apis[{i}].scopes[{j}]"),
                        format!("scope `{scope}` is listed twice"),
                    ));
                }
            }
        }
        let mut client_ids = HashSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            if client.id.is_empty() || client.id.contains(':') {
                return Err(self.err(
                    format!("clients[{i}].id"),
                    "must be non-empty and contain no `:`",
                ));
            }
            if !client_ids.insert(client.id.as_str()) {
                return Err(self.err(
                    format!("clients[{i}].id"),
                    format!("client `{}` is defined twice", client.id),
                ));
            }
        }
        let mut grant_keys = HashSet::new();
        for (i, grant) in self.grants.iter().enumerate() {
            if !client_ids.contains(grant.client.as_str()) {
                return Err(self.err(
                    format!("grants[{i}].client"),
                    format!("client `{}` is not defined in [[clients]]", grant.client),
                ));
            }
            let Some(api) = self.api(&grant.api) else {
                return Err(self.err(
                    format!("grants[{i}].api"),
                    format!("API `{}` is not defined in [[apis]]", grant.api),
                ));
            };
            if !grant_keys.insert((grant.client.as_str(), grant.api.as_str())) {
                return Err(self.err(
                    format!("grants[{i}]"),
                    format!(
                        "client `{}` already has a grant for `{}`",
                        grant.client, grant.api
                    ),
                ));
            }
            for (j, scope) in grant.scopes.iter().enumerate() {
                if !api.scopes.contains(scope) {
                    return Err(self.err(
                        format!("grants[{i}].scopes[{j}]"),
                        format!("scope `{scope}` is not defined by API `{}`", api.identifier),
                    ));
                }
            }
        }
        let mut hook_names = HashSet::new();
        for (i, hook) in self.hooks.iter().enumerate() {
            let at = |field: &str| format!("hooks[{i}].{field}");
            if hook.name.is_empty()
                || !hook
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(self.err(
                    at("name"),
                    "must be non-empty: letters, digits, `-`, `_`, `.`",
                ));
            }
            if !hook_names.insert(hook.name.as_str()) {
                return Err(self.err(at("name"), format!("hook `{}` is defined twice", hook.name)));
            }
            if hook.precompiled.is_some() && hook.sha256.is_none() {
                return Err(self.err(
                    at("precompiled"),
                    "needs the hook's `sha256` pin: native code is used only when made from the pinned module",
                ));
            }
            for (j, api) in hook.filter.apis.iter().enumerate() {
                if !api_ids.contains(api.as_str()) {
                    return Err(self.err(
                        at(&format!("match.apis[{j}]")),
                        format!("API `{api}` is not defined in [[apis]]"),
                    ));
                }
            }
            for (j, client) in hook.filter.clients.iter().enumerate() {
                if registry == RegistrySource::Manifest && !client_ids.contains(client.as_str()) {
                    return Err(self.err(
                        at(&format!("match.clients[{j}]")),
                        format!("client `{client}` is not defined in [[clients]]"),
                    ));
                }
            }
            for (j, prefix) in hook.capabilities.claims.iter().enumerate() {
                if prefix.is_empty() || RESERVED_CLAIMS.contains(&prefix.as_str()) {
                    return Err(self.err(
                        at(&format!("capabilities.claims[{j}]")),
                        format!("`{prefix}` cannot be granted: empty or a reserved claim"),
                    ));
                }
            }
            for (j, secret) in hook.secrets.iter().enumerate() {
                if let (name, SecretRef::SecretsManager(id) | SecretRef::Env { env: id }) = secret
                    && id.is_empty()
                {
                    return Err(self.err(
                        at(&format!("secrets.{name}")),
                        format!("secret #{j} names no source"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `http.trusted_proxy_hops`, default 0.
    pub fn trusted_proxy_hops(&self) -> usize {
        self.http.trusted_proxy_hops
    }

    /// Where clients and grants live.
    pub fn registry(&self) -> RegistrySource {
        self.store.as_ref().map(|s| s.registry).unwrap_or_default()
    }

    /// The store this manifest uses, with its settings; `None` without one.
    /// [`Manifest::validate`] has refused the combinations that name none.
    pub fn store_location(&self) -> Result<Option<(StoreLocation, ViewSettings)>, ManifestError> {
        let beside_key = || match &self.keys {
            KeysConfig::File { path, .. } => Some(
                self.resolve(Path::new(path))
                    .with_file_name("tokenhook.sqlite"),
            ),
            KeysConfig::Secretsmanager { .. } => None,
        };
        let Some(cfg) = &self.store else {
            // Default: SQLite beside a file key; none beside a Secrets Manager key set.
            return Ok(beside_key().map(|db| (StoreLocation::Sqlite(db), ViewSettings::default())));
        };
        let settings = cfg.settings();
        if settings.max_stale < settings.poll_interval {
            return Err(self.err("store.max_stale", "must be at least store.poll_interval"));
        }
        let location = match cfg.kind {
            StoreKind::None => {
                if cfg.registry == RegistrySource::Store {
                    return Err(self.err(
                        "store.registry",
                        "needs a store: kind = \"sqlite\" or \"dynamodb\"",
                    ));
                }
                return Ok(None);
            }
            StoreKind::Sqlite => {
                if cfg.table.is_some() {
                    return Err(self.err(
                        "store.table",
                        "is for kind = \"dynamodb\"; SQLite takes `path`",
                    ));
                }
                let path = match &cfg.path {
                    Some(p) if p.trim().is_empty() => {
                        return Err(self.err("store.path", "must not be empty"));
                    }
                    Some(p) => self.resolve(Path::new(p)),
                    None => beside_key().ok_or_else(|| {
                        self.err(
                            "store.path",
                            "is required when keys do not come from a file",
                        )
                    })?,
                };
                StoreLocation::Sqlite(path)
            }
            StoreKind::Dynamodb => {
                if cfg.path.is_some() {
                    return Err(self.err(
                        "store.path",
                        "is for kind = \"sqlite\"; DynamoDB takes `table`",
                    ));
                }
                match &cfg.table {
                    Some(t) if !t.trim().is_empty() => StoreLocation::Dynamodb { table: t.clone() },
                    _ => {
                        return Err(self.err(
                            "store.table",
                            "names the DynamoDB table (or set TOKENHOOK_STORE_TABLE)",
                        ));
                    }
                }
            }
        };
        Ok(Some((location, settings)))
    }

    pub fn api(&self, identifier: &str) -> Option<&ApiConfig> {
        self.apis.iter().find(|a| a.identifier == identifier)
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// An RFC 8414 issuer identifier: http(s), a host, no query, no fragment.
fn is_issuer_url(issuer: &str) -> bool {
    let Some(rest) = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty()
        && !host.starts_with(':')
        && !issuer.contains(['?', '#'])
        && !issuer.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/m/tokenhook.toml";

    fn manifest(extra: &str) -> String {
        format!(
            "issuer = \"https://issuer.test/\"\nkeys = {{ source = \"file\", path = \"key.pem\" }}\n{extra}\n"
        )
    }

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let m = Manifest::parse(text, Path::new(FILE))?;
        m.validate()?;
        Ok(m)
    }

    /// The field and message of the error `extra` causes.
    fn refused(extra: &str) -> (String, String) {
        let err = parse(&manifest(extra)).expect_err(extra);
        assert_eq!(err.file, Path::new(FILE), "{err}");
        (err.field, err.message)
    }

    #[test]
    fn values_are_typed_with_their_defaults() {
        let m = parse(&manifest(
            "token_lifetime = \"15m\"\n[policy]\nmax_claims_size = \"8KiB\"\n[[hooks]]\nname = \"h\"\nmodule = \"h.wasm\"\nlimits = { memory = \"4MiB\", timeout = \"20ms\", max_input = 2048 }",
        ))
        .unwrap();
        assert_eq!(m.token_lifetime, Duration::from_secs(900));
        assert_eq!(m.policy.max_claims_size, 8 << 10);
        assert!(
            matches!(m.keys, KeysConfig::File { alg, .. } if alg == crate::keys::DEFAULT_ALGORITHM)
        );
        let limits = m.hooks[0].limits;
        assert_eq!(limits.memory, 4 << 20);
        assert_eq!(limits.timeout, Duration::from_millis(20));
        assert_eq!(limits.max_input, 2048);
        assert_eq!(limits.fuel, Limits::default().fuel);
        assert_eq!(m.hook_secret_ttl, Duration::from_secs(300));
        assert_eq!(
            m.client_auth.settings(),
            crate::clients::GuardSettings::default()
        );
        // The default store: SQLite beside the key file.
        let Some((StoreLocation::Sqlite(db), _)) = m.store_location().unwrap() else {
            panic!("SQLite beside the key")
        };
        assert_eq!(db, Path::new("/m/tokenhook.sqlite"));
    }

    #[test]
    fn a_bad_value_is_refused_where_it_is_read_with_its_path_and_line() {
        let (field, message) = refused("[client_auth]\nhash_wait = \"soon\"");
        assert_eq!(field, "client_auth.hash_wait");
        assert!(
            message.contains("`soon` is not a duration") && message.ends_with("(line 4)"),
            "{message}"
        );
        let (field, message) =
            refused("[[hooks]]\nname = \"h\"\nmodule = \"h.wasm\"\nlimits = { memory = \"1GiB\" }");
        assert_eq!(field, "hooks[0].limits.memory");
        assert!(
            message.contains("1.0 GiB is above the host ceiling of 256.0 MiB"),
            "{message}"
        );
        // A value of the wrong type (not a second `keys`, which toml refuses
        // as a duplicate before any field is read).
        let err = parse("issuer = \"https://issuer.test/\"\nkeys = 1\n").expect_err("keys = 1");
        assert_eq!(err.field, "keys", "{err}");
    }

    #[test]
    fn keys_fields_are_checked_by_source() {
        let keys = |k: &str| {
            let text = format!("issuer = \"https://issuer.test/\"\nkeys = {{ {k} }}\n");
            Manifest::parse(&text, Path::new(FILE))
        };
        let err = keys("source = \"file\", path = \"k.pem\", alg = \"HS256\"").unwrap_err();
        assert_eq!(err.field, "keys.alg", "{err}");
        assert!(err.message.contains("HS256"), "{err}");
        let err = keys("source = \"file\", path = \" \"").unwrap_err();
        assert_eq!(err.field, "keys.path", "{err}");
        let err = keys("source = \"file\", path = \"k.pem\", secret_id = \"x\"").unwrap_err();
        assert!(err.message.contains("`secret_id` is not used"), "{err}");
        let err = keys("source = \"secretsmanager\"").unwrap_err();
        assert!(err.message.contains("secret_id"), "{err}");
        let m =
            keys("source = \"secretsmanager\", secret_id = \"ks\", cache_ttl = \"1s\"").unwrap();
        let KeysConfig::Secretsmanager {
            cache_ttl,
            max_stale,
            ..
        } = m.keys
        else {
            panic!("a Secrets Manager key set")
        };
        assert_eq!(cache_ttl, Duration::from_secs(1));
        assert_eq!(max_stale, crate::keys::stored::DEFAULT_MAX_STALE);
    }

    #[test]
    fn capture_settings_are_checked() {
        let capture = |c: &str| {
            refused(&format!(
                "[[hooks]]\nname = \"h\"\nmodule = \"h.wasm\"\ncapture = {{ {c} }}"
            ))
            .0
        };
        assert_eq!(
            capture("sample = 0.0, file = \"c\""),
            "hooks[0].capture.sample"
        );
        assert_eq!(
            capture("sample = 1.5, file = \"c\""),
            "hooks[0].capture.sample"
        );
        assert_eq!(
            capture("sample = 1.0, file = \"\""),
            "hooks[0].capture.file"
        );
        assert_eq!(
            capture("sample = 1.0, file = \"c\", omit = [\"/a\", \"client.metadata\"]"),
            "hooks[0].capture.omit[1]"
        );
        assert_eq!(
            capture("sample = 1.0, file = \"c\", max_size = \"1KiB\""),
            "hooks[0].capture.max_size"
        );
        assert_eq!(
            capture("sample = 1.0, file = \"c\", queue = 0"),
            "hooks[0].capture.queue"
        );
        let m = parse(&manifest(
            "[[hooks]]\nname = \"h\"\nmodule = \"h.wasm\"\ncapture = { sample = 0.1, file = \"c\", omit = [\"/context/ip\"] }",
        ))
        .unwrap();
        let c = m.hooks[0].capture.as_ref().unwrap();
        assert_eq!(c.max_size, crate::capture::DEFAULT_MAX_SIZE);
        assert_eq!(c.queue, crate::capture::DEFAULT_QUEUE);
    }

    #[test]
    fn overrides_are_checked_like_the_manifest() {
        let text = manifest("");
        let mut m = Manifest::parse(&text, Path::new(FILE)).unwrap();
        let bad = Overrides {
            token_lifetime: Some("2d".into()),
            ..Overrides::default()
        };
        let err = bad.apply(&mut m).unwrap_err();
        assert_eq!(err.field, "token_lifetime");
        assert!(err.message.contains("TOKENHOOK_TOKEN_LIFETIME"), "{err}");
        let good = Overrides {
            token_lifetime: Some("90s".into()),
            keyset_secret_id: Some("ks".into()),
            ..Overrides::default()
        };
        good.apply(&mut m).unwrap();
        assert_eq!(m.token_lifetime, Duration::from_secs(90));
        assert!(matches!(m.keys, KeysConfig::Secretsmanager { .. }));
        // No key file any more: the default store goes with it.
        assert!(m.store_location().unwrap().is_none());
    }
}
