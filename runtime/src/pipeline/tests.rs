//! The pipeline with scripted hook runners: `Issuer::run_hooks` (the hook
//! loop and host policy), `Issuer::explain` and `Issuer::issue`, with each
//! hook a plain Rust [`Fake`] behind the [`HookRunner`] seam. No wasm, no
//! TCP: these test what the pipeline does with a hook's result, not how a
//! hook runs (the engine has its own tests, and `tests/` runs real modules).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokenhook_sdk::wire::{Command, Deny, DenyCode, Event, LogLevel, LogLine, Secrets};

use super::*;
use crate::explain::{Effect, ExplainRequest, Explanation, HookStep, StepResult};
use crate::hooks::{EventParts, FailureKind, HookCall, HookFailure, HookRunner, Usage};
use crate::secrets::hooks::HookSecrets;

/// What a fake returns on every call.
#[derive(Clone)]
enum Reply {
    Commands(Vec<Command>),
    Fails(FailureKind, String),
}

/// Every call of every fake of one issuer, in order: the hook's name and the
/// event it was given.
type Journal = Arc<Mutex<Vec<(String, Event)>>>;

/// A scripted hook: answers each call with its [`Reply`] and log lines, and
/// records the event in the issuer's [`Journal`].
struct Fake {
    name: String,
    reply: Reply,
    logs: Vec<String>,
    journal: Journal,
}

/// The usage every fake reports.
const FAKE_USAGE: Usage = Usage {
    fuel_used: 1234,
    memory_peak: 65536,
    wall_time: Duration::from_micros(42),
};

impl HookRunner for Fake {
    fn call(&self, event_json: &[u8]) -> HookCall {
        let event: Event = serde_json::from_slice(event_json).expect("a contract-v1 event");
        self.journal
            .lock()
            .unwrap()
            .push((self.name.clone(), event));
        HookCall {
            outcome: match &self.reply {
                Reply::Commands(commands) => Ok(commands.clone()),
                Reply::Fails(kind, cause) => Err(HookFailure::new(*kind, cause.clone())),
            },
            logs: self
                .logs
                .iter()
                .map(|message| LogLine {
                    level: LogLevel::Info,
                    message: message.clone(),
                })
                .collect(),
            logs_dropped: 0,
            usage: FAKE_USAGE,
        }
    }
}

/// How one hook of a test chain behaves.
struct Script {
    name: String,
    reply: Reply,
    logs: Vec<String>,
    /// Secret name → value, given to this hook only.
    secrets: Vec<(&'static str, &'static str)>,
}

fn hook(name: &str, commands: Vec<Command>) -> Script {
    Script {
        name: name.to_string(),
        reply: Reply::Commands(commands),
        logs: Vec::new(),
        secrets: Vec::new(),
    }
}

fn failing(name: &str, kind: FailureKind, cause: &str) -> Script {
    Script {
        reply: Reply::Fails(kind, cause.to_string()),
        ..hook(name, Vec::new())
    }
}

fn add(scope: &str) -> Command {
    Command::AddScope(scope.into())
}

fn remove(scope: &str) -> Command {
    Command::RemoveScope(scope.into())
}

fn set(name: &str, value: Value) -> Command {
    Command::SetClaim {
        name: name.into(),
        value,
    }
}

fn deny(error: DenyCode, description: &str) -> Command {
    Command::Deny(Deny {
        error,
        description: description.into(),
    })
}

/// Two APIs, two clients; the hooks come from each test. The store is off,
/// so nothing but the key file touches the disk.
const BASE: &str = r#"
issuer = "https://issuer.test/"
token_lifetime = "5m"
keys = { source = "file", path = "key.pem", alg = "ES256" }

[store]
kind = "none"

[policy]
claim_namespaces = ["https://t.test/"]
added_scopes_within_grant = true

[[apis]]
identifier = "https://api.test"
name = "API"
scopes = ["read", "write", "admin", "audit"]

[[apis]]
identifier = "https://other.test"
name = "Other"
scopes = ["read"]

