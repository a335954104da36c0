//! Deployment artifacts: the SAM template passes cfn-lint and keeps least
//! privilege; `tokenhook bundle` produces a manifest with pinned digests that
//! the issuer loads.

use std::process::Command;

use serde_json::{Value, json};
use tokenhook_tests::{python_tool, tokenhook_bin, workspace_root};

#[test]
fn the_sam_template_passes_cfn_lint() {
    let cfn_lint = python_tool("cfn-lint");
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
        "Path: /oauth/revoke",
        "Path: /oauth/introspect",
        "Path: /oauth/revocations",
        "Type: AWS::DynamoDB::Table",
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
            !line.contains("secretsmanager:*") && !line.contains("dynamodb:*"),
            "wildcard action: {line}"
        );
    }
    assert!(
        !template.contains("ManagedPolicyArns"),
        "no broad managed policies"
    );
}

/// template.yaml as JSON, decoded by cfn-lint's own parser (intrinsic
/// functions as `{"Ref": ..}` / `{"Fn::GetAtt": [..]}`), with the Python
/// that runs cfn-lint (its script's `#!` line).
fn template_json() -> Value {
    let cfn_lint = python_tool("cfn-lint");
    let script = std::fs::read_to_string(&cfn_lint).unwrap();
    let python = script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(str::trim)
        .expect("cfn-lint starts with a #! line");
    let output = Command::new(python)
        .args([
            "-c",
            "import json, sys\n\
             from cfnlint.decode import decode\n\
             template, errors = decode(sys.argv[1])\n\
             assert not errors, errors\n\
             print(json.dumps(template, default=str))",
        ])
        .arg(workspace_root().join("template.yaml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "decoding template.yaml: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The table is the one `DynamoStore` expects (keys, billing, TTL attribute
/// from the code's own constants), with point-in-time recovery, kept when
/// the stack goes, and named to the function; the routes of revocation,
/// introspection and the feed exist.
#[test]
fn the_sam_template_creates_the_store_table_and_routes_revocation() {
    use tokenhook::store::dynamodb::{TTL_ATTRIBUTE, table_layout};
    let template = template_json();
    let resources = &template["Resources"];
    let table = &resources["TokenhookStoreTable"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    assert_eq!(
        table["DeletionPolicy"], "Retain",
        "the registry outlives the stack"
    );
    assert_eq!(table["UpdateReplacePolicy"], "Retain");
    let props = &table["Properties"];

    let (attributes, keys, billing) = table_layout();
    assert_eq!(props["BillingMode"], billing.as_str());
    let attributes: Vec<Value> = attributes
        .iter()
        .map(|a| json!({"AttributeName": a.attribute_name(), "AttributeType": a.attribute_type().as_str()}))
        .collect();
    assert_eq!(props["AttributeDefinitions"], Value::Array(attributes));
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| json!({"AttributeName": k.attribute_name(), "KeyType": k.key_type().as_str()}))
        .collect();
    assert_eq!(props["KeySchema"], Value::Array(keys));
    assert_eq!(
        props["TimeToLiveSpecification"],
        json!({"AttributeName": TTL_ATTRIBUTE, "Enabled": true})
    );
    assert_eq!(
        props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );

    let function = &resources["TokenhookFunction"]["Properties"];
    assert_eq!(
        function["Environment"]["Variables"]["TOKENHOOK_STORE_TABLE"],
        json!({"Ref": "TokenhookStoreTable"})
    );
    assert_eq!(
        template["Outputs"]["StoreTableName"]["Value"],
        json!({"Ref": "TokenhookStoreTable"})
    );
    let routes: Vec<(String, String)> = function["Events"]
        .as_object()
        .unwrap()
        .values()
        .filter(|e| e["Type"] == "HttpApi")
        .map(|e| {
            let p = &e["Properties"];
            assert_eq!(p["ApiId"], json!({"Ref": "TokenhookApi"}), "{e}");
            assert_eq!(p["PayloadFormatVersion"], "2.0", "{e}");
            (
                p["Method"].as_str().unwrap().to_string(),
                p["Path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (method, path) in [
        ("POST", "/oauth/token"),
        ("POST", "/oauth/revoke"),
        ("POST", "/oauth/introspect"),
        ("GET", "/oauth/revocations"),
        ("GET", "/.well-known/jwks.json"),
    ] {
        assert!(
            routes.contains(&(method.to_string(), path.to_string())),
            "no route {method} {path}: {routes:?}"
        );
    }
}

/// The function may only Query the table and append to the feed's
/// partition: no Scan, no DeleteItem, no writes to clients or grants (the
/// CLI runs with the operator's credentials), and nothing on other tables.
#[test]
fn the_function_role_uses_the_store_table_least_privilege() {
    use tokenhook::store::dynamodb::FEED_PK;
    let template = template_json();
    let role = &template["Resources"]["TokenhookRole"]["Properties"];
    let mut dynamodb = Vec::new();
    for policy in role["Policies"].as_array().unwrap() {
        // `!If [cond, policy, !Ref AWS::NoValue]`: both branches count.
        let documents: Vec<&Value> = match policy.get("Fn::If") {
            Some(branches) => branches.as_array().unwrap()[1..].iter().collect(),
            None => vec![policy],
        };
        for document in documents {
            let Some(statements) = document["PolicyDocument"]["Statement"].as_array() else {
                continue;
            };
            for statement in statements {
                let actions: Vec<&str> = match &statement["Action"] {
                    Value::String(a) => vec![a.as_str()],
                    Value::Array(list) => list.iter().map(|a| a.as_str().unwrap()).collect(),
                    other => panic!("unexpected Action {other}"),
                };
                if actions.iter().any(|a| a.starts_with("dynamodb:")) {
                    assert_eq!(statement["Effect"], "Allow");
                    assert_eq!(
                        statement["Resource"],
                        json!({"Fn::GetAtt": ["TokenhookStoreTable", "Arn"]}),
                        "only the store table, not its indexes or other tables: {statement}"
                    );
                    dynamodb.push((actions.join(","), statement["Condition"].clone()));
                }
            }
        }
    }
    dynamodb.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        dynamodb,
        vec![
            (
                "dynamodb:PutItem".to_string(),
                json!({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [FEED_PK]}})
            ),
            ("dynamodb:Query".to_string(), Value::Null),
        ],
        "the issuer's DynamoDB permissions"
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
    let manifest = tokenhook::manifest::Manifest::load(&out.path().join("manifest.toml")).unwrap();
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
