//! Under attack (issue 11.5): the release `tokenhook serve` binary on
//! 127.0.0.1, first with valid clients alone, then with the same valid
//! clients during a wrong-secret flood on an argon2id client (plus unknown
//! ids) and requests that trip a hostile hook (an infinite loop cut by its
//! deadline). Reports the valid clients' p50/p99 in both phases, the
//! attackers' answers by status, and the server's RSS (sampled from
//! /proc/<pid>/status; VmHWM is the peak). Fails on any wrong answer: a valid
//! request not answered 200, or an attacker answered 200. Bounded: each
//! phase runs a fixed time and the run stops by itself.
//!
//! `cargo bench -p tokenhook-tests --bench attack`
//!
//! - `TOKENHOOK_ATTACK_SECONDS` (default 10): seconds per phase;
//! - `TOKENHOOK_ATTACK_FLOODERS` (default 16): concurrent wrong-secret senders;
//! - `TOKENHOOK_BIN`: the server binary (default `target/release/tokenhook`,
//!   built by this bench).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokenhook_tests::{ChildGroup, hook_wasm, hostile, workspace_root};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn server_bin() -> std::path::PathBuf {
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
        .expect("cargo build --release");
    assert!(status.success());
    workspace_root().join("target/release/tokenhook")
}

const APP_SECRET: &str = "app-secret-0123456789abcdefghijklmnopqrstuv";
const DEMO_SECRET: &str = "demo-secret";

fn manifest(dir: &std::path::Path) -> String {
    let sha = format!(
        "sha256:{}",
        tokenhook::engine::sha256_hex(APP_SECRET.as_bytes())
    );
    let argon = tokenhook::clients::hash_argon2(DEMO_SECRET).unwrap();
    let wasm = |n: &str| format!("{:?}", hook_wasm(n).display().to_string());
    format!(
        r#"issuer = "https://issuer.test/"
keys = {{ source = "file", path = "{key}", alg = "ES256" }}

[policy]
claim_namespaces = ["https://example.com/"]

[[apis]]
identifier = "https://api.test"
scopes = ["read:orders", "write:orders", "read:status"]

[[clients]]
id = "app"
secret_hash = "{sha}"
metadata = {{ tenant = "acme" }}

[[clients]]
id = "demo"
secret_hash = "{argon}"
metadata = {{ tenant = "acme" }}

[[clients]]
id = "hostile"
secret_hash = "{sha}"

[[grants]]
client = "app"
api = "https://api.test"
scopes = ["read:orders"]

[[grants]]
client = "demo"
api = "https://api.test"
scopes = ["read:orders"]

[[grants]]
client = "hostile"
api = "https://api.test"
scopes = ["read:orders"]

[[hooks]]
name = "tenant-claims"
module = {tenant}
capabilities = {{ claims = ["https://example.com/"] }}
config = {{ namespace = "https://example.com/" }}

[[hooks]]
name = "deny-list"
module = {deny}
config = {{ clients = ["retired"], ips = ["192.0.2.0/24"] }}

[[hooks]]
name = "loop"
module = {looping:?}
match = {{ clients = ["hostile"] }}
limits = {{ timeout = "20ms" }}
"#,
        key = dir.join("key.pem").display(),
        tenant = wasm("tenant_claims"),
        deny = wasm("deny_list"),
        looping = hostile("infinite_loop").display().to_string(),
    )
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Valid clients in a loop (one request at a time per worker): latencies.
async fn valid_load(base: String, stop: Arc<AtomicBool>, workers: usize) -> (Vec<Duration>, usize) {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (base, stop) = (base.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (id, secret) = if w % 2 == 0 {
                ("app", APP_SECRET)
            } else {
                ("demo", DEMO_SECRET)
            };
            let mut times = Vec::new();
            let mut wrong = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let resp = http
                    .post(format!("{base}/oauth/token"))
                    .basic_auth(id, Some(secret))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("audience", "https://api.test"),
                    ])
                    .send()
                    .await;
                let ok = matches!(&resp, Ok(r) if r.status() == 200);
                if let Ok(r) = resp {
                    let _ = r.bytes().await;
                }
                times.push(started.elapsed());
                if !ok {
                    wrong += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (times, wrong)
        }));
    }
    let mut all = Vec::new();
    let mut wrong = 0;
    for t in tasks {
        let (times, w) = t.await.unwrap();
        all.extend(times);
        wrong += w;
    }
    all.sort_unstable();
    (all, wrong)
}

