//! `tokenhook hook new`, as a process. Outside any workspace: the generated
//! crate finds tokenhook-sdk by itself, passes `cargo test` and `cargo fmt
//! --check`, builds to wasm with its own settings (profile `hook`, the small
//! wasm stack: a small initial memory), and the module passes `tokenhook hook
//! check` and `hook run` on the generated sample event. Inside a tokenhook
//! workspace: the crate is added to the root's `members` (the rest of the file
//! byte for byte) and `cargo test` passes there. Existing directories and bad
//! names are refused.
//!
//! Cost: the crates build offline into one shared target directory,
//! target/scaffold-test, so a repeated run compiles only the new crate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tokenhook_tests::{tokenhook_bin, workspace_root};

fn tokenhook(cwd: &Path, args: &[&str]) -> Output {
    Command::new(tokenhook_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run tokenhook")
}

/// `cargo ARGS` in `dir`: offline, into the shared target directory, without
/// the variables cargo set for this test process (they describe this crate
/// and would make build scripts of the shared target directory rebuild).
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME") || name == "RUSTFLAGS" {
            command.env_remove(name.as_ref());
        }
    }
    command
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .expect("run cargo")
}

fn target_dir() -> PathBuf {
    workspace_root().join("target/scaffold-test")
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_standalone_hook_tests_builds_checks_and_runs_as_generated() {
    let tmp = tempfile::tempdir().unwrap();
    let created = tokenhook(tmp.path(), &["hook", "new", "acme-tenant"]);
    assert_ok(&created, "hook new");
    let dir = tmp.path().join("acme-tenant");
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(stdout.contains("standalone"), "{stdout}");

    // No --sdk-path: the checkout this binary was built from.
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    let sdk = workspace_root().join("hooks-sdk").canonicalize().unwrap();
    assert_eq!(
        manifest["dependencies"]["tokenhook-sdk"]["path"].as_str(),
        sdk.to_str()
    );
    assert!(manifest.contains_key("workspace"));
    assert_eq!(manifest["profile"]["hook"]["panic"].as_str(), Some("abort"));

    let tests = cargo(&dir, &["test"]);
    assert_ok(&tests, "cargo test");
    let out = String::from_utf8_lossy(&tests.stdout);
    assert!(out.contains("4 passed"), "{out}");
    assert_ok(&cargo(&dir, &["fmt", "--check"]), "cargo fmt --check");
    assert_ok(
        &cargo(
            &dir,
            &[
                "build",
                "--target",
                "wasm32-unknown-unknown",
                "--profile",
                "hook",
            ],
        ),
        "cargo build (wasm)",
    );
    let wasm = target_dir().join("wasm32-unknown-unknown/hook/acme_tenant.wasm");

    let wasm_arg = wasm.to_str().unwrap();
    let check = tokenhook(&dir, &["hook", "check", wasm_arg]);
    assert_ok(&check, "hook check");
    let info: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(info["abi_version"], 1);
    // The generated .cargo/config.toml's 128 KiB stack applied (Rust's default: 1 MiB).
    let memory = info["memory_min_bytes"].as_u64().unwrap();
    assert!(memory < 1 << 20, "initial memory {memory} bytes");

    let run = tokenhook(
        &dir,
        &[
            "hook",
            "run",
            wasm_arg,
            "--event",
            "event.json",
            "--fuel",
            "5000000",
        ],
    );
    assert_ok(&run, "hook run");
    let out: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        out["commands"],
        serde_json::json!([{"set_claim": {"name": "https://example.com/tenant", "value": "acme"}}])
    );
}

#[test]
fn inside_a_tokenhook_workspace_the_hook_becomes_a_member() {
    let tmp = tempfile::tempdir().unwrap();
    let sdk = workspace_root().join("hooks-sdk");
    let root_manifest = format!(
        "# a tokenhook workspace\n[workspace]\nresolver = \"3\"\nmembers = [\n    \"tools/x\", # kept\n]\n\n[workspace.package]\nedition = \"2024\"\nrust-version = \"1.95\"\nlicense = \"Apache-2.0\"\npublish = false\nversion = \"0.1.0\"\n\n[workspace.dependencies]\ntokenhook-sdk = {{ path = {:?} }}\n",
        sdk.to_str().unwrap()
    );
    // An existing member, which must stay as it is.
    std::fs::create_dir_all(tmp.path().join("tools/x/src")).unwrap();
    std::fs::write(
        tmp.path().join("tools/x/Cargo.toml"),
        "[package]\nname = \"x\"\nedition.workspace = true\nversion.workspace = true\npublish.workspace = true\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("tools/x/src/lib.rs"), "").unwrap();
    std::fs::write(tmp.path().join("Cargo.toml"), &root_manifest).unwrap();
    std::fs::create_dir(tmp.path().join("hooks")).unwrap();

    let created = tokenhook(
        &tmp.path().join("hooks"),
        &["hook", "new", "in-ws", "--path", "in-ws"],
    );
    assert_ok(&created, "hook new");
    let edited = std::fs::read_to_string(tmp.path().join("Cargo.toml")).unwrap();
    assert_eq!(
        edited,
        root_manifest.replace("# kept\n", "# kept\n    \"hooks/in-ws\",\n")
    );
    let dir = tmp.path().join("hooks/in-ws");
    assert!(
        !dir.join(".cargo").exists(),
        "settings come from the workspace"
    );
    let tests = cargo(&dir, &["test"]);
    assert_ok(&tests, "cargo test in the workspace");

    // A second hook building to the same wasm name is refused.
    let clash = tokenhook(&tmp.path().join("hooks"), &["hook", "new", "in_ws"]);
    assert_eq!(clash.status.code(), Some(2));
    assert!(!tmp.path().join("hooks/in_ws").exists());
}

#[test]
fn existing_directories_and_bad_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("taken")).unwrap();
    std::fs::write(tmp.path().join("taken/keep.txt"), "mine").unwrap();
    let refused = tokenhook(tmp.path(), &["hook", "new", "taken"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("taken")).unwrap().count(),
        1
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
    for bad in ["Upper", "1st", "fn", "a.b", "tokenhook-x"] {
        let refused = tokenhook(tmp.path(), &["hook", "new", bad]);
        assert_eq!(refused.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("invalid hook name"),
            "{bad}"
        );
        assert!(!tmp.path().join(bad).exists());
    }
    let no_sdk = tokenhook(
        tmp.path(),
        &[
            "hook",
            "new",
            "ok-name",
            "--sdk-path",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert_eq!(no_sdk.status.code(), Some(2));
    assert!(!tmp.path().join("ok-name").exists());
}
