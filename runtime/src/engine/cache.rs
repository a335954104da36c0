//! Compiled-module cache: in memory for the process, optionally on disk so a
//! restart (or a Lambda cold start with a prepared cache) skips Cranelift.
//!
//! What is on disk is native code that wasmtime maps and runs unchecked, so
//! the disk cache is used only when it is safe to:
//! - the directory must be ours alone: owned by this user, not writable by
//!   group or others, not a symbolic link, and every directory above it owned
//!   by us or root and not writable by others unless sticky (as `/tmp`).
//!   Otherwise the cache directory is not used at all (one warning), and hooks
//!   are compiled in each process;
//! - each entry carries the SHA-256 of its code, checked before the code is
//!   mapped: a truncated, damaged or swapped file is recompiled and replaced.
//!   (The digest is no defence against someone who may write the directory;
//!   the ownership rule above is.)
//! - files are opened without following symbolic links, and written to a new
//!   private file (`O_CREAT|O_EXCL`, mode 0600) that is then renamed into
//!   place, so a planted link or a half-written file is never used.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use wasmtime::{Engine, Module};

use super::precompiled::fingerprint;
use super::sha256_hex;

/// First bytes of every cache entry: format version, then the SHA-256 (hex)
/// of the code that follows the newline.
const MAGIC: &[u8] = b"tokenhook-hook-cache-v1 ";
const HEADER_LEN: usize = MAGIC.len() + 64 + 1;

/// Where a module's machine code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Already compiled by this process.
    Memory,
    /// Read back from the on-disk cache, digest verified.
    Disk,
    /// Compiled now with Cranelift.
    Compiled,
}

/// Compiled modules keyed by module digest and engine configuration.
pub struct ModuleCache {
    dir: Option<PathBuf>,
    /// Whether `dir` passed the ownership checks (checked once, on first use).
    dir_ok: OnceLock<bool>,
    memory: Mutex<HashMap<String, Module>>,
}

impl ModuleCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        ModuleCache {
            dir,
            dir_ok: OnceLock::new(),
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled module for `bytes` on `engine` (identified by `engine_id`),
    /// from memory, disk, or Cranelift.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        engine_id: u64,
        sha256: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Module, Origin)> {
        let key = format!("{sha256}-{}", &fingerprint(engine)[..32]);
        // A `Module` belongs to the engine that made it; on disk, any
        // compatible engine can load the artifact.
        let memory_key = format!("{key}-{engine_id}");
        if let Some(module) = self.memory.lock().expect("cache lock").get(&memory_key) {
            return Ok((module.clone(), Origin::Memory));
        }
        let path = self.usable_dir().map(|d| d.join(format!("{key}.cwasm")));
        if let Some(path) = &path
            && let Some(code) = read_entry(path)
        {
            // SAFETY: the code is what this user's tokenhook wrote for an
            // engine with the same fingerprint (key), into a directory only
            // this user can write (checked), and its digest matches; wasmtime
            // checks version, target, flags and tunables again.
            match unsafe { Module::deserialize(engine, &code) } {
                Ok(module) => {
                    self.remember(memory_key, &module);
                    return Ok((module, Origin::Disk));
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "hook cache entry refused by wasmtime; recompiling")
                }
            }
        }
        let compiled = engine.precompile_module(bytes)?;
        // SAFETY: produced just above by this very engine.
        let module = unsafe { Module::deserialize(engine, &compiled)? };
        if let Some(path) = &path
            && let Err(e) = write_entry(path, &compiled)
        {
            // A cache that cannot be written only costs a recompile later.
            tracing::warn!(file = %path.display(), error = %e, "cannot write the hook cache entry");
        }
        self.remember(memory_key, &module);
        Ok((module, Origin::Compiled))
    }

    fn remember(&self, key: String, module: &Module) {
        self.memory
            .lock()
            .expect("cache lock")
            .insert(key, module.clone());
    }

    /// The cache directory, if configured and ours alone; created (0700) if absent.
    fn usable_dir(&self) -> Option<&Path> {
        let dir = self.dir.as_deref()?;
        let ok = *self.dir_ok.get_or_init(|| match prepare_dir(dir) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(dir = %dir.display(), reason = %why, "hook cache directory not used; hooks are compiled in each process");
                false
            }
        });
        ok.then_some(dir)
    }
}

/// Create `dir` if needed and check that only this user can change what is in it.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(dir).is_err() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create it: {e}"))?;
    }
    let euid = unsafe { libc::geteuid() };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link".into());
    }
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    if meta.uid() != euid {
        return Err(format!(
            "it is owned by uid {}, not by this process's uid {euid}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "group or others may write it (mode {:o}); `chmod go-w` it",
            meta.mode() & 0o7777
        ));
    }
    // Whoever may write a directory above it may swap it for their own.
    let absolute = std::path::absolute(dir).map_err(|e| format!("cannot resolve it: {e}"))?;
    for ancestor in absolute.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)
            .map_err(|e| format!("cannot read {}: {e}", ancestor.display()))?;
        let mode = meta.permissions().mode();
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(format!(
                "{} is owned by uid {}, neither this user nor root",
                ancestor.display(),
                meta.uid()
            ));
        }
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(format!(
                "others may write {} (mode {:o}) and it is not sticky",
                ancestor.display(),
                mode & 0o7777
            ));
        }
    }
    Ok(())
}

