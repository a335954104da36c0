//! `tokenhook explain`: run the configured chain for one request without
//! signing, and say what each hook did.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;
use tokenhook_sdk::wire::RequestContext;

use crate::explain::{Effect, ExplainRequest, Explanation, HookStep, StepResult};
use crate::manifest::Overrides;
use crate::pipeline::{Issuer, Services};
use crate::units::{show_count, show_duration, show_size};

#[derive(Args)]
pub struct ExplainArgs {
    /// The manifest whose chain runs (its registry must hold the client).
    #[arg(long)]
    manifest: PathBuf,
    /// The client id (no secret: explain does not authenticate).
    #[arg(long)]
    client: String,
    /// The API identifier (`audience`).
    #[arg(long)]
    audience: String,
    /// Space-separated scopes, as a client would ask; default: all granted.
    #[arg(long)]
    scope: Option<String>,
    /// The request's source IP, as hooks would see it.
    #[arg(long)]
    ip: Option<String>,
    /// The request's User-Agent, as hooks would see it.
    #[arg(long)]
    user_agent: Option<String>,
    /// `HOOK=JSON`: run HOOK with this config instead of the manifest's; repeatable.
    #[arg(long = "config", value_name = "HOOK=JSON")]
    configs: Vec<String>,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
}

/// Exit 0 when a token would be issued, 1 when the chain refuses it, 2 when
/// the request cannot be explained (manifest, client, audience, scope).
pub fn run(args: ExplainArgs) -> ExitCode {
    let mut overrides = std::collections::BTreeMap::new();
    for pair in &args.configs {
        let Some((hook, json)) = pair.split_once('=') else {
            eprintln!("error: --config `{pair}` is not HOOK=JSON");
            return ExitCode::from(2);
        };
        match serde_json::from_str::<Value>(json) {
            Ok(config) => {
                overrides.insert(hook.to_string(), config);
            }
            Err(e) => {
                eprintln!("error: --config for `{hook}` is not JSON: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let req = ExplainRequest {
        client_id: args.client,
        audience: args.audience,
        scope: args.scope,
        context: RequestContext {
            ip: args.ip,
            user_agent: args.user_agent,
        },
        config_overrides: overrides,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let manifest = args.manifest;
    let explained = runtime.block_on(async move {
        let services = Services {
            overrides: Overrides::from_env(),
            ..Services::local()
        };
        let issuer = Issuer::load(&manifest, &services)
            .await
            .map_err(|e| e.to_string())?;
        issuer
            .explain(&req)
            .await
            .map_err(|e| format!("{}: {}", e.error.as_str(), e.error_description))
    });
    let explanation = match explained {
        Ok(explanation) => explanation,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).expect("explanations serialize")
        );
    } else {
        print!("{}", report(&explanation));
    }
    if explanation.refused.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn list(scopes: &[String]) -> String {
    if scopes.is_empty() {
        "(none)".into()
    } else {
        scopes.join(" ")
    }
}

fn value(v: &Option<Value>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "(absent)".into(),
    }
}

/// The readable report: one block per hook, then the result.
pub fn report(e: &Explanation) -> String {
    let mut out = format!("explain: client {} → {}\n", e.client_id, e.audience);
    out.push_str(&format!(
        "  requested: {} · granted: {}\n  scopes at start: {}\n",
        if e.requested_scopes.is_empty() {
            "(none: all granted)".to_string()
        } else {
            e.requested_scopes.join(" ")
        },
        list(&e.granted_scopes),
        list(&e.initial_scopes),
    ));
    for (i, step) in e.hooks.iter().enumerate() {
        out.push('\n');
        out.push_str(&step_report(i + 1, step));
    }
    out.push('\n');
    match (&e.refused, &e.claims) {
        (Some(err), _) => out.push_str(&format!(
            "result: refused: {} ({})\n",
            err.error.as_str(),
            err.error_description
        )),
        (None, claims) => {
            out.push_str(&format!(
                "result: token issued\n  scope: {}\n  claims (as they would be signed):\n",
                list(&e.scopes)
            ));
            let claims = serde_json::to_string_pretty(claims).expect("claims serialize");
            for line in claims.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

fn step_report(n: usize, s: &HookStep) -> String {
    let mode = match s.mode {
        crate::manifest::HookMode::Shadow => ", shadow",
        crate::manifest::HookMode::Enforce => "",
    };
    let on_error = match s.on_error {
        crate::manifest::OnError::Deny => "deny",
        crate::manifest::OnError::Skip => "skip",
    };
    let overridden = if s.config_overridden {
        ", config overridden"
    } else {
        ""
    };
    let head = format!("{n}. {} (on_error {on_error}{mode}{overridden})", s.hook);
    let result = match s.result {
        StepResult::Skipped => {
            return format!(
                "{head}: skipped: {} does not match\n",
                s.filter.unwrap_or("filter")
            );
        }
        StepResult::Applied => "applied",
        StepResult::Denied => "denied",
        StepResult::Failed => "failed",
    };
    let effect = match s.effect {
        Effect::NotRun | Effect::Applied => String::new(),
        Effect::RequestDenied => " → request denied".into(),
        Effect::RequestFailed => " → request fails (server_error)".into(),
        Effect::ChangesSkipped => " → its changes are skipped".into(),
        Effect::Ignored => " → ignored (shadow: nothing applied)".into(),
    };
    let mut out = format!("{head}: {result}{effect}\n");
    if let Some(c) = &s.changes {
        if c.scopes_added.is_empty()
            && c.scopes_removed.is_empty()
            && c.claims_set.is_empty()
            && c.claims_removed.is_empty()
        {
            out.push_str("   no changes\n");
        }
        if !c.scopes_added.is_empty() || !c.scopes_removed.is_empty() {
            out.push_str(&format!(
                "   scopes: {} → {}\n",
                list(&c.scopes_before),
                list(&c.scopes_after)
            ));
        }
        for scope in &c.scopes_added {
            out.push_str(&format!("     + {scope}\n"));
        }
        for scope in &c.scopes_removed {
            out.push_str(&format!("     - {scope}\n"));
        }
        for claim in &c.claims_set {
            out.push_str(&format!(
                "   claim {}: {} → {}\n",
                claim.name,
                value(&claim.old),
                value(&claim.new)
            ));
        }
        for claim in &c.claims_removed {
            out.push_str(&format!(
                "   claim {} removed (was {})\n",
                claim.name,
                value(&claim.old)
            ));
        }
    }
    if let Some(d) = &s.deny {
        out.push_str(&format!("   deny: {} ({})\n", d.error, d.description));
    }
    if let Some(f) = &s.failure {
        out.push_str(&format!("   failure: {}: {}\n", f.kind, f.cause));
    }
    for line in &s.logs {
        out.push_str(&format!("   log [{:?}]: {}\n", line.level, line.message));
    }
    if let Some(u) = &s.usage {
        out.push_str(&format!(
            "   fuel {} / {} · memory {} / {} · {} / {}\n",
            show_count(u.fuel_used),
            show_count(u.fuel_limit),
            show_size(u.memory_peak),
            show_size(u.memory_limit),
            show_duration(std::time::Duration::from_micros(u.time_us)),
            show_duration(std::time::Duration::from_micros(u.timeout_us)),
        ));
    }
    out
}
