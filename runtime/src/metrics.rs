//! Metrics: tokens issued, refusals, hook outcomes, hook duration and fuel.
//!
//! Recorded through the [`metrics`] facade at the points where the pipeline
//! already logs an outcome ([`token_outcome`] in `Issuer::issue`,
//! [`hook_outcome`] in `run_hook`). Where they go is chosen once per process:
//!
//! - **locally** ([`install_prometheus`]): `metrics-exporter-prometheus`'s
//!   recorder (no HTTP listener of its own); `GET /metrics` renders the
//!   Prometheus text exposition format through [`render`];
//! - **on Lambda** ([`install_emf`]): CloudWatch Embedded Metric Format, one
//!   JSON line per dimension set written to stdout by [`flush_emf`] at the end
//!   of each invocation (CloudWatch Logs turns them into metrics in the
//!   `tokenhook` namespace). With the `/metrics` route enabled on Lambda the
//!   Prometheus recorder is fed as well.
//!
//! We chose the `metrics` facade + `metrics-exporter-prometheus` over
//! `prometheus-client` because the exporter writes the classic Prometheus text
//! format (what `/metrics` scrapers expect, not only OpenMetrics) and the
//! facade lets the EMF recorder sit behind the same recording points; with no
//! recorder installed (library use, benches without one) recording is a
//! no-op. Its cost is about fifteen small crates (default features off: no
//! hyper listener, no push gateway).
//!
//! Label cardinality is bounded: `client` only for authenticated clients (of
//! the registry) and at most [`MAX_CLIENT_LABELS`] distinct ids per process,
//! later ones counted as `_other`; `audience` only once the pipeline matched a
//! configured API; `error`, `kind` and `hook` come from closed sets (error
//! codes, outcome kinds, manifest hook names). Refusals carry no client or
//! audience: before authentication both are whatever the caller sent.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use serde_json::{Map, Value, json};

use crate::hooks::Usage;
use crate::oauth::{ClientAuth, OAuthError, TokenRequest, TokenResponse};
use crate::policy::Applied;

/// Tokens issued, by `client` and `audience`.
pub const TOKENS_ISSUED: &str = "tokenhook_tokens_issued_total";
/// Token requests refused, by `error` (the RFC 6749 error code).
pub const TOKEN_REFUSALS: &str = "tokenhook_token_refusals_total";
/// Hook calls, by `hook` and `kind`: `applied`, `denied`, or the failure kind
/// (`fuel_exhausted`, `timeout`, `policy_violation`, …).
pub const HOOK_OUTCOMES: &str = "tokenhook_hook_outcomes_total";
/// Wall time of one hook call in seconds, by `hook`.
pub const HOOK_DURATION: &str = "tokenhook_hook_duration_seconds";
/// Fuel one hook call used, by `hook`.
pub const HOOK_FUEL: &str = "tokenhook_hook_fuel";

/// Distinct `client` label values per process; later clients are `_other`.
/// Default 100: enough for a dashboard's per-client panels, small enough that
/// a registry of thousands of clients cannot blow up the series count.
pub const MAX_CLIENT_LABELS: usize = 100;
/// The `client` value for clients past [`MAX_CLIENT_LABELS`].
pub const OTHER_CLIENT: &str = "_other";

/// How often histogram samples are folded into buckets when nobody scrapes
/// (the exporter keeps raw samples until then).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Hook duration buckets (seconds): 10 µs to the 50 ms default deadline.
const DURATION_BUCKETS: &[f64] = &[
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
];
/// Fuel buckets: a typical call uses 10⁴–10⁵; the default limit is 10⁸.
const FUEL_BUCKETS: &[f64] = &[1e3, 1e4, 3e4, 1e5, 3e5, 1e6, 1e7, 1e8];

/// Whether any recorder is installed: recording does nothing otherwise.
static ENABLED: AtomicBool = AtomicBool::new(false);
static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();
static CLIENTS: RwLock<Option<HashSet<String>>> = RwLock::new(None);

/// A recorder was already installed in this process (by an earlier call).
#[derive(Debug, thiserror::Error)]
#[error("a metrics recorder is already installed in this process")]
pub struct AlreadyInstalled;

fn prometheus_recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HOOK_DURATION.into()), DURATION_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(HOOK_FUEL.into()), FUEL_BUCKETS))
        .expect("bucket lists are not empty")
        .build_recorder()
}

