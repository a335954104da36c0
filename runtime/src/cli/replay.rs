//! `tokenhook replay`: run captured hook events through a new module and
//! report how outcomes change.
//!
//! Each event runs under the limits, capabilities and policy recorded with
//! it, through the same engine and `policy::apply` as the issuer, so an
//! outcome is what the issuer would have done with that hook in that place.
//! The baseline is `--against OLD` run the same way, else the outcome the
//! capture recorded.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value};
use tokenhook_sdk::wire::Event;

use crate::capture::{Record, RecordedUsage, Verdict};
use crate::engine::{EngineSettings, HookEngine, HookModule, Limits};
use crate::hooks::{HookCall, HookFailure, HookRunner, Prepared};
use crate::policy::{self, Applied, Rules};
use crate::units::{show_count, show_duration, show_size};

#[derive(Args)]
pub struct ReplayArgs {
    /// A capture file (JSON Lines, from a hook's `capture` setting).
    #[arg(long)]
    events: PathBuf,
    /// The module to try (.wasm, or .wat text).
    #[arg(long)]
    hook: PathBuf,
    /// Compare with this module run on the same events, instead of the
    /// outcomes the capture recorded.
    #[arg(long)]
    against: Option<PathBuf>,
    /// Config (JSON) for the modules, replacing each event's `config`.
    #[arg(long)]
    config: Option<String>,
    /// A secret for the modules, `NAME=VALUE` (captures never hold secrets); repeatable.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,
    /// How many differences to show as examples. Default 5.
    #[arg(long, default_value_t = 5)]
    examples: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The replay's findings.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Events replayed.
    pub events: usize,
    /// Lines that were not capture records (skipped).
    pub unreadable: usize,
    /// `captured` or the `--against` module's path.
    pub baseline: String,
    pub unchanged: usize,
    /// Events whose outcome differs in any way below.
    pub changed: usize,
    /// Both applied, with different scopes.
    pub scopes_changed: usize,
    /// Both applied, with different claims.
    pub claims_changed: usize,
    pub denies: Transitions,
    pub failures: Transitions,
    pub usage: UsageDeltas,
    pub examples: Vec<Example>,
}

/// How often an outcome kind appears, disappears or changes.
#[derive(Debug, Default, Serialize)]
pub struct Transitions {
    /// The new module does it where the baseline did not.
    pub new: usize,
    /// The baseline did it and the new module does not.
    pub gone: usize,
    /// Both do it, differently (another error code or description, another failure kind).
    pub changed: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct UsageDeltas {
    pub fuel_mean_baseline: u64,
    pub fuel_mean_new: u64,
    pub fuel_max_baseline: u64,
    pub fuel_max_new: u64,
    pub memory_peak_max_baseline: u64,
    pub memory_peak_max_new: u64,
    pub time_us_mean_baseline: u64,
    pub time_us_mean_new: u64,
}

/// One changed event.
#[derive(Debug, Serialize)]
pub struct Example {
    pub request_id: String,
    pub client: String,
    pub api: String,
    pub differences: Vec<String>,
    pub baseline: Verdict,
    pub new: Verdict,
}

pub fn run(args: ReplayArgs) -> ExitCode {
    match replay(&args) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("reports serialize")
                );
            } else {
                print!("{}", readable(&report, &args));
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// A module, loaded once per distinct recorded limits, its config prepared
/// once per distinct recorded config (a capture's records nearly always
/// share one).
struct Modules {
    engine: HookEngine,
    bytes: Vec<u8>,
    path: PathBuf,
    loaded: HashMap<String, Loaded>,
}

struct Loaded {
    module: HookModule,
    /// Per config (JSON text), what [`HookRunner::prepare`] made of it.
    prepared: HashMap<Vec<u8>, Result<Option<Prepared>, HookFailure>>,
}

impl Modules {
    fn new(engine: HookEngine, path: &Path) -> Result<Modules, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Modules {
            engine,
            bytes,
            path: path.to_path_buf(),
            loaded: HashMap::new(),
        })
    }

    /// Run the module on one recorded event, as the issuer would: through
    /// the chain's runner seam, a hook that prepares its config once getting
    /// the recorded config first.
    fn judge(
        &mut self,
        limits: Limits,
        input: &[u8],
        event: &Event,
        record: &Record,
    ) -> Result<(Verdict, RecordedUsage), String> {
        let key = format!("{limits:?}");
        if !self.loaded.contains_key(&key) {
            let module = self
                .engine
                .load(&self.bytes, None, limits)
                .map_err(|f| format!("{}: refused at load: {f}", self.path.display()))?;
            let prepared = HashMap::new();
            self.loaded.insert(key.clone(), Loaded { module, prepared });
        }
        let loaded = self.loaded.get_mut(&key).expect("inserted above");
        let config_json = serde_json::to_vec(&event.config).expect("config serializes");
        let module = &loaded.module;
        let prepared = loaded
            .prepared
            .entry(config_json)
            .or_insert_with_key(|config| HookRunner::prepare(module, config));
        let call = match prepared {
            Ok(Some(prepared)) => HookRunner::call_prepared(module, prepared, input),
            Ok(None) => HookRunner::call(module, input),
            Err(failure) => {
                let verdict = Verdict::Failed {
                    kind: failure.kind.as_str().into(),
                    cause: format!("config refused at load: {}", failure.message),
                };
                return Ok((verdict, RecordedUsage::default()));
            }
        };
        Ok(judge(call, event, record))
    }
}

