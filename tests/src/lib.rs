//! Shared helpers for the end-to-end tests: real hook modules built from the
//! workspace, a real server on an ephemeral 127.0.0.1 port, a real HTTP
//! client, and token verification with an independent JOSE implementation
//! (jwt-simple), against the server's own JWKS endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

pub mod feed_verifier;
pub mod jose;
pub mod lambda_emulator;
pub mod wrk;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Where `cargo hooks` puts the wasm modules.
pub fn hooks_dir() -> PathBuf {
    workspace_root().join("target/hooks/wasm32-unknown-unknown/hook")
}

/// The wasm module of a hook crate (e.g. `tenant_claims`), built from source
/// with `cargo hooks` the first time any test of this process asks.
pub fn hook_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .arg("hooks")
            .current_dir(workspace_root())
            .status()
            .expect("run `cargo hooks`");
        assert!(status.success(), "`cargo hooks` failed");
    });
    let path = hooks_dir().join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} was not built by `cargo hooks`",
        path.display()
    );
    path
}

/// A hostile module from `tests/hostile/` (wat text).
pub fn hostile(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("tests/hostile")
        .join(format!("{name}.wat"));
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// A tokenhook server running in this process on an ephemeral port, serving a
/// manifest written into its own temporary directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub manifest_path: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TestServer {
    /// Tests drop servers from async code; shut the runtime down without blocking.
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl TestServer {
    /// Start a server on `manifest` (TOML text). `{dir}` in the text is
    /// replaced by the server's temporary directory, `{hooks}` by the directory
    /// of the built hook modules.
    pub fn start(manifest: &str) -> Result<TestServer, String> {
        Self::start_with_files(manifest, &[])
    }

    /// Like [`TestServer::start`], first writing `files` (name, contents)
    /// into the server's directory, e.g. wat hooks or secret files.
    pub fn start_with_files(manifest: &str, files: &[(&str, &str)]) -> Result<TestServer, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write file");
        }
        let manifest_path = dir.path().join("manifest.toml");
        std::fs::write(&manifest_path, expand(manifest, dir.path())).expect("write manifest");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let services = tokenhook::pipeline::Services::local();
        let path = manifest_path.clone();
        // On a thread of its own: callers may be inside another runtime.
        let start = async move {
            let issuer = tokenhook::pipeline::Issuer::load(&path, &services)
                .await
                .map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let current = tokenhook::reload::CurrentIssuer::new(issuer);
            tokio::spawn(tokenhook::doors::server::serve(
                listener, path, services, current,
            ));
            Ok::<_, String>(addr)
        };
        let started = std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(start))
                .join()
                .expect("server start")
        });
        let addr = match started {
            Ok(addr) => addr,
            Err(err) => {
                // Callers may be async: shut down without blocking.
                runtime.shutdown_background();
                return Err(err);
            }
        };
        Ok(TestServer {
            addr,
            dir,
            manifest_path,
            runtime: Some(runtime),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Replace the manifest on disk (the server notices and reloads).
    pub fn rewrite_manifest(&self, manifest: &str) {
        let tmp = self.dir.path().join("manifest.toml.new");
        std::fs::write(&tmp, expand(manifest, self.dir.path())).expect("write manifest");
        std::fs::rename(&tmp, &self.manifest_path).expect("replace manifest");
    }
}

fn expand(manifest: &str, dir: &Path) -> String {
    manifest
        .replace("{dir}", &dir.display().to_string())
        .replace("{hooks}", &hooks_dir().display().to_string())
}

/// A token request's HTTP outcome.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// POST a form to the token endpoint, optionally with Basic credentials.
pub async fn post_token(
    server: &TestServer,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> Reply {
    let client = reqwest::Client::new();
    let mut req = client.post(server.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.expect("token request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get_json(server: &TestServer, path: &str) -> Value {
    reqwest::get(server.url(path))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON body")
}

/// The `tokenhook` binary of this workspace (debug), built on first use.
///
/// Built with the same target selection as `cargo test --workspace` (the
/// workspace's bins and tests), so cargo unifies dependency features the same
/// way and reuses what the test run already compiled; `-p tokenhook` alone
/// would rebuild every dependency with a different feature set.
pub fn tokenhook_bin() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        without_test_cargo_env(&mut build);
        let status = build
            .args(["build", "--workspace", "--bins", "--tests"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the tokenhook binary failed");
    });
    target_dir().join("debug/tokenhook")
}

/// Cargo's target directory for this workspace: `CARGO_TARGET_DIR` when set
/// (relative to the workspace root, as cargo reads it), else `target/`. The
/// inner builds inherit the variable, so their output is found where it went.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Remove from a cargo `build` command the variables cargo set for this test
/// process: they describe this crate, and passed on, build scripts that watch
/// them (ring's, for one) would see a changed environment and rebuild, twice
/// per test run.
pub fn without_test_cargo_env(build: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || name.starts_with("CARGO_CRATE_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            build.env_remove(name.as_ref());
        }
    }
}

/// A client secret and its manifest hash (`sha256:`), fixed for readable
/// tests: `app` and `ops` of [`manifest`] (and of [`Clients::fixed`]).
pub const CLIENT_SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuv";

pub fn client_secret_hash() -> String {
    format!(
        "sha256:{}",
        tokenhook::engine::sha256_hex(CLIENT_SECRET.as_bytes())
    )
}

/// The fixture manifest's issuer.
pub const ISSUER: &str = "https://issuer.test/";
/// The fixture manifest's first API (scopes read:a write:a admin:a read:b).
pub const API: &str = "https://api.test";
/// The fixture manifest's second API (scopes read:o write:o).
pub const OTHER: &str = "https://other.test";
/// `token_lifetime = "15m"` in [`Clients::manifest`].
pub const LIFETIME_SECS: u64 = 900;
/// The only claim namespace of [`Clients::manifest`].
pub const NS: &str = "https://claims.test/";
/// The `keys` line of [`Clients::manifest`]: a file key in the server's
/// directory, default algorithm (ES256). Tests replace it to change the keys.
pub const FILE_KEYS: &str = r#"keys = { source = "file", path = "{dir}/key.pem" }"#;
/// The operator-chosen secret of the argon2id client `legacy`: characters
/// that Basic credentials must percent-encode (RFC 6749 §2.3.1).
pub const LEGACY_SECRET: &str = "p@ss w%rd:+1/ü";

/// One client of the fixture manifest.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: &'static str,
    pub secret: String,
    pub hash: String,
}

/// The clients of the one fixture manifest ([`Clients::manifest`]): `app`
/// (name "The app", metadata tenant=acme, plan=free; granted read:a write:a
/// read:b on api.test), `ops` (tenant=globex, plan=pro, tier=gold; granted
/// read:a write:a admin:a on api.test and read:o write:o on other.test),
/// both `sha256:`; `legacy` (argon2id of [`LEGACY_SECRET`]; granted read:a
/// on api.test).
#[derive(Clone, Debug)]
pub struct Clients {
    pub app: Client,
    pub ops: Client,
    pub legacy: Client,
}

fn argon2_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| tokenhook::clients::hash_argon2(LEGACY_SECRET).expect("argon2 hash"))
}

