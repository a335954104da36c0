//! Hooks compiled ahead of time (`tokenhook bundle --target`), and the engine
//! fingerprint that says which issuer may run them.
//!
//! A precompiled artifact is native code: wasmtime runs it without checking
//! it, so the issuer uses one only when every link from the pinned module to
//! the bytes it is about to map is verified (see [`super::HookEngine`]'s
//! loading): the artifact's SHA-256 matches the manifest, the manifest says it
//! was made from the module the manifest pins, for this host's target, by an
//! engine whose fingerprint equals the issuer's own. Anything else falls back
//! to compiling the pinned module, with a warning.
//!
//! # The fingerprint
//!
//! wasmtime's own compatibility hash covers the target, Cranelift's flags, the
//! ISA (CPU feature) flags, the tunables, the wasm features and the wasmtime
//! version. The issuer's engine detects its CPU's features, so its hash differs
//! from that of an engine cross-compiling on another machine, even for the same
//! configuration. The fingerprint is therefore taken from a *baseline* engine:
//! [`super::engine_config`] with an explicit target triple, which detects and
//! assumes no CPU feature. The bundler's engine is exactly that engine; the
//! issuer builds the same one for its own triple to compare. Equal
//! fingerprints mean equal configuration, version and baseline ISA; code for a
//! baseline CPU runs on every CPU of the architecture, and wasmtime's
//! `Module::deserialize` still checks target, flags (each enabled ISA flag
//! against the CPU it runs on), tunables, features and version itself.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::str::FromStr;

use wasmtime::Engine;

use super::{EngineSettings, engine_config};

/// `--target native`: this machine's triple.
pub const NATIVE: &str = "native";

/// The target triple this binary runs on, e.g. `x86_64-unknown-linux-gnu`.
pub fn host_triple() -> String {
    target_lexicon::HOST.to_string()
}

/// A `--target` value as a normalised triple: `native` is this host's.
pub fn parse_target(value: &str) -> Result<String, String> {
    if value == NATIVE {
        return Ok(host_triple());
    }
    let triple = target_lexicon::Triple::from_str(value)
        .map_err(|e| format!("`{value}` is not a target triple: {e}"))?;
    Ok(triple.to_string())
}

/// The compatibility fingerprint of `engine`: lowercase hex SHA-256 of
/// wasmtime's `precompile_compatibility_hash`, fed in a byte order fixed
/// across machines (std's `DefaultHasher` is not stable across Rust
/// releases, and a bundle is made by another build than the one that runs it).
pub fn fingerprint(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256));
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(hasher.0.finish())
}

/// A `Hasher` that feeds SHA-256; integers as little-endian, sizes as 64-bit.
struct Sha256Hasher(aws_lc_rs::digest::Context);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16);
    }
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as i64 as u64);
    }
    /// Not used for the fingerprint (only [`fingerprint`] reads the digest).
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finish();
        u64::from_le_bytes(digest.as_ref()[..8].try_into().expect("8 bytes"))
    }
}

/// The baseline engine for `target` (see the module docs): what the bundler
/// compiles with, and what the issuer fingerprints to compare.
pub fn baseline_engine(
    settings: &EngineSettings,
    stack: u64,
    target: &str,
) -> wasmtime::Result<Engine> {
    Engine::new(&engine_config(settings, stack, Some(target))?)
}

/// Compiles hooks for one target with the issuer's engine configuration, one
/// engine per distinct stack cap (an engine setting, as in the issuer).
pub struct CrossCompiler {
    settings: EngineSettings,
    target: String,
    engines: Vec<(u64, Engine, String)>,
}

/// One hook compiled ahead of time.
pub struct Artifact {
    /// The native code (a wasmtime `.cwasm`).
    pub bytes: Vec<u8>,
    /// The fingerprint of the engine that made it.
    pub engine: String,
}

impl CrossCompiler {
    /// `target` as returned by [`parse_target`].
    pub fn new(target: &str) -> Self {
        CrossCompiler {
            settings: EngineSettings::default(),
            target: target.to_string(),
            engines: Vec::new(),
        }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Compile `wasm` (binary) for the target, as a hook with wasm stack cap `stack`.
    pub fn compile(&mut self, wasm: &[u8], stack: u64) -> Result<Artifact, String> {
        let at = match self.engines.iter().position(|(s, _, _)| *s == stack) {
            Some(at) => at,
            None => {
                let engine = baseline_engine(&self.settings, stack, &self.target).map_err(|e| {
                    format!(
                        "cannot create an engine for {}: {e:#} (is its Cranelift backend built in?)",
                        self.target
                    )
                })?;
                let fingerprint = fingerprint(&engine);
                self.engines.push((stack, engine, fingerprint));
                self.engines.len() - 1
            }
        };
        let (_, engine, fingerprint) = &self.engines[at];
        let bytes = engine
            .precompile_module(wasm)
            .map_err(|e| format!("cannot compile for {}: {e:#}", self.target))?;
        Ok(Artifact {
            bytes,
            engine: fingerprint.clone(),
        })
    }
}

/// A precompiled artifact as the manifest records it (`hooks[i].precompiled`),
/// its path resolved against the manifest's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Precompiled {
    pub artifact: PathBuf,
    /// SHA-256 of the artifact file.
    pub sha256: String,
    /// SHA-256 of the wasm module it was compiled from.
    pub module_sha256: String,
    /// The target triple it was compiled for.
    pub target: String,
    /// The fingerprint of the engine that compiled it.
    pub engine: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "tokenhook_abi_v1"))
      (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 0)
      (func (export "tokenhook_run") (param i32 i32) (result i64) i64.const 0))"#;

    #[test]
    fn both_lambda_architectures_can_be_compiled_for() {
        let wasm = wat::parse_str(HOOK).unwrap();
        let stack = super::super::Limits::default().stack;
        let mut prints = Vec::new();
        for target in ["aarch64-unknown-linux-gnu", "x86_64-unknown-linux-gnu"] {
            let mut compiler = CrossCompiler::new(&parse_target(target).unwrap());
            let artifact = compiler.compile(&wasm, stack).unwrap();
            assert!(
                Engine::detect_precompiled(&artifact.bytes).is_some(),
                "{target}"
            );
            // The same configuration fingerprints the same, every time.
            let again = compiler.compile(&wasm, stack).unwrap();
            assert_eq!(artifact.engine, again.engine);
            prints.push(artifact.engine);
        }
        assert_ne!(
            prints[0], prints[1],
            "the target is part of the fingerprint"
        );
    }

    #[test]
    fn settings_that_change_code_change_the_fingerprint() {
        let host = host_triple();
        let settings = EngineSettings::default();
        let a = fingerprint(&baseline_engine(&settings, 512 << 10, &host).unwrap());
        let b = fingerprint(&baseline_engine(&settings, 512 << 10, &host).unwrap());
        assert_eq!(a, b);
        let mut config = engine_config(&settings, 512 << 10, Some(&host)).unwrap();
        config.consume_fuel(false);
        let c = fingerprint(&Engine::new(&config).unwrap());
        assert_ne!(a, c, "fuel metering changes the code");
    }

    #[test]
    fn targets_are_normalised_and_checked() {
        assert_eq!(parse_target(NATIVE).unwrap(), host_triple());
        assert_eq!(
            parse_target("aarch64-unknown-linux-gnu").unwrap(),
            "aarch64-unknown-linux-gnu"
        );
        assert!(parse_target("not-a-triple-at-all").is_err());
    }
}
