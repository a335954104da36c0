//! `tokenhook hook new NAME [--path DIR]`: write a hook crate that passes
//! `cargo test` and builds to wasm as generated.
//!
//! Two layouts, chosen by where the crate goes:
//!
//! - **Inside a tokenhook workspace** (an enclosing `Cargo.toml` whose
//!   `[workspace.dependencies]` names `tokenhook-sdk`): the crate inherits the
//!   workspace's package fields, SDK dependency and build settings, and is
//!   added to `[workspace] members`, so `cargo hooks` builds it with the other
//!   hooks. The root `Cargo.toml` is edited rather than a line printed because
//!   a crate inside a workspace's directory that is not a member breaks every
//!   cargo command run in it; the edit inserts one line into the existing
//!   `members` array (formatting and comments kept), is checked by parsing the
//!   file before and after (the result must equal the original plus that one
//!   member), and replaces the file atomically. When the array cannot be edited
//!   that safely, nothing is changed and the line to add is printed.
//! - **Anywhere else**: a standalone crate, its own `[workspace]`, with the
//!   hook build settings copied in (`[profile.hook]`, and the wasm stack size
//!   in `.cargo/config.toml`, which also defines `cargo hooks`) and
//!   `tokenhook-sdk` from `--sdk-path`, `--sdk-git`, or else the tokenhook
//!   checkout found above the target directory or the current directory, or
//!   the one this binary was built from. `--sdk-path`/`--sdk-git` also force
//!   this layout inside a workspace.
//!
//! An existing target directory is never touched; a crate half-written after
//! an I/O error is removed (this command created it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

const LIB_RS: &str = include_str!("scaffold/lib.rs.tmpl");
const CARGO_WORKSPACE: &str = include_str!("scaffold/Cargo.workspace.toml.tmpl");
const CARGO_STANDALONE: &str = include_str!("scaffold/Cargo.standalone.toml.tmpl");
const CARGO_CONFIG: &str = include_str!("scaffold/cargo-config.toml.tmpl");
const RUST_TOOLCHAIN: &str = include_str!("scaffold/rust-toolchain.toml.tmpl");
const GITIGNORE: &str = include_str!("scaffold/gitignore.tmpl");
const EVENT_JSON: &str = include_str!("scaffold/event.json.tmpl");
const README: &str = include_str!("scaffold/README.md.tmpl");

/// `tokenhook hook new`.
#[derive(Args)]
pub struct NewArgs {
    /// The hook crate's name: lowercase ASCII letters, digits, `-` and `_`,
    /// starting with a letter, at most 64 characters. The wasm module is named
    /// after it with `-` as `_` (`my-hook` → `my_hook.wasm`).
    name: String,
    /// The directory to create (default `./NAME`); it must not exist.
    #[arg(long)]
    path: Option<PathBuf>,
    /// A standalone crate depending on tokenhook-sdk at this path: a tokenhook
    /// checkout or its `hooks-sdk/` directory (written as an absolute path).
    #[arg(long, conflicts_with = "sdk_git")]
    sdk_path: Option<PathBuf>,
    /// A standalone crate depending on tokenhook-sdk from this git repository.
    #[arg(long)]
    sdk_git: Option<String>,
    /// With `--sdk-git`: the commit, tag or branch to use (default: the
    /// repository's default branch, pinned by the crate's Cargo.lock).
    #[arg(long, requires = "sdk_git")]
    sdk_rev: Option<String>,
}