impl Clients {
    /// Fresh random secrets for `app` and `ops`: in-process tests, where a
    /// secret that works proves it came from this manifest.
    pub fn new() -> Clients {
        let fresh = |id: &'static str| {
            let (secret, hash) = tokenhook::clients::new_secret();
            Client { id, secret, hash }
        };
        Clients::with(fresh("app"), fresh("ops"))
    }

    /// [`CLIENT_SECRET`] for `app` and `ops`: servers run as processes and
    /// benchmarks, which are handed a manifest file, not these values.
    pub fn fixed() -> Clients {
        let fixed = |id: &'static str| Client {
            id,
            secret: CLIENT_SECRET.to_string(),
            hash: client_secret_hash(),
        };
        Clients::with(fixed("app"), fixed("ops"))
    }

    fn with(app: Client, ops: Client) -> Clients {
        Clients {
            app,
            ops,
            legacy: Client {
                id: "legacy",
                secret: LEGACY_SECRET.to_string(),
                hash: argon2_hash().to_string(),
            },
        }
    }

    /// The fixture manifest followed by `hooks` (TOML). `{dir}` is the
    /// server's directory (the signing key is generated there).
    pub fn manifest(&self, hooks: &str) -> String {
        format!(
            r#"issuer = "{ISSUER}"
token_lifetime = "15m"
{FILE_KEYS}

[policy]
claim_namespaces = ["{NS}"]
max_claims_size = "64KiB"

[[apis]]
identifier = "{API}"
name = "API"
scopes = ["read:a", "write:a", "admin:a", "read:b"]

[[apis]]
identifier = "{OTHER}"
scopes = ["read:o", "write:o"]

[[clients]]
id = "app"
name = "The app"
secret_hash = "{app}"
metadata = {{ tenant = "acme", plan = "free" }}

[[clients]]
id = "ops"
secret_hash = "{ops}"
metadata = {{ tenant = "globex", plan = "pro", tier = "gold" }}

[[clients]]
id = "legacy"
secret_hash = "{legacy}"

[[grants]]
client = "app"
api = "{API}"
scopes = ["read:a", "write:a", "read:b"]

[[grants]]
client = "ops"
api = "{API}"
scopes = ["read:a", "write:a", "admin:a"]

[[grants]]
client = "ops"
api = "{OTHER}"
scopes = ["read:o", "write:o"]

[[grants]]
client = "legacy"
api = "{API}"
scopes = ["read:a"]

{hooks}
"#,
            app = self.app.hash,
            ops = self.ops.hash,
            legacy = self.legacy.hash,
        )
    }

    /// Start a server on [`Clients::manifest`] with `hooks`, after writing `files`.
    pub fn start(&self, hooks: &str, files: &[(&str, &str)]) -> TestServer {
        TestServer::start_with_files(&self.manifest(hooks), files)
            .unwrap_or_else(|e| panic!("server start: {e}"))
    }
}

