//! Faults the issuer must ride out, each with the behaviour docs/deploy.md
//! states: Secrets Manager slow or throttling (the cached key set keeps
//! signing up to `keys.max_stale`, then `503 temporarily_unavailable` until a
//! refresh succeeds), and a manifest (with a pinned hook module) replaced
//! again and again while reloads run (every token comes from one whole
//! configuration, and the last one written wins).
//!
//! Secrets Manager is moto on 127.0.0.1, reached by the real binary through
//! [`FaultProxy`], a small TCP proxy of this file that forwards, delays every
//! response, or answers `ThrottlingException` itself. Every wait is a bounded
//! poll on an outcome; no assertion is about how long something took.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokenhook::keys::{StoredKey, StoredKeySet, generate_pkcs8_pem};
use tokenhook_tests::{
    MotoServer, ServerProcess, TestServer, app_token, collect_stderr, fixed_output_hook, logged,
    manifest, verified_claims, write_manifest_in,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What [`FaultProxy`] does with the next request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Forward it and pass the answer straight back.
    Forward,
    /// Forward it, then hold the answer this long before passing it back.
    Slow(Duration),
    /// Do not forward it: answer as Secrets Manager does when it throttles.
    Throttle,
}

/// A TCP proxy on 127.0.0.1 in front of an HTTP/1.1 server (moto). One
/// request per connection (both sides are told `Connection: close`), so
/// the mode applies to every request from the moment it is set, whatever
/// connections the SDK keeps pooled.
struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    /// Requests answered in a mode other than [`Mode::Forward`].
    faulted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    async fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let mode = Arc::new(Mutex::new(Mode::Forward));
        let faulted = Arc::new(AtomicUsize::new(0));
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
        let (m, f) = (mode.clone(), faulted.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, f) = (m.clone(), f.clone());
                // A broken connection fails that request only: the SDK sees it as such.
                tokio::spawn(async move {
                    let _ = relay(client, upstream, m, f).await;
                });
            }
        });
        FaultProxy {
            addr,
            mode,
            faulted,
            task,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn faulted(&self) -> usize {
        self.faulted.load(Ordering::SeqCst)
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

const THROTTLED: &str = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;

/// One request from `client`: read it whole, then answer as the mode says.
async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    faulted: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let request = read_request(&mut client).await?;
    let mode = *mode.lock().unwrap();
    if mode != Mode::Forward {
        faulted.fetch_add(1, Ordering::SeqCst);
    }
    let answer = match mode {
        Mode::Throttle => format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
             x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{THROTTLED}",
            THROTTLED.len()
        )
        .into_bytes(),
        Mode::Forward | Mode::Slow(_) => {
            let mut server = TcpStream::connect(upstream).await?;
            server.write_all(&connection_close(&request)).await?;
            let mut answer = Vec::new();
            server.read_to_end(&mut answer).await?;
            if let Mode::Slow(delay) = mode {
                tokio::time::sleep(delay).await;
            }
            connection_close(&answer)
        }
    };
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// Read one HTTP/1.1 request: the head, then `Content-Length` bytes of body.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = head_end(&buf) {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Ok(buf);
            }
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// `message` (a request or a response) with `Connection: close` in place of
/// any `Connection` header, so neither side reuses the connection.
fn connection_close(message: &[u8]) -> Vec<u8> {
    let Some(end) = head_end(message) else {
        return message.to_vec();
    };
    let head = String::from_utf8_lossy(&message[..end]);
    let mut out: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    out.push_str("\r\nConnection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&message[end + 4..]);
    out
}

/// Poll `check` every 200 ms until it holds; fail after `within`.
async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const STALE: &str = "key set refresh failed; serving the cached key set";
const TOO_OLD: &str =
    "key set refresh failed and the cached key set is too old to serve; tokens cannot be signed";

/// The documented rule, whatever the store does instead of answering: with
/// `cache_ttl` 1 s and `max_stale` 10 s, a running server keeps signing with
/// its cached set while the store misbehaves, then refuses with `503
/// temporarily_unavailable` once the set is older than `max_stale`, and
/// signs again once the store answers.
async fn store_fault_is_ridden_out_then_fails_closed(fault: Mode) -> Arc<Mutex<String>> {
    let moto = MotoServer::start();
    let pem = generate_pkcs8_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    let set = serde_json::to_string(&StoredKeySet {
        active: StoredKey {
            kid: None,
            alg: "ES256".into(),
            private_key_pem: pem,
        },
        next: None,
        retired: vec![],
    })
    .unwrap();
    aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await)
        .create_secret()
        .name("tokenhook/keyset")
        .secret_string(set)
        .send()
        .await
        .expect("CreateSecret in moto");

    let proxy = FaultProxy::start(moto.port).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest_in(
        dir.path(),
        &manifest("").replace(
            r#"keys = { source = "file", path = "{dir}/key.pem" }"#,
            r#"keys = { source = "secretsmanager", secret_id = "tokenhook/keyset", cache_ttl = "1s", max_stale = "10s" }"#,
        ),
    );
    // The server reaches "Secrets Manager" only through the proxy.
    let mut env = moto.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), proxy.endpoint()));
    let manifest_path = dir.path().join("manifest.toml");
    // Blocking (it reads the banner) while this runtime serves the proxy.
    let mut server = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ServerProcess::spawn(&manifest_path, &env)
    })
    .await
    .unwrap()
    .expect("the server starts with the key set read through the proxy");
    let log = collect_stderr(&mut server);
    let (status, body) = server.app_token().await;
    assert_eq!(status, 200, "{body}");

    // The store misbehaves: tokens keep coming from the cached set. Asked
    // for 4 s, well inside max_stale (10 s) of the last refresh, which
    // happened at most about one cache_ttl before the fault began.
    proxy.set(fault);
    let fault_began = Instant::now();
    let mut served = 0;
    while fault_began.elapsed() < Duration::from_secs(4) {
        let (status, body) = server.app_token().await;
        assert_eq!(
            status, 200,
            "the cached key set serves during {fault:?}: {body}"
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served > 1);
    // Requests past cache_ttl refresh, and did meet the fault.
    assert!(
        proxy.faulted() > 0,
        "no refresh reached the store during {fault:?}"
    );

    // Beyond max_stale with no successful refresh: fail closed, clearly.
    eventually(
        "503 temporarily_unavailable beyond max_stale",
        Duration::from_secs(60),
        async || {
            let (status, body) = server.app_token().await;
            assert!(
                status == 200 || status == 503,
                "only the cached set or a clear refusal: {status} {body}"
            );
            status == 503 && body["error"] == "temporarily_unavailable"
        },
    )
    .await;
    let stale = logged(&log, STALE);
    assert!(
        !stale.is_empty(),
        "a warning while the cached set served:\n{}",
        log.lock().unwrap()
    );
    assert_eq!(stale[0]["level"], "WARN");
    // The refresh after the set became too old logs an error (a 503 may come
    // first, from a request between retries).
    eventually(
        "an error logged beyond max_stale",
        Duration::from_secs(30),
        async || {
            let (status, _) = server.app_token().await;
            assert_eq!(status, 503, "still failing closed");
            !logged(&log, TOO_OLD).is_empty()
        },
    )
    .await;

    // The store answers again: the next refresh succeeds and tokens resume.
    proxy.set(Mode::Forward);
    eventually(
        "tokens resume once the store answers",
        Duration::from_secs(60),
        async || server.app_token().await.0 == 200,
    )
    .await;
    let (status, body) = server.app_token().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !log.lock().unwrap().contains("PRIVATE KEY"),
        "no key material in logs"
    );
    log
}

