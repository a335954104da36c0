//! Deployment artifacts: the SAM template passes cfn-lint and keeps least
//! privilege; `tokenhook bundle` produces a manifest with pinned digests that
//! the issuer loads.

use std::process::Command;

use tokenhook_tests::{python_tool, tokenhook_bin, workspace_root};

#[test]
fn the_sam_template_passes_cfn_lint() {
    let Some(cfn_lint) = python_tool("cfn-lint") else {
        eprintln!("SKIPPED: cfn-lint is not installed (tests/run.sh installs it)");
        return;
    };
    let output = Command::new(cfn_lint)
        .arg("template.yaml")
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_sam_template_is_least_privilege_and_built_with_cargo_lambda() {
    let template = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    for required in [
        "Transform: AWS::Serverless-2016-10-31",
        "BuildMethod: rust-cargolambda",
        "Runtime: provided.al2023",
        "Architectures: [arm64]",
        "Path: /oauth/token",
        "Path: /.well-known/jwks.json",
        "Action: secretsmanager:GetSecretValue",
        "RetentionInDays: !Ref LogRetentionDays",
    ] {
        assert!(
            template.contains(required),
            "template.yaml lacks `{required}`"
        );
    }
    for line in template.lines() {
        let line = line.trim();
        assert!(
            !(line.starts_with("Resource:") && line.contains('*')),
            "wildcard resource: {line}"
        );
        assert!(
            !line.contains("Action: \"*\"") && !line.contains("Action: '*'"),
            "wildcard action: {line}"
        );
        assert!(
            !line.contains("secretsmanager:*"),
            "wildcard action: {line}"
        );
    }
    assert!(
        !template.contains("ManagedPolicyArns"),
        "no broad managed policies"
    );
}

#[test]
fn bundle_pins_digests_and_the_bundled_manifest_loads() {
    tokenhook_tests::hook_wasm("tenant_claims");
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(tokenhook_bin())
        .args(["bundle", "--manifest"])
        .arg(workspace_root().join("examples/manifest.toml"))
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(out.path().join("manifest.toml")).unwrap();
    let (manifest, _) =
        tokenhook::manifest::Manifest::load(&out.path().join("manifest.toml")).unwrap();
    assert_eq!(manifest.hooks.len(), 4);
    for hook in &manifest.hooks {
        let bytes = std::fs::read(out.path().join(&hook.module)).unwrap();
        assert_eq!(
            hook.sha256.as_deref(),
            Some(tokenhook::engine::sha256_hex(&bytes).as_str()),
            "{}",
            hook.name
        );
        assert!(hook.module.starts_with("hooks"), "{text}");
    }
}