fn replay(args: &ReplayArgs) -> Result<ReplayReport, String> {
    let config = args
        .config
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(|e| format!("--config is not JSON: {e}"))?;
    let mut secrets = Map::new();
    for pair in &args.secrets {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            format!(
                "--secret `{}` is not NAME=VALUE",
                pair.split('=').next().unwrap_or("")
            )
        })?;
        secrets.insert(name.to_string(), Value::String(value.to_string()));
    }
    let engine = HookEngine::new(EngineSettings::default());
    let mut new = Modules::new(engine.clone(), &args.hook)?;
    let mut old = args
        .against
        .as_deref()
        .map(|p| Modules::new(engine.clone(), p))
        .transpose()?;
    let file = std::fs::File::open(&args.events)
        .map_err(|e| format!("cannot read {}: {e}", args.events.display()))?;
    let mut report = ReplayReport {
        baseline: match &args.against {
            Some(p) => p.display().to_string(),
            None => "captured".into(),
        },
        ..ReplayReport::default()
    };
    let (mut fuel, mut time) = ((0u128, 0u128), (0u128, 0u128));
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", args.events.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(mut record) = serde_json::from_str::<Record>(&line) else {
            report.unreadable += 1;
            continue;
        };
        if let Some(obj) = record.event.as_object_mut() {
            if let Some(config) = &config {
                obj.insert("config".into(), config.clone());
            }
            obj.insert("secrets".into(), Value::Object(secrets.clone()));
        }
        let Ok(event) = serde_json::from_value::<Event>(record.event.clone()) else {
            report.unreadable += 1;
            continue;
        };
        let input = serde_json::to_vec(&record.event).expect("events serialize");
        let limits: Limits = record.rules.limits.into();
        let (new_verdict, new_usage) = new.judge(limits, &input, &event, &record)?;
        let (base_verdict, base_usage) = match &mut old {
            Some(old) => old.judge(limits, &input, &event, &record)?,
            None => (record.outcome.clone(), record.usage),
        };
        report.events += 1;
        fuel.0 += base_usage.fuel_used as u128;
        fuel.1 += new_usage.fuel_used as u128;
        time.0 += base_usage.time_us as u128;
        time.1 += new_usage.time_us as u128;
        let u = &mut report.usage;
        u.fuel_max_baseline = u.fuel_max_baseline.max(base_usage.fuel_used);
        u.fuel_max_new = u.fuel_max_new.max(new_usage.fuel_used);
        u.memory_peak_max_baseline = u.memory_peak_max_baseline.max(base_usage.memory_peak);
        u.memory_peak_max_new = u.memory_peak_max_new.max(new_usage.memory_peak);
        let differences = compare(&base_verdict, &new_verdict, &mut report);
        if differences.is_empty() {
            report.unchanged += 1;
            continue;
        }
        report.changed += 1;
        if report.examples.len() < args.examples {
            report.examples.push(Example {
                request_id: event.request_id.clone(),
                client: event.client.id.clone(),
                api: event.api.identifier.clone(),
                differences,
                baseline: base_verdict,
                new: new_verdict,
            });
        }
    }
    if report.events > 0 {
        let n = report.events as u128;
        report.usage.fuel_mean_baseline = (fuel.0 / n) as u64;
        report.usage.fuel_mean_new = (fuel.1 / n) as u64;
        report.usage.time_us_mean_baseline = (time.0 / n) as u64;
        report.usage.time_us_mean_new = (time.1 / n) as u64;
    }
    Ok(report)
}