/// Why a hook crate was not created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("invalid hook name `{name}`: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{} already exists; refusing to overwrite it (choose another --path)", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid TOML: {message}", path.display())]
    BadToml { path: PathBuf, message: String },
    #[error(
        "{}: no tokenhook-sdk crate there (expected Cargo.toml or hooks-sdk/Cargo.toml naming tokenhook-sdk)",
        .0.display()
    )]
    BadSdkPath(PathBuf),
    #[error(
        "no tokenhook-sdk found for a crate outside a tokenhook workspace: pass --sdk-path DIR (a tokenhook checkout) or --sdk-git URL"
    )]
    NoSdk,
    #[error("{} is not valid UTF-8; the Cargo.toml cannot name it", .0.display())]
    NotUtf8(PathBuf),
    #[error(
        "the workspace at {} already has a hook `{other}` ({member}), which builds to the same {wasm}.wasm",
        root.display()
    )]
    Duplicate {
        root: PathBuf,
        other: String,
        member: String,
        wasm: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError + '_ {
    move |source| ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn run(args: NewArgs) -> ExitCode {
    match create(&args) {
        Ok(created) => {
            print!("{}", created.report());
            if let Some(member) = &created.member_not_added {
                eprintln!(
                    "error: {member}\nThe crate is written, but cargo refuses to build it until it is a workspace member."
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where the tokenhook-sdk dependency of a standalone crate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SdkSource {
    /// The `hooks-sdk` directory, absolute.
    Path(PathBuf),
    Git {
        url: String,
        rev: Option<String>,
    },
}

impl SdkSource {
    /// The `[dependencies]` line.
    fn dependency(&self) -> Result<String, ScaffoldError> {
        Ok(match self {
            SdkSource::Path(path) => {
                let text = path
                    .to_str()
                    .ok_or_else(|| ScaffoldError::NotUtf8(path.clone()))?;
                format!("tokenhook-sdk = {{ path = {} }}", toml_string(text))
            }
            SdkSource::Git { url, rev: None } => {
                format!("tokenhook-sdk = {{ git = {} }}", toml_string(url))
            }
            SdkSource::Git {
                url,
                rev: Some(rev),
            } => format!(
                "tokenhook-sdk = {{ git = {}, rev = {} }}",
                toml_string(url),
                toml_string(rev)
            ),
        })
    }

    fn describe(&self) -> String {
        match self {
            SdkSource::Path(path) => format!("tokenhook-sdk from {}", path.display()),
            SdkSource::Git { url, rev } => format!(
                "tokenhook-sdk from {url}{}",
                rev.as_ref().map(|r| format!(" at {r}")).unwrap_or_default()
            ),
        }
    }
}

/// The crate's layout.
#[derive(Debug)]
enum Layout {
    /// A member of the tokenhook workspace at `root`, at `member` (relative, `/`-separated).
    Workspace {
        root: PathBuf,
        member: String,
    },
    Standalone(SdkSource),
}

/// What [`create`] did.
struct Created {
    dir: PathBuf,
    name: String,
    wasm: String,
    layout: Layout,
    /// The members edit was already covered by a glob or failed (the message).
    member_added: bool,
    member_not_added: Option<String>,
}

impl Created {
    fn report(&self) -> String {
        let dir = self.dir.display();
        let mut out = String::new();
        match &self.layout {
            Layout::Workspace { root, member } => {
                out.push_str(&format!(
                    "created hook `{}` in {dir} (a member of the workspace at {})\n",
                    self.name,
                    root.display()
                ));
                if self.member_added {
                    out.push_str(&format!(
                        "added \"{member}\" to [workspace] members in {}\n",
                        root.join("Cargo.toml").display()
                    ));
                }
                out.push_str(&format!(
                    "\nnext, from {}:\n  cargo test -p {}\n  cargo hooks\n  tokenhook hook check target/hooks/wasm32-unknown-unknown/hook/{}.wasm\n  tokenhook hook run target/hooks/wasm32-unknown-unknown/hook/{}.wasm --event {member}/event.json\n",
                    root.display(),
                    self.name,
                    self.wasm,
                    self.wasm
                ));
            }
            Layout::Standalone(sdk) => {
                out.push_str(&format!(
                    "created hook `{}` in {dir} (standalone, {})\n",
                    self.name,
                    sdk.describe()
                ));
                out.push_str(&format!(
                    "\nnext, from {dir}:\n  cargo test\n  cargo hooks\n  tokenhook hook check target/wasm32-unknown-unknown/hook/{}.wasm\n  tokenhook hook run target/wasm32-unknown-unknown/hook/{}.wasm --event event.json\n",
                    self.wasm, self.wasm
                ));
            }
        }
        out
    }
}

/// Validate and create the crate; see the module docs.
fn create(args: &NewArgs) -> Result<Created, ScaffoldError> {
    let lib_name = validate_name(&args.name)?;
    let cwd = std::env::current_dir().map_err(io(Path::new(".")))?;
    let requested = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let requested = cwd.join(requested);
    if requested.symlink_metadata().is_ok() {
        return Err(ScaffoldError::Exists(requested));
    }
    let file_name = requested
        .file_name()
        .ok_or_else(|| ScaffoldError::Exists(requested.clone()))?
        .to_owned();
    let parent = requested.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    // Canonical, so the member path is relative to the real workspace root.
    let parent = parent.canonicalize().map_err(io(parent))?;
    let dir = parent.join(file_name);

    let explicit_sdk = explicit_sdk(args)?;
    let workspace = match explicit_sdk {
        Some(_) => None,
        None => enclosing_workspace(&parent)?,
    };
    let layout = match (workspace, explicit_sdk) {
        (Some(ws), _) if ws.is_tokenhook => {
            let member = relative_member(&ws.root, &dir)?;
            check_no_duplicate(&ws.root, &ws.members, &args.name)?;
            Layout::Workspace {
                root: ws.root,
                member,
            }
        }
        (_, Some(sdk)) => Layout::Standalone(sdk),
        (_, None) => Layout::Standalone(detect_sdk(&parent, &cwd)?),
    };

    let wasm = lib_name.clone();
    let files = render(&args.name, &lib_name, &layout)?;
    // create_dir, not create_dir_all: fails if the directory appeared meanwhile.
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ScaffoldError::Exists(dir));
        }
        Err(e) => return Err(io(&dir)(e)),
    }
    if let Err(e) = write_files(&dir, &files) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }

    let mut created = Created {
        dir,
        name: args.name.clone(),
        wasm,
        layout,
        member_added: false,
        member_not_added: None,
    };
    if let Layout::Workspace { root, member } = &created.layout {
        match add_workspace_member(&root.join("Cargo.toml"), member) {
            Ok(added) => created.member_added = added,
            Err(reason) => {
                created.member_not_added = Some(format!(
                    "cannot add the member to {} safely ({reason}); add this line to [workspace] members yourself:\n    {},",
                    root.join("Cargo.toml").display(),
                    toml_string(member)
                ))
            }
        }
    }
    Ok(created)
}

/// The crate's library name (`-` as `_`), which names its wasm module, or why
/// `name` cannot be a hook crate's name.
pub fn validate_name(name: &str) -> Result<String, ScaffoldError> {
    let invalid = |reason: &str| ScaffoldError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > 64 {
        return Err(invalid("it must be 1 to 64 characters long"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("it must start with a lowercase ASCII letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(invalid(
            "only lowercase ASCII letters, digits, `-` and `_` are allowed",
        ));
    }
    let lib_name = name.replace('-', "_");
    if RUST_KEYWORDS.contains(&lib_name.as_str()) {
        return Err(invalid(
            "it is a Rust keyword (cargo refuses it as a crate name)",
        ));
    }
    // `tokenhook_sdk` is the dependency, `tokenhook_*` the contract's exports.
    if lib_name.starts_with("tokenhook") {
        return Err(invalid("names starting with `tokenhook` are reserved"));
    }
    if matches!(
        lib_name.as_str(),
        "std" | "core" | "alloc" | "proc_macro" | "test"
    ) {
        return Err(invalid(
            "it is the name of a crate every Rust build knows (std, core, alloc, proc_macro, test)",
        ));
    }
    Ok(lib_name)
}

/// Strict and reserved keywords of edition 2024 (`gen` included).
const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

fn explicit_sdk(args: &NewArgs) -> Result<Option<SdkSource>, ScaffoldError> {
    if let Some(path) = &args.sdk_path {
        let abs = std::env::current_dir()
            .map_err(io(Path::new(".")))?
            .join(path);
        return sdk_dir(&abs)
            .map(|p| Some(SdkSource::Path(p)))
            .ok_or(ScaffoldError::BadSdkPath(abs));
    }
    Ok(args.sdk_git.as_ref().map(|url| SdkSource::Git {
        url: url.clone(),
        rev: args.sdk_rev.clone(),
    }))
}

/// `dir` or `dir/hooks-sdk`, canonical, if it holds the tokenhook-sdk crate.
fn sdk_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("hooks-sdk")]
        .into_iter()
        .find(|candidate| {
            read_toml(&candidate.join("Cargo.toml"))
                .ok()
                .flatten()
                .and_then(|t| {
                    t.get("package")?
                        .get("name")?
                        .as_str()
                        .map(|n| n == "tokenhook-sdk")
                })
                .unwrap_or(false)
        })
        .and_then(|p| p.canonicalize().ok())
}

/// For a standalone crate without `--sdk-*`: a tokenhook checkout above the
/// target directory or the current directory, else the checkout this binary
/// was built from, if it is still there.
fn detect_sdk(parent: &Path, cwd: &Path) -> Result<SdkSource, ScaffoldError> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    parent
        .ancestors()
        .chain(cwd.ancestors())
        .chain(std::iter::once(built_from.as_path()))
        .find_map(sdk_dir)
        .map(SdkSource::Path)
        .ok_or(ScaffoldError::NoSdk)
}

