//! Capture and replay as processes: a running server captures a hook's
//! events from real token requests (secrets and configured fields removed),
//! then `tokenhook replay` runs them through the same module (no change) and
//! through other modules (changes counted by kind).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenhook_tests::{
    CLIENT_SECRET, ServerProcess, hook_wasm, hooks_dir, hostile, manifest, tokenhook_bin,
    write_manifest_in,
};

/// The HMAC key the signed-claim hook reads; it must never be captured.
const SIGNING_KEY: &str = "capture-test-signing-key-4242";

fn hooks() -> String {
    r#"
[[hooks]]
name = "tenant"
module = "{hooks}/tenant_claims.wasm"
capabilities = { claims = ["https://claims.test/"], scopes = ["write:*"] }
config = { namespace = "https://claims.test/" }
capture = { sample = 1.0, file = "captures/tenant.jsonl", omit = ["/context/user_agent"] }

[[hooks]]
name = "signed"
module = "{hooks}/signed_claim.wasm"
capabilities = { claims = ["https://claims.test/client_sig"] }
config = { claim = "https://claims.test/client_sig" }
secrets = { signing_key = { file = "signing-key.txt" } }
capture = { sample = 1.0, file = "captures/signed.jsonl", omit = ["/client/metadata/tenant"] }
"#
    .to_string()
}