/// Judge one call's output as the issuer would.
fn judge(call: HookCall, event: &Event, record: &Record) -> (Verdict, RecordedUsage) {
    let usage = RecordedUsage::from(call.usage);
    let verdict = match call.outcome {
        Err(failure) => Verdict::Failed {
            kind: failure.kind.as_str().into(),
            cause: failure.message,
        },
        Ok(commands) => {
            let rules = Rules {
                claim_namespaces: &record.rules.claim_namespaces,
                added_scopes_within_grant: record.rules.added_scopes_within_grant,
                max_claims: record.rules.max_claims,
                max_claims_size: record.rules.max_claims_size,
                api_scopes: &event.api.scopes,
                granted_scopes: &event.granted_scopes,
            };
            let caps = record.rules.capabilities.to_capabilities();
            match policy::apply(&event.token, commands, &caps, &rules) {
                Ok(Applied::Changed(token, _)) => Verdict::Applied {
                    scopes: token.scopes,
                    claims: token.claims,
                },
                Ok(Applied::Denied(deny)) => Verdict::Denied {
                    error: deny.error,
                    description: deny.description,
                },
                Err(violation) => Verdict::Failed {
                    kind: "policy_violation".into(),
                    cause: violation,
                },
            }
        }
    };
    (verdict, usage)
}

fn show(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_else(|| "(absent)".into())
}