[[clients]]
id = "app"
secret_hash = "APP_HASH"
metadata = { tenant = "acme" }

[[clients]]
id = "ops"
secret_hash = "APP_HASH"

[[grants]]
client = "app"
api = "https://api.test"
scopes = ["read", "write", "audit"]

[[grants]]
client = "app"
api = "https://other.test"
scopes = ["read"]

[[grants]]
client = "ops"
api = "https://api.test"
scopes = ["read"]
"#;

struct Setup {
    issuer: Issuer,
    journal: Journal,
    /// `app`'s (and `ops`'s) client secret.
    secret: String,
    _dir: tempfile::TempDir,
}

/// An issuer for [`BASE`] plus `hooks_toml` (`[[hooks]]` tables without
/// `module`: nothing is loaded), each hook run by the script of its name.
async fn setup(hooks_toml: &str, scripts: Vec<Script>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (secret, hash) = crate::clients::new_secret();
    let text = format!(
        "{}\n{}",
        BASE.replace("APP_HASH", &hash),
        hooks_toml.replace("[[hooks]]", "[[hooks]]\nmodule = \"never-loaded.wasm\"")
    );
    let path = dir.path().join("manifest.toml");
    std::fs::write(&path, text).unwrap();
    let manifest = Manifest::load(&path).unwrap();
    let journal = Journal::default();
    let mut scripts: BTreeMap<String, Script> =
        scripts.into_iter().map(|s| (s.name.clone(), s)).collect();
    let chain = manifest
        .hooks
        .iter()
        .map(|config| {
            let script = scripts.remove(&config.name).expect("a script per hook");
            let fake = Fake {
                name: script.name,
                reply: script.reply,
                logs: script.logs,
                journal: journal.clone(),
            };
            let mut values = Secrets::default();
            for (name, value) in script.secrets {
                values.0.insert(name.into(), value.into());
            }
            let secrets = HookSecrets::new(
                &config.name,
                values,
                Vec::new(),
                None,
                Duration::from_secs(300),
                Duration::from_secs(3600),
            );
            ChainHook::new(
                config.clone(),
                Box::new(fake),
                EventParts::ALL,
                secrets,
                None,
            )
            .expect("a fake prepares nothing")
        })
        .collect();
    assert!(scripts.is_empty(), "a script without a hook");
    let key_path = dir.path().join("key.pem");
    let keys = crate::keys::file::FileKeySource::open_or_generate(
        &key_path,
        crate::keys::parse_algorithm("ES256").unwrap(),
    )
    .unwrap();
    let issuer = Issuer::assemble(manifest, Arc::new(keys), chain)
        .await
        .unwrap();
    Setup {
        issuer,
        journal,
        secret,
        _dir: dir,
    }
}

impl Setup {
    /// Steps 3–5 (target and hooks) for `client` asking `api` for `scope`.
    async fn run(
        &self,
        client: &str,
        api: &str,
        scope: Option<&str>,
    ) -> Result<TokenState, OAuthError> {
        let client = self.issuer.find_client(client).await.unwrap().unwrap();
        let target = self.issuer.target(&client, Some(api), scope).await?;
        self.issuer
            .run_hooks(&client, target, "req-1", &RequestContext::default(), None)
            .await
    }

    async fn explain(&self, client: &str, scope: Option<&str>) -> Explanation {
        self.issuer
            .explain(&ExplainRequest {
                client_id: client.into(),
                audience: "https://api.test".into(),
                scope: scope.map(String::from),
                ..ExplainRequest::default()
            })
            .await
            .unwrap()
    }

    /// The hooks called since the last look, in order; clears the journal.
    fn called(&self) -> Vec<String> {
        self.events().into_iter().map(|(name, _)| name).collect()
    }

    fn events(&self) -> Vec<(String, Event)> {
        std::mem::take(&mut *self.journal.lock().unwrap())
    }
}

fn scopes(token: &TokenState) -> Vec<&str> {
    token.scopes.iter().map(String::as_str).collect()
}

