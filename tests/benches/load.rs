//! End-to-end load run over real HTTP on 127.0.0.1, the way a deployment runs:
//! the release `tokenhook serve` binary as its own process pinned to one core,
//! wrk pinned to the other, and the same request stream against three
//! configurations measured in the same run:
//!
//! - `sign only`: no hooks, the baseline every ratio is against;
//! - `three hooks`: the first three example hooks (tenant-claims,
//!   scope-policy, deny-list), the configuration the hot-path goal names;
//! - `four hooks`: all four example hooks (signed-claim adds an HMAC).
//!
//! The client authenticates with a `sha256:` secret (argon2 verification would
//! be remembered after the first request anyway, but `sha256:` is what a
//! generated secret uses). Besides tokens/s and wrk's latency percentiles, it
//! reports each hook's p50 `duration_us` as the server itself logged it.
//! Bounded: every phase is a fixed wrk duration.
//!
//! `cargo bench -p tokenhook-tests --bench load`
//!
//! - `TOKENHOOK_LOAD_SECONDS` (default 10): measured seconds per configuration;
//! - `TOKENHOOK_LOAD_CONNECTIONS` (default 8): wrk connections;
//! - `TOKENHOOK_LOAD_CONFIGS` (default `sign,three,four`): which to run;
//! - `TOKENHOOK_BIN`: the server binary (default: `release/tokenhook` in the
//!   target directory, built by this bench with `cargo build --release`).
//!
//! Needs `wrk` and `taskset` (Debian: `apt-get install wrk util-linux`). With a
//! single CPU, server and wrk share it (the figures then say so).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use tokenhook_tests::{
    CLIENT_SECRET, ChildGroup, client_secret_hash, example_manifest, workspace_root,
    write_manifest_in,
};

struct Report {
    name: &'static str,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Per hook, the median `duration_us` the server logged.
    hook_p50_us: BTreeMap<String, u64>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The release server binary, built once unless `TOKENHOOK_BIN` names one.
fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TOKENHOOK_BIN") {
        return bin.into();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "tokenhook",
            "--bin",
            "tokenhook",
        ])
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build --release");
    assert!(status.success(), "building the release binary failed");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("release/tokenhook")
}

/// `examples/manifest.toml` with the demo client's argon2 hash replaced by a
/// `sha256:` one and only the first `hooks` hooks kept.
fn manifest(hooks: usize) -> String {
    let text = example_manifest();
    let argon = text
        .lines()
        .find(|l| l.starts_with("secret_hash = \"$argon2"))
        .expect("demo client's argon2 hash")
        .to_string();
    let text = text.replacen(
        &argon,
        &format!("secret_hash = {:?}", client_secret_hash()),
        1,
    );
    let mut parts = text.split("[[hooks]]");
    let mut out = parts.next().unwrap().to_string();
    for part in parts.take(hooks) {
        out.push_str("[[hooks]]");
        out.push_str(part);
    }
    out
}

/// CPUs this process may run on (from `taskset -p`'s view: the affinity list).
fn cpus() -> Vec<usize> {
    let out = Command::new("taskset")
        .args(["-cp", &std::process::id().to_string()])
        .output()
        .expect("taskset (util-linux) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    let list = text.rsplit(':').next().unwrap_or("").trim().to_string();
    let mut cpus = Vec::new();
    for range in list.split(',').filter(|r| !r.is_empty()) {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap());
    }
    cpus
}

