//! `tokenhook serve --playground` in a real headless Chromium (Debian's
//! `chromium`, driven through `chromedriver` over WebDriver on 127.0.0.1):
//! pick a client and an API, edit a hook's config, run the chain, and read
//! the diff and the final claims off the page. Also the page's guards:
//! loopback listen address, loopback `Host`, same origin, JSON only.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokenhook_tests::{
    ChildGroup, free_port, three_hook_manifest, tokenhook_bin, wait_for_port, workspace_root,
};

/// `tokenhook serve` with `args`; the address from its banner, or its stderr
/// and exit status when it does not start.
fn serve(manifest: &Path, args: &[&str]) -> Result<(ChildGroup, String), (Option<i32>, String)> {
    use std::io::Read;
    let mut command = Command::new(tokenhook_bin());
    command
        .args(["serve", "--manifest"])
        .arg(manifest)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGroup::spawn(&mut command);
    let mut banner = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut banner)
        .unwrap();
    match banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
    {
        Some(addr) => Ok((child, addr.to_string())),
        None => {
            let status = child.0.wait().unwrap();
            let mut stderr = String::new();
            let _ = child.0.stderr.as_mut().unwrap().read_to_string(&mut stderr);
            Err((status.code(), stderr))
        }
    }
}

/// A minimal W3C WebDriver client over reqwest: what this test needs.
struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: ChildGroup,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = ChildGroup::spawn(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        assert!(
            wait_for_port(port, Duration::from_secs(20)),
            "chromedriver did not listen (tests/run.sh installs chromium-driver)"
        );
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let resp: Value = http
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"));
        Browser {
            http,
            base: format!("http://127.0.0.1:{port}/session/{session}"),
            _driver: driver,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp: Value = request.send().await.unwrap().json().await.unwrap();
        if resp["value"].get("error").is_some_and(|e| e.is_string()) {
            panic!("WebDriver {path}: {}", resp["value"]);
        }
        resp["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Run `script` (a function body) in the page.
    async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Wait until `script` returns something other than null/false.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.script(script, json!([])).await;
            if !value.is_null() && value != false {
                return value;
            }
            if Instant::now() > deadline {
                let page = self
                    .script("return document.body.innerText", json!([]))
                    .await;
                panic!("waited for {what}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element `{css}`: {found}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clear a field and type `text` into it, as a person would.
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    async fn quit(&self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_edits_a_hook_config_runs_the_chain_and_reads_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = three_hook_manifest(dir.path());
    let (_server, addr) = serve(&manifest, &["--listen", "127.0.0.1:0", "--playground"])
        .unwrap_or_else(|e| panic!("server did not start: {e:?}"));
    let browser = Browser::start().await;
    browser.goto(&format!("http://{addr}/playground")).await;
    browser
        .wait_for(
            "the manifest's clients",
            "return document.querySelectorAll('#client option').length > 0",
        )
        .await;

    // Pick client and API, as a person would.
    browser.click("#client option[value='app']").await;
    browser.click("#api option[value='https://api.test']").await;
    let hint = browser.text("#scope-hint").await;
    assert!(hint.contains("read:a write:a read:b"), "{hint}");
    browser.type_into("#scope", "read:a read:b").await;

    // A config that is not JSON is flagged on the field and not sent.
    let tenant_config = "textarea[data-hook='tenant']";
    browser.type_into(tenant_config, "{\"namespace\": ").await;
    browser.click("#run").await;
    let error = browser.text("#error").await;
    assert!(error.contains("not valid JSON"), "{error}");
    let field_error = browser
        .script(
            "return document.querySelector(arguments[0]).getAttribute('aria-invalid')",
            json!([tenant_config]),
        )
        .await;
    assert_eq!(field_error, "true");

    // Edit the tenant hook's namespace and run.
    browser
        .type_into(
            tenant_config,
            "{\"namespace\": \"https://claims.test/edited/\"}",
        )
        .await;
    browser.click("#run").await;
    let claims = browser
        .wait_for(
            "the final claims",
            "const c = document.getElementById('final-claims'); return c && c.textContent",
        )
        .await;
    let claims: Value = serde_json::from_str(claims.as_str().unwrap()).unwrap();
    assert_eq!(
        claims["https://claims.test/edited/tenant"], "acme",
        "{claims}"
    );
    assert_eq!(
        claims["https://claims.test/edited/plan"], "free",
        "{claims}"
    );
    assert!(
        claims.get("https://claims.test/tenant").is_none(),
        "{claims}"
    );
    assert_eq!(claims["sub"], "app");
    assert_eq!(claims["aud"], "https://api.test");
    assert_eq!(claims["scope"], "read:a read:b");
    assert_eq!(browser.text("#final-scope").await, "read:a read:b");

    // Each hook's step: the diff (before → after), badges, usage.
    let steps = browser
        .script(
            "return [...document.querySelectorAll('article.step')].map(a => ({
                label: a.getAttribute('aria-label'),
                rows: [...a.querySelectorAll('tbody tr')].map(r => [...r.children].map(c => c.textContent)),
                text: a.innerText }))",
            json!([]),
        )
        .await;
    let steps = steps.as_array().unwrap();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(steps[0]["label"], "tenant: applied");
    let rows = &steps[0]["rows"];
    assert!(
        rows.as_array().unwrap().contains(&json!([
            "claim set",
            "https://claims.test/edited/tenant",
            "—",
            "\"acme\""
        ])),
        "{rows}"
    );
    let tenant = steps[0]["text"].as_str().unwrap();
    assert!(tenant.contains("edited config"), "{tenant}");
    assert!(tenant.contains("Usage: fuel"), "{tenant}");
    assert_eq!(steps[1]["label"], "broken: failed");
    let broken = steps[1]["text"].as_str().unwrap();
    assert!(broken.contains("policy_violation"), "{broken}");
    assert!(broken.contains("changes were dropped"), "{broken}");
    assert_eq!(steps[2]["label"], "other-api-only: skipped");
    assert_eq!(browser.text("#error").await, "");

    let shot = workspace_root().join("target/playground.png");
    browser.screenshot(&shot).await;

    // A scope outside the grant: the refusal is shown as an error.
    browser.type_into("#scope", "admin:a").await;
    browser.click("#run").await;
    let error = browser
        .wait_for(
            "the refusal",
            "const e = document.getElementById('error'); return e.textContent.includes('Refused') && e.innerText",
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(error.contains("invalid_scope"), "{error}");
    assert!(error.contains("admin:a"), "{error}");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_playground_is_loopback_only_and_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = three_hook_manifest(dir.path());

    // A non-loopback listen address is refused without --playground-force.
    let (code, stderr) = serve(&manifest, &["--listen", "0.0.0.0:0", "--playground"])
        .map(|_| ())
        .expect_err("must refuse a non-loopback address");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--playground-force"), "{stderr}");

    // Without --playground there is no page.
    let http = reqwest::Client::new();
    {
        let (_server, addr) = serve(&manifest, &["--listen", "127.0.0.1:0"]).unwrap();
        let resp = http
            .get(format!("http://{addr}/playground"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }

    let (_server, addr) = serve(&manifest, &["--listen", "127.0.0.1:0", "--playground"]).unwrap();
    let port = addr.rsplit(':').next().unwrap();
    let run = json!({"client_id": "app", "audience": "https://api.test"});
    // The page: a CSP that allows its one script by hash and nothing remote.
    let resp = http
        .get(format!("http://{addr}/playground"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    // A loopback run works; its answer is the explanation.
    let resp = http
        .post(format!("http://{addr}/playground/api/run"))
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["hooks"][0]["hook"], "tenant");
    assert_eq!(body["claims"]["https://claims.test/tenant"], "acme");

    // DNS rebinding: a request for another host name is refused.
    let resp = http
        .post(format!("http://{addr}/playground/api/run"))
        .header("host", format!("rebind.example:{port}"))
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Another origin (a page elsewhere in the same browser) is refused.
    let resp = http
        .post(format!("http://{addr}/playground/api/run"))
        .header("origin", "http://evil.example")
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A form or text/plain post (no CORS preflight) is refused.
    let resp = http
        .post(format!("http://{addr}/playground/api/run"))
        .header("content-type", "text/plain")
        .body(run.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Unknown hook in the overrides: the explain error, as JSON.
    let resp = http
        .post(format!("http://{addr}/playground/api/run"))
        .json(&json!({"client_id": "app", "audience": "https://api.test",
                      "config_overrides": {"nope": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}
