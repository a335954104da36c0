//! The token pipeline, top to bottom: grant type → client authentication →
//! API and grant → scopes → hooks (each followed by host policy) → sign.
//! Front doors turn their transport into a [`TokenRequest`]; nothing here
//! knows which door a request came through.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokenhook_sdk::wire::{ABI_VERSION, Api, Client, Event, RequestContext, TokenState, Trigger};

use crate::capture::Verdict;
use crate::clients::{ClientGuard, KnownClient, Refusal};
use crate::engine::{HookEngine, Limits};
use crate::explain::Trace;
use crate::hooks::{ChainHook, EventFrame, load_chain, log_hook_line};
use crate::keys::{KeySet, KeySource};
use crate::manifest::{
    ApiConfig, HookMode, Manifest, ManifestError, OnError, Overrides, RegistrySource, StoreLocation,
};
use crate::oauth::{ClientAuth, ErrorCode, OAuthError, TokenRequest, TokenResponse};
use crate::policy::{self, Applied, Rules};
use crate::reload::SourceFiles;
use crate::secrets::SecretStore;
use crate::store::view::StoreView;
use crate::store::{Store, StoreError};

/// What an issuer is built with, besides the manifest.
#[derive(Clone)]
pub struct Services {
    pub engine: HookEngine,
    /// AWS Secrets Manager (or a stand-in); `None` when running without AWS.
    pub secret_store: Option<Arc<dyn SecretStore>>,
    /// Deployment settings applied to every manifest this process loads.
    pub overrides: Overrides,
}

impl Services {
    /// Local services: a default engine, no AWS, no overrides.
    pub fn local() -> Self {
        Services {
            engine: HookEngine::new(Default::default()),
            secret_store: None,
            overrides: Overrides::default(),
        }
    }
}

/// One loaded manifest, ready to issue tokens. Immutable: a reload builds a
/// new `Issuer` and swaps it in whole.
pub struct Issuer {
    manifest: Manifest,
    /// Clients of the manifest (with `registry = "manifest"`).
    clients: HashMap<String, Arc<KnownClient>>,
    /// Revocations, and clients with `registry = "store"`.
    store: Option<StoreView>,
    hooks: Vec<ChainHook>,
    keys: Arc<dyn KeySource>,
    /// Secret verification: hashing slots, failure throttle, remembered successes.
    guard: ClientGuard,
    /// The files this issuer was loaded from, as they were before loading.
    sources: SourceFiles,
}

impl Issuer {
    /// Load a manifest in stages: parse → validate → key source → hooks.
    pub async fn load(path: &Path, services: &Services) -> Result<Issuer, ManifestError> {
        let sources = SourceFiles::read(path);
        let manifest = Manifest::load_with(path, &services.overrides)?;
        let mut issuer = Issuer::build(manifest, services).await?;
        issuer.sources = sources;
        Ok(issuer)
    }

    /// An issuer for a validated manifest: its key source, its hooks loaded
    /// by the wasm engine ([`load_chain`]), its store.
    pub async fn build(manifest: Manifest, services: &Services) -> Result<Issuer, ManifestError> {
        let keys = crate::keys::from_manifest(&manifest, services.secret_store.as_ref()).await?;
        let hooks = load_chain(&manifest, &services.engine, services.secret_store.as_ref()).await?;
        Issuer::assemble(manifest, keys, hooks).await
    }

