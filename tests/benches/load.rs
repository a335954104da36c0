//! End-to-end load run over real HTTP on 127.0.0.1: the same request stream
//! against a server without hooks (sign-only baseline) and one running the
//! four example hooks, measured in the same run and reported as ratios.
//! Bounded: a fixed number of requests, and a time cap per phase.
//!
//! `cargo bench -p tokenhook-tests --bench load` (TOKENHOOK_LOAD_REQUESTS,
//! TOKENHOOK_LOAD_CONCURRENCY override the defaults of 3000 and 8).

use std::time::{Duration, Instant};

use tokenhook_tests::{TestServer, example_manifest};

const TIME_CAP: Duration = Duration::from_secs(60);

struct Report {
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn run(server: &TestServer, total: usize, concurrency: usize) -> Report {
    let client = reqwest::Client::new();
    let url = server.url("/oauth/token");
    let started = Instant::now();
    let per_worker = total / concurrency;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_worker);
                for _ in 0..per_worker {
                    if started.elapsed() > TIME_CAP {
                        break;
                    }
                    let t = Instant::now();
                    let resp = client
                        .post(&url)
                        .basic_auth("demo-client", Some("demo-secret"))
                        .form(&[
                            ("grant_type", "client_credentials"),
                            ("audience", "https://api.example.com"),
                        ])
                        .send()
                        .await
                        .expect("request");
                    assert!(resp.status().is_success(), "status {}", resp.status());
                    resp.bytes().await.expect("body");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    Report {
        requests: all.len(),
        elapsed,
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
    }
}

fn main() {
    let total: usize = std::env::var("TOKENHOOK_LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let concurrency: usize = std::env::var("TOKENHOOK_LOAD_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let with_hooks = example_manifest();
    let baseline = with_hooks[..with_hooks.find("[[hooks]]").unwrap()].to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut reports = Vec::new();
    for (name, manifest) in [
        ("sign only (baseline)", &baseline),
        ("four example hooks", &with_hooks),
    ] {
        let server = TestServer::start(manifest).unwrap();
        rt.block_on(run(&server, 50, 2)); // warm-up: argon2 verification is remembered
        let report = rt.block_on(run(&server, total, concurrency));
        println!(
            "{name:22} {:5} requests in {:6.2?}: {:7.0} req/s, p50 {:7.1?}, p99 {:7.1?}",
            report.requests,
            report.elapsed,
            report.requests as f64 / report.elapsed.as_secs_f64(),
            report.p50,
            report.p99
        );
        reports.push(report);
    }
    let (base, hooks) = (&reports[0], &reports[1]);
    let rate = |r: &Report| r.requests as f64 / r.elapsed.as_secs_f64();
    println!(
        "four hooks vs baseline: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
        rate(hooks) / rate(base),
        hooks.p50.as_secs_f64() / base.p50.as_secs_f64(),
        hooks.p99.as_secs_f64() / base.p99.as_secs_f64()
    );
}