/// The verified code of a cache entry, or `None` (absent, a link, not ours,
/// damaged: each but absence is logged).
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "hook cache entry not used (a symbolic link, or unreadable); recompiling");
            return None;
        }
    };
    let refuse = |why: &str| {
        tracing::warn!(file = %path.display(), reason = why, "hook cache entry not used; recompiling");
        None
    };
    let Ok(meta) = file.metadata() else {
        return refuse("cannot read its metadata");
    };
    if !meta.is_file() || meta.uid() != unsafe { libc::geteuid() } || meta.mode() & 0o022 != 0 {
        return refuse("not a regular file of this user writable only by it");
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    if file.read_to_end(&mut data).is_err() {
        return refuse("cannot read it");
    }
    if data.len() < HEADER_LEN || !data.starts_with(MAGIC) || data[HEADER_LEN - 1] != b'\n' {
        return refuse("not a tokenhook hook cache entry");
    }
    let code = data.split_off(HEADER_LEN);
    if sha256_hex(&code).as_bytes() != &data[MAGIC.len()..HEADER_LEN - 1] {
        return refuse("its SHA-256 differs from the one recorded when it was written");
    }
    Some(code)
}

/// Write an entry: a new private file beside it, renamed into place.
fn write_entry(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = path.with_file_name(format!(".{name}.{}.{nonce}.tmp", std::process::id()));
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = (|| {
        file.write_all(MAGIC)?;
        file.write_all(sha256_hex(code).as_bytes())?;
        file.write_all(b"\n")?;
        file.write_all(code)?;
        // rename(2) replaces a link at `path` itself; it never follows it.
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::setup::build_engine;
    use crate::engine::{EngineSettings, Limits};

    const WAT: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "tokenhook_abi_v1"))
      (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 0)
      (func (export "tokenhook_run") (param i32 i32) (result i64) i64.const 0))"#;

    fn engine() -> Engine {
        build_engine(
            &EngineSettings {
                max_instances: 4,
                cache_dir: None,
            },
            Limits::default().stack,
        )
        .unwrap()
    }

    /// Load the module through a fresh cache on `dir` (nothing in memory).
    fn load(engine: &Engine, dir: &Path) -> Origin {
        let wasm = wat::parse_str(WAT).unwrap();
        let cache = ModuleCache::new(Some(dir.to_path_buf()));
        cache
            .get_or_compile(engine, 1, &sha256_hex(&wasm), &wasm)
            .unwrap()
            .1
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn a_verified_entry_is_used_and_a_tampered_one_is_recompiled() {
        let engine = engine();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        assert_eq!(load(&engine, &dir), Origin::Compiled);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(load(&engine, &dir), Origin::Disk);

        let [entry] = entries(&dir).try_into().unwrap();
        let mut data = std::fs::read(&entry).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&entry, &data).unwrap();
        assert_eq!(load(&engine, &dir), Origin::Compiled, "tampered code");
        // ...and the entry was replaced with a good one.
        assert_eq!(load(&engine, &dir), Origin::Disk);

        std::fs::write(&entry, b"not a cache entry").unwrap();
        assert_eq!(load(&engine, &dir), Origin::Compiled, "no header");
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        let engine = engine();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(load(&engine, &dir), Origin::Compiled);
        assert!(entries(&dir).is_empty(), "nothing written");
        assert_eq!(load(&engine, &dir), Origin::Compiled);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert_eq!(load(&engine, &dir), Origin::Compiled, "group-writable");
        assert!(entries(&dir).is_empty());

        // A parent others may write (not sticky) is refused too.
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let below = open.join("cache");
        assert_eq!(load(&engine, &below), Origin::Compiled);
        assert!(entries(&below).is_empty());
    }

    #[test]
    fn links_are_not_followed() {
        let engine = engine();
        let tmp = tempfile::tempdir().unwrap();
        // A good entry elsewhere, then a link to it where the entry belongs.
        let other = tmp.path().join("other");
        assert_eq!(load(&engine, &other), Origin::Compiled);
        let [real] = entries(&other).try_into().unwrap();
        let before = std::fs::read(&real).unwrap();
        let dir = tmp.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let planted = dir.join(real.file_name().unwrap());
        std::os::unix::fs::symlink(&real, &planted).unwrap();

        assert_eq!(load(&engine, &dir), Origin::Compiled, "link not read");
        let meta = std::fs::symlink_metadata(&planted).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the link was replaced, not followed"
        );
        assert_eq!(
            std::fs::read(&real).unwrap(),
            before,
            "its target untouched"
        );
        assert_eq!(load(&engine, &dir), Origin::Disk);

        // A link as the cache directory itself is refused.
        let linked = tmp.path().join("linked");
        std::os::unix::fs::symlink(&dir, &linked).unwrap();
        assert_eq!(load(&engine, &linked), Origin::Compiled);
    }
}