impl Default for Clients {
    fn default() -> Self {
        Clients::new()
    }
}

/// The fixture manifest with [`Clients::fixed`] (both `app` and `ops` use
/// [`CLIENT_SECRET`]), then `hooks` (TOML).
pub fn manifest(hooks: &str) -> String {
    Clients::fixed().manifest(hooks)
}

/// Request a token for `app` on `https://api.test` with Basic auth and `extra` form fields.
pub async fn app_token(server: &TestServer, extra: &[(&str, &str)]) -> Reply {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("audience", "https://api.test"),
    ];
    form.extend_from_slice(extra);
    post_token(server, Some(("app", CLIENT_SECRET)), &form).await
}

/// Verify a successful reply's token against the server's JWKS; returns the claims.
pub async fn verified_claims(server: &TestServer, reply: &Reply, audience: &str) -> Value {
    assert_eq!(reply.status, 200, "expected a token: {}", reply.body);
    let jwks = get_json(server, "/.well-known/jwks.json").await;
    jose::verify(
        reply.body["access_token"].as_str().expect("access_token"),
        &jwks,
        "https://issuer.test/",
        audience,
    )
    .expect("token verifies against the JWKS")
}

/// A contract-v1 hook in wat text that ignores its input and returns `output`
/// (JSON text) verbatim.
pub fn fixed_output_hook(output: &str) -> String {
    let escaped = output.replace('\\', "\\\\").replace('"', "\\\"");
    let packed = (16u64 << 32) | output.len() as u64;
    format!(
        r#"(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{escaped}")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "tokenhook_run") (param i32 i32) (result i64) (i64.const {packed})))"#
    )
}