fn step<'a>(explanation: &'a Explanation, hook: &str) -> &'a HookStep {
    explanation
        .hooks
        .iter()
        .find(|s| s.hook == hook)
        .unwrap_or_else(|| panic!("no step for `{hook}`"))
}

#[tokio::test]
async fn hooks_run_in_manifest_order_each_seeing_the_token_as_it_stands() {
    let s = setup(
        r#"
        [[hooks]]
        name = "first"
        capabilities = { claims = ["https://t.test/"] }
        [[hooks]]
        name = "second"
        capabilities = { claims = ["https://t.test/"], scopes = ["write"] }
        [[hooks]]
        name = "third"
        "#,
        vec![
            hook("first", vec![set("https://t.test/step", json!(1))]),
            hook(
                "second",
                vec![set("https://t.test/step", json!(2)), add("write")],
            ),
            hook("third", vec![]),
        ],
    )
    .await;
    let token = s
        .run("app", "https://api.test", Some("read"))
        .await
        .unwrap();
    assert_eq!(scopes(&token), ["read", "write"]);
    assert_eq!(token.claims["https://t.test/step"], json!(2));
    let events = s.events();
    let order: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["first", "second", "third"]);
    // Each hook sees what the hooks before it left.
    assert!(events[0].1.token.claims.is_empty());
    assert_eq!(events[1].1.token.claims["https://t.test/step"], json!(1));
    assert_eq!(events[2].1.token, token);
    // The request-wide parts are the same for every hook.
    for (_, event) in &events {
        assert_eq!(event.request_id, "req-1");
        assert_eq!(event.client.id, "app");
        assert_eq!(event.client.metadata["tenant"], "acme");
        assert_eq!(event.api.identifier, "https://api.test");
        assert_eq!(event.requested_scopes, ["read"]);
        assert_eq!(event.granted_scopes, ["read", "write", "audit"]);
    }
}

/// Scopes a hook adds and removes apply when policy allows them; one
/// command policy refuses cuts that hook's whole change set (all or
/// nothing), and the chain goes on under `on_error = "skip"`.
#[tokio::test]
async fn scopes_added_and_removed_then_cut_by_policy() {
    let s = setup(
        r#"
        [[hooks]]
        name = "swap"
        capabilities = { scopes = ["read", "write"] }
        [[hooks]]
        name = "ungranted"
        on_error = "skip"
        capabilities = { scopes = ["*"] }
        [[hooks]]
        name = "undefined"
        on_error = "skip"
        capabilities = { scopes = ["*"] }
        [[hooks]]
        name = "beyond-capabilities"
        on_error = "skip"
        capabilities = { scopes = ["audit"] }
        [[hooks]]
        name = "last"
        "#,
        vec![
            hook("swap", vec![add("write"), remove("read")]),
            // `audit` alone would pass; `admin` is not granted to the client.
            hook("ungranted", vec![add("audit"), add("admin")]),
            hook("undefined", vec![add("delete")]),
            hook("beyond-capabilities", vec![add("audit"), remove("write")]),
            hook("last", vec![]),
        ],
    )
    .await;
    let token = s
        .run("app", "https://api.test", Some("read"))
        .await
        .unwrap();
    assert_eq!(scopes(&token), ["write"]);
    assert_eq!(
        s.called(),
        [
            "swap",
            "ungranted",
            "undefined",
            "beyond-capabilities",
            "last"
        ]
    );

    let explained = s.explain("app", Some("read")).await;
    assert_eq!(explained.scopes, ["write"]);
    let swap = step(&explained, "swap").changes.as_ref().unwrap();
    assert_eq!(swap.scopes_before, ["read"]);
    assert_eq!(swap.scopes_after, ["write"]);
    assert_eq!(swap.scopes_added, ["write"]);
    assert_eq!(swap.scopes_removed, ["read"]);
    for (name, named) in [
        ("ungranted", "add_scope `admin`: the client was not granted"),
        ("undefined", "add_scope `delete`: the API does not define"),
        (
            "beyond-capabilities",
            "remove_scope `write`: not in the hook's capabilities",
        ),
    ] {
        let step = step(&explained, name);
        assert_eq!(
            (step.result, step.effect),
            (StepResult::Failed, Effect::ChangesSkipped)
        );
        let failure = step.failure.as_ref().unwrap();
        assert_eq!(failure.kind, "policy_violation");
        assert!(failure.cause.contains(named), "{name}: {}", failure.cause);
        assert!(step.changes.is_none());
    }
}

