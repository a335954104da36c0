//! The `tokenhook` CLI, tested as a process: `hook check`, `hook run`,
//! `keys generate`, `secret new` / `secret hash`.

use assert_cmd::Command;
use tokenhook_tests::{hook_wasm, hostile, tokenhook_bin};

fn tokenhook() -> Command {
    Command::new(tokenhook_bin())
}

fn event_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("event.json");
    std::fs::write(
        &path,
        r#"{"client": {"id": "demo-client", "metadata": {"tenant": "acme", "plan": "free"}},
            "api": {"identifier": "https://api.example.com", "scopes": ["read:orders", "write:orders"]},
            "token": {"scopes": ["read:orders", "write:orders"]}}"#,
    )
    .unwrap();
    path
}

/// `tokenhook hook run MODULE --event EVENT ARGS...`, run to completion.
fn hook_run(
    module: &std::path::Path,
    event: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    tokenhook()
        .args(["hook", "run"])
        .arg(module)
        .arg("--event")
        .arg(event)
        .args(args)
        .output()
        .unwrap()
}

fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

#[test]
fn hook_check_prints_digest_version_exports_and_imports() {
    let wasm = hook_wasm("tenant_claims");
    let output = tokenhook()
        .args(["hook", "check"])
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info = stdout_json(&output);
    assert_eq!(
        info["sha256"],
        tokenhook::engine::sha256_hex(&std::fs::read(&wasm).unwrap())
    );
    assert_eq!(info["abi_version"], 1);
    let exports: Vec<&str> = info["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in [
        "memory",
        "tokenhook_abi_v1",
        "tokenhook_alloc",
        "tokenhook_run",
    ] {
        assert!(exports.contains(&name), "{exports:?}");
    }
    assert_eq!(info["imports"][0]["module"], "tokenhook");
    assert!(String::from_utf8_lossy(&output.stderr).contains("ok, hook contract v1"));
}