async fn request(server: &ServerProcess, client: &str, form: &[(&str, &str)]) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/oauth/token", server.addr))
        .basic_auth(client, Some(CLIENT_SECRET))
        .header("user-agent", "replay-test-agent/1.0")
        .form(form)
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Wait for the writer thread to append `n` lines.
fn lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("capture lines are JSON"))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            assert_eq!(lines.len(), n, "{}", path.display());
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn replay(args: &[&str]) -> Value {
    let out = Command::new(tokenhook_bin())
        .arg("replay")
        .args(args)
        .arg("--json")
        .output()
        .expect("run tokenhook replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("replay --json prints JSON")
}

fn wasm(name: &str) -> PathBuf {
    hooks_dir().join(format!("{name}.wasm"))
}

#[tokio::test(flavor = "multi_thread")]
async fn captured_events_replay_through_the_same_and_other_modules() {
    hook_wasm("tenant_claims");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("signing-key.txt"), SIGNING_KEY).unwrap();
    let path = write_manifest_in(dir.path(), &manifest(&hooks()));
    let server = ServerProcess::spawn(&path, &[]).unwrap();
    let api = [
        ("grant_type", "client_credentials"),
        ("audience", "https://api.test"),
    ];
    let read_only = [
        ("grant_type", "client_credentials"),
        ("audience", "https://api.test"),
        ("scope", "read:a"),
    ];
    let other = [
        ("grant_type", "client_credentials"),
        ("audience", "https://other.test"),
    ];
    // 3 events for app (2 with write:a), 2 for ops.
    for (client, form) in [
        ("app", &api[..]),
        ("ops", &other[..]),
        ("app", &read_only[..]),
        ("app", &api[..]),
        ("ops", &other[..]),
    ] {
        request(&server, client, form).await;
    }
    let tenant_file = dir.path().join("captures/tenant.jsonl");
    let signed_file = dir.path().join("captures/signed.jsonl");
    let tenant = lines(&tenant_file, 5);
    let signed = lines(&signed_file, 5);

    // What a line holds: the event without secrets or omitted fields, the
    // outcome, the usage, the rules it ran under.
    let first = &tenant[0];
    assert_eq!(first["hook"], "tenant");
    assert_eq!(first["event"]["client"]["id"], "app");
    assert_eq!(
        first["event"]["config"]["namespace"],
        "https://claims.test/"
    );
    assert!(
        first["event"]["context"].get("user_agent").is_none(),
        "{first}"
    );
    assert!(first["event"].get("secrets").is_none(), "{first}");
    assert_eq!(first["outcome"]["result"], "applied");
    assert_eq!(
        first["outcome"]["claims"]["https://claims.test/tenant"],
        "acme"
    );
    assert_eq!(first["rules"]["capabilities"]["scopes"][0], "write:*");
    assert!(first["usage"]["fuel_used"].as_u64().unwrap() > 0);
    assert!(
        signed
            .iter()
            .all(|l| l["event"]["client"]["metadata"].get("tenant").is_none()),
        "omitted"
    );
    // The signing key never reaches a capture file, and files are 0600.
    let raw = std::fs::read_to_string(&signed_file).unwrap();
    assert!(!raw.contains(SIGNING_KEY), "a hook secret was captured");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&signed_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(server);

    let events = tenant_file.to_str().unwrap();
    // The same module against what was captured: nothing changes.
    let same = replay(&[
        "--events",
        events,
        "--hook",
        wasm("tenant_claims").to_str().unwrap(),
    ]);
    assert_eq!(same["events"], 5, "{same:#}");
    assert_eq!(same["changed"], 0, "{same:#}");
    assert_eq!(same["unchanged"], 5);
    assert_eq!(same["baseline"], "captured");
    assert!(same["usage"]["fuel_mean_new"].as_u64().unwrap() > 0);
    // ... and against itself.
    let itself = replay(&[
        "--events",
        events,
        "--hook",
        wasm("tenant_claims").to_str().unwrap(),
        "--against",
        wasm("tenant_claims").to_str().unwrap(),
    ]);
    assert_eq!(itself["changed"], 0, "{itself:#}");

    // deny-list configured to refuse ops, in tenant's place: ops events now
    // deny; app events lose tenant's claims, and the two with write:a keep it.
    let deny = replay(&[
        "--events",
        events,
        "--hook",
        wasm("deny_list").to_str().unwrap(),
        "--config",
        r#"{"clients": ["ops"]}"#,
    ]);
    assert_eq!(deny["events"], 5, "{deny:#}");
    assert_eq!(deny["changed"], 5, "{deny:#}");
    assert_eq!(deny["denies"]["new"], 2, "{deny:#}");
    assert_eq!(deny["denies"]["gone"], 0);
    assert_eq!(deny["claims_changed"], 3, "{deny:#}");
    assert_eq!(deny["scopes_changed"], 2, "{deny:#}");
    assert_eq!(deny["failures"]["new"], 0);
    let examples = deny["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 5);
    assert!(
        examples[1]["differences"][0]
            .as_str()
            .unwrap()
            .starts_with("now denies: access_denied"),
        "{examples:#?}"
    );
    assert!(
        examples[0]["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "claim https://claims.test/tenant: \"acme\" → (absent)"),
        "{examples:#?}"
    );

    // A module that loops: every event now fails, by kind.
    let looping = replay(&[
        "--events",
        events,
        "--hook",
        hostile("infinite_loop").to_str().unwrap(),
        "--examples",
        "1",
    ]);
    assert_eq!(looping["failures"]["new"], 5, "{looping:#}");
    assert_eq!(looping["examples"].as_array().unwrap().len(), 1);

    // The readable report says the same.
    let out = Command::new(tokenhook_bin())
        .args(["replay", "--events", events, "--hook"])
        .arg(wasm("deny_list"))
        .args(["--config", r#"{"clients": ["ops"]}"#])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "replayed 5 events",
        "unchanged 0 · changed 5",
        "scopes differ: 2 · claims differ: 3",
        "denies: 2 new, 0 gone, 0 changed",
        "first 5 differences:",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

/// A capture file that cannot be opened refuses the manifest (fail closed at
/// load, not silently at request time).
#[test]
fn an_unwritable_capture_file_is_a_manifest_error() {
    hook_wasm("tenant_claims");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "a file, not a directory").unwrap();
    let path = write_manifest_in(
        dir.path(),
        &manifest(
            r#"
[[hooks]]
name = "t"
module = "{hooks}/tenant_claims.wasm"
capture = { sample = 0.5, file = "blocker/x.jsonl" }
"#,
        ),
    );
    let err = match ServerProcess::spawn(&path, &[]) {
        Ok(_) => panic!("loaded with an unwritable capture file"),
        Err(err) => err,
    };
    assert!(err.contains("hooks[0].capture.file"), "{err}");
}
