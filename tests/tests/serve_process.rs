//! `tokenhook serve` as a process: the banner, structured JSON logs that
//! explain each hook (changes by claim name, never values; failures by kind
//! and cause), SIGHUP reload, clean shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenhook_tests::{
    CLIENT_SECRET, ServerProcess, TENANT_HOOK, manifest, tenant_and_broken_hooks,
};

#[tokio::test(flavor = "multi_thread")]
async fn logs_explain_every_hook_and_sighup_reloads() {
    let dir = tempfile::tempdir().unwrap();
    tenant_and_broken_hooks(dir.path());
    let hooks = format!(
        r#"{TENANT_HOOK}
[[hooks]]
name = "broken"
module = "{{dir}}/broken.wat"
on_error = "skip"
capabilities = {{ claims = ["https://claims.test/"] }}
"#
    );
    let manifest = tokenhook_tests::write_manifest_in(dir.path(), &manifest(&hooks));
    let mut server = ServerProcess::spawn(&manifest, &[]).unwrap();
    let (status, body) = server.app_token().await;
    assert_eq!(status, 200, "{body}");

    // Logs arrive on stderr line by line; collect them on a thread.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = BufReader::new(server.child.0.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let wait_for = |needle: &str, log: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                let hit = line.contains(needle);
                log.push_str(&line);
                log.push('\n');
                if hit {
                    return;
                }
            }
        }
        panic!("no log line with `{needle}` in:\n{log}");
    };
    wait_for("token issued", &mut log);

    // Reload on SIGHUP, without any file change.
    server.signal("-HUP");
    wait_for("manifest reloaded", &mut log);
    assert_eq!(server.app_token().await.0, 200);

    server.signal("-TERM");
    let exit = server.child.0.wait().unwrap();
    assert!(exit.success(), "clean shutdown on SIGTERM: {exit:?}");
    reader.join().unwrap();
    log.extend(rx.try_iter().map(|l| l + "\n"));

    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "logs are JSON lines: {log}");
    let find = |message: &'static str| {
        lines
            .iter()
            .filter(move |l| l["fields"]["message"] == message)
    };
    let applied = find("hook applied")
        .next()
        .unwrap_or_else(|| panic!("no `hook applied` in {log}"));
    assert_eq!(applied["fields"]["hook"], "tenant");
    assert!(
        applied["fields"]["claims_set"]
            .as_str()
            .unwrap()
            .contains("https://claims.test/tenant")
    );
    assert!(
        applied["fields"]["scopes_removed"]
            .as_str()
            .unwrap()
            .contains("write:a")
    );
    assert!(applied["fields"]["fuel_used"].as_u64().unwrap() > 0);
    assert!(applied["fields"]["duration_us"].is_u64());
    let failed = find("hook failed; its changes were skipped")
        .next()
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(failed["fields"]["hook"], "broken");
    assert_eq!(failed["fields"]["kind"], "policy_violation");
    assert!(
        failed["fields"]["cause"]
            .as_str()
            .unwrap()
            .contains("reserved claim")
    );
    assert!(
        find("manifest reloaded").any(|l| l["fields"]["reason"] == "SIGHUP"),
        "{log}"
    );
    // Claim values are never logged, nor the client secret.
    assert!(
        !log.contains("acme") && !log.contains("root"),
        "values leaked into logs"
    );
    assert!(!log.contains(CLIENT_SECRET));
}