/// What differs between two outcomes, counted into `report`; empty: same.
fn compare(base: &Verdict, new: &Verdict, report: &mut ReplayReport) -> Vec<String> {
    let mut out = Vec::new();
    if let (
        Verdict::Applied {
            scopes: s0,
            claims: c0,
        },
        Verdict::Applied {
            scopes: s1,
            claims: c1,
        },
    ) = (base, new)
    {
        {
            if s0 != s1 {
                report.scopes_changed += 1;
                let added: Vec<&str> = s1
                    .iter()
                    .filter(|s| !s0.contains(s))
                    .map(String::as_str)
                    .collect();
                let removed: Vec<&str> = s0
                    .iter()
                    .filter(|s| !s1.contains(s))
                    .map(String::as_str)
                    .collect();
                out.push(format!(
                    "scopes: `{}` → `{}` (added: {}; removed: {})",
                    s0.join(" "),
                    s1.join(" "),
                    if added.is_empty() {
                        "none".into()
                    } else {
                        added.join(" ")
                    },
                    if removed.is_empty() {
                        "none".into()
                    } else {
                        removed.join(" ")
                    },
                ));
            }
            if c0 != c1 {
                report.claims_changed += 1;
                let mut names: Vec<&String> = c0.keys().chain(c1.keys()).collect();
                names.sort();
                names.dedup();
                for name in names {
                    let (a, b) = (c0.get(name), c1.get(name));
                    if a != b {
                        out.push(format!("claim {name}: {} → {}", show(a), show(b)));
                    }
                }
            }
        }
    }
    let deny = |v: &Verdict| match v {
        Verdict::Denied { error, description } => {
            Some(format!("{} ({description})", error.as_str()))
        }
        _ => None,
    };
    let fail = |v: &Verdict| match v {
        Verdict::Failed { kind, .. } => Some(kind.clone()),
        _ => None,
    };
    let describe = |v: &Verdict| match v {
        Verdict::Applied { .. } => "applied".to_string(),
        Verdict::Denied { error, .. } => format!("denied {}", error.as_str()),
        Verdict::Failed { kind, .. } => format!("failed {kind}"),
    };
    match (deny(base), deny(new)) {
        (None, Some(d)) => {
            report.denies.new += 1;
            out.push(format!("now denies: {d} (was {})", describe(base)));
        }
        (Some(d), None) => {
            report.denies.gone += 1;
            out.push(format!("no longer denies: {d} (now {})", describe(new)));
        }
        (Some(a), Some(b)) if a != b => {
            report.denies.changed += 1;
            out.push(format!("deny: {a} → {b}"));
        }
        _ => {}
    }
    match (fail(base), fail(new)) {
        (None, Some(k)) => {
            report.failures.new += 1;
            let cause = match new {
                Verdict::Failed { cause, .. } => cause.as_str(),
                _ => "",
            };
            out.push(format!("now fails: {k}: {cause} (was {})", describe(base)));
        }
        (Some(k), None) => {
            report.failures.gone += 1;
            out.push(format!("no longer fails: {k} (now {})", describe(new)));
        }
        (Some(a), Some(b)) if a != b => {
            report.failures.changed += 1;
            out.push(format!("failure: {a} → {b}"));
        }
        _ => {}
    }
    out
}

fn percent(base: u64, new: u64) -> String {
    if base == 0 {
        return String::new();
    }
    format!(
        " ({:+.1} %)",
        (new as f64 - base as f64) * 100.0 / base as f64
    )
}

fn readable(r: &ReplayReport, args: &ReplayArgs) -> String {
    let against = match &args.against {
        Some(p) => p.display().to_string(),
        None => "the captured outcomes".into(),
    };
    let mut out = format!(
        "replayed {} events from {} through {} against {}\n",
        r.events,
        args.events.display(),
        args.hook.display(),
        against
    );
    if r.unreadable > 0 {
        out.push_str(&format!(
            "  {} lines were not capture records (skipped)\n",
            r.unreadable
        ));
    }
    out.push_str(&format!(
        "  unchanged {} · changed {}\n  scopes differ: {} · claims differ: {}\n",
        r.unchanged, r.changed, r.scopes_changed, r.claims_changed
    ));
    out.push_str(&format!(
        "  denies: {} new, {} gone, {} changed · failures: {} new, {} gone, {} changed\n",
        r.denies.new,
        r.denies.gone,
        r.denies.changed,
        r.failures.new,
        r.failures.gone,
        r.failures.changed
    ));
    let u = &r.usage;
    out.push_str(&format!(
        "  fuel (mean): {} → {}{} · fuel (max): {} → {}\n  memory (max): {} → {} · time (mean): {} → {}\n",
        show_count(u.fuel_mean_baseline),
        show_count(u.fuel_mean_new),
        percent(u.fuel_mean_baseline, u.fuel_mean_new),
        show_count(u.fuel_max_baseline),
        show_count(u.fuel_max_new),
        show_size(u.memory_peak_max_baseline),
        show_size(u.memory_peak_max_new),
        show_duration(std::time::Duration::from_micros(u.time_us_mean_baseline)),
        show_duration(std::time::Duration::from_micros(u.time_us_mean_new)),
    ));
    if !r.examples.is_empty() {
        out.push_str(&format!("first {} differences:\n", r.examples.len()));
        for ex in &r.examples {
            out.push_str(&format!(
                "  {} (client {} → {}):\n",
                ex.request_id, ex.client, ex.api
            ));
            for d in &ex.differences {
                out.push_str(&format!("    {d}\n"));
            }
        }
    }
    out
}