/// The workspace cargo would attach a crate in `dir` to.
struct Workspace {
    root: PathBuf,
    is_tokenhook: bool,
    members: Vec<String>,
}

/// `Ok(None)` if the file does not exist.
fn read_toml(path: &Path) -> Result<Option<toml::Table>, ScaffoldError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    text.parse::<toml::Table>()
        .map(Some)
        .map_err(|e| ScaffoldError::BadToml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// The nearest ancestor of `dir` (inclusive) whose Cargo.toml has a
/// `[workspace]`, as cargo searches for a package's workspace root.
fn enclosing_workspace(dir: &Path) -> Result<Option<Workspace>, ScaffoldError> {
    for ancestor in dir.ancestors() {
        let Some(table) = read_toml(&ancestor.join("Cargo.toml"))? else {
            continue;
        };
        let Some(ws) = table.get("workspace") else {
            continue;
        };
        let is_tokenhook = ws
            .get("dependencies")
            .and_then(|d| d.get("tokenhook-sdk"))
            .is_some();
        let members = ws
            .get("members")
            .and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(Some(Workspace {
            root: ancestor.to_path_buf(),
            is_tokenhook,
            members,
        }));
    }
    Ok(None)
}

fn relative_member(root: &Path, dir: &Path) -> Result<String, ScaffoldError> {
    let rel = dir
        .strip_prefix(root)
        .expect("dir is below its workspace root");
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts
        .map(|p| p.join("/"))
        .ok_or_else(|| ScaffoldError::NotUtf8(dir.to_path_buf()))
}

/// Refuse a name whose wasm module would overwrite another member's in `cargo hooks`.
fn check_no_duplicate(root: &Path, members: &[String], name: &str) -> Result<(), ScaffoldError> {
    let wasm = name.replace('-', "_");
    for member in members.iter().filter(|m| !m.contains('*')) {
        let Ok(Some(table)) = read_toml(&root.join(member).join("Cargo.toml")) else {
            continue;
        };
        if let Some(other) = table
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
            && other.replace('-', "_") == wasm
        {
            return Err(ScaffoldError::Duplicate {
                root: root.to_path_buf(),
                other: other.to_string(),
                member: member.clone(),
                wasm,
            });
        }
    }
    Ok(())
}

/// The crate's files (relative path, contents).
fn render(
    name: &str,
    lib_name: &str,
    layout: &Layout,
) -> Result<Vec<(&'static str, String)>, ScaffoldError> {
    let fill = |template: &str| {
        template
            .replace("__HOOK_NAME__", name)
            .replace("__HOOK_WASM__", lib_name)
    };
    let mut files = vec![
        ("src/lib.rs", fill(LIB_RS)),
        ("event.json", EVENT_JSON.to_string()),
    ];
    let (wasm_path, commands) = match layout {
        Layout::Workspace { member, .. } => {
            files.push(("Cargo.toml", fill(CARGO_WORKSPACE)));
            let wasm = format!("target/hooks/wasm32-unknown-unknown/hook/{lib_name}.wasm");
            let commands = [
                "# from the workspace root".to_string(),
                commented(
                    &format!("cargo test -p {name}"),
                    "native unit tests (tokenhook_sdk::testing)",
                ),
                commented("cargo hooks", "every hook, to target/hooks/"),
                format!("tokenhook hook check {wasm}"),
                format!("tokenhook hook run {wasm} --event {member}/event.json"),
            ]
            .join("\n");
            (wasm, commands)
        }
        Layout::Standalone(sdk) => {
            files.push((
                "Cargo.toml",
                fill(CARGO_STANDALONE).replace("__SDK_DEPENDENCY__", &sdk.dependency()?),
            ));
            files.push((".cargo/config.toml", fill(CARGO_CONFIG)));
            files.push(("rust-toolchain.toml", RUST_TOOLCHAIN.to_string()));
            files.push((".gitignore", GITIGNORE.to_string()));
            let wasm = format!("target/wasm32-unknown-unknown/hook/{lib_name}.wasm");
            let commands = [
                commented("cargo test", "native unit tests (tokenhook_sdk::testing)"),
                commented(
                    "cargo hooks",
                    "alias: build --target wasm32-unknown-unknown --profile hook",
                ),
                format!("tokenhook hook check {wasm}"),
                format!("tokenhook hook run {wasm} --event event.json"),
            ]
            .join("\n");
            (wasm, commands)
        }
    };
    files.push((
        "README.md",
        fill(README)
            .replace("__COMMANDS__", &commands)
            .replace("__WASM_PATH__", &wasm_path),
    ));
    Ok(files)
}

/// A shell line with its comment in a column.
fn commented(command: &str, comment: &str) -> String {
    format!("{command:<36} # {comment}")
}

fn write_files(dir: &Path, files: &[(&str, String)]) -> Result<(), ScaffoldError> {
    for (rel, contents) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        // create_new: never follow or replace anything that appeared meanwhile.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .map_err(io(&path))?;
    }
    Ok(())
}

