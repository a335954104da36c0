//! Hooks inside the token pipeline, over real HTTP with real wasm, read back
//! from tokens verified with jwt-simple: each example hook's effect; manifest
//! order (each hook sees the token as the previous one left it, proved with a
//! hook that echoes its whole event into a claim); what the event carries
//! (request id, IP, user agent, config, only the hook's own secrets); match
//! filters; host policy and capabilities under `on_error = "deny"` (500
//! `server_error` naming the request id, never the cause) and `"skip"` (the
//! hook's whole change set dropped, other hooks' changes kept); hook denies;
//! and hostile hooks contained, with the next request on the same server
//! served by a fresh instance.

mod support;

use serde_json::{Value, json};
use support::*;
use tokenhook_tests::{TestServer, fixed_output_hook, verified_claims};

const TENANT_CAPS: &str = "capabilities = { claims = [\"https://claims.test/\"], scopes = [\"write:*\"] }\nconfig = { namespace = \"https://claims.test/\" }";
const ECHO_CAPS: &str = "capabilities = { claims = [\"https://claims.test/\"] }";

fn claim(name: &str) -> String {
    format!("{NS}{name}")
}

/// Commands as a contract-v1 output.
fn commands(cmds: Value) -> String {
    json!({ "commands": cmds }).to_string()
}

async fn claims_of(server: &TestServer, client: &Client, extra: &[(&str, &str)]) -> Value {
    let reply = token(server, client, extra).await;
    verified_claims(server, &reply, API).await
}

// ---- the example hooks ----