/// Secrets Manager slow: every answer held 20 s, longer than the SDK's
/// operation timeout (5 s), so each refresh fails, slowly. Requests never
/// wait for it beyond the refresh wait while the cached set may serve.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_secrets_manager_is_ridden_out_with_the_cached_key_set_then_fails_closed() {
    let log =
        store_fault_is_ridden_out_then_fails_closed(Mode::Slow(Duration::from_secs(20))).await;
    let stale = logged(&log, STALE);
    assert!(
        stale[0]["fields"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("tokenhook/keyset"),
        "the cause names the secret: {}",
        stale[0]
    );
}

/// Secrets Manager throttling (400 `ThrottlingException`, which the SDK
/// retries, then gives up on): the same rule, and the log says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttling_secrets_manager_is_ridden_out_with_the_cached_key_set_then_fails_closed() {
    let log = store_fault_is_ridden_out_then_fails_closed(Mode::Throttle).await;
    let stale = logged(&log, STALE);
    let error = stale[0]["fields"]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("tokenhook/keyset") && error.contains("ThrottlingException"),
        "the cause names the secret and the throttling: {}",
        stale[0]
    );
}

const NS: &str = "https://claims.test/";

/// Generation `g` of the configuration: a pinned hook module setting
/// `version = g`, and a manifest whose token lifetime is `600 + g` seconds.
/// A token whose `expires_in` and `version` disagree came from a mix.
fn generation(g: u64) -> (String, String) {
    let module = fixed_output_hook(
        &json!({"commands": [{"set_claim": {"name": format!("{NS}version"), "value": g}}]})
            .to_string(),
    );
    let hook = format!(
        "[[hooks]]\nname = \"versioned\"\nmodule = \"{{dir}}/versioned.wat\"\n\
         capabilities = {{ claims = [\"{NS}version\"] }}\nsha256 = \"{}\"\n",
        tokenhook::engine::sha256_hex(module.as_bytes())
    );
    let text = manifest(&hook).replace(
        "token_lifetime = \"15m\"",
        &format!("token_lifetime = \"{}s\"", 600 + g),
    );
    (text, module)
}