/// Record into a Prometheus registry, for `GET /metrics` ([`render`]).
pub fn install_prometheus() -> Result<(), AlreadyInstalled> {
    let recorder = prometheus_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| AlreadyInstalled)?;
    keep_handle(handle);
    ENABLED.store(true, Ordering::Relaxed);
    describe();
    Ok(())
}

/// Keep the handle for [`render`]; fold histogram samples into buckets
/// every few seconds on a plain thread (this may run outside any runtime).
fn keep_handle(handle: PrometheusHandle) {
    let upkeep = handle.clone();
    let _ = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
    let _ = PROMETHEUS.set(handle);
}

/// Record for CloudWatch EMF ([`flush_emf`] writes the lines); with
/// `prometheus`, also into a Prometheus registry for `/metrics`.
pub fn install_emf(prometheus: bool) -> Result<(), AlreadyInstalled> {
    let inner = prometheus.then(prometheus_recorder);
    if let Some(recorder) = &inner {
        keep_handle(recorder.handle());
    }
    metrics::set_global_recorder(EmfRecorder { inner }).map_err(|_| AlreadyInstalled)?;
    ENABLED.store(true, Ordering::Relaxed);
    describe();
    Ok(())
}

fn describe() {
    metrics::describe_counter!(TOKENS_ISSUED, "Tokens issued, by client and audience.");
    metrics::describe_counter!(
        TOKEN_REFUSALS,
        "Token requests refused, by OAuth error code."
    );
    metrics::describe_counter!(
        HOOK_OUTCOMES,
        "Hook calls by hook and outcome kind (applied, denied, or the failure kind)."
    );
    metrics::describe_histogram!(HOOK_DURATION, Unit::Seconds, "Wall time of one hook call.");
    metrics::describe_histogram!(HOOK_FUEL, "Fuel used by one hook call.");
}

/// The Prometheus text exposition of everything recorded so far, if the
/// Prometheus recorder is installed.
pub fn render() -> Option<String> {
    PROMETHEUS.get().map(PrometheusHandle::render)
}

/// Count one token request's outcome (called by `Issuer::issue`).
pub fn token_outcome(req: &TokenRequest, result: &Result<TokenResponse, OAuthError>) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    match result {
        Ok(_) => {
            // Issued: the client authenticated and the audience is a configured API.
            let client = match &req.client {
                ClientAuth::Basic { id, .. }
                | ClientAuth::Post { id, .. }
                | ClientAuth::Trusted { id } => client_label(id),
                ClientAuth::None | ClientAuth::Multiple => OTHER_CLIENT.to_string(),
            };
            let audience = req.audience.clone().unwrap_or_default();
            metrics::counter!(TOKENS_ISSUED, "client" => client, "audience" => audience)
                .increment(1);
        }
        Err(e) => {
            metrics::counter!(TOKEN_REFUSALS, "error" => e.error.as_str()).increment(1);
        }
    }
}

/// Count one hook call (called by `run_hook` once its outcome is known, as
/// policy left it: applied, denied, or a failure kind with its cause).
pub fn hook_outcome<C>(
    handles: &HookMetrics,
    hook: &str,
    outcome: &Result<Applied, (&'static str, C)>,
    usage: &Usage,
) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let kind = match outcome {
        Ok(Applied::Changed(..)) => "applied",
        Ok(Applied::Denied(_)) => "denied",
        Err((kind, _)) => *kind,
    };
    let handles = handles.0.get_or_init(|| HookHandles::new(hook));
    handles.outcome(hook, kind).increment(1);
    handles.duration.record(usage.wall_time.as_secs_f64());
    handles.fuel.record(usage.fuel_used as f64);
}

/// One hook's metric handles, made at its first recorded call (a recorder is
/// installed by then) and kept with the hook. Registering a labelled metric
/// builds its key and looks it up in the recorder's registry: three times per
/// call, ≈ 1.5 µs of a hook's ≈ 15; a handle records straight away.
#[derive(Default)]
pub struct HookMetrics(OnceLock<HookHandles>);

struct HookHandles {
    duration: Histogram,
    fuel: Histogram,
    /// By outcome kind; a closed set of a dozen, so a short list.
    outcomes: Mutex<Vec<(&'static str, Counter)>>,
}

impl HookHandles {
    fn new(hook: &str) -> Self {
        HookHandles {
            duration: metrics::histogram!(HOOK_DURATION, "hook" => hook.to_string()),
            fuel: metrics::histogram!(HOOK_FUEL, "hook" => hook.to_string()),
            outcomes: Mutex::new(Vec::new()),
        }
    }

