//! `explain`: what the configured hook chain does to one request, hook by
//! hook, without signing.
//!
//! It runs the issuer's own steps 3–5 (`Issuer::target`, `Issuer::run_hooks`,
//! the same hook loop and policy as a token request) with a [`Trace`] that
//! records each hook's step; the final claims come from the same function
//! that builds a token's claims before signing. No client authentication: it
//! is an operator's tool (CLI, playground), and the client must exist in the
//! registry. Explain runs are never captured.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use tokenhook_sdk::wire::{LogLine, RequestContext, TokenState};

use crate::engine::Limits;
use crate::hooks::{ChainHook, Usage};
use crate::manifest::{HookMode, OnError};
use crate::oauth::{ErrorCode, OAuthError};
use crate::pipeline::{HookOutcome, Issuer};
use crate::policy::Applied;

/// One request to explain.
#[derive(Clone, Debug, Default)]
pub struct ExplainRequest {
    pub client_id: String,
    pub audience: String,
    /// Space-separated, as a client would send it; `None`: all granted scopes.
    pub scope: Option<String>,
    pub context: RequestContext,
    /// Hook name → config replacing the manifest's for this run.
    pub config_overrides: BTreeMap<String, Value>,
}

/// What the chain did, hook by hook, and the token it would sign.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub client_id: String,
    pub audience: String,
    /// Scopes the request named (empty: none, so all granted).
    pub requested_scopes: Vec<String>,
    pub granted_scopes: Vec<String>,
    /// The scopes the first hook sees.
    pub initial_scopes: Vec<String>,
    pub hooks: Vec<HookStep>,
    /// The OAuth error the client would get, when a hook refused or failed.
    pub refused: Option<OAuthError>,
    /// The token's scopes (empty when refused).
    pub scopes: Vec<String>,
    /// The token's claims as they would be signed (host claims included;
    /// `iat`, `exp`, `jti` are this run's); `None` when refused.
    pub claims: Option<Map<String, Value>>,
}

/// One hook's step.
#[derive(Clone, Debug, Serialize)]
pub struct HookStep {
    pub hook: String,
    pub mode: HookMode,
    pub on_error: OnError,
    /// This run used a config other than the manifest's.
    pub config_overridden: bool,
    pub result: StepResult,
    /// What the result did to the request.
    pub effect: Effect,
    /// Skipped: the filter that did not match (`match.apis`, `match.clients`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<DenyDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageReport>,
    /// The hook's own log lines (its secret values blanked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// A `match` filter excluded the request; the hook did not run.
    Skipped,
    /// Its commands passed policy.
    Applied,
    Denied,
    /// It trapped, ran out of a limit, returned an error, or broke policy.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    NotRun,
    /// Its changes are in the token.
    Applied,
    /// The request is refused with the hook's error.
    RequestDenied,
    /// `on_error = "deny"`: the request fails with `server_error`.
    RequestFailed,
    /// `on_error = "skip"`: its changes were dropped and the chain went on.
    ChangesSkipped,
    /// A shadow hook: logged, never applied.
    Ignored,
}

/// Changes before → after.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChangeDetail {
    pub scopes_before: Vec<String>,
    pub scopes_after: Vec<String>,
    pub scopes_added: Vec<String>,
    pub scopes_removed: Vec<String>,
    pub claims_set: Vec<ClaimChange>,
    pub claims_removed: Vec<ClaimChange>,
}

/// One claim: its value before the hook (`None`: absent) and after.
#[derive(Clone, Debug, Serialize)]
pub struct ClaimChange {
    pub name: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DenyDetail {
    pub error: &'static str,
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailureDetail {
    pub kind: &'static str,
    pub cause: String,
}

/// A call's use against the hook's limits.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct UsageReport {
    pub fuel_used: u64,
    pub fuel_limit: u64,
    pub memory_peak: u64,
    pub memory_limit: u64,
    pub time_us: u64,
    pub timeout_us: u64,
}

/// The recorder `Issuer::run_hooks` is given for an explain run; also the
/// source of overridden configs. It only observes: what happens to the
/// request is decided by the shared loop.
pub struct Trace {
    overrides: BTreeMap<String, Vec<u8>>,
    steps: Vec<HookStep>,
}

impl Trace {
    /// The config JSON this run gives `hook` in place of the manifest's, if any.
    pub(crate) fn config_override(&self, hook: &ChainHook) -> Option<&[u8]> {
        self.overrides.get(hook.name()).map(Vec::as_slice)
    }

    fn step(&self, hook: &ChainHook, result: StepResult, effect: Effect) -> HookStep {
        HookStep {
            hook: hook.name().to_string(),
            mode: hook.config.mode,
            on_error: hook.config.on_error,
            config_overridden: self.overrides.contains_key(hook.name()),
            result,
            effect,
            filter: None,
            changes: None,
            deny: None,
            failure: None,
            usage: None,
            logs: Vec::new(),
        }
    }

