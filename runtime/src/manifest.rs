//! The manifest: one TOML file describing issuer, keys, APIs, clients, grants
//! and the ordered hooks. Parsing checks shapes (unknown fields are errors);
//! [`Manifest::validate`] checks meaning. Every error names the file, the field
//! and what is wrong.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::engine::Limits;
use crate::units::{parse_duration, parse_size};

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

/// Claims the host sets itself; hooks can neither set nor remove them.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "scope",
    "client_id",
    "azp",
    "gty",
    "typ",
    "auth_time",
    "acr",
    "amr",
    "cnf",
    "act",
    "may_act",
    "sid",
    "nonce",
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The `iss` of every token, and the RFC 8414 issuer identifier.
    pub issuer: String,
    /// Token lifetime, e.g. "1h" (1 s to 24 h). Default 1 h.
    #[serde(default = "default_lifetime")]
    pub token_lifetime: String,
    pub keys: KeysConfig,
    /// How long hook secrets from Secrets Manager are used before they are
    /// read again, e.g. "5m" (the default).
    #[serde(default)]
    pub hook_secret_ttl: Option<String>,
    /// How long hook secrets from Secrets Manager keep serving while they
    /// cannot be read again, e.g. "1h" (the default; at least the TTL). After
    /// that the hook fails with `secrets_unavailable` (its `on_error` decides).
    #[serde(default)]
    pub hook_secret_max_stale: Option<String>,
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

