//! Signing keys and hook secrets from AWS Secrets Manager, with a real
//! emulator: a `moto` server (PyPI `moto[server]`) on 127.0.0.1, reached by the
//! real binary through the AWS SDK's standard endpoint override. Covers key
//! rotation (next → active), hook secrets, the emulator going away (cached
//! keys keep serving, then the documented failure), and a missing secret.

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

use serde_json::Value;
use tokenhook::keys::{SigningKey, StoredKey, StoredKeySet, generate_pkcs8_pem};
use tokenhook_tests::{
    MotoServer, ServerProcess, collect_stderr, hook_wasm, hooks_dir, jose, logged, manifest,
    write_manifest_in,
};

/// The shared moto server, with the Secrets Manager calls these tests make.
struct Moto {
    server: MotoServer,
}

impl Moto {
    fn start() -> Moto {
        Moto {
            server: MotoServer::start(),
        }
    }

    /// The real AWS SDK, pointed at moto.
    async fn client(&self) -> Client {
        Client::new(&self.server.sdk_config().await)
    }

    async fn create(&self, name: &str, value: &str) {
        self.client()
            .await
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateSecret {name}: {}", DisplayErrorContext(&e)));
    }

    async fn put(&self, name: &str, value: &str) {
        self.client()
            .await
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutSecretValue {name}: {}", DisplayErrorContext(&e)));
    }
}

fn new_key() -> (StoredKey, String) {
    let pem = generate_pkcs8_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    let kid = SigningKey::from_pkcs8_pem(&pem, jsonwebtoken::Algorithm::ES256, None, "test")
        .unwrap()
        .kid;
    (
        StoredKey {
            kid: None,
            alg: "ES256".into(),
            private_key_pem: pem,
        },
        kid,
    )
}

fn key_set(active: &StoredKey, next: Option<&StoredKey>, retired: &[&StoredKey]) -> String {
    serde_json::to_string(&StoredKeySet {
        active: active.clone(),
        next: next.cloned(),
        retired: retired.iter().map(|k| (*k).clone()).collect(),
    })
    .unwrap()
}

/// The server as a process, with the AWS SDK pointed at moto.
fn spawn_server(moto: &Moto, dir: &std::path::Path) -> Result<ServerProcess, String> {
    spawn_server_with(moto, dir, &[])
}

