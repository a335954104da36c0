//! `GET /metrics` of a `tokenhook serve` process: after some tokens, a
//! refusal and a failing hook, the Prometheus text (parsed here) counts them
//! with bounded labels; an attacker-chosen client id never becomes a label.

use std::collections::BTreeMap;

use tokenhook_tests::{CLIENT_SECRET, ServerProcess, three_hook_manifest};

/// One sample of the text format: name, labels, value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parse Prometheus text exposition format 0.0.4 (the subset an exporter
/// writes: `# HELP`/`# TYPE` comments, `name{l="v",…} value` lines).
fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (key, after) = rest.split_once("=\"").expect("label=\"");
                    // Values escape `\`, `"` and newlines; find the closing quote.
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next().expect("label value closes") {
                            (_, '\\') => match chars.next().expect("escape").1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            (i, '"') => break i,
                            (_, c) => value.push(c),
                        }
                    };
                    labels.insert(key.trim_start_matches(',').to_string(), value);
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name.to_string(), labels)
            }
        };
        samples.insert((name, labels), value);
    }
    samples
}

fn get(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples.get(&(name.to_string(), labels)).copied()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_tokens_refusals_and_hook_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_hook_manifest(dir.path());
    let server = ServerProcess::spawn(&path, &[]).unwrap();
    for _ in 0..3 {
        let (status, body) = server.app_token().await;
        assert_eq!(status, 200, "{body}");
    }
    let http = reqwest::Client::new();
    let token_url = format!("http://{}/oauth/token", server.addr);
    // A wrong secret, and an unknown, attacker-chosen client id.
    for (id, secret) in [("app", "wrong"), ("attacker-chosen-id-7f3a", CLIENT_SECRET)] {
        let resp = http
            .post(&token_url)
            .basic_auth(id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("audience", "https://attacker.example"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }

    let resp = http
        .get(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.unwrap();
    let samples = parse(&text);

    let issued = get(
        &samples,
        "tokenhook_tokens_issued_total",
        &[("client", "app"), ("audience", "https://api.test")],
    );
    assert_eq!(issued, Some(3.0), "{text}");
    assert_eq!(
        get(
            &samples,
            "tokenhook_token_refusals_total",
            &[("error", "invalid_client")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        get(
            &samples,
            "tokenhook_hook_outcomes_total",
            &[("hook", "tenant"), ("kind", "applied")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        get(
            &samples,
            "tokenhook_hook_outcomes_total",
            &[("hook", "broken"), ("kind", "policy_violation")]
        ),
        Some(3.0),
        "{text}"
    );
    // Per-hook duration and fuel histograms: one observation per call.
    for hook in ["tenant", "broken"] {
        assert_eq!(
            get(
                &samples,
                "tokenhook_hook_duration_seconds_count",
                &[("hook", hook)]
            ),
            Some(3.0),
            "{text}"
        );
        let seconds = get(
            &samples,
            "tokenhook_hook_duration_seconds_sum",
            &[("hook", hook)],
        )
        .unwrap();
        assert!(seconds > 0.0 && seconds < 3.0, "{seconds}");
        assert_eq!(
            get(&samples, "tokenhook_hook_fuel_count", &[("hook", hook)]),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            get(
                &samples,
                "tokenhook_hook_duration_seconds_bucket",
                &[("hook", hook), ("le", "+Inf")]
            ),
            Some(3.0),
            "{text}"
        );
    }
    let tenant_fuel = get(&samples, "tokenhook_hook_fuel_sum", &[("hook", "tenant")]).unwrap();
    assert!(
        tenant_fuel > 1000.0,
        "a real hook call uses fuel: {tenant_fuel}"
    );
    // A hook skipped by its filter did not run: no outcome for it.
    assert!(!text.contains("other-api-only"), "{text}");
    // Nothing the unauthenticated caller chose is a label value.
    assert!(!text.contains("attacker"), "{text}");
    // Every label is one of ours.
    for (_, labels) in samples.keys() {
        for key in labels.keys() {
            assert!(
                [
                    "client", "audience", "error", "hook", "kind", "le", "quantile"
                ]
                .contains(&key.as_str()),
                "unexpected label {key}"
            );
        }
    }
}