    fn outcome(&self, hook: &str, kind: &'static str) -> Counter {
        let mut outcomes = self.outcomes.lock().expect("hook outcome counters");
        if let Some((_, counter)) = outcomes.iter().find(|(k, _)| *k == kind) {
            return counter.clone();
        }
        let counter = metrics::counter!(HOOK_OUTCOMES, "hook" => hook.to_string(), "kind" => kind);
        outcomes.push((kind, counter.clone()));
        counter
    }
}

/// `id` while fewer than [`MAX_CLIENT_LABELS`] clients have been labelled,
/// else [`OTHER_CLIENT`]. Only called for authenticated clients.
fn client_label(id: &str) -> String {
    if let Some(seen) = CLIENTS.read().expect("client labels").as_ref()
        && seen.contains(id)
    {
        return id.to_string();
    }
    let mut guard = CLIENTS.write().expect("client labels");
    let seen = guard.get_or_insert_with(HashSet::new);
    if seen.contains(id) || seen.len() < MAX_CLIENT_LABELS {
        seen.insert(id.to_string());
        id.to_string()
    } else {
        OTHER_CLIENT.to_string()
    }
}

// ---- CloudWatch Embedded Metric Format ----

/// What was recorded since the last flush.
#[derive(Default, Debug)]
pub struct Pending {
    pub counters: BTreeMap<Key, u64>,
    pub histograms: BTreeMap<Key, Vec<f64>>,
}

/// Lambda runs one invocation at a time per environment, so one buffer per
/// process is one invocation's worth.
static PENDING: Mutex<Pending> = Mutex::new(Pending {
    counters: BTreeMap::new(),
    histograms: BTreeMap::new(),
});

/// EMF namespace of every metric.
pub const EMF_NAMESPACE: &str = "tokenhook";
/// EMF accepts at most 100 values per metric in one document.
const EMF_MAX_VALUES: usize = 100;

/// Our metric names in CloudWatch: name, unit, scale from the recorded value.
fn emf_name(name: &str) -> Option<(&'static str, &'static str, f64)> {
    Some(match name {
        TOKENS_ISSUED => ("TokensIssued", "Count", 1.0),
        TOKEN_REFUSALS => ("TokenRefusals", "Count", 1.0),
        HOOK_OUTCOMES => ("HookOutcomes", "Count", 1.0),
        HOOK_DURATION => ("HookDuration", "Microseconds", 1e6),
        HOOK_FUEL => ("HookFuel", "None", 1.0),
        _ => return None,
    })
}

struct EmfRecorder {
    /// Also record here (the `/metrics` route on Lambda, when enabled).
    inner: Option<PrometheusRecorder>,
}

struct EmfCounter(Key, Option<Counter>);
struct EmfHistogram(Key, Option<Histogram>);

impl CounterFn for EmfCounter {
    fn increment(&self, value: u64) {
        *PENDING
            .lock()
            .expect("emf buffer")
            .counters
            .entry(self.0.clone())
            .or_default() += value;
        if let Some(inner) = &self.1 {
            inner.increment(value);
        }
    }
    fn absolute(&self, value: u64) {
        PENDING
            .lock()
            .expect("emf buffer")
            .counters
            .insert(self.0.clone(), value);
        if let Some(inner) = &self.1 {
            inner.absolute(value);
        }
    }
}

impl HistogramFn for EmfHistogram {
    fn record(&self, value: f64) {
        PENDING
            .lock()
            .expect("emf buffer")
            .histograms
            .entry(self.0.clone())
            .or_default()
            .push(value);
        if let Some(inner) = &self.1 {
            inner.record(value);
        }
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(inner) = &self.inner {
            inner.describe_counter(key, unit, description);
        }
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(inner) = &self.inner {
            inner.describe_gauge(key, unit, description);
        }
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(inner) = &self.inner {
            inner.describe_histogram(key, unit, description);
        }
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let inner = self
            .inner
            .as_ref()
            .map(|r| r.register_counter(key, metadata));
        Counter::from_arc(Arc::new(EmfCounter(key.clone(), inner)))
    }
    fn register_gauge(&self, _key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        // We record no gauges.
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let inner = self
            .inner
            .as_ref()
            .map(|r| r.register_histogram(key, metadata));
        Histogram::from_arc(Arc::new(EmfHistogram(key.clone(), inner)))
    }
}

/// Write what was recorded since the last flush as EMF lines on stdout
/// (called at the end of each Lambda invocation, before its answer is sent,
/// so the lines are out before the environment may be frozen).
pub fn flush_emf() {
    let pending = std::mem::take(&mut *PENDING.lock().expect("emf buffer"));
    if pending.counters.is_empty() && pending.histograms.is_empty() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let mut out = std::io::stdout().lock();
    for line in emf_lines(&pending, now) {
        // One write per line, so lines from elsewhere cannot interleave.
        let _ = out.write_all(format!("{line}\n").as_bytes());
    }
    let _ = out.flush();
}

/// One metric of a document: CloudWatch name, unit and value(s).
type EmfMetric = (&'static str, &'static str, Value);

/// The EMF documents for `pending`, one JSON object per line.
///
/// Metrics with the same labels share a document; a document whose labels
/// include another group's with equal values (`hook=a,kind=applied` and
/// `hook=a`) takes that group as a second directive, so one request on
/// Lambda writes a line per hook outcome and one for the token, not one per
/// metric.
pub fn emf_lines(pending: &Pending, timestamp_ms: u64) -> Vec<String> {
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<EmfMetric>> = BTreeMap::new();
    let labels = |key: &Key| -> Vec<(String, String)> {
        key.labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect()
    };
    for (key, value) in &pending.counters {
        if let Some((name, unit, _)) = emf_name(key.name()) {
            groups
                .entry(labels(key))
                .or_default()
                .push((name, unit, json!(value)));
        }
    }
    for (key, values) in &pending.histograms {
        if let Some((name, unit, scale)) = emf_name(key.name()) {
            let scaled: Vec<Value> = values
                .iter()
                .take(EMF_MAX_VALUES)
                .map(|v| {
                    // Thousandths of the unit: enough, and no 42.00000000000001.
                    let v = (v * scale * 1000.0).round() / 1000.0;
                    if v.fract() == 0.0 && v.abs() < 1e15 {
                        json!(v as i64)
                    } else {
                        json!(v)
                    }
                })
                .collect();
            let value = match <[Value; 1]>::try_from(scaled) {
                Ok([one]) => one,
                Err(many) => Value::Array(many),
            };
            groups
                .entry(labels(key))
                .or_default()
                .push((name, unit, value));
        }
    }
    // Most labels first, so the smaller groups find a document to join.
    let mut ordered: Vec<_> = groups.into_iter().collect();
    ordered.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    struct Doc {
        members: BTreeMap<String, String>,
        names: BTreeSet<&'static str>,
        directives: Vec<Value>,
        values: Vec<(&'static str, Value)>,
    }
    let mut docs: Vec<Doc> = Vec::new();
    for (labels, metrics) in ordered {
        let fits = |doc: &Doc| {
            labels.iter().all(|(k, v)| doc.members.get(k) == Some(v))
                && metrics.iter().all(|(n, _, _)| !doc.names.contains(n))
        };
        let index = match docs.iter().position(fits) {
            Some(i) => i,
            None => {
                docs.push(Doc {
                    members: labels.iter().cloned().collect(),
                    names: BTreeSet::new(),
                    directives: Vec::new(),
                    values: Vec::new(),
                });
                docs.len() - 1
            }
        };
        let doc = &mut docs[index];
        let dimensions: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        doc.directives.push(json!({
            "Namespace": EMF_NAMESPACE,
            "Dimensions": [dimensions],
            "Metrics": metrics.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
        }));
        for (name, _, value) in metrics {
            doc.names.insert(name);
            doc.values.push((name, value));
        }
    }
    docs.into_iter()
        .map(|doc| {
            let mut object = Map::new();
            object.insert(
                "_aws".into(),
                json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": doc.directives}),
            );
            for (k, v) in doc.members {
                object.insert(k, Value::String(v));
            }
            for (name, value) in doc.values {
                object.insert(name.into(), value);
            }
            Value::Object(object).to_string()
        })
        .collect()
}

/// Whether the Lambda HTTP door also answers `GET /metrics`
/// (`TOKENHOOK_METRICS_ROUTE=1`). Default off: on Lambda metrics go to
/// CloudWatch as EMF, and a public function URL should not list clients.
pub fn lambda_route_enabled() -> bool {
    std::env::var("TOKENHOOK_METRICS_ROUTE").is_ok_and(|v| v == "1" || v == "true")
}

/// The `/metrics` route: Prometheus text, or 404 when no Prometheus recorder
/// is installed. Carries no state; merge it into a router.
pub fn routes() -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(metrics_text))
}

