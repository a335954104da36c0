//! SIGHUP reloads the manifest. The change is made invisible to the file
//! watcher (same size, same modification time), so only the signal can
//! apply it. The server runs inside this test process, so the signal goes to
//! our own pid; this test installs its own SIGHUP listener first, so the
//! signal can never take the default action (terminate). It lives in its own
//! test binary so that no other test's server sees the signal. The reload's
//! outcome is read from the server (`GET /status/reload`), so "not reloaded
//! yet" is checked as a generation, not inferred from a wait.

mod support;

use std::time::Duration;

use support::*;
use tokenhook_tests::get_json;

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_change_the_file_watcher_cannot_see() {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP listener");
    let clients = Clients::new();
    let server = clients.start("", &[]);
    assert_eq!(token(&server, &clients.app, &[]).await.status, 200);

    // Rotate app's secret: a `sha256:` hash of the same length, so the file
    // keeps its size; the new file gets the old modification time.
    let mut rotated = clients.clone();
    let (secret, hash) = tokenhook::clients::new_secret();
    rotated.app.secret = secret;
    rotated.app.hash = hash;
    let path = &server.manifest_path;
    let before = std::fs::metadata(path).unwrap();
    let text = rotated
        .manifest("")
        .replace("{dir}", &server.dir.path().display().to_string());
    assert_eq!(text.len() as u64, before.len(), "same size");
    let tmp = server.dir.path().join("manifest.toml.silent");
    std::fs::write(&tmp, &text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(before.modified().unwrap())
        .unwrap();
    std::fs::rename(&tmp, path).unwrap();
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (before.len(), before.modified().unwrap()),
        "the watcher's view of the file is unchanged"
    );
    assert_eq!(
        token(&server, &clients.app, &[]).await.status,
        200,
        "not reloaded yet"
    );
    let before = get_json(&server, "/status/reload").await;
    assert_eq!(before["generation"], 1, "{before}");

    // The server's watcher installs its SIGHUP handler when it first runs:
    // a signal that came before it is not a reload, so signal until one is.
    let pid = std::process::id().to_string();
    let mut status = before.clone();
    eventually("SIGHUP reloads", Duration::from_secs(10), async || {
        let kill = std::process::Command::new("kill")
            .args(["-s", "HUP", &pid])
            .status()
            .expect("run kill");
        assert!(kill.success());
        hup.recv().await;
        status = get_json(&server, "/status/reload").await;
        status["generation"] != before["generation"] || status["failures"] != before["failures"]
    })
    .await;
    assert_eq!(status["failures"], 0, "refused: {status}");
    assert_eq!(
        token(&server, &rotated.app, &[]).await.status,
        200,
        "the rotated secret applies"
    );
    assert_oauth_error(
        &token(&server, &clients.app, &[]).await,
        401,
        "invalid_client",
    );
}
