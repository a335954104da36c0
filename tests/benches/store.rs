//! The store on the token path, measured end to end over HTTP on 127.0.0.1:
//! the release `tokenhook serve` pinned to one core, wrk pinned to the other,
//! in the same run:
//!
//! - `manifest only`: clients and grants from the manifest, no store at all
//!   (`[store] kind = "none"`): the baseline;
//! - `store`: the client from a SQLite registry (`registry = "store"`) and
//!   every token checked against 10,000 live revocations and some client
//!   cut-offs; the issuance goal is ≥ 0.9× the baseline's tokens/s;
//! - `introspection`: `POST /oauth/introspect` of one token on the store
//!   server; the goal is p50 ≤ 1 ms.
//!
//! The workload is a steady state: the deny list was written a minute ago
//! (older than the poll's overlap window), and revocations keep arriving
//! during the run (`TOKENHOOK_REVOCATIONS_PER_SECOND`, default 20, written to
//! the store by this process, as the CLI or another instance would).
//! `TOKENHOOK_STORE_FRESH=1` writes the 10,000 just before the run instead
//! (the workload before 2026-11-26: every poll then re-read them).
//!
//! Both servers run at once, pinned to the same CPU, and are measured in
//! turns (`TOKENHOOK_REPEATS` pairs, default 2), so that a slow stretch of a
//! shared machine hits both. Besides tokens/s, each turn reports the
//! server's CPU time per token (from /proc), which other load on the machine
//! disturbs much less than throughput.
//!
//! `cargo bench -p tokenhook-tests --bench store`
//! (`TOKENHOOK_LOAD_SECONDS`, default 10; `TOKENHOOK_LOAD_CONNECTIONS`, default 8;
//! `TOKENHOOK_BIN` for a prebuilt release binary). Needs wrk and taskset.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokenhook::store::{Change, FeedEntry, Store};
use tokenhook_tests::wrk::{
    FormPost, WrkReport, env_or, pinned_pair, release_bin, run, serve_pinned,
};
use tokenhook_tests::{CLIENT_SECRET, ChildGroup, client_secret_hash};

const API: &str = "https://api.test";

fn manifest(dir: &Path, store: &str, clients: bool) -> PathBuf {
    let hash = client_secret_hash();
    let clients = if clients {
        format!(
            "[[clients]]\nid = \"app\"\nsecret_hash = \"{hash}\"\n\n\
             [[clients]]\nid = \"rs\"\nsecret_hash = \"{hash}\"\nintrospect = true\n\n\
             [[grants]]\nclient = \"app\"\napi = \"{API}\"\nscopes = [\"read:a\"]\n"
        )
    } else {
        String::new()
    };
    let text = format!(
        "issuer = \"https://issuer.test/\"\nkeys = {{ source = \"file\", path = {key:?} }}\n\n{store}\n\
         [[apis]]\nidentifier = \"{API}\"\nscopes = [\"read:a\"]\n\n{clients}",
        key = dir.join("key.pem").display().to_string()
    );
    let path = dir.join("manifest.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Start the server pinned to `cpu`; its address.
fn serve(bin: &Path, manifest: &Path, cpu: usize) -> (ChildGroup, String) {
    let log = manifest.with_file_name("server.log");
    serve_pinned(bin, manifest, cpu, &log, "warn")
}

fn cli(bin: &Path, manifest: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin)
        .args(args)
        .arg("--manifest")
        .arg(manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// CPU time (user + system, all threads) the process has used, in µs.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is 3rd,
    // utime 14th, stime 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks * 10_000.0
}

/// Requests wrk completed (`N requests in …`).
fn requests(report: &WrkReport) -> f64 {
    report
        .text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in:\n{}", report.text))
}

/// One measured turn of token requests: wrk's report and the server's CPU
/// µs per token.
fn tokens(
    server: &ChildGroup,
    addr: &str,
    dir: &Path,
    secret: &str,
    cpu: usize,
) -> (WrkReport, f64) {
    let url = format!("http://{addr}/oauth/token");
    let post = FormPost {
        url: &url,
        body: "grant_type=client_credentials&audience=https%3A%2F%2Fapi.test",
        basic: ("app", secret),
    };
    let connections = env_or("TOKENHOOK_LOAD_CONNECTIONS", 8u32);
    run(&post, dir, cpu, connections, 2); // warm-up
    let before = cpu_us(server.0.id());
    let report = run(
        &post,
        dir,
        cpu,
        connections,
        env_or("TOKENHOOK_LOAD_SECONDS", 10u64),
    );
    let per_token = (cpu_us(server.0.id()) - before) / requests(&report);
    (report, per_token)
}

fn print(name: &str, r: &WrkReport, cpu_per_token: Option<f64>) {
    let cpu = cpu_per_token.map_or(String::new(), |c| format!(", CPU {c:5.1} µs/token"));
    println!(
        "{name:38} {:8.0} req/s, p50 {:6.3} ms, p99 {:6.3} ms{cpu}",
        r.rate, r.p50_ms, r.p99_ms
    );
}

/// Append a token revocation to the store every `1 / rate` s until `stop`.
fn trickle(db: PathBuf, rate: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let store = tokenhook::store::sqlite::SqliteStore::open(&db).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut written = 0;
        while rate > 0 && !stop.load(Ordering::Relaxed) {
            let entry = FeedEntry::new(Change::Token {
                jti: format!("trickle-{written}"),
                client_id: "client-trickle".into(),
                expires_at: tokenhook::store::now_secs() + 3600,
            });
            rt.block_on(store.append(&entry)).unwrap();
            written += 1;
            std::thread::sleep(Duration::from_secs(1) / rate);
        }
        written
    })
}

