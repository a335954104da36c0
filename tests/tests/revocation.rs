//! Revocation (RFC 7009), introspection (RFC 7662), the revocation feed and
//! the store-backed registry, end to end with real parts: the `tokenhook`
//! binary as server and CLI processes, on both stores — the embedded SQLite
//! file and DynamoDB through a `moto` server on 127.0.0.1 — with tokens
//! checked by an independent JOSE library.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokenhook_tests::{
    CLIENT_SECRET, MotoServer, ServerProcess, client_secret_hash, jose, tokenhook_bin,
};

/// How often the test issuers poll the feed: short, so tests wait little.
const POLL: &str = "200ms";
/// How long a test waits for a change to reach an issuer before failing.
const PATIENCE: Duration = Duration::from_secs(15);

/// Which store a test runs against.
enum Backend {
    Sqlite,
    Dynamodb(MotoServer),
}

impl Backend {
    async fn dynamodb() -> Backend {
        let moto = MotoServer::start();
        moto.dynamo_store("tokenhook").await;
        Backend::Dynamodb(moto)
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Dynamodb(_) => "dynamodb",
        }
    }

    /// The `[store]` section for a manifest in `dir`.
    fn store_toml(&self, dir: &Path, registry: &str, max_stale: &str) -> String {
        let location = match self {
            Backend::Sqlite => format!(
                "kind = \"sqlite\"\npath = {:?}",
                dir.join("store.sqlite").display().to_string()
            ),
            Backend::Dynamodb(_) => "kind = \"dynamodb\"\ntable = \"tokenhook\"".to_string(),
        };
        format!(
            "[store]\n{location}\nregistry = \"{registry}\"\npoll_interval = \"{POLL}\"\nmax_stale = \"{max_stale}\"\n"
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::Sqlite => Vec::new(),
            Backend::Dynamodb(moto) => moto.env(),
        }
    }
}

/// One scenario, two tests: `<scenario>::sqlite` and `<scenario>::dynamodb`.
macro_rules! on_both_stores {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                super::$scenario(super::Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn dynamodb() {
                super::$scenario(super::Backend::dynamodb().await).await;
            }
        }
    };
}

const ISSUER: &str = "https://issuer.test/";
const API: &str = "https://api.test";
const OTHER: &str = "https://other.test";