/// The tests' `tenant` hook: tenant-claims, writing claims under
/// `https://claims.test/` and allowed to add `write:*` scopes. Needs
/// `hook_wasm("tenant_claims")`.
pub const TENANT_HOOK: &str = r#"
[[hooks]]
name = "tenant"
module = "{hooks}/tenant_claims.wasm"
capabilities = { claims = ["https://claims.test/"], scopes = ["write:*"] }
config = { namespace = "https://claims.test/" }
"#;

/// Build tenant-claims and write `dir/broken.wat`, a hook that sets the
/// reserved claim `sub` (a policy violation whatever its capabilities).
pub fn tenant_and_broken_hooks(dir: &Path) {
    hook_wasm("tenant_claims");
    std::fs::write(
        dir.join("broken.wat"),
        fixed_output_hook(r#"{"commands":[{"set_claim":{"name":"sub","value":"root"}}]}"#),
    )
    .expect("write broken.wat");
}

/// The three-hook manifest (the [`manifest`] clients) written into `dir`:
/// [`TENANT_HOOK`] sets claims, `broken` sets the reserved claim `sub` (a
/// policy violation, skipped by `on_error`), `other-api-only` is filtered to
/// another API so it never runs for `https://api.test`.
pub fn three_hook_manifest(dir: &Path) -> PathBuf {
    tenant_and_broken_hooks(dir);
    let hooks = format!(
        r#"{TENANT_HOOK}
[[hooks]]
name = "broken"
module = "{{dir}}/broken.wat"
on_error = "skip"

[[hooks]]
name = "other-api-only"
module = "{{dir}}/broken.wat"
match = {{ apis = ["https://other.test"] }}
"#
    );
    write_manifest_in(dir, &manifest(&hooks))
}

/// `examples/manifest.toml` made runnable from any directory: hooks from the
/// build directory (`{hooks}`), the dev key in the server's directory
/// (`{dir}`), the dev HMAC key from `examples/`.
pub fn example_manifest() -> String {
    hook_wasm("tenant_claims");
    let examples = workspace_root().join("examples");
    std::fs::read_to_string(examples.join("manifest.toml"))
        .expect("examples/manifest.toml")
        .replace("../target/hooks/wasm32-unknown-unknown/hook", "{hooks}")
        .replace("~/.tokenhook/dev-key.pem", "{dir}/dev-key.pem")
        .replace(
            "\"dev-hmac-key.txt\"",
            &format!("{:?}", examples.join("dev-hmac-key.txt")),
        )
}

/// Write `manifest` (with `{dir}` and `{hooks}` expanded) to `dir/manifest.toml`.
pub fn write_manifest_in(dir: &Path, manifest: &str) -> PathBuf {
    let path = dir.join("manifest.toml");
    std::fs::write(&path, expand(manifest, dir)).expect("write manifest");
    path
}

/// A child process in its own process group, killed with its children on drop.
pub struct ChildGroup(pub std::process::Child);

impl ChildGroup {
    pub fn spawn(command: &mut Command) -> ChildGroup {
        use std::os::unix::process::CommandExt;
        ChildGroup(command.process_group(0).spawn().expect("spawn child"))
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// Everything a server process writes to stderr, collected by a thread (a full pipe would block it).
pub fn collect_stderr(server: &mut ServerProcess) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::BufRead;
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = server.child.0.stderr.take().expect("stderr piped");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

/// The log lines (JSON) whose message is `message`.
pub fn logged(log: &std::sync::Mutex<String>, message: &str) -> Vec<Value> {
    log.lock()
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// A Python tool installed by `tests/run.sh` into `.venv`: from the
/// environment variable `TOKENHOOK_<NAME>` (`moto_server` →
/// `TOKENHOOK_MOTO_SERVER`, `cargo-lambda` → `TOKENHOOK_CARGO_LAMBDA`), else
/// `.venv/bin/<name>` in the workspace, else `PATH`. Its absence fails the
/// test, in CI and elsewhere alike: a test that skips when its tool is missing
/// passes without testing anything.
pub fn python_tool(name: &str) -> PathBuf {
    let var = format!("TOKENHOOK_{}", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.exists(), "{var}={} does not exist", path.display());
        return path;
    }
    let venv = workspace_root().join(".venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!("{name} is missing: tests/run.sh installs it into .venv (or set {var})")
        })
}

/// `tokenhook serve` as a separate process on an ephemeral 127.0.0.1 port.
pub struct ServerProcess {
    pub child: ChildGroup,
    pub addr: String,
}

impl ServerProcess {
    /// Start the binary on `manifest` with `env` added; stdout and stderr are
    /// piped. Returns the server once its banner names the address, or its
    /// stderr if it exits first.
    pub fn spawn(manifest: &Path, env: &[(&str, &str)]) -> Result<ServerProcess, String> {
        use std::io::{BufRead, BufReader, Read};
        use std::process::Stdio;
        let mut command = Command::new(tokenhook_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
            .arg(manifest)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGroup::spawn(&mut command);
        let mut banner = String::new();
        BufReader::new(child.0.stdout.as_mut().expect("stdout"))
            .read_line(&mut banner)
            .expect("read banner");
        let Some(addr) = banner
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        else {
            let _ = child.0.wait();
            let mut stderr = String::new();
            let _ = child
                .0
                .stderr
                .as_mut()
                .expect("stderr")
                .read_to_string(&mut stderr);
            return Err(stderr);
        };
        let addr = addr.to_string();
        Ok(ServerProcess { child, addr })
    }

    /// A token for client `app` on `https://api.test` (the [`manifest`] clients).
    pub async fn app_token(&self) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/oauth/token", self.addr))
            .basic_auth("app", Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("audience", "https://api.test"),
            ])
            .send()
            .await
            .expect("token request");
        (
            resp.status().as_u16(),
            resp.json().await.expect("JSON body"),
        )
    }

    /// Send a signal (`-HUP`, `-TERM`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal}");
    }
}

