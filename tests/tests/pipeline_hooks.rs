//! Hooks inside the token pipeline, over real HTTP with real wasm: each
//! example hook's effect in a verified token, manifest order, filters, host
//! policy and capabilities, and hostile hooks under `deny` and `skip`.

use tokenhook_tests::{
    TestServer, app_token, fixed_output_hook, hook_wasm, hooks_dir, hostile, manifest,
    verified_claims,
};

/// A `[[hooks]]` entry. `module` is a path; `extra` is more TOML lines.
fn hook(name: &str, module: &std::path::Path, extra: &str) -> String {
    format!(
        "[[hooks]]\nname = \"{name}\"\nmodule = {:?}\n{extra}\n",
        module.display().to_string()
    )
}

fn built(name: &str) -> std::path::PathBuf {
    hook_wasm(name);
    hooks_dir().join(format!("{name}.wasm"))
}

fn start(hooks: &str, files: &[(&str, &str)]) -> TestServer {
    TestServer::start_with_files(&manifest(hooks), files).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_claims_adds_claims_and_takes_writes_from_free_plans() {
    let server = start(
        &hook(
            "tenant",
            &built("tenant_claims"),
            "capabilities = { claims = [\"https://claims.test/\"], scopes = [\"write:*\"] }\nconfig = { namespace = \"https://claims.test/\" }",
        ),
        &[],
    );
    let claims = verified_claims(&server, &app_token(&server, &[]).await, "https://api.test").await;
    assert_eq!(claims["https://claims.test/tenant"], "acme");
    assert_eq!(claims["https://claims.test/plan"], "free");
    assert_eq!(claims["scope"], "read:a read:b");
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_policy_removes_and_adds_scopes() {
    let server = start(
        &hook(
            "policy",
            &built("scope_policy"),
            "capabilities = { scopes = [\"write:*\", \"read:b\"] }\nconfig = { write_requires = { metadata_key = \"plan\", values = [\"pro\"] }, add_scopes = [\"read:b\"] }",
        ),
        &[],
    );
    let reply = app_token(&server, &[("scope", "read:a write:a")]).await;
    assert_eq!(reply.body["scope"], "read:a read:b");
    let claims = verified_claims(&server, &reply, "https://api.test").await;
    assert_eq!(claims["scope"], "read:a read:b");
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_list_refuses_a_source_network_with_its_description() {
    let server = start(
        &hook(
            "deny",
            &built("deny_list"),
            "config = { ips = [\"127.0.0.0/8\"], description = \"loopback is not allowed\" }",
        ),
        &[],
    );
    let reply = app_token(&server, &[]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.body["error"], "access_denied");
    assert_eq!(reply.body["error_description"], "loopback is not allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_claim_uses_only_its_own_granted_secret() {
    let server = start(
        &hook(
            "sig",
            &built("signed_claim"),
            "capabilities = { claims = [\"https://claims.test/sig\"] }\nconfig = { claim = \"https://claims.test/sig\" }\nsecrets = { signing_key = { file = \"hmac.key\" } }",
        ),
        &[("hmac.key", "k3y\n")],
    );
    let claims = verified_claims(&server, &app_token(&server, &[]).await, "https://api.test").await;
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"k3y", b"app\nhttps://api.test", hashlib.sha256).hexdigest())'
    assert_eq!(
        claims["https://claims.test/sig"],
        "37b585e38e40d97626d46fdc4f945f0fcf71a7977dce5d85a7f3802a848a268d"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_run_in_order_and_each_sees_the_previous_changes() {
    // The first hook adds write:a; scope-policy removes the write scopes it
    // sees in the token. If it did not see the first hook's change, write:a
    // would survive.
    let add_write = fixed_output_hook(r#"{"commands":[{"add_scope":"write:a"}]}"#);
    let hooks = hook(
        "adds",
        std::path::Path::new("{dir}/adds.wat"),
        "capabilities = { scopes = [\"write:a\"] }",
    ) + &hook(
        "policy",
        &built("scope_policy"),
        "capabilities = { scopes = [\"write:*\"] }\nconfig = { write_requires = { metadata_key = \"plan\", values = [\"pro\"] } }",
    );
    let server = start(&hooks, &[("adds.wat", &add_write)]);
    let reply = app_token(&server, &[("scope", "read:a")]).await;
    assert_eq!(reply.body["scope"], "read:a", "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn match_filters_choose_where_a_hook_runs() {
    let deny = fixed_output_hook(r#"{"commands":[{"deny":{"description":"filtered hook ran"}}]}"#);
    let hooks = hook(
        "other-api",
        std::path::Path::new("{dir}/deny.wat"),
        "match = { apis = [\"https://other.test\"] }",
    ) + &hook(
        "other-client",
        std::path::Path::new("{dir}/deny.wat"),
        "match = { clients = [\"ops\"] }",
    );
    let server = start(&hooks, &[("deny.wat", &deny)]);
    let reply = app_token(&server, &[]).await;
    assert_eq!(
        reply.status, 200,
        "neither filter matches app on api.test: {}",
        reply.body
    );
    let ops = tokenhook_tests::post_token(
        &server,
        Some(("ops", tokenhook_tests::CLIENT_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://other.test"),
        ],
    )
    .await;
    assert_eq!(ops.status, 403, "{}", ops.body);
    assert_eq!(ops.body["error_description"], "filtered hook ran");
}

/// Hook outputs the host policy must refuse, and what the refusal mentions.
const VIOLATIONS: &[&str] = &[
    r#"{"commands":[{"set_claim":{"name":"sub","value":"admin"}}]}"#,
    r#"{"commands":[{"remove_claim":"scope"}]}"#,
    r#"{"commands":[{"set_claim":{"name":"https://elsewhere.test/x","value":1}}]}"#,
    r#"{"commands":[{"set_claim":{"name":"https://claims.test/not-mine","value":1}}]}"#,
    r#"{"commands":[{"add_scope":"delete:all"}]}"#,
    r#"{"commands":[{"add_scope":"admin:a"}]}"#,
];

#[tokio::test(flavor = "multi_thread")]
async fn policy_violations_fail_the_hook_closed_under_deny() {
    for (i, output) in VIOLATIONS.iter().enumerate() {
        let hooks = hook(
            "rogue",
            std::path::Path::new("{dir}/rogue.wat"),
            "on_error = \"deny\"\ncapabilities = { claims = [\"https://claims.test/mine\", \"https://elsewhere.test/\"], scopes = [\"*\"] }",
        );
        let server = start(&hooks, &[("rogue.wat", &fixed_output_hook(output))]);
        let reply = app_token(&server, &[]).await;
        assert_eq!(reply.status, 500, "violation {i}: {}", reply.body);
        assert_eq!(reply.body["error"], "server_error");
        let description = reply.body["error_description"].as_str().unwrap();
        let request_id = reply.headers["x-request-id"].to_str().unwrap();
        assert!(
            description.contains(request_id),
            "the client gets the request id: {description}"
        );
        assert!(
            !description.contains("claim") && !description.contains("scope"),
            "but not the cause: {description}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn under_skip_a_failed_hook_changes_nothing_and_the_others_apply() {
    for output in VIOLATIONS {
        // A half-good output: a legal claim, then a violation. All or nothing.
        let mixed = output.replace(
            r#"{"commands":["#,
            r#"{"commands":[{"set_claim":{"name":"https://claims.test/mine","value":"rogue"}},"#,
        );
        let tenant = "capabilities = { claims = [\"https://claims.test/\"], scopes = [\"write:*\"] }\nconfig = { namespace = \"https://claims.test/\" }";
        let hooks = hook(
            "rogue",
            std::path::Path::new("{dir}/rogue.wat"),
            "on_error = \"skip\"\ncapabilities = { claims = [\"https://claims.test/mine\", \"https://elsewhere.test/\"], scopes = [\"*\"] }",
        ) + &hook("tenant", &built("tenant_claims"), tenant);
        let server = start(&hooks, &[("rogue.wat", &fixed_output_hook(&mixed))]);
        let reply = app_token(&server, &[]).await;
        let claims = verified_claims(&server, &reply, "https://api.test").await;
        assert!(
            claims.get("https://claims.test/mine").is_none(),
            "{mixed}: {claims}"
        );
        assert_eq!(claims["sub"], "app");
        assert_eq!(
            claims["https://claims.test/tenant"], "acme",
            "the next hook still ran"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_hooks_are_contained_and_the_next_request_is_unaffected() {
    let panic = built("panic_hook");
    for module in [
        hostile("infinite_loop"),
        hostile("memory_bomb"),
        hostile("invalid_json"),
        hostile("recursion"),
        panic,
    ] {
        for on_error in ["deny", "skip"] {
            let hooks = hook(
                "hostile",
                &module,
                &format!("on_error = \"{on_error}\"\nmatch = {{ clients = [\"app\"] }}"),
            ) + &hook(
                "tenant",
                &built("tenant_claims"),
                "capabilities = { claims = [\"https://claims.test/\"] }\nconfig = { namespace = \"https://claims.test/\" }\nmatch = { clients = [\"app\"] }",
            );
            let server = start(&hooks, &[]);
            let reply = app_token(&server, &[("scope", "read:a")]).await;
            match on_error {
                "deny" => {
                    assert_eq!(reply.status, 500, "{}: {}", module.display(), reply.body);
                    assert_eq!(reply.body["error"], "server_error");
                }
                _ => {
                    let claims = verified_claims(&server, &reply, "https://api.test").await;
                    assert_eq!(
                        claims["https://claims.test/tenant"],
                        "acme",
                        "{}",
                        module.display()
                    );
                }
            }
            // A request the hostile hook does not match, on the same server, right after.
            let ops = tokenhook_tests::post_token(
                &server,
                Some(("ops", tokenhook_tests::CLIENT_SECRET)),
                &[
                    ("grant_type", "client_credentials"),
                    ("audience", "https://other.test"),
                ],
            )
            .await;
            verified_claims(&server, &ops, "https://other.test").await;
        }
    }
}