#[tokio::test]
async fn claims_set_and_removed_within_capabilities() {
    let s = setup(
        r#"
        [[hooks]]
        name = "set"
        capabilities = { claims = ["https://t.test/"] }
        [[hooks]]
        name = "rework"
        capabilities = { claims = ["https://t.test/tenant", "https://t.test/tmp"] }
        [[hooks]]
        name = "no-claims"
        on_error = "skip"
        "#,
        vec![
            hook(
                "set",
                vec![
                    set("https://t.test/tenant", json!("acme")),
                    set("https://t.test/tmp", json!({"n": [1, 2]})),
                ],
            ),
            hook(
                "rework",
                vec![
                    Command::RemoveClaim("https://t.test/tmp".into()),
                    set("https://t.test/tenant", json!("acme-eu")),
                ],
            ),
            // Without capabilities a hook may only deny.
            hook("no-claims", vec![set("https://t.test/x", json!(true))]),
        ],
    )
    .await;
    let token = s.run("app", "https://api.test", None).await.unwrap();
    assert_eq!(
        Value::Object(token.claims.clone()),
        json!({"https://t.test/tenant": "acme-eu"})
    );
    // None requested: all granted scopes, untouched.
    assert_eq!(scopes(&token), ["read", "write", "audit"]);

    let explained = s.explain("app", None).await;
    let rework = step(&explained, "rework").changes.as_ref().unwrap();
    let names = |changes: &[crate::explain::ClaimChange]| {
        changes
            .iter()
            .map(|c| (c.name.clone(), c.old.clone(), c.new.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&rework.claims_set),
        [(
            "https://t.test/tenant".to_string(),
            Some(json!("acme")),
            Some(json!("acme-eu"))
        )]
    );
    assert_eq!(
        names(&rework.claims_removed),
        [(
            "https://t.test/tmp".to_string(),
            Some(json!({"n": [1, 2]})),
            None
        )]
    );
    let refused = step(&explained, "no-claims");
    assert_eq!(refused.failure.as_ref().unwrap().kind, "policy_violation");
    // The final claims are the token's: custom ones and the host's.
    let claims = explained.claims.unwrap();
    assert_eq!(claims["https://t.test/tenant"], json!("acme-eu"));
    assert_eq!(claims["sub"], json!("app"));
    assert_eq!(claims["aud"], json!("https://api.test"));
    assert_eq!(claims["scope"], json!("read write audit"));
    assert!(!claims.contains_key("https://t.test/tmp"));
}

#[tokio::test]
async fn a_deny_refuses_the_request_and_later_hooks_do_not_run() {
    let s = setup(
        r#"
        [[hooks]]
        name = "before"
        capabilities = { claims = ["https://t.test/"] }
        [[hooks]]
        name = "gate"
        [[hooks]]
        name = "after"
        "#,
        vec![
            hook("before", vec![set("https://t.test/a", json!(1))]),
            hook(
                "gate",
                vec![deny(DenyCode::InvalidScope, "write needs gold")],
            ),
            hook("after", vec![]),
        ],
    )
    .await;
    let err = s.run("app", "https://api.test", None).await.unwrap_err();
    assert_eq!(err.error, ErrorCode::InvalidScope);
    assert_eq!(err.error_description, "write needs gold");
    assert_eq!(s.called(), ["before", "gate"]);

    let explained = s.explain("app", None).await;
    assert_eq!(
        explained.refused.as_ref().unwrap().error,
        ErrorCode::InvalidScope
    );
    assert!(explained.claims.is_none() && explained.scopes.is_empty());
    let gate = step(&explained, "gate");
    assert_eq!(
        (gate.result, gate.effect),
        (StepResult::Denied, Effect::RequestDenied)
    );
    let detail = gate.deny.as_ref().unwrap();
    assert_eq!(
        (detail.error, detail.description.as_str()),
        ("invalid_scope", "write needs gold")
    );
    assert_eq!(explained.hooks.len(), 2, "`after` never ran");
}

/// A deny wins over everything else in the output, even a command policy
/// refuses under `on_error = "skip"` (which would otherwise skip the hook):
/// a hook that says "refuse" is obeyed.
#[tokio::test]
async fn a_deny_wins_over_a_rejected_command_under_skip() {
    let s = setup(
        r#"
        [[hooks]]
        name = "mixed"
        on_error = "skip"
        [[hooks]]
        name = "after"
        "#,
        vec![
            hook(
                "mixed",
                vec![
                    add("admin"),
                    set("sub", json!("someone-else")),
                    deny(DenyCode::AccessDenied, "blocked"),
                    add("delete"),
                ],
            ),
            hook("after", vec![]),
        ],
    )
    .await;
    let err = s.run("app", "https://api.test", None).await.unwrap_err();
    assert_eq!(err.error, ErrorCode::AccessDenied);
    assert_eq!(err.error_description, "blocked");
    assert_eq!(s.called(), ["mixed"]);
}

const CALL_FAILURES: [FailureKind; 12] = [
    FailureKind::Timeout,
    FailureKind::OutOfFuel,
    FailureKind::MemoryLimit,
    FailureKind::StackOverflow,
    FailureKind::Trap,
    FailureKind::InputTooLarge,
    FailureKind::OutputTooLarge,
    FailureKind::InvalidOutput,
    FailureKind::HookError,
    FailureKind::ContractMismatch,
    FailureKind::ResourceLimit,
    FailureKind::SecretsUnavailable,
];

/// Under `on_error = "skip"` every kind of failure drops the hook's changes
/// and the chain goes on; explain names the kind and the cause.
#[tokio::test]
async fn every_failure_kind_is_skipped_under_skip() {
    let mut toml = String::new();
    let mut scripts = Vec::new();
    let names: Vec<String> = CALL_FAILURES.iter().map(|k| format!("fails-{k}")).collect();
    for (kind, name) in CALL_FAILURES.iter().zip(&names) {
        toml.push_str(&format!(
            "[[hooks]]\nname = \"{name}\"\non_error = \"skip\"\n"
        ));
        scripts.push(failing(name, *kind, &format!("cause of {kind}")));
    }
    toml.push_str("[[hooks]]\nname = \"after\"\ncapabilities = { scopes = [\"write\"] }\n");
    scripts.push(hook("after", vec![add("write")]));
    let s = setup(&toml, scripts).await;

    let token = s
        .run("app", "https://api.test", Some("read"))
        .await
        .unwrap();
    assert_eq!(scopes(&token), ["read", "write"], "only `after` applied");
    assert_eq!(s.called().len(), CALL_FAILURES.len() + 1);

    let explained = s.explain("app", Some("read")).await;
    assert!(explained.refused.is_none());
    for (kind, name) in CALL_FAILURES.iter().zip(&names) {
        let step = step(&explained, name);
        assert_eq!(
            (step.result, step.effect),
            (StepResult::Failed, Effect::ChangesSkipped)
        );
        let failure = step.failure.as_ref().unwrap();
        assert_eq!(failure.kind, kind.as_str());
        assert_eq!(failure.cause, format!("cause of {kind}"));
    }
}

/// Under `on_error = "deny"` (the default) every kind of failure fails the
/// request with `server_error` naming the request id, not the cause, and
/// later hooks do not run.
#[tokio::test]
async fn every_failure_kind_fails_the_request_under_deny() {
    for kind in CALL_FAILURES {
        let s = setup(
            r#"
            [[hooks]]
            name = "failing"
            [[hooks]]
            name = "after"
            "#,
            vec![
                failing("failing", kind, "the secret cause"),
                hook("after", vec![]),
            ],
        )
        .await;
        let err = s.run("app", "https://api.test", None).await.unwrap_err();
        assert_eq!(err.error, ErrorCode::ServerError, "{kind}");
        assert!(err.error_description.contains("req-1"), "{kind}: {err:?}");
        assert!(!err.error_description.contains("cause"), "{kind}: {err:?}");
        assert_eq!(s.called(), ["failing"], "{kind}");

        let explained = s.explain("app", None).await;
        let step = step(&explained, "failing");
        assert_eq!(
            (step.result, step.effect),
            (StepResult::Failed, Effect::RequestFailed),
            "{kind}"
        );
        assert_eq!(step.failure.as_ref().unwrap().kind, kind.as_str());
        assert_eq!(
            explained.refused.as_ref().unwrap().error,
            ErrorCode::ServerError
        );
    }
}

/// A policy violation is a failure like the others: `on_error` decides.
#[tokio::test]
async fn a_policy_violation_under_deny_fails_the_request() {
    let s = setup(
        r#"
        [[hooks]]
        name = "reserved"
        capabilities = { claims = ["https://t.test/"] }
        "#,
        vec![hook(
            "reserved",
            vec![set("iss", json!("https://evil.test/"))],
        )],
    )
    .await;
    let err = s.run("app", "https://api.test", None).await.unwrap_err();
    assert_eq!(err.error, ErrorCode::ServerError);
}

/// Shadow hooks run in their place and are reported, but nothing they do
/// reaches the token or the response: not their changes, not their deny,
/// not their failure (whatever `on_error` says).
#[tokio::test]
async fn shadow_hooks_never_affect_the_token() {
    let s = setup(
        r#"
        [[hooks]]
        name = "would-change"
        mode = "shadow"
        capabilities = { claims = ["https://t.test/"], scopes = ["*"] }
        [[hooks]]
        name = "would-deny"
        mode = "shadow"
        [[hooks]]
        name = "would-fail"
        mode = "shadow"
        on_error = "deny"
        [[hooks]]
        name = "enforced"
        capabilities = { claims = ["https://t.test/"] }
        "#,
        vec![
            hook(
                "would-change",
                vec![
                    add("write"),
                    remove("read"),
                    set("https://t.test/shadow", json!(true)),
                ],
            ),
            hook("would-deny", vec![deny(DenyCode::AccessDenied, "no")]),
            failing("would-fail", FailureKind::Trap, "unreachable"),
            hook("enforced", vec![set("https://t.test/real", json!(1))]),
        ],
    )
    .await;
    let token = s
        .run("app", "https://api.test", Some("read"))
        .await
        .unwrap();
    assert_eq!(scopes(&token), ["read"]);
    assert_eq!(
        Value::Object(token.claims.clone()),
        json!({"https://t.test/real": 1})
    );
    let events = s.events();
    let order: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        order,
        ["would-change", "would-deny", "would-fail", "enforced"]
    );
    // Every hook after the shadow one sees the token as if it had not run.
    for (name, event) in &events[1..] {
        assert_eq!(event.token.scopes, ["read"], "{name}");
        assert!(event.token.claims.is_empty(), "{name}");
    }

    let explained = s.explain("app", Some("read")).await;
    assert!(explained.refused.is_none());
    let results: Vec<(StepResult, Effect)> = explained
        .hooks
        .iter()
        .map(|s| (s.result, s.effect))
        .collect();
    assert_eq!(
        results,
        [
            (StepResult::Applied, Effect::Ignored),
            (StepResult::Denied, Effect::Ignored),
            (StepResult::Failed, Effect::Ignored),
            (StepResult::Applied, Effect::Applied),
        ]
    );
    // What the shadow hook would have done is still shown.
    let would = step(&explained, "would-change").changes.as_ref().unwrap();
    assert_eq!(would.scopes_added, ["write"]);
    assert_eq!(explained.scopes, ["read"]);
}