/// An AWS SDK configuration for an emulator at `endpoint` (`http://127.0.0.1:PORT`):
/// region us-east-1, fixed test credentials (moto does not check signatures).
pub async fn aws_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .test_credentials()
        .load()
        .await
}

/// A `moto` server (PyPI `moto[server]`, every AWS service it emulates on one
/// port) on 127.0.0.1, killed with its children on drop. A missing
/// `moto_server` fails the test: `tests/run.sh` installs it.
pub struct MotoServer {
    pub port: u16,
    _process: ChildGroup,
}

impl MotoServer {
    /// Start on a free port.
    pub fn start() -> MotoServer {
        MotoServer::start_on(free_port())
    }

    /// Start on `port`, e.g. the port of a server stopped before, to bring
    /// "the same" AWS back (empty: moto keeps its state in memory).
    pub fn start_on(port: u16) -> MotoServer {
        use std::process::Stdio;
        let moto = python_tool("moto_server");
        let process = ChildGroup::spawn(
            Command::new(moto)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        assert!(
            wait_for_port(port, std::time::Duration::from_secs(60)),
            "moto did not start on port {port}"
        );
        MotoServer {
            port,
            _process: process,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points a process's AWS SDK (the `tokenhook`
    /// binary) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint().as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The same, for an SDK client in the test process ([`aws_sdk_config`]).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_sdk_config(&self.endpoint()).await
    }

    /// A [`tokenhook::store::dynamodb::DynamoStore`] on a new table `table`
    /// here, created as the store's own layout says.
    pub async fn dynamo_store(&self, table: &str) -> tokenhook::store::dynamodb::DynamoStore {
        let store = tokenhook::store::dynamodb::DynamoStore::from_sdk_config(
            &self.sdk_config().await,
            table,
        );
        store
            .create_table()
            .await
            .unwrap_or_else(|e| panic!("create table `{table}` in moto: {e}"));
        store
    }
}