    pub(crate) fn skipped(&mut self, hook: &ChainHook, filter: &'static str) {
        let mut step = self.step(hook, StepResult::Skipped, Effect::NotRun);
        step.filter = Some(filter);
        self.steps.push(step);
    }

    /// Record a hook that ran: `before` is the token it was given.
    pub(crate) fn ran(
        &mut self,
        hook: &ChainHook,
        limits: &Limits,
        before: &TokenState,
        outcome: &HookOutcome,
        usage: Usage,
        logs: &[LogLine],
    ) {
        let shadow = hook.config.mode == HookMode::Shadow;
        let (result, effect) = match outcome {
            Ok(Applied::Changed(..)) => (StepResult::Applied, Effect::Applied),
            Ok(Applied::Denied(_)) => (StepResult::Denied, Effect::RequestDenied),
            Err(_) => match hook.config.on_error {
                OnError::Deny => (StepResult::Failed, Effect::RequestFailed),
                OnError::Skip => (StepResult::Failed, Effect::ChangesSkipped),
            },
        };
        let effect = if shadow { Effect::Ignored } else { effect };
        let mut step = self.step(hook, result, effect);
        match outcome {
            Ok(Applied::Changed(after, changes)) => {
                let claim = |name: &String| ClaimChange {
                    name: name.clone(),
                    old: before.claims.get(name).cloned(),
                    new: after.claims.get(name).cloned(),
                };
                step.changes = Some(ChangeDetail {
                    scopes_before: before.scopes.clone(),
                    scopes_after: after.scopes.clone(),
                    scopes_added: changes.scopes_added.clone(),
                    scopes_removed: changes.scopes_removed.clone(),
                    claims_set: changes.claims_set.iter().map(claim).collect(),
                    claims_removed: changes.claims_removed.iter().map(claim).collect(),
                });
            }
            Ok(Applied::Denied(deny)) => {
                step.deny = Some(DenyDetail {
                    error: deny.error.as_str(),
                    description: deny.description.clone(),
                });
            }
            Err((kind, cause)) => {
                step.failure = Some(FailureDetail {
                    kind,
                    cause: cause.clone(),
                });
            }
        }
        step.usage = Some(UsageReport {
            fuel_used: usage.fuel_used,
            fuel_limit: limits.fuel,
            memory_peak: usage.memory_peak,
            memory_limit: limits.memory,
            time_us: usage.wall_time.as_micros() as u64,
            timeout_us: limits.timeout.as_micros() as u64,
        });
        // Already redacted (and cut) by `ChainHook::call`, with the values
        // that call was given.
        step.logs = logs.to_vec();
        self.steps.push(step);
    }
}

impl Issuer {
    /// Run the chain for `req` as a token request would, without client
    /// authentication and without signing. `Err` is what refuses the request
    /// before any hook runs (unknown client or audience, no grant, a scope
    /// not granted, a config override for a hook that does not exist); a
    /// hook's deny or failure is part of the explanation.
    pub async fn explain(&self, req: &ExplainRequest) -> Result<Explanation, OAuthError> {
        let mut overrides = BTreeMap::new();
        for (name, config) in &req.config_overrides {
            if !self.hook_names().contains(&name.as_str()) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    format!("config override for `{name}`: the manifest has no hook of that name"),
                ));
            }
            overrides.insert(
                name.clone(),
                serde_json::to_vec(config).expect("JSON values serialize"),
            );
        }
        let client = self.find_client(&req.client_id).await?.ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidClient,
                format!("no client `{}` in the registry", req.client_id),
            )
        })?;
        let target = self
            .target(&client, Some(&req.audience), req.scope.as_deref())
            .await?;
        let api = target.api.identifier.clone();
        let requested_scopes = target.requested.clone();
        let granted_scopes = target.granted.clone();
        let initial_scopes = target.scopes.clone();
        let mut trace = Trace {
            overrides,
            steps: Vec::new(),
        };
        let request_id = format!("explain-{}", random_id());
        let result = self
            .run_hooks(&client, target, &request_id, &req.context, Some(&mut trace))
            .await;
        let (refused, scopes, claims) = match result {
            Ok(token) => {
                let scopes = token.scopes.clone();
                let (claims, _, _) = self.token_claims(&client.id, &api, token);
                (None, scopes, Some(claims))
            }
            Err(error) => (Some(error), Vec::new(), None),
        };
        Ok(Explanation {
            client_id: client.id.clone(),
            audience: api,
            requested_scopes,
            granted_scopes,
            initial_scopes,
            hooks: trace.steps,
            refused,
            scopes,
            claims,
        })
    }
}

/// 8 random bytes as hex: an explain run's request id.
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random");
    hex::encode(bytes)
}