/// `match.apis` and `match.clients` select the hooks that run; a hook that
/// names both runs only where both match.
#[tokio::test]
async fn match_selects_hooks_by_api_and_client() {
    let s = setup(
        r#"
        [[hooks]]
        name = "other-api"
        match = { apis = ["https://other.test"] }
        [[hooks]]
        name = "ops-only"
        match = { clients = ["ops"] }
        [[hooks]]
        name = "app-on-api"
        match = { apis = ["https://api.test"], clients = ["app"] }
        [[hooks]]
        name = "everyone"
        "#,
        vec![
            hook("other-api", vec![]),
            hook("ops-only", vec![]),
            hook("app-on-api", vec![]),
            hook("everyone", vec![]),
        ],
    )
    .await;
    s.run("app", "https://api.test", None).await.unwrap();
    assert_eq!(s.called(), ["app-on-api", "everyone"]);
    s.run("ops", "https://api.test", None).await.unwrap();
    assert_eq!(s.called(), ["ops-only", "everyone"]);
    s.run("app", "https://other.test", None).await.unwrap();
    assert_eq!(s.called(), ["other-api", "everyone"]);

    let explained = s.explain("ops", None).await;
    let skipped: Vec<(&str, StepResult, Option<&str>)> = explained
        .hooks
        .iter()
        .map(|s| (s.hook.as_str(), s.result, s.filter))
        .collect();
    assert_eq!(
        skipped,
        [
            ("other-api", StepResult::Skipped, Some("match.apis")),
            ("ops-only", StepResult::Applied, None),
            ("app-on-api", StepResult::Skipped, Some("match.clients")),
            ("everyone", StepResult::Applied, None),
        ]
    );
    assert!(
        explained
            .hooks
            .iter()
            .filter(|s| s.result == StepResult::Skipped)
            .all(|s| s.effect == Effect::NotRun && s.usage.is_none())
    );
}