    /// The rest of [`Issuer::build`], from a key source and a hook chain
    /// already made: [`load_chain`]'s wasm modules, or any other
    /// [`crate::hooks::HookRunner`]s (the unit tests' fakes). `hooks` holds
    /// one hook per manifest hook, in manifest order.
    pub async fn assemble(
        manifest: Manifest,
        keys: Arc<dyn KeySource>,
        hooks: Vec<ChainHook>,
    ) -> Result<Issuer, ManifestError> {
        let names = manifest.hooks.iter().map(|c| c.name.as_str());
        assert!(
            hooks.iter().map(ChainHook::name).eq(names),
            "one chain hook per manifest hook, in manifest order"
        );
        let store = open_store(&manifest).await?;
        let clients = manifest
            .clients
            .iter()
            .map(|c| {
                let client = KnownClient {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    metadata: c.metadata.clone(),
                    introspect: c.introspect,
                    direct_invoke: c.direct_invoke,
                    hash: c.secret_hash.clone(),
                    grants: manifest
                        .grants
                        .iter()
                        .filter(|g| g.client == c.id)
                        .map(|g| (g.api.clone(), g.scopes.clone()))
                        .collect(),
                };
                (c.id.clone(), Arc::new(client))
            })
            .collect();
        warn_distinguishable(&clients);
        crate::clients::prepare().await;
        let guard = ClientGuard::new(manifest.client_auth.settings());
        Ok(Issuer {
            manifest,
            clients,
            store,
            hooks,
            keys,
            guard,
            sources: SourceFiles::default(),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn sources(&self) -> &SourceFiles {
        &self.sources
    }

    pub fn hook_names(&self) -> Vec<&str> {
        self.hooks.iter().map(ChainHook::name).collect()
    }

    /// The key set: `active` signs; `active`, `next` and `retired` are published.
    pub async fn key_set(&self) -> Result<Arc<KeySet>, OAuthError> {
        self.keys.key_set().await.map_err(|e| {
            tracing::error!(error = %e, source = %self.keys.describe(), "signing keys unavailable");
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "signing keys are unavailable",
            )
        })
    }

    /// Issue one token, or say why not. The request's log lines (hooks,
    /// audit) leave together when it ends (`logging::batched`).
    pub async fn issue(&self, req: &TokenRequest) -> Result<TokenResponse, OAuthError> {
        crate::logging::batched(self.issue_and_audit(req)).await
    }

    async fn issue_and_audit(&self, req: &TokenRequest) -> Result<TokenResponse, OAuthError> {
        let started = Instant::now();
        let result = self.run(req).await;
        let elapsed_us = started.elapsed().as_micros() as u64;
        let caller = crate::audit::Caller {
            request_id: &req.request_id,
            client_request_id: req.client_request_id.as_deref(),
            ip: req.context.ip.as_deref(),
            auth: Some(&req.client),
        };
        match &result {
            Ok(resp) => crate::audit::token_issued(
                &caller,
                &crate::audit::Issued {
                    audience: req.audience.as_deref().unwrap_or(""),
                    scope: &resp.scope,
                    jti: &resp.jti,
                    kid: &resp.kid,
                },
                elapsed_us,
            ),
            Err(e) => crate::audit::token_refused(
                &caller,
                req.audience.as_deref(),
                "issue",
                e.status(),
                e.error.as_str(),
                &e.error_description,
                elapsed_us,
            ),
        }
        crate::metrics::token_outcome(req, &result);
        result
    }

    async fn run(&self, req: &TokenRequest) -> Result<TokenResponse, OAuthError> {
        // 1. Grant type.
        match req.grant_type.as_deref() {
            None => return Err(invalid_request("grant_type is required")),
            Some("client_credentials") => {}
            Some(other) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("grant_type `{other}` is not supported; use client_credentials"),
                ));
            }
        }
        // 2. Client authentication.
        let client = self.authenticate(&req.client).await?;
        // 3–4. API, grant, scopes.
        let target = self
            .target(&client, req.audience.as_deref(), req.scope.as_deref())
            .await?;
        let api = &target.api.identifier;
        // 5. Hooks.
        let token = self
            .run_hooks(&client, target, &req.request_id, &req.context, None)
            .await?;
        // Phase grouping: under load several requests are ready at once, and
        // yielding here lets each of them get this far before any signs. The
        // hooks of all ready requests then run back to back (wasmtime's paths,
        // the guests' code and slots stay in cache), then all the signing and
        // responses. One scheduler round trip when idle; under load +30 % tokens/s
        // with three hooks, +10 % without (docs/performance.md, Phase grouping).
        tokio::task::yield_now().await;
        // 6. Sign.
        self.sign(&client.id, api, token).await
    }

    /// Steps 3 and 4 of a request: the API, the client's grant for it (not
    /// cut off), and the scopes the token starts with.
    pub(crate) async fn target<'a>(
        &'a self,
        client: &'a KnownClient,
        audience: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Target<'a>, OAuthError> {
        // 3. API and grant.
        let api_id =
            audience.ok_or_else(|| invalid_request("audience (or resource) is required"))?;
        let api = self.manifest.api(api_id).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("unknown audience `{api_id}`"),
            )
        })?;
        self.check_not_refused(&client.id, &api.identifier).await?;
        let granted = client.grants.get(&api.identifier).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!(
                    "client `{}` has no grant for `{}`",
                    client.id, api.identifier
                ),
            )
        })?;
        // 4. Scopes: requested ∩ granted; none requested → all granted.
        let requested = parse_scope(scope)?;
        let scopes = effective_scopes(&requested, granted)?;
        Ok(Target {
            api,
            granted,
            requested,
            scopes,
        })
    }

    /// Step 5 of a request: the hooks, in manifest order, each followed by
    /// host policy. Issuance and `explain` share it; `trace` (explain only)
    /// records each step and may replace hooks' configs, nothing else. The
    /// event is serialized once; each hook gets it with the token as it stands.
    pub(crate) async fn run_hooks(
        &self,
        client: &KnownClient,
        target: Target<'_>,
        request_id: &str,
        context: &RequestContext,
        mut trace: Option<&mut Trace>,
    ) -> Result<TokenState, OAuthError> {
        let (api, granted) = (target.api, target.granted);
        let mut token = TokenState {
            scopes: target.scopes,
            claims: Map::new(),
        };
        // The event is written when the first hook runs: a request no hook
        // matches (or an issuer without hooks) never builds it.
        let mut requested = target.requested;
        let mut frame = None;
        let mut event_frame = || {
            EventFrame::new(Event {
                version: ABI_VERSION,
                trigger: Trigger::ClientCredentials,
                request_id: request_id.to_string(),
                client: Client {
                    id: client.id.clone(),
                    name: client.name.clone(),
                    metadata: client.metadata.clone(),
                },
                api: Api {
                    identifier: api.identifier.clone(),
                    scopes: api.scopes.clone(),
                },
                requested_scopes: std::mem::take(&mut requested),
                granted_scopes: granted.clone(),
                context: context.clone(),
                ..Event::default()
            })
        };
        let rules = Rules {
            claim_namespaces: &self.manifest.policy.claim_namespaces,
            added_scopes_within_grant: self.manifest.policy.added_scopes_within_grant,
            max_claims: self.manifest.policy.max_claims,
            max_claims_size: self.manifest.policy.max_claims_size,
            api_scopes: &api.scopes,
            granted_scopes: granted,
        };
        for hook in &self.hooks {
            if let Some(filter) = hook.filter_miss(&client.id, &api.identifier) {
                // Routine, and says nothing on its own: debug.
                tracing::debug!(
                    request_id,
                    hook = hook.name(),
                    filter,
                    "hook skipped: filter does not match"
                );
                if let Some(trace) = trace.as_deref_mut() {
                    trace.skipped(hook, filter);
                }
                continue;
            }
            let limits = &hook.config.limits;
            let frame = frame.get_or_insert_with(&mut event_frame);
            self.run_hook(
                hook,
                limits,
                frame,
                &mut token,
                request_id,
                &rules,
                trace.as_deref_mut(),
            )?;
        }
        Ok(token)
    }

    /// Who is calling: a client of the registry (manifest or store) whose
    /// secret verifies, or one a direct invoke names where the manifest
    /// allows it. Refusals are uniform: an unknown id and a wrong secret
    /// cost the same work and get the same answer (`clients::ClientGuard`).
    pub async fn authenticate(&self, auth: &ClientAuth) -> Result<Arc<KnownClient>, OAuthError> {
        let failed = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
        match auth {
            ClientAuth::None => Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "client authentication is required (client_secret_basic or client_secret_post)",
            )),
            ClientAuth::Multiple => Err(invalid_request(
                "use exactly one client authentication method",
            )),
            ClientAuth::Trusted { id } => {
                let client = self.find_client(id).await?.ok_or_else(failed)?;
                if self.manifest.direct_invoke.enabled || client.direct_invoke {
                    Ok(client)
                } else {
                    Err(OAuthError::new(
                        ErrorCode::UnauthorizedClient,
                        "direct invoke is not enabled for this client ([direct_invoke] enabled, or direct_invoke = true in [[clients]])",
                    ))
                }
            }
            ClientAuth::Basic { id, secret } | ClientAuth::Post { id, secret } => {
                let client = self.find_client(id).await?;
                match self.guard.verify(id, secret, client.as_deref()).await {
                    Ok(()) => client.ok_or_else(failed),
                    Err(Refusal::Failed) => Err(failed()),
                    Err(Refusal::Throttled { retry_after_secs }) => Err(OAuthError::new(
                        ErrorCode::TemporarilyUnavailable,
                        format!(
                            "too many failed authentications for this client id; retry in {retry_after_secs} s"
                        ),
                    )
                    .with_status(429, Some(retry_after_secs))),
                    Err(Refusal::Busy) => Err(OAuthError::new(
                        ErrorCode::TemporarilyUnavailable,
                        "the issuer is busy verifying secrets; retry shortly",
                    )
                    .with_status(503, Some(1))),
                }
            }
        }
    }

    /// A client of the registry by id.
    pub async fn find_client(&self, id: &str) -> Result<Option<Arc<KnownClient>>, OAuthError> {
        match (self.manifest.registry(), &self.store) {
            (RegistrySource::Store, Some(store)) => store.client(id).await.map_err(store_down),
            _ => Ok(self.clients.get(id).cloned()),
        }
    }

    /// A revoked client (or client × API) gets no new tokens.
    async fn check_not_refused(&self, client_id: &str, api: &str) -> Result<(), OAuthError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        match store.refuses(client_id, api).await.map_err(store_down)? {
            false => Ok(()),
            true => Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("client `{client_id}` is revoked for `{api}`"),
            )),
        }
    }

    /// The store view, for revocation and introspection.
    pub fn store(&self) -> Option<&StoreView> {
        self.store.as_ref()
    }

    /// Run one hook and apply its commands under policy. A deny command ends
    /// the request with the hook's error; a failure is handled by `on_error`.
    /// A shadow hook's outcome is logged and captured, never applied.
    #[allow(clippy::too_many_arguments)]
    fn run_hook(
        &self,
        hook: &ChainHook,
        limits: &Limits,
        frame: &EventFrame,
        token: &mut TokenState,
        request_id: &str,
        rules: &Rules<'_>,
        trace: Option<&mut Trace>,
    ) -> Result<(), OAuthError> {
        let config_override = trace.as_ref().and_then(|trace| trace.config_override(hook));
        let call = hook.call_with_config(frame, token, config_override);
        if call.logs_dropped > 0 {
            tracing::warn!(
                request_id,
                hook = hook.name(),
                dropped = call.logs_dropped,
                "hook log lines over the limit were dropped"
            );
        }
        // `call` was redacted once, with the values the hook was given
        // (`ChainHook::call`): its logs, failure cause and deny descriptions.
        for line in &call.logs {
            log_hook_line(request_id, hook.name(), line.level, &line.message);
        }
        let usage = call.usage;
        let outcome = match call.outcome {
            Ok(commands) => {
                match policy::apply(token, commands, &hook.config.capabilities, rules) {
                    Ok(applied) => Ok(applied),
                    Err(violation) => Err(("policy_violation", hook.redact(&violation))),
                }
            }
            Err(failure) => Err((failure.kind.as_str(), failure.message)),
        };
        // Explain runs are not traffic: no metrics, no capture.
        if trace.is_none() {
            crate::metrics::hook_outcome(&hook.metrics, hook.name(), &outcome, &usage);
        }
        if let Some(capture) = &hook.capture
            && trace.is_none()
            && capture.sampled()
        {
            let event = hook.captured_event(frame, token);
            capture.send(event, verdict(&outcome), usage);
        }
        if let Some(trace) = trace {
            trace.ran(hook, limits, token, &outcome, usage, &call.logs);
        }
        let duration_us = usage.wall_time.as_micros() as u64;
        if hook.config.mode == HookMode::Shadow {
            // What it would have done, with the fields of "hook applied";
            // the token goes on as if the hook had not run.
            let none = policy::Changes::default();
            let (changes, would) = match &outcome {
                Ok(Applied::Changed(_, changes)) => (changes, Would::default()),
                Ok(Applied::Denied(deny)) => (
                    &none,
                    Would {
                        deny: Some(deny.error.as_str()),
                        description: Some(deny.description.as_str()),
                        ..Would::default()
                    },
                ),
                Err((kind, cause)) => (
                    &none,
                    Would {
                        fail: Some(kind),
                        cause: Some(cause.as_str()),
                        ..Would::default()
                    },
                ),
            };
            log_decision(
                "hook shadow",
                request_id,
                hook.name(),
                &usage,
                changes,
                would,
            );
            return Ok(());
        }
        let (kind, cause) = match outcome {
            Ok(Applied::Changed(changed, changes)) => {
                log_decision(
                    "hook applied",
                    request_id,
                    hook.name(),
                    &usage,
                    &changes,
                    Would::default(),
                );
                *token = changed;
                return Ok(());
            }
            Ok(Applied::Denied(deny)) => {
                tracing::info!(
                    request_id, hook = hook.name(), duration_us,
                    fuel_used = usage.fuel_used, error = deny.error.as_str(), description = %deny.description,
                    "hook denied the request"
                );
                return Err(deny_error(deny));
            }
            Err(failure) => failure,
        };
        match hook.config.on_error {
            OnError::Deny => {
                tracing::error!(
                    request_id, hook = hook.name(), kind, cause = %cause, on_error = "deny",
                    duration_us, fuel_used = usage.fuel_used,
                    "hook failed; request denied"
                );
                Err(hook_failed(request_id))
            }
            OnError::Skip => {
                tracing::warn!(
                    request_id, hook = hook.name(), kind, cause = %cause, on_error = "skip",
                    duration_us, fuel_used = usage.fuel_used,
                    "hook failed; its changes were skipped"
                );
                Ok(())
            }
        }
    }

    async fn sign(
        &self,
        client_id: &str,
        api: &str,
        token: TokenState,
    ) -> Result<TokenResponse, OAuthError> {
        let keys = self.key_set().await?;
        let lifetime = self.manifest.token_lifetime.as_secs();
        let (claims, scope, jti) = self.token_claims(client_id, api, token);
        let access_token = keys.active.sign(&Value::Object(claims)).map_err(|e| {
            tracing::error!(error = %e, kid = %keys.active.kid, "signing failed");
            OAuthError::new(ErrorCode::ServerError, "the token could not be signed")
        })?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime,
            scope,
            jti,
            kid: keys.active.kid.clone(),
        })
    }

    /// The claims a token is signed with (also what `explain` shows), its
    /// `scope` and its `jti`.
    pub(crate) fn token_claims(
        &self,
        client_id: &str,
        api: &str,
        token: TokenState,
    ) -> (Map<String, Value>, String, String) {
        let lifetime = self.manifest.token_lifetime.as_secs();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let scope = token.scopes.join(" ");
        // Custom claims first, host claims last: the host's always win.
        let mut claims = token.claims;
        for (name, value) in [
            ("iss", json!(self.manifest.issuer)),
            ("sub", json!(client_id)),
            ("aud", json!(api)),
            ("client_id", json!(client_id)),
            ("iat", json!(now)),
            ("nbf", json!(now)),
            ("exp", json!(now + lifetime)),
            ("scope", json!(scope)),
        ] {
            claims.insert(name.to_string(), value);
        }
        let jti = new_jti();
        claims.insert("jti".into(), json!(jti));
        (claims, scope, jti)
    }
}