#[tokio::test(flavor = "multi_thread")]
async fn tenant_claims_adds_tenant_and_plan_and_takes_writes_from_free_plans() {
    let clients = Clients::new();
    let server = clients.start(&hook("tenant", &built("tenant_claims"), TENANT_CAPS), &[]);
    let free = claims_of(&server, &clients.app, &[]).await;
    assert_eq!(free[claim("tenant")], "acme");
    assert_eq!(free[claim("plan")], "free");
    assert_eq!(scope_set(&free["scope"]), sorted(&["read:a", "read:b"]));
    let pro = claims_of(&server, &clients.ops, &[]).await;
    assert_eq!(pro[claim("tenant")], "globex");
    assert_eq!(
        scope_set(&pro["scope"]),
        sorted(&["read:a", "write:a", "admin:a"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_response_scope_matches_the_scope_hooks_left_in_the_token() {
    let clients = Clients::new();
    let server = clients.start(&hook("tenant", &built("tenant_claims"), TENANT_CAPS), &[]);
    let reply = token(&server, &clients.app, &[("scope", "read:a write:a")]).await;
    assert_eq!(reply.body["scope"], "read:a");
    assert_eq!(
        verified_claims(&server, &reply, API).await["scope"],
        "read:a"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_policy_keeps_writes_only_for_qualifying_clients_and_adds_granted_scopes() {
    let clients = Clients::new();
    let server = clients.start(
        &hook(
            "scope-policy",
            &built("scope_policy"),
            "capabilities = { scopes = [\"write:*\", \"read:b\"] }\nconfig = { write_requires = { metadata_key = \"tier\", values = [\"gold\"] }, add_scopes = [\"read:b\"] }",
        ),
        &[],
    );
    // app has no tier: write:a goes; read:b (granted) comes.
    let app = claims_of(&server, &clients.app, &[("scope", "read:a write:a")]).await;
    assert_eq!(scope_set(&app["scope"]), sorted(&["read:a", "read:b"]));
    // ops is gold: write:a stays; read:b is not granted to ops, so it is not added.
    let ops = claims_of(&server, &clients.ops, &[("scope", "read:a write:a")]).await;
    assert_eq!(scope_set(&ops["scope"]), sorted(&["read:a", "write:a"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_list_refuses_a_source_ip_inside_a_configured_cidr() {
    let clients = Clients::new();
    let server = clients.start(
        &hook(
            "deny-list",
            &built("deny_list"),
            "config = { ips = [\"10.0.0.0/8\", \"127.0.0.0/8\"], description = \"requests from this network are blocked\" }",
        ),
        &[],
    );
    let reply = token(&server, &clients.app, &[]).await;
    assert_oauth_error(&reply, 403, "access_denied");
    assert_eq!(
        reply.body["error_description"],
        "requests from this network are blocked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_list_lets_other_networks_through_and_refuses_listed_clients() {
    let clients = Clients::new();
    let server = clients.start(
        &hook(
            "deny-list",
            &built("deny_list"),
            "config = { clients = [\"ops\"], ips = [\"192.0.2.0/24\"] }",
        ),
        &[],
    );
    let app = token(&server, &clients.app, &[]).await;
    assert_eq!(
        app.status, 200,
        "127.0.0.1 is not in 192.0.2.0/24: {}",
        app.body
    );
    let ops = token(&server, &clients.ops, &[]).await;
    assert_oauth_error(&ops, 403, "access_denied");
    assert_eq!(
        ops.body["error_description"],
        "access from this client or network is blocked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_claim_adds_an_hmac_of_client_and_api_keyed_by_its_file_secret() {
    let clients = Clients::new();
    let key = "a-dev-only-hmac-key-0123456789";
    let server = clients.start(
        &hook(
            "signed-claim",
            &built("signed_claim"),
            "capabilities = { claims = [\"https://claims.test/sig\"] }\nconfig = { claim = \"https://claims.test/sig\" }\nsecrets = { signing_key = { file = \"hmac.key\" } }",
        ),
        &[("hmac.key", &format!("{key}\n"))],
    );
    let claims = claims_of(&server, &clients.app, &[]).await;
    let expected = hmac_sha256_hex(key.as_bytes(), format!("app\n{API}").as_bytes());
    assert_eq!(claims[claim("sig")], expected);
    let ops = claims_of(&server, &clients.ops, &[]).await;
    assert_ne!(
        ops[claim("sig")],
        claims[claim("sig")],
        "bound to the client"
    );
}

// ---- order, the event, filters ----

#[tokio::test(flavor = "multi_thread")]
async fn hooks_run_in_manifest_order_and_each_sees_the_previous_changes() {
    let clients = Clients::new();
    let first = fixed_output_hook(&commands(json!([
        {"set_claim": {"name": claim("first"), "value": 1}},
        {"remove_scope": "write:a"}
    ])));
    let hooks = hook(
        "first",
        &in_dir("first.wat"),
        "capabilities = { claims = [\"https://claims.test/first\"], scopes = [\"write:a\"] }",
    ) + &hook("second", &in_dir("echo.wat"), ECHO_CAPS);
    let server = clients.start(
        &hooks,
        &[
            ("first.wat", &first),
            ("echo.wat", &echo_hook(&claim("second-saw"))),
        ],
    );
    let claims = claims_of(&server, &clients.app, &[]).await;
    let seen = echoed(&claims, &claim("second-saw"));
    assert_eq!(seen["token"]["claims"][claim("first")], 1, "{seen}");
    assert_eq!(
        seen["token"]["scopes"],
        json!(["read:a", "read:b"]),
        "{seen}"
    );
    assert_eq!(claims[claim("first")], 1);
    assert_eq!(scope_set(&claims["scope"]), sorted(&["read:a", "read:b"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_does_not_see_changes_of_hooks_listed_after_it() {
    let clients = Clients::new();
    let later = fixed_output_hook(&commands(json!([
        {"set_claim": {"name": claim("later"), "value": true}},
        {"remove_scope": "write:a"}
    ])));
    let hooks = hook("echo", &in_dir("echo.wat"), ECHO_CAPS)
        + &hook(
            "later",
            &in_dir("later.wat"),
            "capabilities = { claims = [\"https://claims.test/later\"], scopes = [\"write:a\"] }",
        );
    let server = clients.start(
        &hooks,
        &[
            ("later.wat", &later),
            ("echo.wat", &echo_hook(&claim("echo-saw"))),
        ],
    );
    let claims = claims_of(&server, &clients.app, &[]).await;
    let seen = echoed(&claims, &claim("echo-saw"));
    assert_eq!(seen["token"]["claims"], json!({}), "{seen}");
    assert_eq!(
        seen["token"]["scopes"],
        json!(["read:a", "write:a", "read:b"]),
        "{seen}"
    );
    assert_eq!(claims[claim("later")], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_carries_the_request_its_context_and_the_hooks_config() {
    let clients = Clients::new();
    let server = clients.start(
        &hook(
            "echo",
            &in_dir("echo.wat"),
            &format!("{ECHO_CAPS}\nconfig = {{ greeting = \"hello\", limit = 3 }}"),
        ),
        &[("echo.wat", &echo_hook(&claim("saw")))],
    );
    let auth = basic_header("app", &clients.app.secret);
    let reply = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", API),
            ("scope", "read:b read:a"),
        ],
        &[
            ("authorization", &auth),
            ("user-agent", "tokenhook-e2e/1.0"),
            ("x-request-id", "req-event-1"),
        ],
    )
    .await;
    let claims = verified_claims(&server, &reply, API).await;
    let seen = echoed(&claims, &claim("saw"));
    assert_eq!(seen["version"], 1);
    assert_eq!(seen["trigger"], "client_credentials");
    // Ours, not the caller's `x-request-id` (kept beside it in the log).
    assert_eq!(seen["request_id"], request_id(&reply).as_str());
    assert_eq!(seen["client"]["id"], "app");
    assert_eq!(seen["client"]["name"], "The app");
    assert_eq!(
        seen["client"]["metadata"],
        json!({"tenant": "acme", "plan": "free"})
    );
    assert_eq!(seen["api"]["identifier"], API);
    assert_eq!(
        seen["api"]["scopes"],
        json!(["read:a", "write:a", "admin:a", "read:b"])
    );
    assert_eq!(seen["requested_scopes"], json!(["read:b", "read:a"]));
    assert_eq!(
        seen["granted_scopes"],
        json!(["read:a", "write:a", "read:b"])
    );
    assert_eq!(seen["token"]["scopes"], json!(["read:b", "read:a"]));
    assert_eq!(seen["context"]["ip"], "127.0.0.1");
    assert_eq!(seen["context"]["user_agent"], "tokenhook-e2e/1.0");
    assert_eq!(seen["config"], json!({"greeting": "hello", "limit": 3}));
    assert_eq!(seen["secrets"], json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_hook_sees_only_its_own_secrets() {
    let clients = Clients::new();
    let hooks = hook(
        "alpha",
        &in_dir("alpha.wat"),
        &format!("{ECHO_CAPS}\nsecrets = {{ alpha_key = {{ file = \"alpha.key\" }} }}"),
    ) + &hook(
        "beta",
        &in_dir("beta.wat"),
        &format!("{ECHO_CAPS}\nsecrets = {{ beta_key = {{ file = \"beta.key\" }} }}"),
    ) + &hook("gamma", &in_dir("gamma.wat"), ECHO_CAPS);
    let server = clients.start(
        &hooks,
        &[
            ("alpha.wat", &echo_hook(&claim("alpha"))),
            ("beta.wat", &echo_hook(&claim("beta"))),
            ("gamma.wat", &echo_hook(&claim("gamma"))),
            ("alpha.key", "alpha-secret-value\n"),
            ("beta.key", "beta-secret-value"),
        ],
    );
    let claims = claims_of(&server, &clients.app, &[]).await;
    assert_eq!(
        echoed(&claims, &claim("alpha"))["secrets"],
        json!({"alpha_key": "alpha-secret-value"})
    );
    assert_eq!(
        echoed(&claims, &claim("beta"))["secrets"],
        json!({"beta_key": "beta-secret-value"})
    );
    assert_eq!(echoed(&claims, &claim("gamma"))["secrets"], json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_without_config_gets_null() {
    let clients = Clients::new();
    let hooks = hook(
        "configured",
        &in_dir("a.wat"),
        &format!("{ECHO_CAPS}\nconfig = {{ mine = true }}"),
    ) + &hook("bare", &in_dir("b.wat"), ECHO_CAPS);
    let server = clients.start(
        &hooks,
        &[
            ("a.wat", &echo_hook(&claim("a"))),
            ("b.wat", &echo_hook(&claim("b"))),
        ],
    );
    let claims = claims_of(&server, &clients.app, &[]).await;
    assert_eq!(
        echoed(&claims, &claim("a"))["config"],
        json!({"mine": true})
    );
    assert_eq!(echoed(&claims, &claim("b"))["config"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn match_filters_decide_which_hooks_run() {
    let clients = Clients::new();
    let echo = |name: &str, filter: &str| {
        hook(
            name,
            &in_dir(&format!("{name}.wat")),
            &format!("{ECHO_CAPS}\nmatch = {filter}"),
        )
    };
    let hooks = echo("on-other-api", &format!("{{ apis = [\"{OTHER}\"] }}"))
        + &echo("for-ops", "{ clients = [\"ops\"] }")
        + &echo(
            "app-on-api",
            &format!("{{ apis = [\"{API}\"], clients = [\"app\"] }}"),
        )
        + &echo("everywhere", "{}");
    let files: Vec<(String, String)> = ["on-other-api", "for-ops", "app-on-api", "everywhere"]
        .iter()
        .map(|n| (format!("{n}.wat"), echo_hook(&claim(n))))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let server = clients.start(&hooks, &files);
    let ran = |claims: &Value| -> Vec<String> {
        let mut names: Vec<String> = claims
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|k| k.strip_prefix(NS).map(str::to_string))
            .collect();
        names.sort();
        names
    };
    let app = claims_of(&server, &clients.app, &[]).await;
    assert_eq!(ran(&app), ["app-on-api", "everywhere"]);
    let ops_api = verified_claims(
        &server,
        &token_for(&server, &clients.ops, API, &[]).await,
        API,
    )
    .await;
    assert_eq!(ran(&ops_api), ["everywhere", "for-ops"]);
    let ops_other = verified_claims(
        &server,
        &token_for(&server, &clients.ops, OTHER, &[]).await,
        OTHER,
    )
    .await;
    assert_eq!(ran(&ops_other), ["everywhere", "for-ops", "on-other-api"]);
}

// ---- denies ----

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_deny_stops_the_chain_with_access_denied() {
    let clients = Clients::new();
    let deny = fixed_output_hook(&commands(json!([
        {"deny": {"description": "tenant suspended"}}
    ])));
    // If the chain went on after the deny, the trapping hook would turn the
    // answer into a 500.
    let hooks = hook("deny", &in_dir("deny.wat"), "")
        + &hook("trap", &in_dir("trap.wat"), "on_error = \"deny\"");
    let server = clients.start(&hooks, &[("deny.wat", &deny), ("trap.wat", &trap_hook())]);
    let reply = token(&server, &clients.app, &[]).await;
    assert_oauth_error(&reply, 403, "access_denied");
    assert_eq!(reply.body["error_description"], "tenant suspended");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_deny_is_a_decision_that_on_error_skip_does_not_drop() {
    let clients = Clients::new();
    let deny = fixed_output_hook(&commands(json!([
        {"deny": {"description": "outside business hours"}}
    ])));
    let server = clients.start(
        &hook("deny", &in_dir("deny.wat"), "on_error = \"skip\""),
        &[("deny.wat", &deny)],
    );
    let reply = token(&server, &clients.app, &[]).await;
    assert_oauth_error(&reply, 403, "access_denied");
    assert_eq!(reply.body["error_description"], "outside business hours");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_may_deny_with_invalid_scope_or_unauthorized_client() {
    let clients = Clients::new();
    for code in ["invalid_scope", "unauthorized_client"] {
        let deny = fixed_output_hook(&commands(json!([
            {"deny": {"error": code, "description": "refused by policy"}}
        ])));
        let server = clients.start(
            &hook("deny", &in_dir("deny.wat"), ""),
            &[("deny.wat", &deny)],
        );
        let reply = token(&server, &clients.app, &[]).await;
        assert_oauth_error(&reply, 400, code);
        assert_eq!(reply.body["error_description"], "refused by policy");
    }
}

/// RFC 6749 §5.2 limits `error_description` to %x20-21 / %x23-5B / %x5D-7E;
/// a hook's description is the host's response, so the host must keep it there.
#[tokio::test(flavor = "multi_thread")]
async fn a_hook_deny_description_reaches_the_client_within_rfc_6749_characters() {
    let clients = Clients::new();
    let deny = fixed_output_hook(&commands(json!([
        {"deny": {"description": "Zugriff für \"acme\" gesperrt\nsiehe C:\\policy"}}
    ])));
    let server = clients.start(
        &hook("deny", &in_dir("deny.wat"), ""),
        &[("deny.wat", &deny)],
    );
    let reply = token(&server, &clients.app, &[]).await;
    assert_oauth_error(&reply, 403, "access_denied");
}

// ---- host policy and capabilities ----

/// A hook output the host must refuse, with words of its cause that must not
/// reach the client.
struct Violation {
    what: &'static str,
    commands: Value,
    cause_words: &'static [&'static str],
}

fn violations() -> Vec<Violation> {
    let many: Vec<Value> = (0..33)
        .map(|i| json!({"set_claim": {"name": claim(&format!("mine/{i}")), "value": i}}))
        .collect();
    vec![
        Violation {
            what: "sets the reserved claim sub",
            commands: json!([{"set_claim": {"name": "sub", "value": "admin"}}]),
            cause_words: &["sub", "reserved"],
        },
        Violation {
            what: "sets the reserved claim client_id",
            commands: json!([{"set_claim": {"name": "client_id", "value": "ops"}}]),
            cause_words: &["client_id", "reserved"],
        },
        Violation {
            what: "removes the reserved claim scope",
            commands: json!([{"remove_claim": "scope"}]),
            cause_words: &["reserved", "remove_claim"],
        },
        Violation {
            what: "sets a claim outside its capabilities.claims",
            commands: json!([{"set_claim": {"name": claim("not-mine"), "value": 1}}]),
            cause_words: &["not-mine", "capabilities"],
        },
        Violation {
            what: "sets a claim outside the claim namespaces",
            commands: json!([{"set_claim": {"name": "https://elsewhere.test/x", "value": 1}}]),
            cause_words: &["elsewhere", "namespace", "must start"],
        },
        Violation {
            what: "adds a scope the API does not define",
            commands: json!([{"add_scope": "delete:all"}]),
            cause_words: &["delete:all", "does not define"],
        },
        Violation {
            what: "adds a scope the client was not granted",
            commands: json!([{"add_scope": "admin:a"}]),
            cause_words: &["admin:a", "granted"],
        },
        Violation {
            what: "adds a scope outside its capabilities.scopes",
            commands: json!([{"add_scope": "read:b"}]),
            cause_words: &["read:b", "capabilities"],
        },
        Violation {
            what: "removes a scope outside its capabilities.scopes",
            commands: json!([{"remove_scope": "read:a"}]),
            cause_words: &["read:a", "capabilities"],
        },
        Violation {
            what: "sets more custom claims than the policy allows",
            commands: Value::Array(many),
            cause_words: &["custom claims", "allows"],
        },
    ]
}

const ROGUE_CAPS: &str = "capabilities = { claims = [\"https://claims.test/mine\", \"https://elsewhere.test/\"], scopes = [\"write:*\", \"delete:*\", \"admin:*\"] }";

#[tokio::test(flavor = "multi_thread")]
async fn every_policy_violation_fails_closed_under_deny_naming_only_the_request_id() {
    let clients = Clients::new();
    for (i, v) in violations().into_iter().enumerate() {
        let rogue = fixed_output_hook(&commands(v.commands));
        let server = clients.start(
            &hook(
                "rogue",
                &in_dir("rogue.wat"),
                &format!("on_error = \"deny\"\n{ROGUE_CAPS}"),
            ),
            &[("rogue.wat", &rogue)],
        );
        let id = format!("req-violation-{i}");
        let auth = basic_header("app", &clients.app.secret);
        let reply = post_form(
            &server,
            &[("grant_type", "client_credentials"), ("audience", API)],
            &[("authorization", &auth), ("x-request-id", &id)],
        )
        .await;
        assert_eq!(reply.status, 500, "{}: {}", v.what, reply.body);
        assert_oauth_error(&reply, 500, "server_error");
        let description = reply.body["error_description"].as_str().unwrap();
        // Ours (echoed in `x-request-id`), not the one the client sent.
        assert!(
            description.contains(&request_id(&reply)) && !description.contains(&id),
            "{}: the description names our request id: {description}",
            v.what
        );
        for word in v.cause_words.iter().chain(&["rogue", "policy"]) {
            assert!(
                !description.contains(word),
                "{}: the description must not reveal the cause ({word}): {description}",
                v.what
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_policy_violation_under_skip_drops_the_hooks_whole_change_set_only() {
    let clients = Clients::new();
    let before = fixed_output_hook(&commands(json!([
        {"set_claim": {"name": claim("before"), "value": "kept"}}
    ])));
    for v in violations() {
        // A legal change first, then the violation: all or nothing.
        let mut cmds = vec![
            json!({"set_claim": {"name": claim("mine"), "value": "rogue"}}),
            json!({"remove_scope": "write:a"}),
        ];
        cmds.extend(v.commands.as_array().unwrap().iter().cloned());
        let rogue = fixed_output_hook(&commands(Value::Array(cmds)));
        let hooks = hook(
            "before",
            &in_dir("before.wat"),
            "capabilities = { claims = [\"https://claims.test/before\"] }",
        ) + &hook(
            "rogue",
            &in_dir("rogue.wat"),
            &format!("on_error = \"skip\"\n{ROGUE_CAPS}"),
        ) + &hook("after", &in_dir("after.wat"), ECHO_CAPS);
        let server = clients.start(
            &hooks,
            &[
                ("before.wat", &before),
                ("rogue.wat", &rogue),
                ("after.wat", &echo_hook(&claim("after-saw"))),
            ],
        );
        let reply = token(&server, &clients.app, &[]).await;
        assert_eq!(reply.status, 200, "{}: {}", v.what, reply.body);
        let claims = verified_claims(&server, &reply, API).await;
        assert_eq!(claims[claim("before")], "kept", "{}: {claims}", v.what);
        assert!(claims.get(claim("mine")).is_none(), "{}: {claims}", v.what);
        assert_eq!(claims["sub"], "app", "{}", v.what);
        assert_eq!(claims["client_id"], "app", "{}", v.what);
        assert_eq!(
            scope_set(&claims["scope"]),
            sorted(&["read:a", "write:a", "read:b"]),
            "{}",
            v.what
        );
        let seen = echoed(&claims, &claim("after-saw"));
        assert_eq!(
            seen["token"]["claims"],
            json!({ claim("before"): "kept" }),
            "{}: the next hook sees nothing of the skipped one",
            v.what
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_claims_above_the_size_bound_are_a_violation() {
    let clients = Clients::new();
    let big = fixed_output_hook(&commands(json!([
        {"set_claim": {"name": claim("big"), "value": "x".repeat(2000)}}
    ])));
    let text = clients
        .manifest(&hook("big", &in_dir("big.wat"), ECHO_CAPS))
        .replace("max_claims_size = \"64KiB\"", "max_claims_size = \"1KiB\"");
    let server = TestServer::start_with_files(&text, &[("big.wat", &big)]).unwrap();
    assert_oauth_error(
        &token(&server, &clients.app, &[]).await,
        500,
        "server_error",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_added_scopes_within_grant_off_a_hook_may_add_any_scope_the_api_defines() {
    let clients = Clients::new();
    let add = fixed_output_hook(&commands(json!([{"add_scope": "admin:a"}])));
    let text = clients
        .manifest(&hook(
            "adds",
            &in_dir("adds.wat"),
            "capabilities = { scopes = [\"admin:a\"] }",
        ))
        .replace(
            "max_claims_size = \"64KiB\"",
            "max_claims_size = \"64KiB\"\nadded_scopes_within_grant = false",
        );
    let server = TestServer::start_with_files(&text, &[("adds.wat", &add)]).unwrap();
    let claims = claims_of(&server, &clients.app, &[("scope", "read:a")]).await;
    assert_eq!(scope_set(&claims["scope"]), sorted(&["read:a", "admin:a"]));
}

// ---- hostile hooks ----

/// A hostile hook for `app` only, then a state probe and tenant-claims for
/// everyone. Under `deny` app's request fails closed and under `skip` it gets
/// a token without the hostile hook; either way the next request (ops) on the
/// same server is served normally by fresh instances, and app's next request
/// fails or passes exactly as the first did.
async fn contained(what: &str, module: &str, limits: &str, files: &[(&str, &str)]) {
    let clients = Clients::new();
    for on_error in ["deny", "skip"] {
        let hooks = hook(
            "hostile",
            module,
            &format!("on_error = \"{on_error}\"\nmatch = {{ clients = [\"app\"] }}\n{limits}"),
        ) + &hook("probe", &in_dir("probe.wat"), ECHO_CAPS)
            + &hook("tenant", &built("tenant_claims"), TENANT_CAPS);
        let mut all_files = files.to_vec();
        let probe = state_probe_hook();
        all_files.push(("probe.wat", &probe));
        let server = clients.start(&hooks, &all_files);
        for round in 0..2 {
            let reply = token(&server, &clients.app, &[]).await;
            if on_error == "deny" {
                assert_oauth_error(&reply, 500, "server_error");
                let description = reply.body["error_description"].as_str().unwrap();
                assert!(
                    description.contains(&request_id(&reply)),
                    "{what}: {description}"
                );
                assert!(!description.contains("hostile"), "{what}: {description}");
            } else {
                assert_eq!(
                    reply.status, 200,
                    "{what} (skip, round {round}): {}",
                    reply.body
                );
                let claims = verified_claims(&server, &reply, API).await;
                assert_eq!(claims[claim("tenant")], "acme", "{what}: {claims}");
                assert_eq!(claims[claim("state")], "fresh", "{what}: {claims}");
                assert_eq!(
                    scope_set(&claims["scope"]),
                    sorted(&["read:a", "read:b"]),
                    "{what}"
                );
            }
            let next = token(&server, &clients.ops, &[]).await;
            assert_eq!(
                next.status, 200,
                "{what} ({on_error}): the next request on the same server: {}",
                next.body
            );
            let claims = verified_claims(&server, &next, API).await;
            assert_eq!(claims[claim("tenant")], "globex", "{what}");
            assert_eq!(claims[claim("state")], "fresh", "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_runs_out_of_fuel_and_is_contained() {
    contained("infinite loop (fuel)", &hostile("infinite_loop"), "", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_with_ample_fuel_hits_its_deadline_and_is_contained() {
    contained(
        "infinite loop (deadline)",
        &hostile("infinite_loop"),
        "limits = { fuel = 1_000_000_000, timeout = \"20ms\" }",
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loop_in_the_start_function_is_contained() {
    contained("start-function loop", &hostile("start_loop"), "", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_hits_its_memory_cap_and_is_contained() {
    contained(
        "memory bomb",
        &hostile("memory_bomb"),
        "limits = { memory = \"4MiB\" }",
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_json_output_is_contained() {
    contained("invalid JSON", &hostile("invalid_json"), "", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_is_contained() {
    let trap = trap_hook();
    contained("trap", &in_dir("trap.wat"), "", &[("trap.wat", &trap)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_rust_hook_is_contained() {
    contained("panic", &built("panic_hook"), "", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_recursion_is_contained() {
    contained("stack overflow", &hostile("recursion"), "", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_outside_memory_is_contained() {
    contained(
        "output out of bounds",
        &hostile("out_of_bounds_output"),
        "",
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_output_is_contained() {
    contained("huge output", &hostile("huge_output"), "", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_reporting_its_own_error_is_contained() {
    contained("error output", &hostile("error_output"), "", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_command_is_contained() {
    contained("unknown command", &hostile("unknown_command"), "", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_a_fresh_instance_even_concurrently() {
    let clients = Clients::new();
    let probe = state_probe_hook();
    let server = clients.start(
        &hook("probe", &in_dir("probe.wat"), ECHO_CAPS),
        &[("probe.wat", &probe)],
    );
    for _ in 0..3 {
        assert_eq!(
            claims_of(&server, &clients.app, &[]).await[claim("state")],
            "fresh"
        );
    }
    let url = server.url("/oauth/token");
    let auth = basic_header("app", &clients.app.secret);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (url, auth) = (url.clone(), auth.clone());
        tasks.spawn(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("authorization", auth)
                .form(&[("grant_type", "client_credentials"), ("audience", API)])
                .send()
                .await
                .expect("token request");
            reply(resp).await
        });
    }
    for reply in tasks.join_all().await {
        assert_eq!(
            verified_claims(&server, &reply, API).await[claim("state")],
            "fresh"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_clients_claims_never_reach_the_next_clients_hooks() {
    let clients = Clients::new();
    let hooks = hook(
        "tenant",
        &built("tenant_claims"),
        &format!("{TENANT_CAPS}\nmatch = {{ clients = [\"app\"] }}"),
    ) + &hook("echo", &in_dir("echo.wat"), ECHO_CAPS);
    let server = clients.start(&hooks, &[("echo.wat", &echo_hook(&claim("saw")))]);
    let app = claims_of(&server, &clients.app, &[]).await;
    assert_eq!(
        echoed(&app, &claim("saw"))["token"]["claims"][claim("tenant")],
        "acme"
    );
    let ops = claims_of(&server, &clients.ops, &[]).await;
    let seen = echoed(&ops, &claim("saw"));
    assert_eq!(seen["client"]["id"], "ops");
    assert_eq!(seen["token"]["claims"], json!({}), "{seen}");
    assert!(ops.get(claim("tenant")).is_none());
}