/// Explain records each hook's step: usage against the manifest's limits,
/// its log lines, and a config override reaching the hook in place of the
/// manifest's; issuance and explain run the same loop.
#[tokio::test]
async fn explain_reports_usage_logs_and_config_overrides() {
    let mut logging = hook("logging", vec![add("write")]);
    logging.logs = vec!["looked at the tenant".into()];
    let s = setup(
        r#"
        [[hooks]]
        name = "logging"
        limits = { fuel = 5_000_000, timeout = "20ms", memory = "4MiB" }
        capabilities = { scopes = ["write"] }
        config = { level = "gold" }
        "#,
        vec![logging],
    )
    .await;
    let mut overrides = BTreeMap::new();
    overrides.insert("logging".to_string(), json!({"level": "silver"}));
    let explained = s
        .issuer
        .explain(&ExplainRequest {
            client_id: "app".into(),
            audience: "https://api.test".into(),
            scope: Some("read".into()),
            config_overrides: overrides,
            ..ExplainRequest::default()
        })
        .await
        .unwrap();
    let step = step(&explained, "logging");
    assert!(step.config_overridden);
    let usage = step.usage.unwrap();
    assert_eq!(
        (usage.fuel_used, usage.fuel_limit),
        (FAKE_USAGE.fuel_used, 5_000_000)
    );
    assert_eq!(
        (usage.memory_peak, usage.memory_limit),
        (65536, 4 * 1024 * 1024)
    );
    assert_eq!((usage.time_us, usage.timeout_us), (42, 20_000));
    assert_eq!(step.logs.len(), 1);
    assert_eq!(step.logs[0].message, "looked at the tenant");
    assert_eq!(explained.initial_scopes, ["read"]);
    assert_eq!(explained.scopes, ["read", "write"]);

    s.run("app", "https://api.test", None).await.unwrap();
    let events = s.events();
    assert_eq!(events[0].1.config, json!({"level": "silver"}), "explain's");
    assert_eq!(
        events[1].1.config,
        json!({"level": "gold"}),
        "the manifest's"
    );
}