/// Warn about argon2id clients whose cost differs from the default: a failed
/// attempt on one takes a different time than one on an unknown id, which
/// tells an attacker the id exists.
fn warn_distinguishable(clients: &HashMap<String, Arc<KnownClient>>) {
    for client in clients.values() {
        if client.hash.cost_differs_from_default() {
            tracing::warn!(client_id = %client.id, "argon2id cost differs from the default (m=19456,t=2,p=1): refusals for this client differ in time from those for unknown ids; hash its secret again with `tokenhook secret hash`");
        }
    }
}

/// What the steps between authentication and the hooks settled: the API,
/// the client's grant for it, the scopes asked for and those the token starts with.
pub(crate) struct Target<'a> {
    pub api: &'a ApiConfig,
    pub granted: &'a Vec<String>,
    pub requested: Vec<String>,
    pub scopes: Vec<String>,
}

/// One hook call after policy: the changed token, or a deny; `Err` is a
/// failure (kind, cause with the hook's secrets blanked).
pub(crate) type HookOutcome = Result<Applied, (&'static str, String)>;

/// A hook's deny as the client's OAuth error.
pub(crate) fn deny_error(deny: tokenhook_sdk::wire::Deny) -> OAuthError {
    let code = match deny.error {
        tokenhook_sdk::wire::DenyCode::AccessDenied => ErrorCode::AccessDenied,
        tokenhook_sdk::wire::DenyCode::InvalidScope => ErrorCode::InvalidScope,
        tokenhook_sdk::wire::DenyCode::UnauthorizedClient => ErrorCode::UnauthorizedClient,
    };
    OAuthError::new(code, deny.description)
}

/// What a shadow hook would have done instead of changing the token.
#[derive(Default)]
struct Would<'a> {
    deny: Option<&'a str>,
    description: Option<&'a str>,
    fail: Option<&'a str>,
    cause: Option<&'a str>,
}

