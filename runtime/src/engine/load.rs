//! Load: digest pin → limits within the ceiling → inspect → code (a verified
//! precompiled artifact, the cache, or Cranelift) → pre-link.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokenhook_sdk::wire::{HOST_MODULE, LOG_IMPORT};
use wasmtime::{Engine, Linker};

use super::call::{Exports, HookModule};
use super::failure::{FailureKind, HookFailure};
use super::host::host_log;
use super::inspect::{self, ModuleInfo};
use super::limiter::CallState;
use super::limits::Limits;
use super::precompiled::{self, Precompiled};
use super::setup::build_engine;
use super::{HookEngine, cache};

/// Where a loaded hook's machine code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeSource {
    /// The bundle's precompiled artifact, verified.
    Precompiled,
    /// The on-disk hook cache (`--hook-cache`), verified.
    Cache,
    /// Compiled earlier by this process (a reload).
    Memory,
    /// Compiled now with Cranelift.
    Compiled,
}

impl CodeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeSource::Precompiled => "precompiled",
            CodeSource::Cache => "cache",
            CodeSource::Memory => "memory",
            CodeSource::Compiled => "compiled",
        }
    }
}

/// How one hook was loaded, for the start-up breakdown.
#[derive(Clone, Debug)]
pub struct HookLoad {
    pub hook: String,
    pub code: CodeSource,
    pub started: Instant,
    /// Checked, compiled or deserialised, pre-linked (the module file was read before).
    pub took: Duration,
}

impl HookEngine {
    /// Read what a module declares and check it against contract v1 and
    /// `limits`, without compiling it.
    pub fn inspect(
        bytes: &[u8],
        limits: &Limits,
    ) -> (Result<ModuleInfo, HookFailure>, Option<HookFailure>) {
        let binary = match to_binary(bytes) {
            Ok(b) => b,
            Err(e) => return (Err(e), None),
        };
        match inspect::inspect(&binary, sha256_hex(bytes)) {
            Ok(info) => {
                let violation = inspect::check_contract(&info, limits).err();
                (Ok(info), violation)
            }
            Err(e) => (Err(e), None),
        }
    }

    /// Turn module bytes (binary wasm, or wat text) into a ready hook.
    /// `expected_sha256` pins the digest of `bytes` (lowercase hex).
    pub fn load(
        &self,
        bytes: &[u8],
        expected_sha256: Option<&str>,
        limits: Limits,
    ) -> Result<HookModule, HookFailure> {
        self.load_module(None, bytes, expected_sha256, limits, None)
            .map(|(module, _)| module)
    }

    /// [`HookEngine::load`] for the manifest's hook `name`, using its
    /// `precompiled` artifact when it verifies (else compiling, with a warning
    /// that names the hook and the reason), and noting how it was loaded for
    /// [`HookEngine::record_loads`].
    pub fn load_hook(
        &self,
        name: &str,
        bytes: &[u8],
        expected_sha256: Option<&str>,
        limits: Limits,
        precompiled: Option<&Precompiled>,
    ) -> Result<HookModule, HookFailure> {
        let started = Instant::now();
        let (module, code) =
            self.load_module(Some(name), bytes, expected_sha256, limits, precompiled)?;
        if let Some(log) = self.inner.load_log.lock().expect("load log").as_mut() {
            log.push(HookLoad {
                hook: name.to_string(),
                code,
                started,
                took: started.elapsed(),
            });
        }
        Ok(module)
    }

    /// Start noting how named hooks load (until [`HookEngine::take_loads`]).
    pub fn record_loads(&self) {
        *self.inner.load_log.lock().expect("load log") = Some(Vec::new());
    }

    /// What was noted since [`HookEngine::record_loads`]; stops noting.
    pub fn take_loads(&self) -> Vec<HookLoad> {
        self.inner
            .load_log
            .lock()
            .expect("load log")
            .take()
            .unwrap_or_default()
    }