/// A hook gets its own secrets and no other's; what it reports (log lines,
/// failure cause, deny description) reaches logs, explain and the client
/// with the values blanked out, as does a policy violation naming one.
#[tokio::test]
async fn secrets_reach_only_their_hook_and_are_blanked_in_what_it_reports() {
    const VALUE: &str = "s3cr3t-v4lue";
    let mut talker = failing(
        "talker",
        FailureKind::HookError,
        "upstream said s3cr3t-v4lue",
    );
    talker.logs = vec![format!("using {VALUE} now")];
    talker.secrets = vec![("api_key", VALUE)];
    let mut leaky = hook(
        "leaky",
        vec![set(&format!("https://t.test/{VALUE}"), json!(1))],
    );
    leaky.secrets = vec![("api_key", VALUE)];
    let mut denier = hook(
        "denier",
        vec![deny(
            DenyCode::AccessDenied,
            &format!("key {VALUE} refused"),
        )],
    );
    denier.secrets = vec![("api_key", VALUE)];
    let s = setup(
        r#"
        [[hooks]]
        name = "talker"
        on_error = "skip"
        [[hooks]]
        name = "leaky"
        on_error = "skip"
        [[hooks]]
        name = "bystander"
        [[hooks]]
        name = "denier"
        "#,
        vec![talker, leaky, hook("bystander", vec![]), denier],
    )
    .await;
    let err = s.run("app", "https://api.test", None).await.unwrap_err();
    assert_eq!(err.error_description, "key <redacted> refused");
    let events = s.events();
    assert_eq!(events[0].1.secrets.get("api_key"), Some(VALUE));
    assert_eq!(events[2].0, "bystander");
    assert!(events[2].1.secrets.0.is_empty(), "no other hook's secrets");

    let explained = s.explain("app", None).await;
    let talker = step(&explained, "talker");
    assert_eq!(talker.logs[0].message, "using <redacted> now");
    assert_eq!(
        talker.failure.as_ref().unwrap().cause,
        "upstream said <redacted>"
    );
    let leaky = step(&explained, "leaky").failure.as_ref().unwrap();
    assert!(!leaky.cause.contains(VALUE), "{}", leaky.cause);
    assert!(leaky.cause.contains("<redacted>"), "{}", leaky.cause);
    let denier = step(&explained, "denier").deny.as_ref().unwrap();
    assert_eq!(denier.description, "key <redacted> refused");
    let text = serde_json::to_string(&explained).unwrap();
    assert!(!text.contains(VALUE), "{text}");
}

