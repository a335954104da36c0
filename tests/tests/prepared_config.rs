//! A hook's config prepared once (contract v1's optional `tokenhook_init`):
//! the host calls it at load with the config, keeps what it wrote to memory,
//! and starts every call's fresh instance from that. Tested on the engine
//! (wat modules in tests/hostile/), through the issuer's load (a refused
//! config names the hook's `config` field), and on the real example hooks
//! (same tokens as before, a broken deny list never loads).

mod support;

use support::{built, hook};
use tokenhook::engine::{FailureKind, HookEngine, Limits};
use tokenhook::manifest::ManifestError;
use tokenhook::pipeline::{Issuer, Services};
use tokenhook_sdk::Command;
use tokenhook_tests::{Clients, hostile};

fn event() -> Vec<u8> {
    serde_json::to_vec(&tokenhook_sdk::testing::EventBuilder::new().build()).unwrap()
}

fn load(engine: &HookEngine, name: &str) -> tokenhook::engine::HookModule {
    engine
        .load(
            &std::fs::read(hostile(name)).unwrap(),
            None,
            Limits::default(),
        )
        .unwrap_or_else(|f| panic!("{name} should load: {f}"))
}

#[test]
fn every_call_starts_from_the_prepared_memory_never_from_an_earlier_call() {
    let engine = HookEngine::new(Default::default());
    let module = load(&engine, "prepare_echo");
    assert!(module.prepares_config());
    let config = br#"{"commands":[{"add_scope":"read:prepared"}]}"#;
    let prepared = module.prepare(config).unwrap().expect("it prepares");
    assert!(prepared.len() >= config.len(), "{prepared:?}");
    // Each call scribbles over the prepared bytes; the next still sees them.
    for round in 0..20 {
        let call = module.call_prepared(Some(&prepared), &event());
        assert_eq!(
            call.outcome.as_ref().map_err(|f| f.to_string()),
            Ok(&vec![Command::AddScope("read:prepared".into())]),
            "call {round}"
        );
    }
    // Without it, the instance is the module's own: nothing was kept.
    let bare = module.call(&event()).outcome.unwrap_err();
    assert_eq!(bare.kind, FailureKind::InvalidOutput, "{bare}");
    // Two configs of one module are independent.
    let other = module
        .prepare(br#"{"commands":[{"remove_scope":"write:orders"}]}"#)
        .unwrap()
        .unwrap();
    let call = module.call_prepared(Some(&other), &event());
    assert_eq!(
        call.outcome.unwrap(),
        vec![Command::RemoveScope("write:orders".into())]
    );
    let call = module.call_prepared(Some(&prepared), &event());
    assert_eq!(
        call.outcome.unwrap(),
        vec![Command::AddScope("read:prepared".into())]
    );
}

#[test]
fn a_module_without_init_prepares_nothing() {
    let engine = HookEngine::new(Default::default());
    let module = load(&engine, "ok_minimal");
    assert!(!module.prepares_config());
    assert!(module.prepare(b"{}").unwrap().is_none());
}

#[test]
fn what_init_answers_is_checked_like_a_call() {
    let engine = HookEngine::new(Default::default());
    let module = load(&engine, "init_output");
    assert!(module.prepare(br#"{"commands":[]}"#).unwrap().is_some());
    let refused = module
        .prepare(br#"{"error":{"message":"`ips` must be a list"}}"#)
        .unwrap_err();
    assert_eq!(refused.kind, FailureKind::HookError);
    assert_eq!(refused.message, "`ips` must be a list");
    let commands = module
        .prepare(br#"{"commands":[{"add_scope":"x"}]}"#)
        .unwrap_err();
    assert_eq!(commands.kind, FailureKind::ContractMismatch);
    assert!(commands.message.contains("tokenhook_init"), "{commands}");
    let garbage = module.prepare(b"not json").unwrap_err();
    assert_eq!(garbage.kind, FailureKind::InvalidOutput, "{garbage}");
}

#[test]
fn an_init_export_of_the_wrong_type_is_refused_at_load() {
    let engine = HookEngine::new(Default::default());
    let err = match engine.load(
        &std::fs::read(hostile("init_wrong_signature")).unwrap(),
        None,
        Limits::default(),
    ) {
        Ok(_) => panic!("must be refused"),
        Err(err) => err,
    };
    assert_eq!(err.kind, FailureKind::ContractMismatch);
    assert!(err.message.contains("tokenhook_init"), "{err}");
}

#[test]
fn init_runs_under_the_hooks_limits() {
    let engine = HookEngine::new(Default::default());
    let limits = Limits {
        fuel: 10,
        ..Limits::default()
    };
    let module = engine
        .load(
            &std::fs::read(hostile("prepare_echo")).unwrap(),
            None,
            limits,
        )
        .unwrap();
    let big = format!(r#"{{"commands":[],"pad":"{}"}}"#, "x".repeat(4000));
    let err = module.prepare(big.as_bytes()).unwrap_err();
    assert_eq!(err.kind, FailureKind::OutOfFuel, "{err}");
}

/// `manifest` in a file of its own directory (`{dir}` replaced by it).
fn manifest_file(manifest: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenhook.toml");
    let manifest = manifest.replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&path, &manifest).unwrap();
    (dir, path, manifest)
}

async fn load_error(manifest: &str) -> (tempfile::TempDir, ManifestError) {
    let (dir, path, manifest) = manifest_file(manifest);
    match Issuer::load(&path, &Services::local()).await {
        Ok(_) => panic!("the manifest should be refused:\n{manifest}"),
        Err(err) => (dir, err),
    }
}

/// The example deny-list hook with this `config = …` line.
fn deny_list(config: &str) -> String {
    hook("deny", &built("deny_list"), config)
}

#[tokio::test]
async fn a_config_the_hook_refuses_stops_the_load_and_names_the_field() {
    let deny = deny_list(r#"config = { ips = ["10.0.0.0/33"] }"#);
    let (_dir, err) = load_error(&Clients::new().manifest(&deny)).await;
    let shown = err.to_string();
    assert_eq!(err.field, "hooks[0].config", "{shown}");
    assert!(shown.contains("hook `deny`"), "{shown}");
    assert!(shown.contains("10.0.0.0/33"), "names the cause: {shown}");
    // No config at all: the deny list cannot be empty by accident.
    let bare = deny_list("");
    let (_dir, err) = load_error(&Clients::new().manifest(&bare)).await;
    assert_eq!(err.field, "hooks[0].config", "{err}");
    assert!(err.message.contains("clients"), "{err}");
}

/// `explain` with another config for a hook that prepares its config: that
/// run prepares the override (and refuses one the hook refuses, naming it);
/// the issuer's own preparation is untouched.
#[tokio::test]
async fn an_explain_override_is_prepared_for_that_run_only() {
    use tokenhook::explain::ExplainRequest;
    use tokenhook_sdk::wire::RequestContext;

    let deny = deny_list(r#"config = { ips = ["192.0.2.0/24"] }"#);
    let (_dir, path, _) = manifest_file(&Clients::new().manifest(&deny));
    let issuer = Issuer::load(&path, &Services::local()).await.unwrap();
    let explain = |config: Option<serde_json::Value>| {
        let request = ExplainRequest {
            client_id: "app".into(),
            audience: "https://api.test".into(),
            context: RequestContext {
                ip: Some("203.0.113.5".into()),
                ..RequestContext::default()
            },
            config_overrides: config
                .map(|c| [("deny".into(), c)].into())
                .unwrap_or_default(),
            ..ExplainRequest::default()
        };
        let issuer = &issuer;
        async move { serde_json::to_value(issuer.explain(&request).await.unwrap()).unwrap() }
    };
    let step = |e: &serde_json::Value| e["hooks"][0].clone();

    let overridden = explain(Some(serde_json::json!({"ips": ["203.0.113.0/24"]}))).await;
    assert_eq!(step(&overridden)["result"], "denied", "{overridden:#}");
    assert_eq!(step(&overridden)["config_overridden"], true);

    let manifests = explain(None).await;
    assert_ne!(step(&manifests)["result"], "denied", "{manifests:#}");
    assert!(manifests["refused"].is_null(), "{manifests:#}");

    let refused = explain(Some(serde_json::json!({"ips": ["203.0.113.0/33"]}))).await;
    let shown = refused.to_string();
    assert_eq!(step(&refused)["result"], "failed", "{refused:#}");
    assert!(
        shown.contains("203.0.113.0/33"),
        "names the cause: {refused:#}"
    );

    // And the issuer's own preparation still holds after both.
    let again = explain(None).await;
    assert!(again["refused"].is_null(), "{again:#}");
}