/// The line of a hook that decided: "hook applied", or "hook shadow" with
/// what the shadow hook would have done (fields left out when `None`).
fn log_decision(
    message: &'static str,
    request_id: &str,
    hook: &str,
    usage: &crate::hooks::Usage,
    changes: &policy::Changes,
    would: Would<'_>,
) {
    tracing::info!(
        message,
        request_id,
        hook,
        duration_us = usage.wall_time.as_micros() as u64,
        fuel_used = usage.fuel_used,
        memory_peak = usage.memory_peak,
        // Space-separated, like OAuth's `scope`: plain strings that log queries can match.
        scopes_added = changes.scopes_added.join(" ").as_str(),
        scopes_removed = changes.scopes_removed.join(" ").as_str(),
        claims_set = changes.claims_set.join(" ").as_str(),
        claims_removed = changes.claims_removed.join(" ").as_str(),
        would_deny = would.deny,
        description = would.description,
        would_fail = would.fail,
        cause = would.cause,
    );
}

/// A failed hook under `on_error = "deny"`: the cause stays in the log.
fn hook_failed(request_id: &str) -> OAuthError {
    OAuthError::new(
        ErrorCode::ServerError,
        format!("the token could not be issued (request id {request_id})"),
    )
}

/// A hook outcome as a capture records it.
fn verdict(outcome: &HookOutcome) -> Verdict {
    match outcome {
        Ok(Applied::Changed(token, _)) => Verdict::Applied {
            scopes: token.scopes.clone(),
            claims: token.claims.clone(),
        },
        Ok(Applied::Denied(deny)) => Verdict::Denied {
            error: deny.error,
            description: deny.description.clone(),
        },
        Err((kind, cause)) => Verdict::Failed {
            kind: kind.to_string(),
            cause: cause.clone(),
        },
    }
}