/// The whole of `Issuer::issue` in process: authenticated client, hooks,
/// signed token whose claims are what the hooks left.
#[tokio::test]
async fn issue_signs_what_the_hooks_left() {
    let s = setup(
        r#"
        [[hooks]]
        name = "tenant"
        capabilities = { claims = ["https://t.test/"], scopes = ["read"] }
        "#,
        vec![hook(
            "tenant",
            vec![set("https://t.test/tenant", json!("acme")), remove("read")],
        )],
    )
    .await;
    let request = |secret: &str| TokenRequest {
        request_id: "req-issue".into(),
        client_request_id: None,
        grant_type: Some("client_credentials".into()),
        client: ClientAuth::Basic {
            id: "app".into(),
            secret: secret.into(),
        },
        audience: Some("https://api.test".into()),
        scope: Some("read write".into()),
        context: RequestContext::default(),
    };
    let response = s.issuer.issue(&request(&s.secret)).await.unwrap();
    assert_eq!(response.scope, "write");
    let keys = s.issuer.key_set().await.unwrap();
    let claims = keys
        .verify(&response.access_token, "https://issuer.test/")
        .unwrap();
    assert_eq!(claims["https://t.test/tenant"], json!("acme"));
    assert_eq!(claims["scope"], json!("write"));
    assert_eq!(claims["client_id"], json!("app"));
    assert_eq!(claims["jti"], json!(response.jti));
    assert_eq!(s.called(), ["tenant"]);

    // A wrong secret never reaches the hooks.
    let err = s.issuer.issue(&request("wrong")).await.unwrap_err();
    assert_eq!(err.error, ErrorCode::InvalidClient);
    assert!(s.called().is_empty());
}