/// Attackers: wrong secrets for `demo` (argon2id) and unknown ids, and the
/// hostile-hook client. Counts answers by (kind, status).
async fn attack(
    base: String,
    stop: Arc<AtomicBool>,
    flooders: usize,
) -> BTreeMap<(String, u16), u64> {
    let mut tasks = Vec::new();
    for w in 0..flooders + 2 {
        let (base, stop) = (base.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut counts: BTreeMap<(String, u16), u64> = BTreeMap::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (kind, id, secret) = if w >= flooders {
                    (
                        "hostile hook",
                        "hostile".to_string(),
                        APP_SECRET.to_string(),
                    )
                } else if w % 4 == 3 {
                    (
                        "unknown id",
                        format!("ghost-{w}-{}", n % 50),
                        format!("guess-{n}"),
                    )
                } else {
                    (
                        "wrong secret (argon2)",
                        "demo".to_string(),
                        format!("guess-{n}"),
                    )
                };
                let status = http
                    .post(format!("{base}/oauth/token"))
                    .basic_auth(&id, Some(&secret))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("audience", "https://api.test"),
                    ])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                *counts.entry((kind.to_string(), status)).or_default() += 1;
            }
            counts
        }));
    }
    let mut all = BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

fn main() {
    let bin = server_bin();
    let seconds: u64 = env_or("TOKENHOOK_ATTACK_SECONDS", 10);
    let flooders: usize = env_or("TOKENHOOK_ATTACK_FLOODERS", 16);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.toml");
    std::fs::write(&path, manifest(dir.path())).unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut server = ChildGroup::spawn(
        Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log),
    );
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.as_mut().unwrap()),
        &mut banner,
    )
    .unwrap();
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("server address")
        .to_string();
    let base = format!("http://{addr}");
    let pid = server.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let phase = |attackers: bool| {
            let base = base.clone();
            async move {
                let stop = Arc::new(AtomicBool::new(false));
                let valid = tokio::spawn(valid_load(base.clone(), stop.clone(), 4));
                let attack = attackers.then(|| tokio::spawn(attack(base.clone(), stop.clone(), flooders)));
                let mut peak_rss = 0;
                let end = Instant::now() + Duration::from_secs(seconds);
                while Instant::now() < end {
                    peak_rss = peak_rss.max(rss(pid).0);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                stop.store(true, Ordering::Relaxed);
                let (times, wrong) = valid.await.unwrap();
                let counts = match attack {
                    Some(a) => a.await.unwrap(),
                    None => BTreeMap::new(),
                };
                (times, wrong, counts, peak_rss)
            }
        };
        let (quiet, quiet_wrong, _, quiet_rss) = phase(false).await;
        println!(
            "valid clients alone:       {:6} requests, p50 {:6.2} ms, p99 {:6.2} ms, errors {}, RSS max {} KiB",
            quiet.len(), percentile(&quiet, 0.5), percentile(&quiet, 0.99), quiet_wrong, quiet_rss
        );
        let (loud, loud_wrong, counts, loud_rss) = phase(true).await;
        println!(
            "valid clients under attack: {:6} requests, p50 {:6.2} ms, p99 {:6.2} ms, errors {}, RSS max {} KiB",
            loud.len(), percentile(&loud, 0.5), percentile(&loud, 0.99), loud_wrong, loud_rss
        );
        let mut attackers_got_tokens = 0;
        for ((kind, status), n) in &counts {
            println!("    attacker {kind:24} {status}: {n}");
            if *status == 200 {
                attackers_got_tokens += n;
            }
        }
        let (_, hwm) = rss(pid);
        println!("server peak RSS (VmHWM) over the whole run: {hwm} KiB ({:.1} MiB)", hwm as f64 / 1024.0);
        assert_eq!(quiet_wrong + loud_wrong, 0, "a valid request was not answered 200");
        assert_eq!(attackers_got_tokens, 0, "an attacker got a token");
    });
    drop(server);
}
