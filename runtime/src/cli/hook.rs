//! `tokenhook hook check` and `tokenhook hook run`: the hook author's local runner.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tokenhook_sdk::wire::{ABI_VERSION, Event};

use crate::engine::{EngineSettings, HookEngine, Limits};
use crate::units::{parse_duration, parse_size, show_count, show_duration, show_size};

#[derive(Subcommand)]
pub enum HookCommand {
    /// Write a new hook crate (inside a tokenhook workspace: a member; elsewhere:
    /// standalone) that passes `cargo test` and builds to wasm as generated.
    New(super::scaffold::NewArgs),
    /// Print a module's digest, contract version, exports and imports; exit
    /// non-zero naming what breaks the contract.
    Check {
        /// The hook module (.wasm, or .wat text).
        file: PathBuf,
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// Run a hook on an event and print its commands (stdout) and its resource
    /// use against its limits (stderr), with the median time of warm calls.
    Run {
        /// The hook module (.wasm, or .wat text).
        file: PathBuf,
        /// The event JSON (see docs/hook-abi.md); missing fields take defaults.
        #[arg(long)]
        event: PathBuf,
        /// The hook's configuration as JSON; replaces the event's `config`.
        #[arg(long)]
        config: Option<String>,
        /// A secret for the hook, `NAME=VALUE`; repeatable. Replaces the event's `secrets`.
        #[arg(long = "secret", value_name = "NAME=VALUE")]
        secrets: Vec<String>,
        /// Pin the module's SHA-256 (hex), as a manifest would.
        #[arg(long)]
        sha256: Option<String>,
        #[command(flatten)]
        limits: LimitFlags,
    },
}

/// Per-hook limits; defaults are the host's (see docs/hook-abi.md).
#[derive(Args)]
pub struct LimitFlags {
    /// Fuel per call.
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock deadline, e.g. 20ms.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Linear-memory cap, e.g. 4MiB.
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// Wasm stack cap, e.g. 256KiB.
    #[arg(long, value_parser = parse_size)]
    stack: Option<u64>,
    /// Table elements cap.
    #[arg(long)]
    table_elements: Option<u64>,
    /// Event size cap, e.g. 64KiB.
    #[arg(long, value_parser = parse_size)]
    max_input: Option<u64>,
    /// Output size cap, e.g. 64KiB.
    #[arg(long, value_parser = parse_size)]
    max_output: Option<u64>,
}

impl LimitFlags {
    fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            fuel: self.fuel.unwrap_or(d.fuel),
            timeout: self.timeout.unwrap_or(d.timeout),
            memory: self.memory.unwrap_or(d.memory),
            stack: self.stack.unwrap_or(d.stack),
            table_elements: self.table_elements.unwrap_or(d.table_elements),
            max_input: self.max_input.unwrap_or(d.max_input),
            max_output: self.max_output.unwrap_or(d.max_output),
        }
    }
}