fn main() {
    let bin = release_bin();
    let cpus = pinned_pair();
    println!("server on CPU {}, wrk on CPU {}", cpus.0, cpus.1);

    // Baseline: the manifest's registry, no store.
    let base_dir = tempfile::tempdir().unwrap();
    let m = manifest(base_dir.path(), "[store]\nkind = \"none\"\n", true);
    let (base_server, base_addr) = serve(&bin, &m, cpus.0);

    // The store: registry clients, 10,000 live revocations, some cut-offs.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.sqlite");
    let m = manifest(
        dir.path(),
        &format!(
            "[store]\nkind = \"sqlite\"\npath = {:?}\nregistry = \"store\"\n",
            db.display().to_string()
        ),
        false,
    );
    let secret = cli(&bin, &m, &["clients", "add", "app"])["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let rs_secret = cli(&bin, &m, &["clients", "add", "rs", "--introspect"])["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    cli(
        &bin,
        &m,
        &["grants", "add", "app", API, "--scopes", "read:a"],
    );
    let store = tokenhook::store::sqlite::SqliteStore::open(&db).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fresh = env_or("TOKENHOOK_STORE_FRESH", 0u8) == 1;
    rt.block_on(async {
        let exp = tokenhook::store::now_secs() + 3600;
        let start = tokenhook::store::now_ms();
        for i in 0..10_000 {
            let mut entry = FeedEntry::new(Change::Token {
                jti: format!("revoked-{i}"),
                client_id: format!("client-{}", i % 100),
                expires_at: exp,
            });
            if !fresh {
                // Written a minute ago, a millisecond apart: older than the
                // poll's overlap window, as a deny list is in steady state.
                entry.at_ms = start - 60_000 + i / 10;
            }
            store.append(&entry).await.unwrap();
        }
        for i in 0..50 {
            let entry = FeedEntry::new(Change::ClientRevoked {
                client_id: format!("gone-{i}"),
                api: None,
                issued_before: tokenhook::store::now_secs(),
            });
            store.append(&entry).await.unwrap();
        }
    });
    let (server, addr) = serve(&bin, &m, cpus.0);
    let stop = Arc::new(AtomicBool::new(false));
    let rate = env_or("TOKENHOOK_REVOCATIONS_PER_SECOND", 20u32);
    let writer = trickle(db.clone(), rate, stop.clone());
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    for turn in 1..=env_or("TOKENHOOK_REPEATS", 2u32) {
        let (base, base_cpu) = tokens(
            &base_server,
            &base_addr,
            base_dir.path(),
            CLIENT_SECRET,
            cpus.1,
        );
        print(
            &format!("{turn}: manifest only (no store)"),
            &base,
            Some(base_cpu),
        );
        let (stored, stored_cpu) = tokens(&server, &addr, dir.path(), &secret, cpus.1);
        print(
            &format!("{turn}: store (sqlite registry, 10k revoked)"),
            &stored,
            Some(stored_cpu),
        );
        ratios.push(stored.rate / base.rate);
        cpu_ratios.push(base_cpu / stored_cpu);
    }
    stop.store(true, Ordering::Relaxed);
    let trickled = writer.join().unwrap();
    drop(base_server);

    // Introspection of one token on the same server.
    let token: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{addr}/oauth/token"))
            .basic_auth("app", Some(&secret))
            .form(&[("grant_type", "client_credentials"), ("audience", API)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let body = format!("token={}", token["access_token"].as_str().unwrap());
    let url = format!("http://{addr}/oauth/introspect");
    let post = FormPost {
        url: &url,
        body: &body,
        basic: ("rs", &rs_secret),
    };
    let intro = run(
        &post,
        dir.path(),
        cpus.1,
        1,
        env_or("TOKENHOOK_LOAD_SECONDS", 10u64),
    );
    drop(server);
    print("introspection (1 connection)", &intro, None);

    let range = |v: &[f64]| {
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(0.0, f64::max);
        format!("{min:.2}–{max:.2}x")
    };
    println!(
        "deny list {}; {trickled} revocations written during the run",
        if fresh {
            "written just before the run"
        } else {
            "a minute old"
        }
    );
    println!(
        "store vs manifest only: throughput {} (goal >= 0.9x), by CPU per token {}; introspection p50 {:.3} ms (goal <= 1 ms)",
        range(&ratios),
        range(&cpu_ratios),
        intro.p50_ms
    );
}
