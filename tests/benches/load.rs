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
//!   target directory, built by this bench with `cargo build --release`);
//! - `TOKENHOOK_BIN_B`: a second binary for an A/B in one run: each hook
//!   configuration also runs with it (marked `B`), right after the first, and
//!   its ratios are against the same sign-only baseline (of `TOKENHOOK_BIN`);
//! - `TOKENHOOK_HOOKS_B`: a directory with other builds of the example hooks
//!   (the same file names, e.g. hooks built against a changed SDK: `cargo
//!   build --target wasm32-unknown-unknown --profile hook --target-dir T -p
//!   tenant-claims -p scope-policy -p deny-list -p signed-claim`, then
//!   `T/wasm32-unknown-unknown/hook`): each hook configuration also runs with
//!   those modules (marked `, hooks B`) on `TOKENHOOK_BIN`, right after the
//!   first, against the same sign-only baseline;
//! - `TOKENHOOK_LOAD_REPEATS` (default 1): the whole sequence this many times,
//!   each repeat reported on its own (the machine is shared: read the range).
//!
//! Needs `wrk` and `taskset` (Debian: `apt-get install wrk util-linux`). With a
//! single CPU, server and wrk share it (the figures then say so).

use std::collections::BTreeMap;
use std::path::Path;

use tokenhook_tests::wrk::{self, FormPost, env_or, pinned_pair, release_bin, serve_pinned};
use tokenhook_tests::{CLIENT_SECRET, client_secret_hash, example_manifest, write_manifest_in};

struct Report {
    name: String,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Per hook, the median `duration_us` the server logged.
    hook_p50_us: BTreeMap<String, u64>,
}

/// `examples/manifest.toml` with the demo client's argon2 hash replaced by a
/// `sha256:` one and only the first `hooks` hooks kept, their modules from
/// `hooks_dir` if given (else from `cargo hooks`).
fn manifest(hooks: usize, hooks_dir: Option<&Path>) -> String {
    let mut text = example_manifest();
    if let Some(dir) = hooks_dir {
        text = text.replace("{hooks}", &dir.display().to_string());
    }
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

fn run(
    name: String,
    hooks: usize,
    bin: &Path,
    hooks_dir: Option<&Path>,
    cpus: (usize, usize),
) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = write_manifest_in(dir.path(), &manifest(hooks, hooks_dir));
    let log_path = dir.path().join("server.log");
    let (server, addr) = serve_pinned(bin, &manifest_path, cpus.0, &log_path, "info");
    let url = format!("http://{addr}/oauth/token");
    let post = FormPost {
        url: &url,
        body: "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example.com",
        basic: ("demo-client", CLIENT_SECRET),
    };
    let connections = env_or("TOKENHOOK_LOAD_CONNECTIONS", 8u32);
    let wrk = |seconds: u64| wrk::run(&post, dir.path(), cpus.1, connections, seconds);
    wrk(2); // warm-up: connections, caches, first-use paths
    let warm_lines = std::fs::read_to_string(&log_path).unwrap().lines().count();
    let measured = wrk(env_or("TOKENHOOK_LOAD_SECONDS", 10u64));
    drop(server);

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
        rate: measured.rate,
        p50_ms: measured.p50_ms,
        p99_ms: measured.p99_ms,
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
    let bin = release_bin();
    let bin_b = std::env::var_os("TOKENHOOK_BIN_B").map(std::path::PathBuf::from);
    let hooks_b = std::env::var_os("TOKENHOOK_HOOKS_B").map(std::path::PathBuf::from);
    let pinned = pinned_pair();
    let configs = std::env::var("TOKENHOOK_LOAD_CONFIGS").unwrap_or("sign,three,four".into());
    println!(
        "server on CPU {}, wrk on CPU {} ({} connections, {} s per configuration)",
        pinned.0,
        pinned.1,
        env_or("TOKENHOOK_LOAD_CONNECTIONS", 8u32),
        env_or("TOKENHOOK_LOAD_SECONDS", 10u64)
    );
    if let Some(b) = &bin_b {
        println!("A: {}\nB: {}", bin.display(), b.display());
    }
    if let Some(dir) = &hooks_b {
        println!("hooks B: {}", dir.display());
    }
    for repeat in 1..=env_or("TOKENHOOK_LOAD_REPEATS", 1u32) {
        println!("-- run {repeat}");
        let mut reports = Vec::new();
        for (key, name, hooks) in [
            ("sign", "sign only (baseline)", 0),
            ("three", "three example hooks", 3),
            ("four", "four example hooks", 4),
        ] {
            if !configs.split(',').any(|c| c.trim() == key) {
                continue;
            }
            let mut variants = vec![(name.to_string(), &bin, None)];
            if let Some(b) = bin_b.as_ref().filter(|_| hooks > 0) {
                variants.push((format!("{name} B"), b, None));
            }
            if let Some(dir) = hooks_b.as_deref().filter(|_| hooks > 0) {
                variants.push((format!("{name}, hooks B"), &bin, Some(dir)));
            }
            for (name, bin, hooks_dir) in variants {
                let report = run(name, hooks, bin, hooks_dir, pinned);
                println!(
                    "{:24} {:8.0} tokens/s, p50 {:6.2} ms, p99 {:6.2} ms",
                    report.name, report.rate, report.p50_ms, report.p99_ms
                );
                for (hook, us) in &report.hook_p50_us {
                    println!("    {hook:16} duration_us p50 {us:4}");
                }
                reports.push(report);
            }
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
}
