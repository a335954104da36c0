//! Signing keys and hook secrets from AWS Secrets Manager, with a real
//! emulator: a `moto` server (PyPI `moto[server]`) on 127.0.0.1, reached by the
//! real binary through the AWS SDK's standard endpoint override. Covers key
//! rotation (next → active), hook secrets, the emulator going away (cached
//! keys keep serving, then the documented failure), and a missing secret.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokenhook::keys::{SigningKey, StoredKey, StoredKeySet, generate_pkcs8_pem};
use tokenhook_tests::{
    ChildGroup, ServerProcess, free_port, hook_wasm, hooks_dir, jose, manifest, python_tool,
    wait_for_port, write_manifest_in,
};

struct Moto {
    port: u16,
    process: ChildGroup,
}

impl Moto {
    fn start() -> Option<Moto> {
        let Some(moto) = python_tool("moto_server") else {
            eprintln!("SKIPPED: moto_server is not installed (tests/run.sh installs it)");
            return None;
        };
        let port = free_port();
        let process = ChildGroup::spawn(
            Command::new(moto)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        assert!(
            wait_for_port(port, Duration::from_secs(60)),
            "moto did not start"
        );
        Some(Moto { port, process })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One Secrets Manager API call (AWS JSON 1.1 protocol; moto does not check signatures).
    async fn call(&self, action: &str, body: Value) -> Value {
        let resp = reqwest::Client::new()
            .post(self.endpoint())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("secretsmanager.{action}"))
            .header("authorization", "AWS4-HMAC-SHA256 Credential=test/20261125/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{action}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn create(&self, name: &str, value: &str) {
        self.call("CreateSecret", json!({"Name": name, "SecretString": value}))
            .await;
    }

    async fn put(&self, name: &str, value: &str) {
        self.call(
            "PutSecretValue",
            json!({"SecretId": name, "SecretString": value}),
        )
        .await;
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
    let endpoint = moto.endpoint();
    ServerProcess::spawn(
        &dir.join("manifest.toml"),
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
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
        "keys = { source = \"secretsmanager\", secret_id = \"tokenhook/keyset\", cache_ttl = \"1s\", max_stale = \"4s\" }\nhook_secret_ttl = \"1s\"",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_hook_secrets_from_secrets_manager_rotate_and_survive_an_outage() {
    let Some(moto) = Moto::start() else { return };
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

    write_manifest_in(dir.path(), &aws_manifest(HOOKS));
    let server = spawn_server(&moto, dir.path()).unwrap();
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
    assert!(
        published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != kid_a.as_str()),
        "retired keys are not published"
    );
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

    // The emulator goes away: cached keys keep serving up to max_stale (4 s), then 503.
    drop(moto.process);
    let (status, body) = server.app_token().await;
    assert_eq!(
        status, 200,
        "cached keys serve while the store is down: {body}"
    );
    eventually("stale keys refused", Duration::from_secs(30), async || {
        let (status, body) = server.app_token().await;
        status == 503 && body["error"] == "temporarily_unavailable"
    })
    .await;
}
