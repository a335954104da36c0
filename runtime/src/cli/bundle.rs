//! `tokenhook bundle`: a manifest and its hook modules, ready to deploy.
//!
//! Copies the manifest and every hook module into one directory (the Lambda
//! layer `template.yaml` deploys, mounted at /opt), rewrites module paths to
//! `hooks/<name>.wasm`, and pins each module's SHA-256 in the written manifest.
//!
//! Every hook is also compiled ahead of time for the target the issuer will
//! run on (`--target`, default the template's arm64 Linux) with wasmtime's
//! cross-compilation and the issuer's own engine configuration, written to
//! `hooks/<name>.cwasm`, and recorded in the hook's `precompiled` table
//! (artifact, its SHA-256, the module SHA-256 it was made from, target, engine
//! fingerprint), so a new Lambda execution environment does not compile.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::engine::precompiled::{CrossCompiler, parse_target};
use crate::engine::{HookEngine, sha256_hex};
use crate::manifest::{Manifest, SecretRef};

#[derive(Args)]
pub struct BundleArgs {
    /// The manifest to bundle.
    #[arg(long, default_value = "examples/manifest.toml")]
    manifest: PathBuf,
    /// Output directory (created; existing files are replaced).
    #[arg(long, default_value = "target/lambda-bundle")]
    out: PathBuf,
    /// Precompile every hook for this target triple; `native` is this
    /// machine's. Default: the arm64 Linux of template.yaml's function.
    #[arg(long, default_value = DEFAULT_TARGET)]
    target: String,
}

/// The architecture template.yaml deploys (`Architectures: [arm64]`).
pub const DEFAULT_TARGET: &str = "aarch64-unknown-linux-gnu";

pub fn run(args: BundleArgs) -> ExitCode {
    let target = match parse_target(&args.target) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --target: {e}");
            return ExitCode::from(2);
        }
    };
    match bundle(&args.manifest, &args.out, &target) {
        Ok(notes) => {
            for note in notes {
                eprintln!("note: {note}");
            }
            println!("{}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn bundle(manifest_path: &Path, out: &Path, target: &str) -> Result<Vec<String>, String> {
    let mut compiler = CrossCompiler::new(target);
    let manifest = Manifest::load(manifest_path).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(manifest_path).map_err(|e| e.to_string())?;
    let mut doc: toml::Table = toml::from_str(&text).map_err(|e| e.to_string())?;
    let hooks_dir = out.join("hooks");
    std::fs::create_dir_all(&hooks_dir)
        .map_err(|e| format!("cannot create {}: {e}", hooks_dir.display()))?;
    let mut notes = Vec::new();
    let entries = doc.get_mut("hooks").and_then(|h| h.as_array_mut());
    for (hook, entry) in manifest.hooks.iter().zip(entries.into_iter().flatten()) {
        let source = manifest.resolve(&hook.module);
        let bytes = std::fs::read(&source).map_err(|e| {
            format!(
                "hook `{}`: cannot read {}: {e}",
                hook.name,
                source.display()
            )
        })?;
        // Refuse to ship what the issuer would refuse to load.
        let (info, violation) = HookEngine::inspect(&bytes, &hook.limits);
        if let Some(v) = violation.or(info.err()) {
            return Err(format!("hook `{}` ({}): {v}", hook.name, source.display()));
        }
        let sha = sha256_hex(&bytes);
        if let Some(pinned) = &hook.sha256
            && !pinned.eq_ignore_ascii_case(&sha)
        {
            return Err(format!(
                "hook `{}`: {} has SHA-256 {sha}, the manifest pins {pinned}",
                hook.name,
                source.display()
            ));
        }
        let name = format!("hooks/{}.wasm", hook.name);
        std::fs::write(out.join(&name), &bytes).map_err(|e| format!("cannot write {name}: {e}"))?;
        let binary = wat::parse_bytes(&bytes).map_err(|e| format!("hook `{}`: {e}", hook.name))?;
        let artifact = compiler
            .compile(&binary, hook.limits.stack)
            .map_err(|e| format!("hook `{}`: {e}", hook.name))?;
        let artifact_name = format!("hooks/{}.cwasm", hook.name);
        std::fs::write(out.join(&artifact_name), &artifact.bytes)
            .map_err(|e| format!("cannot write {artifact_name}: {e}"))?;
        let table = entry
            .as_table_mut()
            .ok_or("`hooks` entries must be tables")?;
        table.insert("module".into(), toml::Value::String(name));
        table.insert("sha256".into(), toml::Value::String(sha.clone()));
        let mut precompiled = toml::Table::new();
        for (key, value) in [
            ("artifact", artifact_name),
            ("sha256", sha256_hex(&artifact.bytes)),
            ("module_sha256", sha),
            ("target", compiler.target().to_string()),
            ("engine", artifact.engine),
        ] {
            precompiled.insert(key.into(), toml::Value::String(value));
        }
        table.insert("precompiled".into(), toml::Value::Table(precompiled));
        if hook
            .secrets
            .values()
            .any(|s| !matches!(s, SecretRef::SecretsManager(_)))
        {
            notes.push(format!(
                "hook `{}` reads a secret from a file or the environment; on Lambda use a Secrets Manager id",
                hook.name
            ));
        }
    }
    if matches!(manifest.keys, crate::manifest::KeysConfig::File { .. }) {
        notes.push(
            "keys come from a file; on Lambda the template sets TOKENHOOK_KEYSET_SECRET_ID instead"
                .into(),
        );
    }
    let written = toml::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    let header = format!(
        "# Bundled by `tokenhook bundle` from {}; module digests pinned; hooks precompiled for {target}.\n",
        manifest_path.display()
    );
    std::fs::write(out.join("manifest.toml"), header + &written)
        .map_err(|e| format!("cannot write manifest: {e}"))?;
    Ok(notes)
}
