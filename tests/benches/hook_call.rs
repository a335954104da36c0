//! Criterion benchmarks of the hot path, each beside the baseline measured in
//! the same run: signing a token with no hooks (ES256).
//!
//! `cargo bench -p tokenhook-tests --bench hook_call`
//!
//! - `sign_only`: the baseline, one ES256 access token.
//! - `instantiate`: a fresh instance from the pre-linked `InstancePre` (pooling allocator).
//! - `hook_call/tenant_claims`: one full call, ~1 KB event in, commands out.
//! - `issue/no_hooks` vs `issue/four_hooks`: the whole pipeline in process;
//!   `issue/four_hooks_metrics` the same with the Prometheus recorder installed.

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use serde_json::json;
use tokenhook::engine::{EngineSettings, HookEngine, Limits};
use tokenhook::keys::{SigningKey, generate_pkcs8_pem};
use tokenhook_sdk::testing::EventBuilder;
use tokenhook_tests::hook_wasm;

/// A realistic event of about 1 KB.
fn event_json() -> Vec<u8> {
    let event = EventBuilder::new()
        .client_id("billing-service-prod")
        .client_name("Billing service (production)")
        .client_metadata("tenant", "acme-corporation")
        .client_metadata("plan", "free")
        .client_metadata("region", "eu-west-1")
        .client_metadata("cost_center", "cc-4711")
        .api(
            "https://api.example.com",
            [
                "read:orders",
                "write:orders",
                "admin:orders",
                "read:status",
                "read:invoices",
                "write:invoices",
            ],
        )
        .requested_scopes(["read:orders", "write:orders", "read:invoices"])
        .granted_scopes([
            "read:orders",
            "write:orders",
            "read:invoices",
            "read:status",
        ])
        .scopes(["read:orders", "write:orders", "read:invoices"])
        .claim("https://example.com/region", "eu-west-1")
        .claim("https://example.com/features", json!(["a", "b", "c"]))
        .ip("203.0.113.42")
        .user_agent("billing-service/4.2.1 (+https://example.com/billing) reqwest/0.12")
        .config(json!({"namespace": "https://example.com/", "note": "x".repeat(200)}))
        .build();
    let bytes = serde_json::to_vec(&event).unwrap();
    assert!(
        (900..1400).contains(&bytes.len()),
        "event is {} bytes",
        bytes.len()
    );
    bytes
}

fn benches(c: &mut Criterion) {
    let pem = generate_pkcs8_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    let key =
        SigningKey::from_pkcs8_pem(&pem, jsonwebtoken::Algorithm::ES256, None, "bench").unwrap();
    let claims = json!({
        "iss": "https://auth.example.com/", "sub": "billing-service-prod", "aud": "https://api.example.com",
        "client_id": "billing-service-prod", "iat": 1_800_000_000u64, "nbf": 1_800_000_000u64,
        "exp": 1_800_003_600u64, "jti": "Zk3xQ0r2m1bq8GmQm2Lx7g", "scope": "read:orders read:invoices",
        "https://example.com/tenant": "acme-corporation",
    });
    c.bench_function("sign_only", |b| {
        b.iter(|| black_box(key.sign(&claims).unwrap()))
    });

    let engine = HookEngine::new(EngineSettings::default());
    let wasm = std::fs::read(hook_wasm("tenant_claims")).unwrap();
    let module = engine.load(&wasm, None, Limits::default()).unwrap();
    c.bench_function("instantiate", |b| {
        b.iter(|| module.instantiate_only().unwrap())
    });

    let input = event_json();
    // tenant-claims prepares its config once, as the issuer does at load.
    let event: serde_json::Value = serde_json::from_slice(&input).unwrap();
    let prepared = module
        .prepare(&serde_json::to_vec(&event["config"]).unwrap())
        .unwrap();
    c.bench_function("hook_call/tenant_claims", |b| {
        b.iter(|| {
            let call = module.call_prepared(prepared.as_ref(), black_box(&input));
            assert!(call.outcome.is_ok());
            black_box(call)
        })
    });
}