    fn load_module(
        &self,
        name: Option<&str>,
        bytes: &[u8],
        expected_sha256: Option<&str>,
        limits: Limits,
        precompiled: Option<&Precompiled>,
    ) -> Result<(HookModule, CodeSource), HookFailure> {
        let sha256 = sha256_hex(bytes);
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(HookFailure::new(
                FailureKind::DigestMismatch,
                format!("module SHA-256 is {sha256}, the manifest pins {expected}"),
            ));
        }
        if let Some((name, value, max)) = limits.above_ceiling() {
            return Err(HookFailure::new(
                FailureKind::ResourceLimit,
                format!("limit `{name}` = {value} is above the host ceiling of {max}"),
            ));
        }
        let binary = to_binary(bytes)?;
        let info = inspect::inspect(&binary, sha256.clone())?;
        inspect::check_contract(&info, &limits)?;
        let engine = self.engine_for(limits.stack)?;
        let artifact = precompiled.map(|p| {
            self.precompiled_module(&engine, limits.stack, expected_sha256, p)
                .map_err(|why| {
                    tracing::warn!(
                        hook = name.unwrap_or("-"), artifact = %p.artifact.display(), reason = %why,
                        "precompiled hook not used; compiling the pinned module"
                    );
                })
        });
        let (module, code) = match artifact {
            Some(Ok(module)) => (module, CodeSource::Precompiled),
            _ => {
                let (module, origin) = self
                    .inner
                    .cache
                    .get_or_compile(&engine, limits.stack, &sha256, &binary)
                    .map_err(|e| HookFailure::new(FailureKind::InvalidModule, format!("{e:#}")))?;
                let code = match origin {
                    cache::Origin::Memory => CodeSource::Memory,
                    cache::Origin::Disk => CodeSource::Cache,
                    cache::Origin::Compiled => CodeSource::Compiled,
                };
                (module, code)
            }
        };
        let mut linker = Linker::<CallState>::new(&engine);
        linker
            .func_wrap(HOST_MODULE, LOG_IMPORT, host_log)
            .map_err(|e| HookFailure::new(FailureKind::InvalidModule, format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| HookFailure::new(FailureKind::ContractMismatch, format!("{e:#}")))?;
        Ok((
            HookModule {
                info,
                limits,
                engine,
                exports: Exports::of(&module),
                pre,
                owner: self.inner.clone(),
            },
            code,
        ))
    }

    /// The artifact's code as a module of `engine`, if every check passes;
    /// else why not. The module's own digest was checked against `pinned` by
    /// the caller.
    fn precompiled_module(
        &self,
        engine: &Engine,
        stack: u64,
        pinned: Option<&str>,
        p: &Precompiled,
    ) -> Result<wasmtime::Module, String> {
        let Some(pinned) = pinned else {
            return Err(
                "the hook has no `sha256` pin, and native code must come from a pinned module"
                    .into(),
            );
        };
        if !p.module_sha256.eq_ignore_ascii_case(pinned) {
            return Err(format!(
                "it was made from module {}, the manifest pins {pinned}",
                p.module_sha256
            ));
        }
        let host = precompiled::host_triple();
        if p.target != host {
            return Err(format!(
                "it was made for {}, this issuer runs on {host}",
                p.target
            ));
        }
        let expected = self.fingerprint_for(stack)?;
        if !p.engine.eq_ignore_ascii_case(&expected) {
            return Err(format!(
                "it was made by an engine with fingerprint {}, this issuer's is {expected} (another tokenhook or wasmtime build, or other engine settings)",
                p.engine
            ));
        }
        let code = std::fs::read(&p.artifact).map_err(|e| format!("cannot read it: {e}"))?;
        let digest = sha256_hex(&code);
        if !digest.eq_ignore_ascii_case(&p.sha256) {
            return Err(format!(
                "its SHA-256 is {digest}, the manifest records {}",
                p.sha256
            ));
        }
        // SAFETY: these are the very bytes the manifest records (digest
        // checked just above), made from the pinned module for this target by
        // an engine configured as this one (fingerprint); wasmtime checks
        // version, target, flags (each CPU feature used against this CPU),
        // tunables and features once more. See `precompiled`.
        unsafe { wasmtime::Module::deserialize(engine, &code) }
            .map_err(|e| format!("wasmtime refused it: {e:#}"))
    }

    /// The fingerprint artifacts for this host and `stack` must carry.
    fn fingerprint_for(&self, stack: u64) -> Result<String, String> {
        let mut prints = self.inner.fingerprints.lock().expect("fingerprint lock");
        if let Some((_, print)) = prints.iter().find(|(s, _)| *s == stack) {
            return Ok(print.clone());
        }
        let engine =
            precompiled::baseline_engine(&self.inner.settings, stack, &precompiled::host_triple())
                .map_err(|e| format!("cannot create the baseline engine: {e:#}"))?;
        let print = precompiled::fingerprint(&engine);
        prints.push((stack, print.clone()));
        Ok(print)
    }

    fn engine_for(&self, stack: u64) -> Result<Engine, HookFailure> {
        let mut engines = self.inner.engines.lock().expect("engine lock");
        if let Some((_, engine)) = engines.iter().find(|(s, _)| *s == stack) {
            return Ok(engine.clone());
        }
        let engine = build_engine(&self.inner.settings, stack).map_err(|e| {
            HookFailure::new(
                FailureKind::ResourceLimit,
                format!("cannot create engine: {e:#}"),
            )
        })?;
        engines.push((stack, engine.clone()));
        Ok(engine)
    }
}

/// Hooks may be shipped as wat text (tests, quick experiments) or binary wasm.
fn to_binary(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, HookFailure> {
    wat::parse_bytes(bytes).map_err(|e| {
        HookFailure::new(
            FailureKind::InvalidModule,
            format!("not a wasm module: {e}"),
        )
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}
