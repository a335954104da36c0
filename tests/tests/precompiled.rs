//! `tokenhook bundle --target native` precompiles the example hooks; the
//! issuer runs them without compiling, and falls back to compiling the pinned
//! module (hook by hook) when an artifact does not verify: tampered bytes,
//! another engine's fingerprint, another target, another module.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tokenhook::engine::CodeSource;
use tokenhook::pipeline::{Issuer, Services};
use tokenhook_tests::{ServerProcess, example_manifest, jose, tokenhook_bin, write_manifest_in};

/// Bundle the example manifest for `target` into `dir/bundle`; its manifest path.
fn bundle(dir: &Path, target: &str) -> PathBuf {
    let manifest = write_manifest_in(dir, &example_manifest());
    let out = dir.join("bundle");
    let status = Command::new(tokenhook_bin())
        .args(["bundle", "--target", target, "--manifest"])
        .arg(&manifest)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "bundle --target {target}");
    out.join("manifest.toml")
}

/// Load `manifest` in a fresh engine; how each hook's code was obtained.
async fn code_sources(manifest: &Path) -> Vec<(String, CodeSource)> {
    let services = Services::local();
    services.engine.record_loads();
    Issuer::load(manifest, &services)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    services
        .engine
        .take_loads()
        .into_iter()
        .map(|l| (l.hook, l.code))
        .collect()
}

fn edit_manifest(path: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let mut doc: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(path, toml::to_string(&doc).unwrap()).unwrap();
}

fn precompiled_of(doc: &mut toml::Table, hook: usize) -> &mut toml::Table {
    doc["hooks"].as_array_mut().unwrap()[hook]["precompiled"]
        .as_table_mut()
        .unwrap()
}

fn sources(list: &[(String, CodeSource)]) -> Vec<CodeSource> {
    list.iter().map(|(_, c)| *c).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_native_bundle_runs_its_precompiled_hooks_and_issues_a_verifiable_token() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = bundle(dir.path(), "native");
    let text = std::fs::read_to_string(&manifest).unwrap();
    for name in ["tenant-claims", "scope-policy", "deny-list", "signed-claim"] {
        assert!(
            dir.path()
                .join(format!("bundle/hooks/{name}.cwasm"))
                .exists(),
            "{name}"
        );
    }
    assert!(text.contains("[hooks.precompiled]"), "{text}");

    let server = ServerProcess::spawn(&manifest, &[]).unwrap();
    let client = reqwest::Client::new();
    let token: Value = client
        .post(format!("http://{}/oauth/token", server.addr))
        .basic_auth("demo-client", Some("demo-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", "https://api.example.com"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = client
        .get(format!("http://{}/.well-known/jwks.json", server.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = jose::verify(
        token["access_token"].as_str().expect("a token"),
        &jwks,
        "http://127.0.0.1:8080/",
        "https://api.example.com",
    )
    .unwrap();
    assert_eq!(claims["https://example.com/tenant"], "acme");

    // The start-up breakdown: every hook precompiled, none compiled.
    server.signal("-TERM");
    let mut child = server.child;
    let mut stderr = String::new();
    use std::io::Read;
    child
        .0
        .stderr
        .as_mut()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let startup = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "start-up")
        .unwrap_or_else(|| panic!("no start-up line:\n{stderr}"));
    let fields = &startup["fields"];
    assert_eq!(fields["precompiled"], 4, "{startup}");
    assert_eq!(fields["compiled"], 0, "{startup}");
    assert!(
        fields["hooks"]
            .as_str()
            .unwrap()
            .contains("tenant-claims=precompiled/"),
        "{startup}"
    );
    for phase in ["config_ms", "keys_ms", "hooks_ms", "first_request_ms"] {
        assert!(fields[phase].is_number(), "{phase}: {startup}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_that_does_not_verify_is_not_used() {
    use CodeSource::{Compiled, Precompiled};
    let dir = tempfile::tempdir().unwrap();
    let manifest = bundle(dir.path(), "native");
    assert_eq!(
        sources(&code_sources(&manifest).await),
        [Precompiled; 4],
        "untouched bundle"
    );

    // Tampered bytes (hook 0): its digest no longer matches.
    let artifact = dir.path().join("bundle/hooks/tenant-claims.cwasm");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&artifact, &bytes).unwrap();
    // Another engine (hook 1), another target (hook 2), another module (hook 3).
    edit_manifest(&manifest, |doc| {
        precompiled_of(doc, 1).insert("engine".into(), "ab".repeat(32).into());
        precompiled_of(doc, 2).insert("target".into(), "aarch64-unknown-linux-gnu".into());
        precompiled_of(doc, 3).insert("module_sha256".into(), "cd".repeat(32).into());
    });
    assert_eq!(
        sources(&code_sources(&manifest).await),
        [Compiled; 4],
        "each refused for its own reason, each compiled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_arm64_bundle_is_compiled_on_another_host_and_a_precompiled_entry_needs_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = bundle(dir.path(), "aarch64-unknown-linux-gnu");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("target = \"aarch64-unknown-linux-gnu\""));
    if std::env::consts::ARCH != "aarch64" {
        assert_eq!(
            sources(&code_sources(&manifest).await),
            [CodeSource::Compiled; 4]
        );
    }

    // A malformed entry, and one without the module pin, are manifest
    // errors naming the field.
    edit_manifest(&manifest, |doc| {
        precompiled_of(doc, 1).insert("engine".into(), "not hex".into());
    });
    let err = tokenhook::manifest::Manifest::load(&manifest).unwrap_err();
    assert_eq!(err.field, "hooks[1].precompiled.engine", "{err}");
    // Values are checked as the manifest is read, before the pin check
    // across fields: the malformed engine goes back to a well-formed one.
    edit_manifest(&manifest, |doc| {
        precompiled_of(doc, 1).insert("engine".into(), "ab".repeat(32).into());
        doc["hooks"].as_array_mut().unwrap()[0]
            .as_table_mut()
            .unwrap()
            .remove("sha256");
    });
    let err = tokenhook::manifest::Manifest::load(&manifest).unwrap_err();
    assert_eq!(err.field, "hooks[0].precompiled", "{err}");
    assert!(err.message.contains("sha256"), "{err}");
}
