//! Under attack (issue 11.5): the release `tokenhook serve` binary on
//! 127.0.0.1 and valid clients in three phases: alone; during a wrong-secret
//! flood on an argon2id client (plus unknown ids); during the same flood
//! plus requests that trip a hostile hook (an infinite loop cut by its
//! deadline), the full mix. Reports per phase the valid clients' p50/p99,
//! the attackers' answers by status and the server's memory: VmRSS at the
//! phase's start and end (flat?) and its peak during the phase alone (VmHWM,
//! reset at the phase's start through /proc/<pid>/clear_refs), apart from
//! start-up's peak (hook compilation). Fails on any wrong answer: a valid
//! request not answered 200, or an attacker answered 200. Prints whether the
//! issue's goals hold, and does not fail on them (timings on a shared
//! machine are figures, not tests). Bounded: each phase runs a fixed time
//! and the run stops by itself.
//!
//! `cargo bench -p tokenhook-tests --bench attack` (a release client: with
//! `cargo test --bench` a debug client shares the cores and the figures).
//!
//! - `TOKENHOOK_ATTACK_SECONDS` (default 10): seconds per phase;
//! - `TOKENHOOK_ATTACK_FLOODERS` (default 16): concurrent wrong-secret senders;
//! - `TOKENHOOK_ATTACK_HOSTILE` (default 2): concurrent hostile-hook senders
//!   in the full mix;
//! - `TOKENHOOK_BIN`: the server binary (default `target/release/tokenhook`,
//!   built by this bench).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokenhook_tests::wrk::{env_or, release_bin};
use tokenhook_tests::{ChildGroup, hook_wasm, hostile};

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

/// Goal of issue 11: a valid client's p99 during the wrong-secret flood.
const GOAL_P99_MS: f64 = 20.0;
/// Goal of issue 11: the server's peak RSS during the wrong-secret flood.
const GOAL_PEAK_KIB: u64 = 64 * 1024;

/// Forget `pid`'s peak RSS: VmHWM restarts from the current VmRSS
/// (`clear_refs` value 5, Linux ≥ 4.0), so the next read is this phase's peak.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
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