/// A manifest in `dir`: APIs api.test and other.test; with `registry =
/// "manifest"`, clients `app` (api.test, other.test), `ops` (api.test) and the
/// resource server `rs` (introspect = true), all with [`CLIENT_SECRET`].
fn write_manifest(
    backend: &Backend,
    dir: &Path,
    registry: &str,
    max_stale: &str,
) -> std::path::PathBuf {
    let hash = client_secret_hash();
    let clients = if registry == "manifest" {
        format!(
            r#"
[[clients]]
id = "app"
secret_hash = "{hash}"

[[clients]]
id = "ops"
secret_hash = "{hash}"

[[clients]]
id = "rs"
secret_hash = "{hash}"
introspect = true

[[grants]]
client = "app"
api = "{API}"
scopes = ["read:a", "write:a"]

[[grants]]
client = "app"
api = "{OTHER}"
scopes = ["read:o"]

[[grants]]
client = "ops"
api = "{API}"
scopes = ["read:a"]
"#
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"issuer = "{ISSUER}"
token_lifetime = "10m"
keys = {{ source = "file", path = {key:?} }}

{store}
[[apis]]
identifier = "{API}"
scopes = ["read:a", "write:a"]

[[apis]]
identifier = "{OTHER}"
scopes = ["read:o"]
{clients}"#,
        key = dir.join("key.pem").display().to_string(),
        store = backend.store_toml(dir, registry, max_stale),
    );
    let path = dir.join("manifest.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

fn spawn(backend: &Backend, manifest: &Path) -> ServerProcess {
    let env = backend.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ServerProcess::spawn(manifest, &env).unwrap_or_else(|e| panic!("server did not start: {e}"))
}

/// The CLI against the manifest's store.
fn cli(backend: &Backend, manifest: &Path, args: &[&str]) -> Output {
    Command::new(tokenhook_bin())
        .args(args)
        .arg("--manifest")
        .arg(manifest)
        .envs(backend.env())
        .output()
        .expect("run tokenhook")
}

fn cli_ok(backend: &Backend, manifest: &Path, args: &[&str]) -> Value {
    let out = cli(backend, manifest, args);
    assert!(
        out.status.success(),
        "tokenhook {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the CLI prints JSON")
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(server: &ServerProcess) -> Http {
        Http {
            base: format!("http://{}", server.addr),
            client: reqwest::Client::new(),
        }
    }

    async fn post(
        &self,
        path: &str,
        auth: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).form(form);
        if let Some((id, secret)) = auth {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn token_for(&self, client: &str, secret: &str, audience: &str) -> (u16, Value) {
        self.post(
            "/oauth/token",
            Some((client, secret)),
            &[("grant_type", "client_credentials"), ("audience", audience)],
        )
        .await
    }

    async fn token(&self, client: &str, audience: &str) -> String {
        let (status, body) = self.token_for(client, CLIENT_SECRET, audience).await;
        assert_eq!(status, 200, "token for {client}: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    async fn introspect(&self, token: &str) -> Value {
        let (status, body) = self
            .post(
                "/oauth/introspect",
                Some(("rs", CLIENT_SECRET)),
                &[("token", token)],
            )
            .await;
        assert_eq!(status, 200, "introspection: {body}");
        body
    }

    async fn revoke(&self, client: &str, token: &str) -> (u16, Value) {
        self.post(
            "/oauth/revoke",
            Some((client, CLIENT_SECRET)),
            &[("token", token)],
        )
        .await
    }

    async fn feed(&self, since: u64) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}/oauth/revocations?since={since}", self.base))
            .basic_auth("rs", Some(CLIENT_SECRET))
            .send()
            .await
            .expect("feed");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// Poll `check` until it holds; how long that took. Fails after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sign `claims` with the server's own key (the dev key file in `dir`), to
/// make tokens the issuer never issued: expired, not yet valid, foreign.
fn forge(dir: &Path, claims: &Value) -> String {
    let pem = std::fs::read_to_string(dir.join("key.pem")).expect("key file");
    let key = tokenhook::keys::SigningKey::from_pkcs8_pem(
        &pem,
        jsonwebtoken::Algorithm::ES256,
        None,
        "test key",
    )
    .expect("key");
    key.sign(claims).expect("sign")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------

async fn revoke_then_introspect_then_feed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(&backend, dir.path(), "manifest", "5m");
    let server = spawn(&backend, &manifest);
    let http = Http::new(&server);
    let token = http.token("app", API).await;

    let active = http.introspect(&token).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["client_id"], "app");
    assert_eq!(active["aud"], API);
    assert_eq!(active["iss"], ISSUER);
    assert_eq!(active["scope"], "read:a write:a");
    assert_eq!(active["token_type"], "Bearer");
    let jti = active["jti"].as_str().unwrap().to_string();

    // Another client cannot revoke it: refused (RFC 7009 §2.1), and it stays active.
    let (status, body) = http.revoke("ops", &token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    assert_eq!(http.introspect(&token).await["active"], true);

    // Its own client can.
    let (status, _) = http.revoke("app", &token).await;
    assert_eq!(status, 200);
    assert_eq!(http.introspect(&token).await, json!({"active": false}));
    // The token still verifies as a JWT: only the issuer knows it is revoked.
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", http.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jose::verify(&token, &jwks, ISSUER, API).expect("still a well-signed JWT");

    // Revoking again, or revoking garbage, is fine (RFC 7009 §2.2).
    assert_eq!(http.revoke("app", &token).await.0, 200);
    assert_eq!(http.revoke("app", "not-a-jwt").await.0, 200);

    // The feed lists it, with its expiry; the next cursor brings it again at most.
    let (status, feed) = http.feed(0).await;
    assert_eq!(status, 200, "{feed}");
    let tokens = feed["tokens"].as_array().unwrap();
    assert!(
        tokens.iter().any(|t| t["jti"] == jti.as_str()
            && t["client_id"] == "app"
            && t["exp"].as_u64() > Some(now())),
        "{feed}"
    );
    let next = feed["next"].as_u64().unwrap();
    let (_, later) = http.feed(next + 60_000).await;
    assert_eq!(later["tokens"], json!([]), "nothing newer: {later}");

    // Another fresh token of the same client is unaffected.
    let other = http.token("app", API).await;
    assert_eq!(http.introspect(&other).await["active"], true);
}

on_both_stores!(revoke_then_introspect_then_feed);

async fn introspection_refuses_and_deactivates(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(&backend, dir.path(), "manifest", "5m");
    let server = spawn(&backend, &manifest);
    let http = Http::new(&server);
    let token = http.token("app", API).await;

    // Unauthenticated: 401 with a challenge; wrong secret: 401.
    let (status, body) = http
        .post("/oauth/introspect", None, &[("token", &token)])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _) = http
        .post(
            "/oauth/introspect",
            Some(("rs", "wrong")),
            &[("token", &token)],
        )
        .await;
    assert_eq!(status, 401);
    // A client that is not a resource server: 403.
    let (status, body) = http
        .post(
            "/oauth/introspect",
            Some(("app", CLIENT_SECRET)),
            &[("token", &token)],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("access_denied")),
        "{body}"
    );
    // No token, a repeated parameter: 400 invalid_request.
    let (status, body) = http
        .post("/oauth/introspect", Some(("rs", CLIENT_SECRET)), &[])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = http
        .post(
            "/oauth/introspect",
            Some(("rs", CLIENT_SECRET)),
            &[("token", "a"), ("token", "b")],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Oversized: refused before parsing.
    // Just over the 16 KiB body limit: small enough for the socket buffers, so
    // the client reads the answer rather than a reset.
    let huge = "x".repeat(20 << 10);
    let (status, _) = http
        .post(
            "/oauth/introspect",
            Some(("rs", CLIENT_SECRET)),
            &[("token", &huge)],
        )
        .await;
    assert_eq!(status, 413);
    // The revoke endpoint: same rules.
    let (status, _) = http.post("/oauth/revoke", None, &[("token", &token)]).await;
    assert_eq!(status, 401);
    let (status, body) = http
        .post("/oauth/revoke", Some(("app", CLIENT_SECRET)), &[])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // The feed needs a resource server too.
    let resp = reqwest::get(format!("{}/oauth/revocations", http.base))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Inactive: not a JWT, badly signed, expired, not yet valid, another issuer.
    let t = now();
    let claims = |over: Value| {
        let mut c = json!({"iss": ISSUER, "sub": "app", "aud": API, "client_id": "app",
            "iat": t, "nbf": t, "exp": t + 600, "jti": "forged", "scope": "read:a"});
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let good = forge(dir.path(), &claims(json!({})));
    assert_eq!(
        http.introspect(&good).await["active"],
        true,
        "a token signed with the issuer's key is active"
    );
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    for (what, token) in [
        ("not a JWT", "not.a.jwt".to_string()),
        ("garbage", "%%%".to_string()),
        ("bad signature", tampered),
        (
            "expired",
            forge(
                dir.path(),
                &claims(json!({"iat": t - 700, "nbf": t - 700, "exp": t - 100})),
            ),
        ),
        (
            "not yet valid",
            forge(dir.path(), &claims(json!({"nbf": t + 300}))),
        ),
        (
            "another issuer",
            forge(dir.path(), &claims(json!({"iss": "https://evil.test/"}))),
        ),
        (
            "unknown client",
            forge(
                dir.path(),
                &claims(json!({"client_id": "ghost", "sub": "ghost"})),
            ),
        ),
    ] {
        assert_eq!(
            http.introspect(&token).await,
            json!({"active": false}),
            "{what}"
        );
    }
}

on_both_stores!(introspection_refuses_and_deactivates);

async fn revoking_a_client(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(&backend, dir.path(), "manifest", "5m");
    let server = spawn(&backend, &manifest);
    let http = Http::new(&server);
    let on_api = [http.token("app", API).await, http.token("app", API).await];
    let on_other = http.token("app", OTHER).await;
    let bystander = http.token("ops", API).await;

    // For one API: its tokens go, new ones are refused; the other API is untouched.
    cli_ok(
        &backend,
        &manifest,
        &["clients", "revoke", "app", "--api", API],
    );
    for token in &on_api {
        eventually("app's api.test tokens inactive", || async {
            http.introspect(token).await["active"] == false
        })
        .await;
    }
    let (status, body) = http.token_for("app", CLIENT_SECRET, API).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    assert_eq!(http.introspect(&on_other).await["active"], true);
    assert_eq!(http.token_for("app", CLIENT_SECRET, OTHER).await.0, 200);

    // The whole client.
    cli_ok(&backend, &manifest, &["clients", "revoke", "app"]);
    eventually("app refused on every API", || async {
        http.token_for("app", CLIENT_SECRET, OTHER).await.0 == 400
    })
    .await;
    assert_eq!(http.introspect(&on_other).await["active"], false);
    assert_eq!(
        http.introspect(&bystander).await["active"],
        true,
        "ops is not affected"
    );

    // The feed carries the cut-offs.
    let (_, feed) = http.feed(0).await;
    let clients = feed["clients"].as_array().unwrap();
    assert!(
        clients
            .iter()
            .any(|c| c["client_id"] == "app" && c.get("api").is_none() && c["refused"] == true),
        "{feed}"
    );
    assert!(
        clients
            .iter()
            .any(|c| c["client_id"] == "app" && c["api"] == API),
        "{feed}"
    );

    // Restored: new tokens again; the old ones stay revoked. (A cut-off
    // covers its whole second, `iat` having no finer grain: wait until the
    // clock has left the newest cut-off's second.)
    let newest_cutoff = clients
        .iter()
        .filter_map(|c| c["issued_before"].as_u64())
        .max()
        .unwrap();
    eventually("the clock passes the cut-off's second", || async {
        tokenhook::store::now_secs() > newest_cutoff
    })
    .await;
    cli_ok(&backend, &manifest, &["clients", "restore", "app"]);
    cli_ok(
        &backend,
        &manifest,
        &["clients", "restore", "app", "--api", API],
    );
    eventually("app gets tokens again", || async {
        http.token_for("app", CLIENT_SECRET, API).await.0 == 200
    })
    .await;
    let fresh = http.token("app", API).await;
    assert_eq!(http.introspect(&fresh).await["active"], true);
    assert_eq!(http.introspect(&on_api[0]).await["active"], false);
}

on_both_stores!(revoking_a_client);

async fn registry_in_the_store(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(&backend, dir.path(), "store", "5m");
    let server = spawn(&backend, &manifest);
    let http = Http::new(&server);

    // Unknown until added.
    assert_eq!(http.token_for("svc", "whatever", API).await.0, 401);
    let added = cli_ok(
        &backend,
        &manifest,
        &[
            "clients",
            "add",
            "svc",
            "--name",
            "Service",
            "--metadata",
            "tenant=acme",
        ],
    );
    let secret = added["client_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 43, "a 256-bit secret");
    // The secret is stored hashed only.
    let shown = cli_ok(&backend, &manifest, &["clients", "show", "svc"]);
    assert!(!shown.to_string().contains(&secret), "{shown}");
    // No grant yet: authenticated, but not for this API.
    let (status, body) = eventually_status(&http, "svc", &secret, 400).await;
    assert_eq!(body["error"], "unauthorized_client");
    let _ = status;
    cli_ok(
        &backend,
        &manifest,
        &["grants", "add", "svc", API, "--scopes", "read:a"],
    );
    eventually("svc gets a token without a restart", || async {
        http.token_for("svc", &secret, API).await.0 == 200
    })
    .await;
    let (_, body) = http.token_for("svc", &secret, API).await;
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", http.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = jose::verify(body["access_token"].as_str().unwrap(), &jwks, ISSUER, API).unwrap();
    assert_eq!(claims["client_id"], "svc");
    assert_eq!(claims["scope"], "read:a");

    // Grants checked against the manifest's APIs.
    let out = cli(
        &backend,
        &manifest,
        &["grants", "add", "svc", API, "--scopes", "admin:zzz"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin:zzz"));
    let out = cli(
        &backend,
        &manifest,
        &["grants", "add", "svc", "https://nope.test"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://nope.test"));
    // Adding an existing id is refused.
    let out = cli(&backend, &manifest, &["clients", "add", "svc"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Rotate: the old secret stops working, the new one works.
    let rotated = cli_ok(&backend, &manifest, &["clients", "rotate-secret", "svc"]);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    eventually("the old secret fails after rotation", || async {
        http.token_for("svc", &secret, API).await.0 == 401
    })
    .await;
    assert_eq!(http.token_for("svc", &new_secret, API).await.0, 200);

    // Remove the grant: refused again.
    cli_ok(&backend, &manifest, &["grants", "remove", "svc", API]);
    eventually("no grant, no token", || async {
        http.token_for("svc", &new_secret, API).await.0 == 400
    })
    .await;
    let listed = cli(&backend, &manifest, &["clients", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("\"svc\"") && !listed.contains(&new_secret),
        "{listed}"
    );
}

/// Ask for tokens until the answer has status `want`; that answer.
async fn eventually_status(http: &Http, client: &str, secret: &str, want: u16) -> (u16, Value) {
    let started = Instant::now();
    loop {
        let reply = http.token_for(client, secret, API).await;
        if reply.0 == want {
            return reply;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no {want} within {PATIENCE:?}: last {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_stores!(registry_in_the_store);

async fn concurrent_cli_writes_lose_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(&backend, dir.path(), "store", "5m");
    // Two `add`s of one id at once: exactly one wins.
    let adds: Vec<_> = (0..2)
        .map(|_| spawn_cli(&backend, &manifest, &["clients", "add", "race"]))
        .collect();
    let outs: Vec<_> = adds
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    let stderr: Vec<_> = outs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr))
        .collect();
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "{codes:?} {stderr:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == Some(3)).count(),
        1,
        "{codes:?} {stderr:?}"
    );

    // Four rotations at once: each is applied on top of the one before
    // (conditional writes, retried), so the versions are 2..=5 and the
    // secret printed with the last version is the one that works.
    let rotations: Vec<_> = (0..4)
        .map(|_| spawn_cli(&backend, &manifest, &["clients", "rotate-secret", "race"]))
        .collect();
    let mut printed = Vec::new();
    for child in rotations {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        printed.push((
            v["version"].as_u64().unwrap(),
            v["client_secret"].as_str().unwrap().to_string(),
        ));
    }
    printed.sort();
    assert_eq!(
        printed.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    let shown = cli_ok(&backend, &manifest, &["clients", "show", "race"]);
    assert_eq!(shown["version"], 5);

    cli_ok(
        &backend,
        &manifest,
        &["grants", "add", "race", API, "--scopes", "read:a"],
    );
    let server = spawn(&backend, &manifest);
    let http = Http::new(&server);
    let (last_version, last_secret) = printed.last().unwrap().clone();
    assert_eq!(last_version, 5);
    assert_eq!(http.token_for("race", &last_secret, API).await.0, 200);
    for (_, secret) in &printed[..3] {
        assert_eq!(http.token_for("race", secret, API).await.0, 401);
    }
}

fn spawn_cli(backend: &Backend, manifest: &Path, args: &[&str]) -> std::process::Child {
    Command::new(tokenhook_bin())
        .args(args)
        .arg("--manifest")
        .arg(manifest)
        .envs(backend.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tokenhook")
}

on_both_stores!(concurrent_cli_writes_lose_nothing);

/// Two issuer processes on one store: a revocation at one is seen by the
/// other within its poll interval (printed: the measured propagation).
async fn two_issuers_share_revocations(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(&backend, dir.path(), "manifest", "5m");
    let a = spawn(&backend, &manifest);
    let b = spawn(&backend, &manifest);
    let (a, b) = (Http::new(&a), Http::new(&b));
    let mut seen = Vec::new();
    for _ in 0..5 {
        let token = a.token("app", API).await;
        assert_eq!(b.introspect(&token).await["active"], true);
        assert_eq!(a.revoke("app", &token).await.0, 200);
        let took = eventually("revocation at A seen by B", || async {
            b.introspect(&token).await["active"] == false
        })
        .await;
        seen.push(took.as_millis());
    }
    eprintln!(
        "{}: revocation at issuer A inactive at issuer B after {seen:?} ms (poll interval {POLL})",
        backend.name()
    );
}

on_both_stores!(two_issuers_share_revocations);

/// The store goes away: what is cached serves until `max_stale`, then token
/// requests fail closed with 503; when it is back, tokens flow again.
#[tokio::test]
async fn dynamodb_outage_serves_cached_then_fails_closed_then_recovers() {
    let moto = MotoServer::start();
    let port = moto.port;
    moto.dynamo_store("tokenhook").await;
    let backend = Backend::Dynamodb(moto);
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(&backend, dir.path(), "manifest", "3s");
    let server = spawn(&backend, &manifest);
    let http = Http::new(&server);
    let token = http.token("app", API).await;
    assert_eq!(http.revoke("app", &token).await.0, 200);

    // Down.
    let Backend::Dynamodb(moto) = backend else {
        unreachable!()
    };
    let env = moto.env();
    drop(moto);
    assert_eq!(
        http.token_for("app", CLIENT_SECRET, API).await.0,
        200,
        "cached state serves"
    );
    assert_eq!(
        http.introspect(&token).await["active"],
        false,
        "known revocations still hold"
    );
    let (status, body) = eventually_status(&http, "app", CLIENT_SECRET, 503).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    let (status, _) = http
        .post(
            "/oauth/introspect",
            Some(("rs", CLIENT_SECRET)),
            &[("token", &token)],
        )
        .await;
    assert_eq!(status, 503, "introspection fails closed too");

    // Back (an emulator restarts empty: the table is made again).
    let moto = MotoServer::start_on(port);
    assert_eq!(moto.env(), env);
    moto.dynamo_store("tokenhook").await;
    eventually("tokens again once the store is back", || async {
        http.token_for("app", CLIENT_SECRET, API).await.0 == 200
    })
    .await;
}

/// The docs/revocation.md example: a resource server verifying locally with
/// the JWKS and the revocation feed.
#[tokio::test]
async fn example_verifier_follows_the_feed() {
    let backend = Backend::Sqlite;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(&backend, dir.path(), "manifest", "5m");
    let server = spawn(&backend, &manifest);
    let http = Http::new(&server);
    let mut rs = tokenhook_tests::feed_verifier::FeedVerifier::new(
        &http.base,
        ISSUER,
        API,
        "rs",
        CLIENT_SECRET,
    );
    let (kept, revoked, cut) = (
        http.token("app", API).await,
        http.token("app", API).await,
        http.token("ops", API).await,
    );
    rs.refresh(&http.client).await.unwrap();
    for token in [&kept, &revoked, &cut] {
        rs.check(token).expect("valid before any revocation");
    }
    assert_eq!(http.revoke("app", &revoked).await.0, 200);
    cli_ok(&backend, &manifest, &["clients", "revoke", "ops"]);
    // The CLI wrote to the store; the issuer's feed has it after its next poll.
    let started = Instant::now();
    loop {
        rs.refresh(&http.client).await.unwrap();
        if rs.check(&cut).is_err() {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the cut-off never reached the feed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rs.check(&kept).is_ok());
    assert_eq!(rs.check(&revoked).unwrap_err(), "revoked");
    assert_eq!(
        rs.check(&cut).unwrap_err(),
        "the client's tokens are revoked"
    );
    // Polling again with the cursor keeps what it knew.
    rs.refresh(&http.client).await.unwrap();
    assert!(rs.check(&revoked).is_err() && rs.check(&kept).is_ok());
}
