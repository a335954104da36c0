//! Load runs for the end-to-end benchmarks: the release server as its own
//! process pinned to one CPU, wrk pinned to another for a bounded run with a
//! fixed request, and the figures read back from wrk's report.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{ChildGroup, workspace_root};

/// A number from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The release server binary: `TOKENHOOK_BIN`, else built here with
/// `cargo build --release`.
pub fn release_bin() -> PathBuf {
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

/// `tokenhook serve` on `manifest`, pinned to `cpu`, its log in `log` (with
/// `RUST_LOG=rust_log`). Returns the process and its address.
pub fn serve_pinned(
    bin: &Path,
    manifest: &Path,
    cpu: usize,
    log: &Path,
    rust_log: &str,
) -> (ChildGroup, String) {
    let mut command = Command::new("taskset");
    command
        .args(["-c", &cpu.to_string()])
        .arg(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
        .arg(manifest)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("server log"));
    let mut server = ChildGroup::spawn(&mut command);
    let mut banner = String::new();
    BufReader::new(server.0.stdout.as_mut().expect("stdout"))
        .read_line(&mut banner)
        .expect("banner");
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!(
                "server did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .to_string();
    (server, addr)
}

/// What one wrk run measured.
#[derive(Clone, Debug)]
pub struct WrkReport {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub text: String,
}

/// A request for wrk to repeat: a form POST with Basic credentials.
pub struct FormPost<'a> {
    pub url: &'a str,
    pub body: &'a str,
    pub basic: (&'a str, &'a str),
}

/// CPUs this process may run on (from `taskset -p`'s view: the affinity list).
pub fn cpus() -> Vec<usize> {
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

/// Two CPUs to pin a server and wrk to (the same one on a single-CPU machine).
pub fn pinned_pair() -> (usize, usize) {
    match cpus().as_slice() {
        [a, b, ..] => (*a, *b),
        [a] => (*a, *a),
        [] => panic!("no CPU to run on"),
    }
}

/// Run wrk on `cpu` for `seconds` with `connections`, repeating `post`.
/// Every response must be 2xx.
pub fn run(
    post: &FormPost<'_>,
    dir: &Path,
    cpu: usize,
    connections: u32,
    seconds: u64,
) -> WrkReport {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", post.basic.0, post.basic.1));
    let script = dir.join("request.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\n\
             wrk.body = {body:?}\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"Basic {basic}\"\n",
            body = post.body
        ),
    )
    .unwrap();
    let out = Command::new("taskset")
        .args(["-c", &cpu.to_string(), "wrk", "--latency", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(&script)
        .arg(post.url)
        .output()
        .expect("wrk is needed: apt-get install wrk");
    assert!(out.status.success(), "wrk failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("Non-2xx"), "some requests failed:\n{text}");
    WrkReport {
        rate: field(&text, "Requests/sec:"),
        p50_ms: field(&text, "50%"),
        p99_ms: field(&text, "99%"),
        text,
    }
}

/// A figure from wrk's report, in milliseconds for latencies.
fn field(text: &str, label: &str) -> f64 {
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
}