/// The generation a reply's token came from, checked whole: its lifetime
/// (from the manifest) and its `version` claim (from the module) agree.
async fn served_generation(server: &TestServer) -> u64 {
    let reply = app_token(server, &[]).await;
    assert_eq!(reply.status, 200, "a valid request fails: {}", reply.body);
    let claims = verified_claims(server, &reply, "https://api.test").await;
    let version = claims[format!("{NS}version")]
        .as_u64()
        .unwrap_or_else(|| panic!("no version claim: {claims}"));
    let lifetime = reply.body["expires_in"].as_u64().expect("expires_in");
    assert_eq!(
        lifetime,
        600 + version,
        "a mix: the manifest of one generation with the module of another"
    );
    version
}

/// The manifest and its pinned hook module rewritten 16 times while reloads
/// run (the watcher, and SIGHUP every 20 ms): the module in place (so a load
/// may read it half-written) and the manifest by rename. Every token comes
/// from one whole generation, generations never go back, and the server
/// ends on the last one written, found by the watcher alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_replaced_while_it_loads_serves_old_or_new_wholly_and_ends_on_the_last() {
    use tokio::signal::unix::{SignalKind, signal};
    // Our own SIGHUP listener first: SIGHUPs to this process then never
    // terminate it, even before the server's watcher has installed its own.
    let _hup = signal(SignalKind::hangup()).expect("SIGHUP listener");

    const LAST: u64 = 16;
    let (text, module) = generation(0);
    let server = Arc::new(
        TestServer::start_with_files(&text, &[("versioned.wat", &module)]).expect("server starts"),
    );
    assert_eq!(served_generation(&server).await, 0);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = tokio::spawn({
        let (server, stop) = (server.clone(), stop.clone());
        async move {
            let mut seen = vec![0];
            while !stop.load(Ordering::SeqCst) {
                let g = served_generation(&server).await;
                assert!(
                    g >= *seen.last().unwrap(),
                    "went back to generation {g}: {seen:?}"
                );
                if g != *seen.last().unwrap() {
                    seen.push(g);
                }
            }
            seen
        }
    });
    let hup_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hupper = std::thread::spawn({
        let hup_stop = hup_stop.clone();
        move || {
            let pid = std::process::id().to_string();
            while !hup_stop.load(Ordering::SeqCst) {
                let status = std::process::Command::new("kill")
                    .args(["-HUP", &pid])
                    .status()
                    .expect("kill");
                assert!(status.success());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });

    let module_path = server.dir.path().join("versioned.wat");
    for g in 1..=LAST {
        let (text, module) = generation(g);
        std::fs::write(&module_path, &module).expect("rewrite module in place");
        // Uneven gaps, so writes land at every point of a load.
        tokio::time::sleep(Duration::from_millis(g * 37 % 90)).await;
        server.rewrite_manifest(&text);
        if g % 4 == 0 && g < LAST {
            // Some generations are waited for: reloads do happen throughout.
            eventually(
                &format!("generation {g} serves"),
                Duration::from_secs(10),
                async || served_generation(&server).await == g,
            )
            .await;
        } else {
            tokio::time::sleep(Duration::from_millis(g * 53 % 150)).await;
        }
    }
    hup_stop.store(true, Ordering::SeqCst);
    hupper.join().expect("SIGHUP sender");
    // The watcher alone (it polls every second) must find the last one.
    eventually(
        "the last generation written serves",
        Duration::from_secs(10),
        async || served_generation(&server).await == LAST,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let seen = reader
        .await
        .expect("every token came from one whole generation");
    assert_eq!(seen.last(), Some(&LAST), "{seen:?}");
}