fn invalid_request(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, description)
}

/// Space-delimited scope tokens (RFC 6749 §3.3), deduplicated, order kept.
fn parse_scope(scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for token in scope.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        if !policy::is_scope_token(token) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope contains invalid characters",
            ));
        }
        if !out.iter().any(|s| s == token) {
            out.push(token.to_string());
        }
    }
    Ok(out)
}

/// The scopes a token starts with: all `granted` when none are `requested`,
/// else exactly the `requested` ones (already deduplicated, in their order),
/// each of which must be granted: asking for one outside the grant is
/// `invalid_scope`, never silently narrowed.
fn effective_scopes(requested: &[String], granted: &[String]) -> Result<Vec<String>, OAuthError> {
    if requested.is_empty() {
        return Ok(granted.to_vec());
    }
    if let Some(missing) = requested.iter().find(|s| !granted.contains(s)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("scope `{missing}` is not granted to this client for this API"),
        ));
    }
    Ok(requested.to_vec())
}

fn new_jti() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The store could not be read for longer than it may be trusted: fail closed.
fn store_down(error: StoreError) -> OAuthError {
    tracing::error!(%error, "store unavailable; refusing");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the issuer's store is unavailable; try again later",
    )
}

/// Open the manifest's store and load its revocations.
async fn open_store(manifest: &Manifest) -> Result<Option<StoreView>, ManifestError> {
    let Some((location, settings)) = manifest.store_location()? else {
        return Ok(None);
    };
    let err = |field: &str, message: String| ManifestError {
        file: manifest.path.clone(),
        field: field.to_string(),
        message,
    };
    let store: Arc<dyn Store> = match &location {
        StoreLocation::Sqlite(path) => {
            let path = path.clone();
            let opened =
                tokio::task::spawn_blocking(move || crate::store::sqlite::SqliteStore::open(&path))
                    .await
                    .map_err(|e| err("store", e.to_string()))?
                    .map_err(|e| err("store.path", e.to_string()))?;
            Arc::new(opened)
        }
        StoreLocation::Dynamodb { table } => {
            Arc::new(crate::store::dynamodb::DynamoStore::from_env(table).await)
        }
    };
    let described = store.describe();
    let view = StoreView::open(store, settings)
        .await
        .map_err(|e| err("store", format!("{described}: {e}")))?;
    tracing::info!(store = %described, registry = ?manifest.registry(), "store opened");
    Ok(Some(view))
}