fn default_lifetime() -> String {
    "1h".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub enum KeysConfig {
    /// A PKCS#8 PEM file, generated on first run if absent.
    File {
        path: String,
        #[serde(default = "default_alg")]
        alg: String,
    },
    /// A JSON key set `{active, next, retired}` in AWS Secrets Manager.
    Secretsmanager {
        secret_id: String,
        /// How long a fetched key set is used before it is fetched again. Default 5 min.
        #[serde(default)]
        cache_ttl: Option<String>,
        /// How long a cached key set may keep serving when refreshes fail. Default 1 h.
        #[serde(default)]
        max_stale: Option<String>,
    },
}

fn default_alg() -> String {
    "ES256".into()
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
    /// Largest serialized custom-claims object, in bytes. Default 4 KiB.
    #[serde(default = "default_max_claims_size")]
    pub max_claims_size: String,
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
fn default_max_claims_size() -> String {
    "4KiB".into()
}

/// `[store]`: the shared state every issuer instance reads.
#[derive(Clone, Debug, Default, Deserialize)]
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
    /// How often the feed is polled: the bound on how long a revocation takes
    /// to reach this instance. Default "500ms".
    #[serde(default)]
    pub poll_interval: Option<String>,
    /// How long a client read from the store is used before it is read
    /// again. Default "30s" (CLI changes arrive sooner, through the feed).
    #[serde(default)]
    pub client_cache_ttl: Option<String>,
    /// How long cached state keeps serving while the store cannot be read;
    /// then token requests fail with 503. Default "5m".
    #[serde(default)]
    pub max_stale: Option<String>,
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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// argon2 verifications running at once. Default: half the CPUs, at
    /// least 1. Each allocates its hash's `m` (19 MiB for the default cost).
    #[serde(default)]
    pub hash_concurrency: Option<usize>,
    /// Requests that may wait for a hashing slot; one more gets 503
    /// `temporarily_unavailable`. Default 8.
    #[serde(default)]
    pub hash_queue: Option<usize>,
    /// Longest wait for a hashing slot before 503. Default "250ms".
    #[serde(default)]
    pub hash_wait: Option<String>,
    /// Failed authentications one client id may have in a burst before it
    /// is throttled (429). Default 10.
    #[serde(default)]
    pub failure_burst: Option<u32>,
    /// One failure is forgiven per this interval. Default "6s" (10 a minute).
    #[serde(default)]
    pub failure_refill: Option<String>,
    /// Client ids whose failures are tracked at once; further ids share one
    /// bucket. Default 10000 (about 1 MiB).
    #[serde(default)]
    pub max_tracked_clients: Option<usize>,
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
    pub trusted_proxy_hops: Option<usize>,
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
    /// string (from `tokenhook secret hash`).
    pub secret_hash: String,
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
    /// Pin: lowercase hex SHA-256 of the module file.
    #[serde(default)]
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
    #[serde(default)]
    pub limits: LimitsConfig,
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
    pub sample: f64,
    /// JSON Lines file, relative to the manifest's directory, created 0600.
    /// On Lambda (`AWS_LAMBDA_RUNTIME_API` set) events go to the log instead,
    /// as "hook event captured" lines.
    pub file: PathBuf,
    /// Fields removed from the event before it is written: JSON Pointers
    /// (RFC 6901), e.g. "/client/metadata/email", "/context/ip",
    /// "/token/claims/https:~1~1example.com~1email" (`~1` is `/`). A pointer
    /// under `/token/` is also removed from the recorded outcome. Default none.
    #[serde(default)]
    pub omit: Vec<String>,
    /// When the file reaches this size it is renamed to `<file>.1` (replacing
    /// the previous one) and a new file is started, so captures take at most
    /// twice this on disk. Default "16MiB".
    #[serde(default)]
    pub max_size: Option<String>,
    /// Events that may wait for the writer; more are dropped. Default 1024.
    #[serde(default)]
    pub queue: Option<usize>,
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
    pub artifact: PathBuf,
    /// Lowercase hex SHA-256 of the artifact file.
    pub sha256: String,
    /// Lowercase hex SHA-256 of the wasm module it was compiled from.
    pub module_sha256: String,
    /// The target triple it was compiled for, e.g. `aarch64-unknown-linux-gnu`.
    pub target: String,
    /// The compatibility fingerprint (64 hex digits) of the engine that made
    /// it; see `docs/architecture.md` (hook engine).
    pub engine: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookMatch {
    #[serde(default)]
    pub apis: Vec<String>,
    #[serde(default)]
    pub clients: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub fuel: Option<u64>,
    pub timeout: Option<String>,
    pub memory: Option<String>,
    pub stack: Option<String>,
    pub table_elements: Option<u64>,
    pub max_input: Option<String>,
    pub max_output: Option<String>,
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

/// A manifest that passed validation, with its values parsed.
#[derive(Clone, Debug)]
pub struct Checked {
    pub token_lifetime: Duration,
    pub hook_secret_ttl: Duration,
    pub hook_secret_max_stale: Duration,
    pub max_claims_size: u64,
    pub hook_limits: Vec<Limits>,
    pub store: Option<(StoreLocation, crate::store::view::ViewSettings)>,
    /// `[client_auth]` with defaults filled in.
    pub client_guard: crate::clients::GuardSettings,
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
            manifest.http.trusted_proxy_hops = Some(hops.trim().parse().map_err(|_| {
                manifest.err(
                    "http.trusted_proxy_hops",
                    format!("TOKENHOOK_TRUSTED_PROXY_HOPS=`{hops}` is not a number"),
                )
            })?);
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
            manifest.token_lifetime = lifetime.clone();
        }
        if let Some(secret_id) = &self.keyset_secret_id {
            let (cache_ttl, max_stale) = match &manifest.keys {
                KeysConfig::Secretsmanager {
                    cache_ttl,
                    max_stale,
                    ..
                } => (cache_ttl.clone(), max_stale.clone()),
                KeysConfig::File { .. } => (None, None),
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
    pub fn load(path: &Path) -> Result<(Manifest, Checked), ManifestError> {
        Manifest::load_with(path, &Overrides::default())
    }

    /// [`Manifest::load`], with deployment `overrides` applied before validation.
    pub fn load_with(
        path: &Path,
        overrides: &Overrides,
    ) -> Result<(Manifest, Checked), ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let mut manifest = Manifest::parse(&text, path)?;
        overrides.apply(&mut manifest)?;
        let checked = manifest.validate()?;
        Ok((manifest, checked))
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

    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            field: String::new(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        // serde_path_to_error names the field (`hooks[0].limits.memroy`).
        let mut manifest: Manifest =
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                let field = e.path().to_string();
                ManifestError {
                    file: path.to_path_buf(),
                    field: if field == "." { String::new() } else { field },
                    message: e.into_inner().to_string().trim_end().replace('\n', " "),
                }
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
                sha256: p.sha256.to_ascii_lowercase(),
                module_sha256: p.module_sha256.to_ascii_lowercase(),
                target: p.target.clone(),
                engine: p.engine.to_ascii_lowercase(),
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

    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.path.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Check everything that a type cannot: references, ranges, formats.
    pub fn validate(&self) -> Result<Checked, ManifestError> {
        if !is_issuer_url(&self.issuer) {
            return Err(self.err(
                "issuer",
                "must be an http(s) URL with a host and no query or fragment (RFC 8414 §2), e.g. \"https://auth.example.com/\"",
            ));
        }
        let token_lifetime =
            parse_duration(&self.token_lifetime).map_err(|e| self.err("token_lifetime", e))?;
        if token_lifetime < Duration::from_secs(1)
            || token_lifetime > Duration::from_secs(24 * 3600)
        {
            return Err(self.err("token_lifetime", "must be between 1s and 24h"));
        }
        let hook_secret_ttl = match &self.hook_secret_ttl {
            Some(v) => parse_duration(v).map_err(|e| self.err("hook_secret_ttl", e))?,
            None => Duration::from_secs(300),
        };
        let hook_secret_max_stale = match &self.hook_secret_max_stale {
            Some(v) => parse_duration(v).map_err(|e| self.err("hook_secret_max_stale", e))?,
            None => crate::secrets::hooks::DEFAULT_MAX_STALE,
        }
        .max(hook_secret_ttl);
        match &self.keys {
            KeysConfig::File { path, alg } => {
                if path.trim().is_empty() {
                    return Err(self.err("keys.path", "must not be empty"));
                }
                crate::keys::parse_algorithm(alg)
                    .map_err(|e| self.err("keys.alg", e.to_string()))?;
            }
            KeysConfig::Secretsmanager {
                secret_id,
                cache_ttl,
                max_stale,
            } => {
                if secret_id.trim().is_empty() {
                    return Err(self.err("keys.secret_id", "must not be empty"));
                }
                for (field, value) in [("keys.cache_ttl", cache_ttl), ("keys.max_stale", max_stale)]
                {
                    if let Some(v) = value {
                        parse_duration(v).map_err(|e| self.err(field, e))?;
                    }
                }
            }
        }
        if self.policy.claim_namespaces.iter().any(|n| n.is_empty()) {
            return Err(self.err("policy.claim_namespaces", "a namespace must not be empty"));
        }
        let max_claims_size = parse_size(&self.policy.max_claims_size)
            .map_err(|e| self.err("policy.max_claims_size", e))?;

        let store = self.store_location()?;
        let registry = self.store.as_ref().map(|s| s.registry).unwrap_or_default();
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
            crate::clients::SecretHash::parse(&client.secret_hash)
                .map_err(|e| self.err(format!("clients[{i}].secret_hash"), e))?;
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
        let mut hook_limits = Vec::new();
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
            if let Some(sha) = &hook.sha256
                && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(self.err(
                    at("sha256"),
                    "must be 64 hex digits (see `tokenhook hook check`)",
                ));
            }
            if let Some(p) = &hook.precompiled {
                validate_precompiled(p, hook.sha256.is_some())
                    .map_err(|(field, msg)| self.err(at(&format!("precompiled{field}")), msg))?;
            }
            if let Some(capture) = &hook.capture {
                crate::capture::CaptureSettings::parse(capture)
                    .map_err(|(field, msg)| self.err(at(&format!("capture.{field}")), msg))?;
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
            let limits = self
                .hook_limits(&hook.limits)
                .map_err(|(field, msg)| self.err(at(&format!("limits.{field}")), msg))?;
            if let Some((field, value, max)) = limits.above_ceiling() {
                return Err(self.err(
                    at(&format!("limits.{field}")),
                    format!("{value} is above the host ceiling of {max}"),
                ));
            }
            hook_limits.push(limits);
        }
        let client_guard = self.client_guard()?;
        Ok(Checked {
            token_lifetime,
            hook_secret_ttl,
            hook_secret_max_stale,
            max_claims_size,
            hook_limits,
            store,
            client_guard,
        })
    }

    /// `[client_auth]` parsed, defaults filled in.
    fn client_guard(&self) -> Result<crate::clients::GuardSettings, ManifestError> {
        let cfg = &self.client_auth;
        let mut out = crate::clients::GuardSettings::default();
        let positive = |field: &str, v: usize| {
            if v == 0 {
                Err(self.err(format!("client_auth.{field}"), "must be at least 1"))
            } else {
                Ok(v)
            }
        };
        if let Some(v) = cfg.hash_concurrency {
            out.hash_concurrency = positive("hash_concurrency", v)?;
        }
        if let Some(v) = cfg.hash_queue {
            out.hash_queue = v;
        }
        if let Some(v) = &cfg.hash_wait {
            out.hash_wait = parse_duration(v).map_err(|e| self.err("client_auth.hash_wait", e))?;
        }
        if let Some(v) = cfg.failure_burst {
            out.failure_burst = positive("failure_burst", v as usize)? as u32;
        }
        if let Some(v) = &cfg.failure_refill {
            out.failure_refill =
                parse_duration(v).map_err(|e| self.err("client_auth.failure_refill", e))?;
            if out.failure_refill.is_zero() {
                return Err(self.err("client_auth.failure_refill", "must be above zero"));
            }
        }
        if let Some(v) = cfg.max_tracked_clients {
            out.max_tracked = positive("max_tracked_clients", v)?;
        }
        Ok(out)
    }

    /// `http.trusted_proxy_hops`, default 0.
    pub fn trusted_proxy_hops(&self) -> usize {
        self.http.trusted_proxy_hops.unwrap_or(0)
    }

    /// Where clients and grants live.
    pub fn registry(&self) -> RegistrySource {
        self.store.as_ref().map(|s| s.registry).unwrap_or_default()
    }

    /// The store this manifest uses, with its settings; `None` without one.
    fn store_location(
        &self,
    ) -> Result<Option<(StoreLocation, crate::store::view::ViewSettings)>, ManifestError> {
        let defaults = crate::store::view::ViewSettings::default();
        let Some(cfg) = &self.store else {
            // Default: SQLite beside a file key; none beside a Secrets Manager key set.
            return Ok(match &self.keys {
                KeysConfig::File { path, .. } => {
                    let key = self.resolve(Path::new(path));
                    let db = key.with_file_name("tokenhook.sqlite");
                    Some((StoreLocation::Sqlite(db), defaults))
                }
                KeysConfig::Secretsmanager { .. } => None,
            });
        };
        let duration = |field: &str, value: &Option<String>, default: Duration| match value {
            Some(v) => parse_duration(v).map_err(|e| self.err(format!("store.{field}"), e)),
            None => Ok(default),
        };
        let settings = crate::store::view::ViewSettings {
            poll_interval: duration("poll_interval", &cfg.poll_interval, defaults.poll_interval)?,
            client_cache_ttl: duration(
                "client_cache_ttl",
                &cfg.client_cache_ttl,
                defaults.client_cache_ttl,
            )?,
            max_stale: duration("max_stale", &cfg.max_stale, defaults.max_stale)?,
        };
        if settings.poll_interval < Duration::from_millis(50)
            || settings.poll_interval > Duration::from_secs(60)
        {
            return Err(self.err("store.poll_interval", "must be between 50ms and 60s"));
        }
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
                    None => match &self.keys {
                        KeysConfig::File { path, .. } => self
                            .resolve(Path::new(path))
                            .with_file_name("tokenhook.sqlite"),
                        KeysConfig::Secretsmanager { .. } => {
                            return Err(self.err(
                                "store.path",
                                "is required when keys do not come from a file",
                            ));
                        }
                    },
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

    fn hook_limits(&self, cfg: &LimitsConfig) -> Result<Limits, (&'static str, String)> {
        let d = Limits::default();
        let size = |field: &'static str, v: &Option<String>, default: u64| match v {
            Some(v) => parse_size(v).map_err(|e| (field, e)),
            None => Ok(default),
        };
        Ok(Limits {
            fuel: cfg.fuel.unwrap_or(d.fuel),
            timeout: match &cfg.timeout {
                Some(v) => parse_duration(v).map_err(|e| ("timeout", e))?,
                None => d.timeout,
            },
            memory: size("memory", &cfg.memory, d.memory)?,
            stack: size("stack", &cfg.stack, d.stack)?,
            table_elements: cfg.table_elements.unwrap_or(d.table_elements),
            max_input: size("max_input", &cfg.max_input, d.max_input)?,
            max_output: size("max_output", &cfg.max_output, d.max_output)?,
        })
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Shapes of `hooks[i].precompiled`; the error's field is relative to it.
fn validate_precompiled(p: &PrecompiledConfig, pinned: bool) -> Result<(), (String, String)> {
    if !pinned {
        return Err((
            String::new(),
            "needs the hook's `sha256` pin: native code is used only when made from the pinned module".into(),
        ));
    }
    if p.artifact.as_os_str().is_empty() {
        return Err((".artifact".into(), "must not be empty".into()));
    }
    for (field, value) in [
        (".sha256", &p.sha256),
        (".module_sha256", &p.module_sha256),
        (".engine", &p.engine),
    ] {
        if !is_sha256_hex(value) {
            return Err((field.into(), "must be 64 hex digits".into()));
        }
    }
    crate::engine::precompiled::parse_target(&p.target).map_err(|e| (".target".into(), e))?;
    Ok(())
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

/// RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}