#[test]
fn hook_check_names_what_is_wrong() {
    for (name, expected) in [
        ("wasi_import", "wasi_snapshot_preview1.fd_write"),
        ("missing_export", "tokenhook_run"),
        ("wrong_version", "contract v2"),
    ] {
        let output = tokenhook()
            .args(["hook", "check"])
            .arg(hostile(name))
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[test]
fn hook_run_prints_commands_and_usage_against_limits() {
    let dir = tempfile::tempdir().unwrap();
    let output = hook_run(
        &hook_wasm("tenant_claims"),
        &event_file(&dir),
        &[
            "--config",
            r#"{"namespace": "https://acme.test/"}"#,
            "--fuel",
            "5000000",
            "--timeout",
            "20ms",
            "--memory",
            "4MiB",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = stdout_json(&output);
    let commands = out["commands"].as_array().unwrap();
    assert!(
        commands.contains(
            &serde_json::json!({"set_claim": {"name": "https://acme.test/tenant", "value": "acme"}})
        ),
        "{out}"
    );
    assert!(
        commands.contains(&serde_json::json!({"remove_scope": "write:orders"})),
        "{out}"
    );
    assert_eq!(out["logs"][0]["level"], "info");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/ 5,000,000")
            && stderr.contains("/ 4.0 MiB")
            && stderr.contains("/ 20.0 ms")
            && stderr.contains(" · warm "),
        "{stderr}"
    );
}

/// README's "try it" command, on the example event shipped for it.
#[test]
fn the_readme_example_event_runs_every_example_hook() {
    let event = tokenhook_tests::workspace_root().join("examples/event.json");
    for (hook, args) in [
        (
            "tenant_claims",
            vec![
                "--config",
                r#"{"namespace":"https://example.com/"}"#,
                "--fuel",
                "5000000",
                "--timeout",
                "20ms",
            ],
        ),
        ("scope_policy", vec![]),
        (
            "deny_list",
            vec!["--config", r#"{"clients":["revoked-client"]}"#],
        ),
        ("signed_claim", vec!["--secret", "signing_key=dev-only"]),
    ] {
        let output = hook_run(&hook_wasm(hook), &event, &args);
        assert!(
            output.status.success(),
            "{hook}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if hook == "tenant_claims" {
            assert!(
                stdout_json(&output)["commands"]
                    .as_array()
                    .unwrap()
                    .contains(&serde_json::json!({"remove_scope": "write:orders"}))
            );
        }
    }
}

#[test]
fn hook_run_passes_secrets_to_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let output = hook_run(
        &hostile("ok_minimal"),
        &event_file(&dir),
        &["--secret", "signing_key=s3cr3t"],
    );
    assert!(output.status.success());
    let bad = hook_run(
        &hostile("ok_minimal"),
        &event_file(&dir),
        &["--secret", "no-equals-sign"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NAME=VALUE"));
}

#[test]
fn hook_run_failures_exit_non_zero_with_kind_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let event = event_file(&dir);
    for (module, args, kind) in [
        (hostile("infinite_loop"), vec![], "out_of_fuel"),
        (
            hostile("infinite_loop"),
            vec!["--fuel", "1000000000", "--timeout", "20ms"],
            "timeout",
        ),
        (
            hostile("memory_bomb"),
            vec!["--memory", "1MiB"],
            "memory_limit",
        ),
        (hostile("invalid_json"), vec![], "invalid_output"),
        (hook_wasm("panic_hook"), vec![], "deliberate panic"),
        (hostile("unknown_import"), vec![], "forbidden_import"),
    ] {
        let output = hook_run(&module, &event, &args);
        assert_eq!(output.status.code(), Some(1), "{}", module.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(kind), "{}: {stderr}", module.display());
        assert!(output.stdout.is_empty(), "no commands on failure");
    }
}

#[test]
fn hook_run_refuses_a_wrong_pin_and_bad_input_files() {
    let dir = tempfile::tempdir().unwrap();
    let output = hook_run(
        &hostile("ok_minimal"),
        &event_file(&dir),
        &["--sha256", &"ab".repeat(32)],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("digest_mismatch"));

    let not_json = dir.path().join("bad.json");
    std::fs::write(&not_json, "{ nope").unwrap();
    let output = hook_run(&hostile("ok_minimal"), &not_json, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.json is not JSON"));
}

#[test]
fn keys_generate_prints_usable_keys() {
    for alg in ["ES256", "EdDSA", "RS256", "PS256"] {
        let output = tokenhook()
            .args(["keys", "generate", "--alg", alg])
            .output()
            .unwrap();
        assert!(output.status.success(), "{alg}");
        let pem = String::from_utf8(output.stdout).unwrap();
        let alg = tokenhook::keys::parse_algorithm(alg).unwrap();
        tokenhook::keys::SigningKey::from_pkcs8_pem(&pem, alg, None, "cli").unwrap();
    }
    let output = tokenhook()
        .args(["keys", "generate", "--format", "secretsmanager"])
        .output()
        .unwrap();
    let set: tokenhook::keys::StoredKeySet = serde_json::from_slice(&output.stdout).unwrap();
    let parsed = set.into_key_set("cli").unwrap();
    assert_eq!(parsed.jwks().keys.len(), 1);
    let bad = tokenhook()
        .args(["keys", "generate", "--alg", "HS256"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn secret_commands_produce_hashes_the_manifest_accepts() {
    let output = tokenhook().args(["secret", "new"]).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("secret_hash: "))
        .unwrap()
        .trim_matches('"');
    tokenhook::clients::SecretHash::parse(hash).unwrap();

    let output = tokenhook()
        .args(["secret", "hash"])
        .write_stdin("demo-secret")
        .output()
        .unwrap();
    assert!(output.status.success());
    let phc = String::from_utf8(output.stdout).unwrap();
    let stored = tokenhook::clients::SecretHash::parse(phc.trim()).unwrap();
    assert!(!stored.cost_differs_from_default());
    let client = tokenhook::clients::KnownClient {
        id: "c".into(),
        name: None,
        metadata: Default::default(),
        introspect: false,
        direct_invoke: false,
        hash: stored,
        grants: Default::default(),
    };
    let guard = tokenhook::clients::ClientGuard::default();
    let verified = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(guard.verify("c", "demo-secret", Some(&client)));
    assert_eq!(verified, Ok(()));
}

#[test]
fn serve_refuses_a_bad_manifest_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    std::fs::write(&manifest, "issuer = \"https://x/\"\nkeys = { source = \"file\", path = \"k.pem\" }\n[[grants]]\nclient = \"ghost\"\napi = \"a\"\n").unwrap();
    let output = tokenhook()
        .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml")
            && stderr.contains("grants[0].client")
            && stderr.contains("ghost"),
        "{stderr}"
    );
}