pub fn run(cmd: HookCommand) -> ExitCode {
    let result = match cmd {
        HookCommand::New(args) => return super::scaffold::run(args),
        HookCommand::Check { file, limits } => check(&file, &limits.limits()),
        HookCommand::Run {
            file,
            event,
            config,
            secrets,
            sha256,
            limits,
        } => run_hook(
            &file,
            &event,
            config,
            &secrets,
            sha256.as_deref(),
            limits.limits(),
        ),
    };
    result.unwrap_or_else(|message| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn check(file: &Path, limits: &Limits) -> Result<ExitCode, String> {
    let bytes = read(file)?;
    let (info, violation) = HookEngine::inspect(&bytes, limits);
    let info = match info {
        Ok(info) => info,
        Err(failure) => {
            eprintln!("{}: {failure}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&info).expect("module info serializes")
    );
    match violation {
        None => {
            eprintln!("{}: ok, hook contract v{ABI_VERSION}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(failure) => {
            eprintln!("{}: {failure}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_hook(
    file: &Path,
    event_path: &Path,
    config: Option<String>,
    secrets: &[String],
    sha256: Option<&str>,
    limits: Limits,
) -> Result<ExitCode, String> {
    let event = build_event(&read(event_path)?, event_path, config, secrets)?;
    let input = serde_json::to_vec(&event).expect("event serializes");
    let bytes = read(file)?;
    let engine = HookEngine::new(EngineSettings::default());
    let module = match engine.load(&bytes, sha256, limits) {
        Ok(module) => module,
        Err(failure) => {
            eprintln!("{}: refused at load: {failure}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    // A hook that prepares its config once gets it now, as the issuer gives
    // it at load.
    let config_json = serde_json::to_vec(&event.config).expect("config serializes");
    let prepared = match module.prepare(&config_json) {
        Ok(prepared) => prepared,
        Err(failure) => {
            eprintln!("{}: config refused at load: {failure}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let call = module.call_prepared(prepared.as_ref(), &input);
    let usage = call.usage;
    let mut report = format!(
        "fuel {} / {} · memory {} / {} · {} / {}",
        show_count(usage.fuel_used),
        show_count(limits.fuel),
        show_size(usage.memory_peak),
        show_size(limits.memory),
        show_duration(usage.wall_time),
        show_duration(limits.timeout),
    );
    match call.outcome {
        Ok(commands) => {
            if let Some(warm) = warm_call_time(&module, prepared.as_ref(), &input) {
                report.push_str(&format!(" · warm {}", show_duration(warm)));
            }
            if let Some(prepared) = &prepared {
                report.push_str(&format!(
                    " · config prepared at load ({} per call)",
                    show_size(prepared.len() as u64)
                ));
            }
            let out = json!({ "commands": commands, "logs": call.logs, "logs_dropped": call.logs_dropped });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("output serializes")
            );
            eprintln!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            for line in &call.logs {
                eprintln!("hook log [{:?}]: {}", line.level, line.message);
            }
            eprintln!("hook failed: {failure}");
            eprintln!("{report}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The median wall time of repeated calls on the same event, each in a fresh
/// instance as in the server. The first call of a process pays for faulting in
/// its memory slot and cold caches, which a server pays once; this is the
/// figure a hook costs per token request. Bounded: at most
/// [`WARM_CALLS`] calls or [`WARM_BUDGET`] of wall time.
fn warm_call_time(
    module: &crate::engine::HookModule,
    prepared: Option<&crate::engine::PreparedConfig>,
    input: &[u8],
) -> Option<std::time::Duration> {
    let started = std::time::Instant::now();
    let mut times = Vec::with_capacity(WARM_CALLS);
    while times.len() < WARM_CALLS && started.elapsed() < WARM_BUDGET {
        let call = module.call_prepared(prepared, input);
        call.outcome.ok()?;
        times.push(call.usage.wall_time);
    }
    times.sort();
    times.get(times.len() / 2).copied()
}

const WARM_CALLS: usize = 200;
const WARM_BUDGET: std::time::Duration = std::time::Duration::from_millis(200);

/// Fill a possibly partial event file: missing fields take their defaults, and
/// `--config` / `--secret` replace the event's own.
fn build_event(
    raw: &[u8],
    path: &Path,
    config: Option<String>,
    secrets: &[String],
) -> Result<Event, String> {
    let mut value: Value =
        serde_json::from_slice(raw).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| format!("{} must hold a JSON object", path.display()))?;
    obj.entry("version").or_insert(json!(ABI_VERSION));
    if let Some(config) = config {
        let config: Value =
            serde_json::from_str(&config).map_err(|e| format!("--config is not JSON: {e}"))?;
        obj.insert("config".into(), config);
    }
    if !secrets.is_empty() {
        let mut map = serde_json::Map::new();
        for pair in secrets {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                format!(
                    "--secret `{}` is not NAME=VALUE",
                    pair.split('=').next().unwrap_or("")
                )
            })?;
            map.insert(name.to_string(), Value::String(value.to_string()));
        }
        obj.insert("secrets".into(), Value::Object(map));
    }
    serde_json::from_value(value)
        .map_err(|e| format!("{} is not a hook event: {e}", path.display()))
}