async fn metrics_text() -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    match render() {
        Some(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The EMF documents for one request with two hooks, against the fixture
    /// checked into tests/ (what CloudWatch will parse).
    #[test]
    fn emf_documents_match_the_fixture() {
        let mut pending = Pending::default();
        let key = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            Key::from_parts(
                name,
                labels
                    .iter()
                    .map(|(k, v)| metrics::Label::new(*k, *v))
                    .collect::<Vec<_>>(),
            )
        };
        pending.counters.insert(
            key(
                TOKENS_ISSUED,
                &[("client", "app"), ("audience", "https://api.test")],
            ),
            1,
        );
        pending.counters.insert(
            key(HOOK_OUTCOMES, &[("hook", "tenant"), ("kind", "applied")]),
            1,
        );
        pending.counters.insert(
            key(
                HOOK_OUTCOMES,
                &[("hook", "scopes"), ("kind", "fuel_exhausted")],
            ),
            1,
        );
        pending
            .histograms
            .insert(key(HOOK_DURATION, &[("hook", "tenant")]), vec![42e-6]);
        pending
            .histograms
            .insert(key(HOOK_FUEL, &[("hook", "tenant")]), vec![57905.0]);
        pending.histograms.insert(
            key(HOOK_DURATION, &[("hook", "scopes")]),
            vec![1.5e-3, 2e-3],
        );
        pending
            .histograms
            .insert(key(HOOK_FUEL, &[("hook", "scopes")]), vec![1e6, 1e6]);
        pending
            .counters
            .insert(key(TOKEN_REFUSALS, &[("error", "invalid_client")]), 2);
        let lines = emf_lines(&pending, 1_700_000_000_000);
        let got: Vec<Value> = lines
            .iter()
            .map(|l| {
                assert!(!l.contains('\n'), "one document per line");
                serde_json::from_str(l).unwrap()
            })
            .collect();
        let fixture = include_str!("../../tests/fixtures/metrics/emf.jsonl");
        let want: Vec<Value> = fixture
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got, want, "got:\n{}", lines.join("\n"));
        // Every directive's dimensions and metrics name members of its document.
        for doc in &got {
            for directive in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
                assert_eq!(directive["Namespace"], "tokenhook");
                for dim in directive["Dimensions"][0].as_array().unwrap() {
                    assert!(doc[dim.as_str().unwrap()].is_string(), "{doc}");
                }
                for metric in directive["Metrics"].as_array().unwrap() {
                    assert!(!doc[metric["Name"].as_str().unwrap()].is_null(), "{doc}");
                }
            }
        }
    }

    /// Lambda's HTTP door has no `/metrics` unless `TOKENHOOK_METRICS_ROUTE`
    /// enables it (there, metrics are EMF lines).
    #[tokio::test]
    async fn the_lambda_door_has_no_metrics_route_unless_enabled() {
        use tower::ServiceExt;
        let _ = install_prometheus();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.toml");
        std::fs::write(
            &path,
            r#"issuer = "https://issuer.test/"
keys = { source = "file", path = "key.pem" }
[store]
kind = "sqlite"
path = "store.db"
[[apis]]
identifier = "https://api.test"
"#,
        )
        .unwrap();
        let issuer = crate::pipeline::Issuer::load(&path, &crate::pipeline::Services::local())
            .await
            .unwrap();
        let current = crate::reload::CurrentIssuer::new(issuer);
        let get = |enabled: bool| {
            let app = crate::doors::lambda::http_app(current.clone(), enabled);
            async move {
                let request = axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = app.oneshot(request).await.unwrap();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let (status, body) = get(false).await;
        assert_eq!(status, 404, "{body}");
        assert!(!body.contains("tokenhook_"), "{body}");
        let (status, body) = get(true).await;
        // Enabled: the route answers (with whatever was recorded so far).
        assert_eq!(status, 200, "{body}");
    }

    #[test]
    fn client_labels_are_capped() {
        for i in 0..MAX_CLIENT_LABELS + 10 {
            let id = format!("cap-test-{i}");
            let label = client_label(&id);
            assert!(label == id || label == OTHER_CLIENT);
        }
        assert_eq!(client_label("cap-test-past-the-cap"), OTHER_CLIENT);
        let seen = CLIENTS.read().unwrap().as_ref().unwrap().len();
        assert_eq!(seen, MAX_CLIENT_LABELS);
    }
}