fn run(name: &'static str, hooks: usize, bin: &Path, cpus: (usize, usize)) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = write_manifest_in(dir.path(), &manifest(hooks));
    let log_path = dir.path().join("server.log");
    let mut command = Command::new("taskset");
    command
        .args(["-c", &cpus.0.to_string()])
        .arg(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
        .arg(&manifest_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let mut server = ChildGroup::spawn(&mut command);
    let mut banner = String::new();
    BufReader::new(server.0.stdout.as_mut().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!(
                "{name}: server did not start: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        })
        .to_string();

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("demo-client:{CLIENT_SECRET}"));
    let script = dir.path().join("token.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\n\
             wrk.body = \"grant_type=client_credentials&audience=https%3A%2F%2Fapi.example.com\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"Basic {basic}\"\n"
        ),
    )
    .unwrap();
    let wrk = |seconds: u64| {
        let out = Command::new("taskset")
            .args(["-c", &cpus.1.to_string(), "wrk", "--latency", "-t1"])
            .arg(format!("-c{}", env_or("TOKENHOOK_LOAD_CONNECTIONS", 8u32)))
            .arg(format!("-d{seconds}s"))
            .arg("-s")
            .arg(&script)
            .arg(format!("http://{addr}/oauth/token"))
            .output()
            .expect("wrk is needed: apt-get install wrk");
        assert!(out.status.success(), "wrk failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.contains("Non-2xx"),
            "{name}: some requests failed:\n{text}"
        );
        text
    };
    wrk(2); // warm-up: connections, caches, first-use paths
    let warm_lines = std::fs::read_to_string(&log_path).unwrap().lines().count();
    let text = wrk(env_or("TOKENHOOK_LOAD_SECONDS", 10u64));
    drop(server);

    let field = |label: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in wrk output:\n{text}"));
        let value = line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap();
        let (number, scale) = if let Some(v) = value.strip_suffix("us") {
            (v, 1e-3)
        } else if let Some(v) = value.strip_suffix("ms") {
            (v, 1.0)
        } else if let Some(v) = value.strip_suffix('s') {
            (v, 1e3)
        } else {
            (value, 1.0)
        };
        number.parse::<f64>().unwrap() * scale
    };
    // The server's own per-hook durations, from the measured phase only.
    let mut durations: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .skip(warm_lines)
    {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &entry["fields"];
        if let (Some(hook), Some(us)) = (fields["hook"].as_str(), fields["duration_us"].as_u64()) {
            durations.entry(hook.to_string()).or_default().push(us);
        }
    }
    Report {
        name,
        rate: field("Requests/sec:"),
        p50_ms: field("50%"),
        p99_ms: field("99%"),
        hook_p50_us: durations
            .into_iter()
            .map(|(hook, mut us)| {
                us.sort_unstable();
                (hook, us[us.len() / 2])
            })
            .collect(),
    }
}

fn main() {
    let bin = server_bin();
    let cpus = cpus();
    let pinned = match cpus.as_slice() {
        [a, b, ..] => (*a, *b),
        [a] => (*a, *a),
        [] => panic!("no CPU to run on"),
    };
    let configs = std::env::var("TOKENHOOK_LOAD_CONFIGS").unwrap_or("sign,three,four".into());
    println!(
        "server on CPU {}, wrk on CPU {} ({} connections, {} s per configuration)",
        pinned.0,
        pinned.1,
        env_or("TOKENHOOK_LOAD_CONNECTIONS", 8u32),
        env_or("TOKENHOOK_LOAD_SECONDS", 10u64)
    );
    let mut reports = Vec::new();
    for (key, name, hooks) in [
        ("sign", "sign only (baseline)", 0),
        ("three", "three example hooks", 3),
        ("four", "four example hooks", 4),
    ] {
        if !configs.split(',').any(|c| c.trim() == key) {
            continue;
        }
        let report = run(name, hooks, &bin, pinned);
        println!(
            "{:22} {:8.0} tokens/s, p50 {:6.2} ms, p99 {:6.2} ms",
            report.name, report.rate, report.p50_ms, report.p99_ms
        );
        for (hook, us) in &report.hook_p50_us {
            println!("    {hook:16} duration_us p50 {us:4}");
        }
        reports.push(report);
    }
    if let Some(base) = reports.iter().find(|r| r.name.starts_with("sign")) {
        for report in reports.iter().filter(|r| !r.name.starts_with("sign")) {
            // Per request, the time the hooks add on the server's core.
            let hooks = report.hook_p50_us.len().max(1) as f64;
            let added_us = (1e6 / report.rate - 1e6 / base.rate) / hooks;
            println!(
                "{} vs baseline: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x; {:.1} µs of server CPU per hook",
                report.name,
                report.rate / base.rate,
                report.p50_ms / base.p50_ms,
                report.p99_ms / base.p99_ms,
                added_us
            );
        }
    }
}