/// A TOML basic string for `text`, quoted and escaped.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Add `member` to `[workspace] members` in the Cargo.toml at `path`:
/// `Ok(false)` if a glob member already covers it; an error, with the file
/// untouched, when it cannot be done safely.
fn add_workspace_member(path: &Path, member: &str) -> Result<bool, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let before: toml::Table = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    let members = workspace_members(&before).ok_or("no [workspace] members array")?;
    if members.iter().any(|m| covers(m, member)) {
        return Ok(false);
    }
    let edited = insert_member(&text, member)?;
    // The edit must change exactly one thing: one member appended.
    let mut after: toml::Table = edited
        .parse()
        .map_err(|e| format!("the edit would make it invalid TOML: {e}"))?;
    let added = workspace_members_mut(&mut after)
        .and_then(|m| m.pop())
        .and_then(|v| v.as_str().map(str::to_string));
    if added.as_deref() != Some(member) || after != before {
        return Err("the edit would change more than the members array".into());
    }
    let tmp = path.with_extension("toml.tokenhook-new");
    let permissions = std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .permissions();
    std::fs::write(&tmp, &edited)
        .and_then(|()| std::fs::set_permissions(&tmp, permissions))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        })?;
    Ok(true)
}

fn workspace_members(table: &toml::Table) -> Option<Vec<String>> {
    table
        .get("workspace")?
        .get("members")?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn workspace_members_mut(table: &mut toml::Table) -> Option<&mut Vec<toml::Value>> {
    table
        .get_mut("workspace")?
        .get_mut("members")?
        .as_array_mut()
}

/// Whether the member pattern `pattern` (a path or `dir/*`) matches `member`.
fn covers(pattern: &str, member: &str) -> bool {
    let pattern = pattern.trim_end_matches('/');
    match pattern.strip_suffix("/*") {
        Some(prefix) => member
            .rsplit_once('/')
            .is_some_and(|(parent, _)| parent == prefix),
        None => pattern == member,
    }
}

/// `text` with `member` appended to the `members` array of its `[workspace]`
/// table, everything else byte for byte as it was. Handles the array on one
/// line or several, comments and trailing commas; anything else (the key
/// spelled as a dotted key, the table written inline) is an error, and the
/// caller verifies the result by parsing it.
pub fn insert_member(text: &str, member: &str) -> Result<String, String> {
    let header = find_line(text, 0, |line| strip_comment(line).trim() == "[workspace]")
        .ok_or("no `[workspace]` header line")?;
    let key = find_line(text, header, |line| {
        let line = line.trim_start();
        line.strip_prefix("members")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })
    .ok_or("no `members = [` line in [workspace]")?;
    // No other table header between `[workspace]` and the key.
    if text[header..key]
        .lines()
        .skip(1)
        .any(|l| l.trim_start().starts_with('['))
    {
        return Err("`members` is not in the [workspace] table".into());
    }
    let open = key
        + text[key..]
            .find('[')
            .filter(|&i| text[key..key + i].trim_end().ends_with('='))
            .ok_or("`members` is not an array")?;
    let (close, last_significant) = scan_array(text, open)?;
    let quoted = toml_string(member);
    let mut out = String::with_capacity(text.len() + quoted.len() + 8);
    let line_start = text[..close].rfind('\n').map_or(0, |i| i + 1);
    let close_on_own_line = text[line_start..close].trim().is_empty();
    if close_on_own_line && text[open..close].contains('\n') {
        // Multi-line: a new line before `]`, indented like the first element.
        let indent = text[open + 1..close]
            .lines()
            .skip(1)
            .find(|l| !l.trim().is_empty())
            .map(|l| &l[..l.len() - l.trim_start().len()])
            .unwrap_or("    ");
        match last_significant {
            Some(i) if text.as_bytes()[i] != b',' => {
                out.push_str(&text[..=i]);
                out.push(',');
                out.push_str(&text[i + 1..line_start]);
            }
            _ => out.push_str(&text[..line_start]),
        }
        out.push_str(&format!("{indent}{quoted},\n"));
        out.push_str(&text[line_start..]);
    } else {
        // `]` right after the last element: append there.
        out.push_str(&text[..close]);
        match last_significant.map(|i| text.as_bytes()[i]) {
            None => {}
            Some(b',') => out.push(' '),
            Some(_) => out.push_str(", "),
        }
        out.push_str(&quoted);
        out.push_str(&text[close..]);
    }
    Ok(out)
}

/// The byte offset of the first line at or after `from` for which `pred` holds.
fn find_line(text: &str, from: usize, pred: impl Fn(&str) -> bool) -> Option<usize> {
    let mut offset = from;
    for line in text[from..].split_inclusive('\n') {
        if pred(line.trim_end_matches(['\n', '\r'])) {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("")
}

/// From the `[` at `open`: the offset of its matching `]` and of the last
/// character before it that is neither whitespace nor inside a comment
/// (`None` if the array is empty). Strings and comments are skipped.
fn scan_array(text: &str, open: usize) -> Result<(usize, Option<usize>), String> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut last = None;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            quote @ (b'"' | b'\'') => {
                if text[i..].starts_with("\"\"\"") || text[i..].starts_with("'''") {
                    return Err("multi-line strings in `members`".into());
                }
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if quote == b'"' && bytes[i] == b'\\' {
                        i += 1;
                    }
                    if bytes.get(i) == Some(&b'\n') {
                        return Err("an unterminated string in `members`".into());
                    }
                    i += 1;
                }
                if i >= bytes.len() {
                    return Err(format!("an unterminated string at byte {start}"));
                }
                last = Some(i);
            }
            b'[' => {
                depth += 1;
                if i != open {
                    last = Some(i);
                }
            }
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((i, last));
                }
                last = Some(i);
            }
            c if c.is_ascii_whitespace() => {}
            _ => last = Some(i),
        }
        i += 1;
    }
    Err("the `members` array is not closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members_of(text: &str) -> Vec<String> {
        workspace_members(&text.parse::<toml::Table>().unwrap()).unwrap()
    }

    #[test]
    fn names_are_crate_names_that_make_rust_identifiers() {
        assert_eq!(validate_name("my-hook").unwrap(), "my_hook");
        assert_eq!(validate_name("h2").unwrap(), "h2");
        for bad in [
            "",
            "My-hook",
            "2fa",
            "-x",
            "a b",
            "a/b",
            "../x",
            "é",
            "match",
            "gen",
            "self",
            "tokenhook-sdk",
            "tokenhook_run",
            "std",
            &"a".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_member_is_added_to_a_multi_line_array_keeping_everything_else() {
        let text = "# top\n[workspace]\nresolver = \"3\"\nmembers = [\n    \"runtime\",\n    \"hooks-sdk\", # the sdk\n    \"tests\"\n]\n\n[workspace.dependencies]\nx = \"1\"\n";
        let out = insert_member(text, "examples/my-hook").unwrap();
        assert_eq!(
            out,
            "# top\n[workspace]\nresolver = \"3\"\nmembers = [\n    \"runtime\",\n    \"hooks-sdk\", # the sdk\n    \"tests\",\n    \"examples/my-hook\",\n]\n\n[workspace.dependencies]\nx = \"1\"\n"
        );
        assert_eq!(members_of(&out).last().unwrap(), "examples/my-hook");
    }

    #[test]
    fn a_member_is_added_after_a_trailing_comma_and_a_comment() {
        let text = "[workspace]\nmembers = [\n  \"a\", # a ] [ \"x\"\n  # \"b\",\n]\n";
        let out = insert_member(text, "c").unwrap();
        assert_eq!(members_of(&out), ["a", "c"]);
        assert!(out.contains("  # \"b\",\n  \"c\",\n]"));
    }

    #[test]
    fn a_member_is_added_to_a_one_line_or_empty_array() {
        let out = insert_member("[workspace]\nmembers = [\"a\", \"b\"]\n", "c").unwrap();
        assert_eq!(out, "[workspace]\nmembers = [\"a\", \"b\", \"c\"]\n");
        let out = insert_member("[workspace]\nmembers = []\n", "c").unwrap();
        assert_eq!(out, "[workspace]\nmembers = [\"c\"]\n");
        let out = insert_member("[workspace]\nmembers = [\"a\",]\n", "c").unwrap();
        assert_eq!(members_of(&out), ["a", "c"]);
    }

    #[test]
    fn odd_layouts_are_refused_not_guessed() {
        assert!(insert_member("workspace = { members = [\"a\"] }\n", "c").is_err());
        assert!(
            insert_member(
                "[workspace]\nresolver = \"3\"\n[other]\nmembers = []\n",
                "c"
            )
            .is_err()
        );
        assert!(insert_member("[workspace]\nmembers = '''\n'''\n", "c").is_err());
    }

    #[test]
    fn the_workspace_file_is_edited_only_when_the_result_checks_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Cargo.toml");
        let text = "[workspace]\nmembers = [\n    \"a\",\n]\n";
        std::fs::write(&path, text).unwrap();
        assert!(add_workspace_member(&path, "hooks/new \"one\"").unwrap());
        assert_eq!(
            members_of(&std::fs::read_to_string(&path).unwrap()),
            ["a", "hooks/new \"one\""]
        );
        // Covered by a glob: nothing to do.
        std::fs::write(&path, "[workspace]\nmembers = [\"hooks/*\"]\n").unwrap();
        assert!(!add_workspace_member(&path, "hooks/x").unwrap());
        // A dotted key cannot be edited safely: refused, file untouched.
        let dotted = "[workspace]\nmembers.x = 1\n";
        std::fs::write(&path, dotted).unwrap();
        assert!(add_workspace_member(&path, "c").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), dotted);
    }

    #[test]
    fn the_repository_root_manifest_takes_a_member() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let text = std::fs::read_to_string(root).unwrap();
        let before = members_of(&text);
        let out = insert_member(&text, "examples/new-hook").unwrap();
        let mut expected = before.clone();
        expected.push("examples/new-hook".into());
        assert_eq!(members_of(&out), expected);
        assert_eq!(out.len(), text.len() + "    \"examples/new-hook\",\n".len());
    }

    #[test]
    fn sdk_dependencies_are_valid_toml() {
        for sdk in [
            SdkSource::Path(PathBuf::from("/x/with \"quote\"/hooks-sdk")),
            SdkSource::Git {
                url: "https://example.com/t.git".into(),
                rev: Some("v1".into()),
            },
        ] {
            let line = sdk.dependency().unwrap();
            let table: toml::Table = line.parse().unwrap();
            assert!(table.contains_key("tokenhook-sdk"), "{line}");
        }
    }
}
