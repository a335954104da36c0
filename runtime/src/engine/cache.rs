//! Compiled-module cache: in memory for the process, optionally on disk so a
//! restart (or a Lambda cold start with a prepared cache) skips Cranelift.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wasmtime::{Engine, Module};

/// Compiled modules keyed by module digest and engine configuration.
///
/// On-disk artifacts are native code that wasmtime loads without re-checking:
/// the cache directory must be writable only by tokenhook itself (it is
/// created with mode 0700).
pub struct ModuleCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<String, Module>>,
}

impl ModuleCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        ModuleCache {
            dir,
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled module for `bytes` on `engine` (identified by `engine_id`),
    /// from memory, disk, or Cranelift.
    /// Returns the module and whether it had to be compiled.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        engine_id: u64,
        sha256: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Module, bool)> {
        let key = format!("{sha256}-{:016x}", engine_fingerprint(engine));
        // A `Module` belongs to the engine that made it; on disk, any
        // compatible engine can load the artifact.
        let memory_key = format!("{key}-{engine_id}");
        if let Some(module) = self.memory.lock().expect("cache lock").get(&memory_key) {
            return Ok((module.clone(), false));
        }
        let path = self.dir.as_ref().map(|d| d.join(format!("{key}.cwasm")));
        if let Some(path) = &path
            && path.exists()
        {
            // SAFETY: the file was written by `Engine::precompile_module` of an
            // engine with the same fingerprint into a directory only we can
            // write (see the type's docs); wasmtime checks version and config.
            if let Ok(module) = unsafe { Module::deserialize_file(engine, path) } {
                self.remember(memory_key, &module);
                return Ok((module, false));
            }
        }
        let compiled = engine.precompile_module(bytes)?;
        // SAFETY: produced just above by this very engine.
        let module = unsafe { Module::deserialize(engine, &compiled)? };
        if let Some(path) = &path {
            write_artifact(path, &compiled);
        }
        self.remember(memory_key, &module);
        Ok((module, true))
    }

    fn remember(&self, key: String, module: &Module) {
        self.memory
            .lock()
            .expect("cache lock")
            .insert(key, module.clone());
    }
}

/// A stable fingerprint of everything that makes compiled code compatible.
fn engine_fingerprint(engine: &Engine) -> u64 {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// Best effort: a cache that cannot be written only costs a recompile later.
fn write_artifact(path: &Path, compiled: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if create_private_dir(dir).is_err() {
        tracing::warn!(dir = %dir.display(), "hook cache directory cannot be created; not caching");
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, compiled).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