/// The hook loop, explain and issuance with scripted hook runners.
#[cfg(test)]
mod tests;

/// The scope algebra of step 4, as properties: `parse_scope` then
/// `effective_scopes` on any space-separated request against any grant.
#[cfg(test)]
mod scope_algebra {
    use super::{effective_scopes, parse_scope};
    use crate::oauth::ErrorCode;
    use proptest::prelude::*;

    /// A small pool, so requests often hit and often miss a grant.
    const POOL: &[&str] = &["read:a", "write:a", "admin:a", "read:b", "x", "y.z"];

    /// Tokens from the pool, possibly repeated.
    fn picks() -> impl Strategy<Value = Vec<&'static str>> {
        prop::collection::vec(prop::sample::select(POOL), 0..8)
    }

    /// A grant: distinct pool scopes in some order.
    fn grant() -> impl Strategy<Value = Vec<String>> {
        prop::sample::subsequence(POOL, 0..=POOL.len())
            .prop_shuffle()
            .prop_map(|g| g.iter().map(|s| s.to_string()).collect())
    }

    /// `picks` joined by runs of 1–3 spaces, with optional leading and
    /// trailing spaces (RFC 6749 §3.3 separates by spaces; empty tokens drop).
    fn joined(picks: &[&str], gaps: &[usize]) -> String {
        let mut out = " ".repeat(gaps[0] % 2);
        for (i, p) in picks.iter().enumerate() {
            if i > 0 {
                out.push_str(&" ".repeat(1 + gaps[i % gaps.len()] % 3));
            }
            out.push_str(p);
        }
        out.push_str(&" ".repeat(gaps[gaps.len() - 1] % 2));
        out
    }

    fn dedup(picks: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in picks {
            if !out.iter().any(|o| o == p) {
                out.push(p.to_string());
            }
        }
        out
    }

    proptest! {
        #[test]
        fn effective_scopes_are_the_request_within_the_grant(
            picks in picks(),
            granted in grant(),
            gaps in prop::collection::vec(0usize..6, 1..8),
            absent in any::<bool>(),
        ) {
            let text = joined(&picks, &gaps);
            let scope = if absent && picks.is_empty() { None } else { Some(text.as_str()) };
            let requested = parse_scope(scope).expect("pool scopes are valid tokens");
            // Deduplicated, first occurrence's order kept.
            prop_assert_eq!(&requested, &dedup(&picks));
            match effective_scopes(&requested, &granted) {
                Ok(scopes) => {
                    if requested.is_empty() {
                        // None requested → all granted, in the grant's order.
                        prop_assert_eq!(&scopes, &granted);
                    } else {
                        // Exactly what was asked, never widened to the grant.
                        prop_assert_eq!(&scopes, &requested);
                    }
                    prop_assert!(scopes.iter().all(|s| granted.contains(s)));
                    let mut unique = scopes.clone();
                    unique.sort();
                    unique.dedup();
                    prop_assert_eq!(unique.len(), scopes.len());
                }
                Err(err) => {
                    // Refused only for a scope outside the grant, named: the first one asked.
                    prop_assert_eq!(err.error, ErrorCode::InvalidScope);
                    let missing = requested.iter().find(|s| !granted.contains(s));
                    prop_assert!(missing.is_some(), "refused though all were granted: {}", err.error_description);
                    let named = format!("scope `{}` is not granted", missing.unwrap());
                    prop_assert!(err.error_description.contains(&named), "{}", err.error_description);
                }
            }
        }

        #[test]
        fn a_scope_token_with_a_forbidden_character_is_refused(
            picks in picks(),
            at in any::<prop::sample::Index>(),
            bad in prop::sample::select(vec!['"', '\\', '\u{7f}', '\t', 'é', '\u{0}']),
        ) {
            // RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E only.
            let mut tokens: Vec<String> = picks.iter().map(|p| p.to_string()).collect();
            let i = at.index(tokens.len() + 1);
            tokens.insert(i, format!("re{bad}ad"));
            let text = tokens.join(" ");
            let err = parse_scope(Some(&text)).expect_err("a forbidden character is refused");
            prop_assert_eq!(err.error, ErrorCode::InvalidScope);
        }
    }
}
