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
//! `cargo bench -p tokenhook-tests --bench store`
//! (`TOKENHOOK_LOAD_SECONDS`, default 10; `TOKENHOOK_LOAD_CONNECTIONS`, default 8;
//! `TOKENHOOK_BIN` for a prebuilt release binary). Needs wrk and taskset.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn tokens(addr: &str, dir: &Path, secret: &str, cpu: usize) -> WrkReport {
    let url = format!("http://{addr}/oauth/token");
    let post = FormPost {
        url: &url,
        body: "grant_type=client_credentials&audience=https%3A%2F%2Fapi.test",
        basic: ("app", secret),
    };
    let connections = env_or("TOKENHOOK_LOAD_CONNECTIONS", 8u32);
    run(&post, dir, cpu, connections, 2); // warm-up
    run(
        &post,
        dir,
        cpu,
        connections,
        env_or("TOKENHOOK_LOAD_SECONDS", 10u64),
    )
}

fn print(name: &str, r: &WrkReport) {
    println!(
        "{name:34} {:8.0} req/s, p50 {:6.3} ms, p99 {:6.3} ms",
        r.rate, r.p50_ms, r.p99_ms
    );
}

fn main() {
    let bin = release_bin();
    let cpus = pinned_pair();
    println!("server on CPU {}, wrk on CPU {}", cpus.0, cpus.1);

    // Baseline: the manifest's registry, no store.
    let base_dir = tempfile::tempdir().unwrap();
    let m = manifest(base_dir.path(), "[store]\nkind = \"none\"\n", true);
    let (server, addr) = serve(&bin, &m, cpus.0);
    let base = tokens(&addr, base_dir.path(), CLIENT_SECRET, cpus.1);
    drop(server);
    print("manifest only (no store)", &base);

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
    rt.block_on(async {
        let exp = tokenhook::store::now_secs() + 3600;
        for i in 0..10_000 {
            let entry = FeedEntry::new(Change::Token {
                jti: format!("revoked-{i}"),
                client_id: format!("client-{}", i % 100),
                expires_at: exp,
            });
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
    let stored = tokens(&addr, dir.path(), &secret, cpus.1);
    print("store (sqlite registry, 10k revoked)", &stored);

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
    print("introspection (1 connection)", &intro);

    println!(
        "store vs manifest only: throughput {:.2}x (goal >= 0.9x), p50 {:.2}x; introspection p50 {:.3} ms (goal <= 1 ms)",
        stored.rate / base.rate,
        stored.p50_ms / base.p50_ms,
        intro.p50_ms
    );
}