/// The whole pipeline in process (no HTTP): sign-only vs the four example hooks.
fn pipeline(c: &mut Criterion) {
    use tokenhook::oauth::{ClientAuth, TokenRequest};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issuer = |hooks: bool| {
        let text = tokenhook_tests::example_manifest();
        let text = if hooks {
            text
        } else {
            text[..text.find("[[hooks]]").unwrap()].to_string()
        };
        // The bench drives the pipeline as a direct invoke would (no secret).
        let text = format!("{text}\n[direct_invoke]\nenabled = true\n");
        let dir = tempfile::tempdir().unwrap();
        let path = tokenhook_tests::write_manifest_in(dir.path(), &text);
        let issuer = rt
            .block_on(tokenhook::pipeline::Issuer::load(
                &path,
                &tokenhook::pipeline::Services::local(),
            ))
            .unwrap();
        (issuer, dir)
    };
    let request = TokenRequest {
        request_id: "bench".into(),
        client_request_id: None,
        grant_type: Some("client_credentials".into()),
        client: ClientAuth::Trusted {
            id: "demo-client".into(),
        },
        audience: Some("https://api.example.com".into()),
        scope: None,
        // deny-list checks an address (and fails closed without one).
        context: tokenhook_sdk::wire::RequestContext {
            ip: Some("198.51.100.7".into()),
            user_agent: None,
        },
    };
    let mut group = c.benchmark_group("issue");
    for (name, hooks, metrics) in [
        ("no_hooks", false, false),
        ("four_hooks", true, false),
        ("four_hooks_metrics", true, true),
    ] {
        if metrics {
            // Recording is a no-op until a recorder is installed (as the
            // server does); from here on every request records its metrics.
            tokenhook::metrics::install_prometheus().expect("first recorder");
        }
        let (issuer, _dir) = issuer(hooks);
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(issuer.issue(black_box(&request))).unwrap())
        });
    }
    group.finish();
}

criterion_group!(hook_benches, benches, pipeline);

fn main() {
    let started = std::time::SystemTime::now();
    hook_benches();
    Criterion::default().configure_from_args().final_summary();
    report_ratios(started);
}

/// This run's estimates (the ones criterion prints) as ratios to the sign-only
/// baseline of the same run: absolute times on a shared machine drift from
/// run to run, ratios much less. Estimates left by earlier runs (benchmarks
/// filtered out of this one) are not reported.
fn report_ratios(started: std::time::SystemTime) {
    // Where criterion writes its estimates: CRITERION_HOME, else the target dir's `criterion`.
    let dir = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| std::path::PathBuf::from(t).join("criterion"))
        })
        .unwrap_or_else(|| tokenhook_tests::workspace_root().join("target/criterion"));
    let estimate_ns = |id: &str| -> Option<f64> {
        let path = dir.join(id).join("new/estimates.json");
        if std::fs::metadata(&path).ok()?.modified().ok()? < started {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
        estimates["slope"]["point_estimate"]
            .as_f64()
            .or(estimates["mean"]["point_estimate"].as_f64())
    };
    let Some(baseline) = estimate_ns("sign_only") else {
        return; // not measured in this run
    };
    println!(
        "\nagainst the sign-only baseline of this run ({:.1} µs):",
        baseline / 1e3
    );
    for (id, name) in [
        ("instantiate", "instantiate"),
        ("hook_call_tenant_claims", "hook_call/tenant_claims"),
        ("issue/no_hooks", "issue/no_hooks"),
        ("issue/four_hooks", "issue/four_hooks"),
        ("issue/four_hooks_metrics", "issue/four_hooks_metrics"),
    ] {
        if let Some(ns) = estimate_ns(id) {
            println!("  {name:24} {:8.1} µs  {:5.2}x", ns / 1e3, ns / baseline);
        }
    }
}