/// Valid clients in a loop (one request at a time per worker): latencies,
/// and what each wrong answer was (status and body, or the send error).
async fn valid_load(
    base: String,
    stop: Arc<AtomicBool>,
    workers: usize,
) -> (Vec<Duration>, Vec<String>) {
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
            let mut wrong = Vec::new();
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
                let answer = match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = r.bytes().await.unwrap_or_default();
                        (status != 200)
                            .then(|| format!("{id}: {status} {}", String::from_utf8_lossy(&body)))
                    }
                    Err(e) => Some(format!("{id}: {e}")),
                };
                times.push(started.elapsed());
                wrong.extend(answer);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (times, wrong)
        }));
    }
    let mut all = Vec::new();
    let mut wrong = Vec::new();
    for t in tasks {
        let (times, w) = t.await.unwrap();
        all.extend(times);
        wrong.extend(w);
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
    hostile: usize,
) -> BTreeMap<(String, u16), u64> {
    let mut tasks = Vec::new();
    for w in 0..flooders + hostile {
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
    let bin = release_bin();
    let seconds: u64 = env_or("TOKENHOOK_ATTACK_SECONDS", 10);
    let flooders: usize = env_or("TOKENHOOK_ATTACK_FLOODERS", 16);
    let hostile: usize = env_or("TOKENHOOK_ATTACK_HOSTILE", 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.toml");
    std::fs::write(&path, manifest(dir.path())).unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
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
    // Start-up (hook compilation) has its own peak; then let it settle.
    let (_, startup_peak) = rss(pid);
    std::thread::sleep(Duration::from_secs(1));
    let (idle, _) = rss(pid);
    println!(
        "server start-up peak (VmHWM) {:.1} MiB, idle after start {:.1} MiB",
        mib(startup_peak),
        mib(idle)
    );
    // The valid clients have a runtime (and thread) of their own: on the
    // attackers' runtime their requests would queue behind the flood's tasks
    // in the load client itself, which no real client suffers.
    let valid_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("valid-clients")
        .enable_all()
        .build()
        .unwrap();
    let valid_rt = valid_runtime.handle().clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("attackers")
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let phase = |name: &'static str, flooders: usize, hostile: usize| {
            let (base, valid_rt) = (base.clone(), valid_rt.clone());
            async move {
                let (rss_before, _) = rss(pid);
                assert!(reset_peak(pid), "cannot reset the peak RSS of {pid}");
                let stop = Arc::new(AtomicBool::new(false));
                let valid = valid_rt.spawn(valid_load(base.clone(), stop.clone(), 4));
                let attack = (flooders + hostile > 0)
                    .then(|| tokio::spawn(attack(base.clone(), stop.clone(), flooders, hostile)));
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                stop.store(true, Ordering::Relaxed);
                let (times, wrong) = valid.await.unwrap();
                let counts = match attack {
                    Some(a) => a.await.unwrap(),
                    None => BTreeMap::new(),
                };
                let (rss_after, peak) = rss(pid);
                let p99 = percentile(&times, 0.99);
                println!(
                    "{name:28} valid: {:6} requests, p50 {:6.2} ms, p99 {:6.2} ms, errors {}; \
                     server RSS {:.1} → {:.1} MiB, peak {:.1} MiB",
                    times.len(),
                    percentile(&times, 0.5),
                    p99,
                    wrong.len(),
                    mib(rss_before),
                    mib(rss_after),
                    mib(peak),
                );
                for answer in &wrong {
                    println!("    WRONG valid answer {answer}");
                }
                let request_ids: Vec<String> = wrong
                    .iter()
                    .filter_map(|a| a.split_once("request id ").map(|(_, r)| r))
                    .map(|r| r.chars().take_while(char::is_ascii_alphanumeric).collect())
                    .collect();
                let mut got_tokens = 0;
                for ((kind, status), n) in &counts {
                    println!("    attacker {kind:24} {status}: {n}");
                    if *status == 200 {
                        got_tokens += n;
                    }
                }
                (p99, peak, wrong.len(), got_tokens, request_ids)
            }
        };
        let (alone_p99, _, alone_wrong, _, mut wrong_ids) = phase("valid clients alone", 0, 0).await;
        let (flood_p99, flood_peak, flood_wrong, flood_tokens, ids) =
            phase("wrong-secret flood", flooders, 0).await;
        let (mix_p99, _, mix_wrong, mix_tokens, more_ids) = phase("full mix", flooders, hostile).await;
        wrong_ids.extend(ids.into_iter().chain(more_ids));
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "goal, valid p99 during the flood ≤ {GOAL_P99_MS} ms: {flood_p99:.2} ms, {}",
            verdict(flood_p99 <= GOAL_P99_MS)
        );
        println!(
            "goal, server peak RSS during the flood ≤ {:.0} MiB: {:.1} MiB, {}",
            mib(GOAL_PEAK_KIB),
            mib(flood_peak),
            verdict(flood_peak <= GOAL_PEAK_KIB)
        );
        println!(
            "valid p99 added by the attackers: flood {:+.2} ms, full mix {:+.2} ms (over {alone_p99:.2} ms alone)",
            flood_p99 - alone_p99,
            mix_p99 - alone_p99
        );
        // The server's own account of each wrong valid answer: its log lines
        // (warnings and errors; never secrets) with the answer's request id.
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        for id in wrong_ids.iter().filter(|id| !id.is_empty()) {
            for line in log.lines().filter(|l| l.contains(id.as_str())) {
                println!("    server: {line}");
            }
        }
        assert_eq!(
            alone_wrong + flood_wrong + mix_wrong,
            0,
            "a valid request was not answered 200"
        );
        assert_eq!(flood_tokens + mix_tokens, 0, "an attacker got a token");
    });
    drop(server);
}