fn spawn_server_with(
    moto: &Moto,
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> Result<ServerProcess, String> {
    let moto_env = moto.server.env();
    let mut all: Vec<(&str, &str)> = moto_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.extend_from_slice(env);
    ServerProcess::spawn(&dir.join("manifest.toml"), &all)
}

async fn jwks(addr: &str) -> Value {
    reqwest::get(format!("http://{addr}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let head = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for: {what}");
}

const HOOKS: &str = r#"
[[hooks]]
name = "sig"
module = "{hooks}/signed_claim.wasm"
capabilities = { claims = ["https://claims.test/sig"] }
config = { claim = "https://claims.test/sig" }
secrets = { signing_key = "tokenhook/hooks/signing-key" }
"#;

fn aws_manifest(hooks: &str) -> String {
    manifest(hooks).replace(
        r#"keys = { source = "file", path = "{dir}/key.pem" }"#,
        "keys = { source = \"secretsmanager\", secret_id = \"tokenhook/keyset\", cache_ttl = \"1s\", max_stale = \"8s\" }\nhook_secret_ttl = \"1s\"",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_hook_secrets_from_secrets_manager_rotate_and_survive_an_outage() {
    let moto = Moto::start();
    hook_wasm("signed_claim");
    assert!(hooks_dir().join("signed_claim.wasm").exists());
    let (a, kid_a) = new_key();
    let (b, kid_b) = new_key();
    moto.create("tokenhook/keyset", &key_set(&a, None, &[]))
        .await;
    moto.create("tokenhook/hooks/signing-key", "k3y").await;

    // A hook secret that does not exist refuses start-up, naming hook and secret.
    let dir = tempfile::tempdir().unwrap();
    write_manifest_in(
        dir.path(),
        &aws_manifest(&HOOKS.replace("tokenhook/hooks/signing-key", "tokenhook/hooks/missing")),
    );
    let stderr = spawn_server(&moto, dir.path())
        .err()
        .expect("start-up must fail");
    assert!(
        stderr.contains("hook `sig`") && stderr.contains("tokenhook/hooks/missing"),
        "{stderr}"
    );

    // So does a key set that does not exist, naming the secret.
    write_manifest_in(
        dir.path(),
        &aws_manifest(HOOKS).replace("tokenhook/keyset", "tokenhook/no-such-keyset"),
    );
    let stderr = spawn_server(&moto, dir.path())
        .err()
        .expect("start-up must fail");
    assert!(
        stderr.contains("keys.secret_id") && stderr.contains("tokenhook/no-such-keyset"),
        "{stderr}"
    );

    // TOKENHOOK_KEYSET_SECRET_ID (as template.yaml sets it) switches a manifest with a
    // key file to the Secrets Manager key set.
    let plain = tempfile::tempdir().unwrap();
    write_manifest_in(plain.path(), &manifest(""));
    let overridden = spawn_server_with(
        &moto,
        plain.path(),
        &[("TOKENHOOK_KEYSET_SECRET_ID", "tokenhook/keyset")],
    )
    .unwrap();
    let (status, body) = overridden.app_token().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kid_of(body["access_token"].as_str().unwrap()), kid_a);
    assert!(!plain.path().join("key.pem").exists(), "no key file made");
    drop(overridden);

    write_manifest_in(dir.path(), &aws_manifest(HOOKS));
    let mut server = spawn_server(&moto, dir.path()).unwrap();
    let log = collect_stderr(&mut server);
    let addr = server.addr.clone();
    let (status, first) = server.app_token().await;
    assert_eq!(status, 200, "{first}");
    let first_token = first["access_token"].as_str().unwrap().to_string();
    assert_eq!(kid_of(&first_token), kid_a);
    let claims = jose::verify(
        &first_token,
        &jwks(&addr).await,
        "https://issuer.test/",
        "https://api.test",
    )
    .unwrap();
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"k3y", b"app\nhttps://api.test", hashlib.sha256).hexdigest())'
    assert_eq!(
        claims["https://claims.test/sig"],
        "37b585e38e40d97626d46fdc4f945f0fcf71a7977dce5d85a7f3802a848a268d"
    );

    // A changed hook secret is picked up after hook_secret_ttl, without a restart.
    moto.put("tokenhook/hooks/signing-key", "n3w-k3y").await;
    eventually(
        "the new hook secret in use",
        Duration::from_secs(10),
        async || {
            let (_, body) = server.app_token().await;
            let claims = jose::verify(
                body["access_token"].as_str().unwrap(),
                &jwks(&addr).await,
                "https://issuer.test/",
                "https://api.test",
            )
            .unwrap();
            // python3 -c 'import hmac,hashlib; print(hmac.new(b"n3w-k3y", b"app\nhttps://api.test", hashlib.sha256).hexdigest())'
            claims["https://claims.test/sig"]
                == "b3517ba35364d7624e4237be8e9fa96a19750719602103c96391837328dd4f1d"
        },
    )
    .await;

    // Stage the next key: published before it signs.
    moto.put("tokenhook/keyset", &key_set(&a, Some(&b), &[]))
        .await;
    eventually("next key published", Duration::from_secs(10), async || {
        jwks(&addr).await["keys"].as_array().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        kid_of(server.app_token().await.1["access_token"].as_str().unwrap()),
        kid_a,
        "next does not sign yet"
    );
    // A verifier that fetched the JWKS now knows both keys.
    let both = jwks(&addr).await;

    // Promote: next → active, old active → retired.
    moto.put("tokenhook/keyset", &key_set(&b, None, &[&a]))
        .await;
    eventually("new key signs", Duration::from_secs(10), async || {
        kid_of(server.app_token().await.1["access_token"].as_str().unwrap()) == kid_b
    })
    .await;
    let (_, after) = server.app_token().await;
    let after_token = after["access_token"].as_str().unwrap();
    let published = jwks(&addr).await;
    jose::verify(
        after_token,
        &published,
        "https://issuer.test/",
        "https://api.test",
    )
    .unwrap();
    // The retired key never signs again, but stays published so tokens it
    // signed keep verifying against a freshly fetched JWKS until they expire.
    assert!(
        published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid_a.as_str()),
        "retired keys stay published"
    );
    jose::verify(
        &first_token,
        &published,
        "https://issuer.test/",
        "https://api.test",
    )
    .unwrap();
    // Once its tokens have expired the operator deletes it, and it is unpublished.
    moto.put("tokenhook/keyset", &key_set(&b, None, &[])).await;
    eventually(
        "retired key unpublished",
        Duration::from_secs(10),
        async || {
            jwks(&addr).await["keys"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["kid"] != kid_a.as_str())
        },
    )
    .await;
    // Tokens from before the rotation verify with the JWKS verifiers cached while both were published.
    jose::verify(
        &first_token,
        &both,
        "https://issuer.test/",
        "https://api.test",
    )
    .unwrap();
    jose::verify(
        after_token,
        &both,
        "https://issuer.test/",
        "https://api.test",
    )
    .unwrap();

    // The emulator goes away. The SDK retries a refused connection for seconds; the key
    // set is refreshed in the background, so cached keys keep serving, promptly, up to
    // max_stale (8 s); then tokens are refused with 503 temporarily_unavailable.
    // `keys_only` (no hook secrets) shows the key path alone; hook secrets are
    // refreshed on the request path (hooks.rs), so `server` may take seconds for the
    // request that refreshes them, but it keeps serving too.
    let keys_only_dir = tempfile::tempdir().unwrap();
    write_manifest_in(keys_only_dir.path(), &aws_manifest(""));
    let mut keys_only = spawn_server(&moto, keys_only_dir.path()).unwrap();
    let keys_only_log = collect_stderr(&mut keys_only);
    assert_eq!(keys_only.app_token().await.0, 200);
    drop(moto.server);
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(4) {
        let asked = Instant::now();
        let (status, body) = keys_only.app_token().await;
        assert_eq!(
            status, 200,
            "cached keys serve while the store is down: {body}"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "a token took {:?} while the store was down",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = server.app_token().await;
    assert_eq!(
        status, 200,
        "cached keys and hook secrets serve while the store is down: {body}"
    );
    eventually("stale keys refused", Duration::from_secs(30), async || {
        let (status, body) = keys_only.app_token().await;
        status == 503 && body["error"] == "temporarily_unavailable"
    })
    .await;
    eventually("stale keys refused", Duration::from_secs(30), async || {
        let (status, body) = server.app_token().await;
        status == 503 && body["error"] == "temporarily_unavailable"
    })
    .await;

    // The logs say what happened, naming the secret and the cause, never a value.
    // `keys_only` is asked all through the outage, so it certainly refreshed
    // within max_stale; `server` may first retry only once its set is too old.
    let stale = logged(
        &keys_only_log,
        "key set refresh failed; serving the cached key set",
    );
    assert!(
        !stale.is_empty(),
        "a warning while serving stale keys:\n{}",
        keys_only_log.lock().unwrap()
    );
    assert_eq!(stale[0]["level"], "WARN");
    assert_eq!(
        stale[0]["fields"]["what"],
        "key set from secret `tokenhook/keyset`"
    );
    assert!(
        stale[0]["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("tokenhook/keyset"),
        "{}",
        stale[0]
    );
    let expired = logged(
        &log,
        "key set refresh failed and the cached key set is too old to serve; tokens cannot be signed",
    );
    assert!(!expired.is_empty(), "an error beyond max_stale");
    assert_eq!(expired[0]["level"], "ERROR");
    let unavailable = logged(&log, "signing keys unavailable");
    assert!(
        unavailable[0]["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("beyond the maximum staleness"),
        "{}",
        unavailable[0]
    );
    assert!(
        !logged(&log, "signing key rotated").is_empty(),
        "the rotation is logged"
    );
    let log = log.lock().unwrap();
    assert!(
        !log.contains("PRIVATE KEY") && !log.contains("k3y"),
        "no key material or secret values in logs"
    );
}

/// The key set secret replaced by something that is not a usable key set
/// (not JSON, no `active`, one kid twice): each refresh is refused with the
/// cause logged, the known-good set keeps signing and stays published, and a
/// valid set put afterwards takes over. Documented in docs/deploy.md.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_or_partial_key_set_keeps_the_known_good_one_serving() {
    let moto = Moto::start();
    let (a, kid_a) = new_key();
    let (b, kid_b) = new_key();
    moto.create("tokenhook/keyset", &key_set(&a, None, &[]))
        .await;
    let dir = tempfile::tempdir().unwrap();
    // A long max_stale: this test is about bad content, not about age.
    write_manifest_in(
        dir.path(),
        &aws_manifest("").replace("max_stale = \"8s\"", "max_stale = \"10m\""),
    );
    let mut server = spawn_server(&moto, dir.path()).unwrap();
    let log = collect_stderr(&mut server);
    let addr = server.addr.clone();
    let (status, body) = server.app_token().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kid_of(body["access_token"].as_str().unwrap()), kid_a);

    let partial = serde_json::json!({"next": {"private_key_pem": b.private_key_pem}}).to_string();
    let twice = key_set(&a, None, &[&a]);
    for (bad, cause) in [
        ("{\"active\": ", "is not a key set"),
        (partial.as_str(), "missing field `active`"),
        (twice.as_str(), "both `active` and `retired[0]`"),
    ] {
        moto.put("tokenhook/keyset", bad).await;
        // The outcome to wait for: the refresh refused, saying why.
        eventually(
            &format!("a refresh refused for `{cause}`"),
            Duration::from_secs(20),
            async || {
                server.app_token().await;
                logged(&log, "key set refresh failed; serving the cached key set")
                    .iter()
                    .any(|l| l["fields"]["error"].as_str().unwrap_or("").contains(cause))
            },
        )
        .await;
        let (status, body) = server.app_token().await;
        assert_eq!(status, 200, "{cause}: {body}");
        assert_eq!(
            kid_of(body["access_token"].as_str().unwrap()),
            kid_a,
            "{cause}"
        );
        let published = jwks(&addr).await;
        assert_eq!(published["keys"].as_array().unwrap().len(), 1, "{cause}");
        assert_eq!(published["keys"][0]["kid"], kid_a.as_str(), "{cause}");
    }

    moto.put("tokenhook/keyset", &key_set(&b, None, &[&a]))
        .await;
    eventually(
        "the valid set takes over",
        Duration::from_secs(20),
        async || kid_of(server.app_token().await.1["access_token"].as_str().unwrap()) == kid_b,
    )
    .await;
    let log = log.lock().unwrap();
    assert!(!log.contains("PRIVATE KEY"), "no key material in logs");
    assert!(
        !log.contains(&b.private_key_pem.lines().nth(1).unwrap().to_string()),
        "no key material in logs"
    );
}
