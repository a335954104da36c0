//! Reloading the manifest while the local server runs: what an issuer was
//! loaded from ([`SourceFiles`]), the cell requests take the issuer in force
//! from ([`CurrentIssuer`]) with the outcome of the last reload
//! ([`ReloadStatus`]), and the watcher that reloads on SIGHUP or on a change
//! to the manifest or a hook module it names ([`watch`]).
//!
//! An [`Issuer`] is immutable: a reload builds a new one and swaps it in
//! whole; requests in flight keep the one they started with. A manifest that
//! fails to load is refused and the running one stays. Lambda never reloads
//! (a deploy starts new environments), so only the local server runs [`watch`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::manifest::{Manifest, ManifestError};
use crate::pipeline::{Issuer, Services};

/// How often the manifest and hook files are checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Modification time and size of a manifest and of the hook modules it names,
/// read from disk: what a reload compares. Reading tolerates a manifest that
/// does not parse (its hooks are then simply not listed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceFiles(Vec<(PathBuf, Option<(SystemTime, u64)>)>);

impl SourceFiles {
    pub fn read(manifest_path: &Path) -> SourceFiles {
        let stat = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        let mut files = vec![(manifest_path.to_path_buf(), stat(manifest_path))];
        let modules = std::fs::read_to_string(manifest_path)
            .ok()
            .and_then(|text| Manifest::parse(&text, manifest_path).ok())
            .map(|m| {
                m.hooks
                    .iter()
                    .map(|h| m.resolve(&h.module))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        files.extend(modules.into_iter().map(|p| {
            let s = stat(&p);
            (p, s)
        }));
        SourceFiles(files)
    }
}

/// The outcome of reloading so far, for operators and tests
/// (`GET /status/reload` on the local server; `tokenhook_reload_*` in
/// `/metrics`). Waiting for `generation` or `failures` to change is how a
/// caller knows a reload happened, instead of watching for nothing to change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadStatus {
    /// 1 for the issuer the process started with, plus one per reload that
    /// swapped in a new issuer.
    pub generation: u64,
    /// Reloads refused since the process started (the running issuer stayed).
    pub failures: u64,
    /// Why the latest reload attempt was refused; `None` once one succeeds.
    pub last_error: Option<ReloadError>,
}

/// A refused reload, as logged (manifest errors name the file, the field and
/// the cause; they never quote secret values, which the manifest only names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReloadError {
    /// What triggered the attempt: `SIGHUP` or `file change`.
    pub reason: String,
    /// The field path in the manifest (`grants[2].api`), or empty.
    pub field: String,
    pub message: String,
    /// When it was refused, in seconds since the Unix epoch.
    pub at: u64,
}

/// The issuer in force; a reload swaps it whole, requests in flight keep theirs.
#[derive(Clone)]
pub struct CurrentIssuer(Arc<Shared>);

struct Shared {
    /// Read on every request: a read lock and an `Arc` clone.
    issuer: RwLock<Arc<Issuer>>,
    /// Written only by reloads, read by the status route: kept apart so the
    /// request path never waits on it.
    status: Mutex<ReloadStatus>,
}

impl CurrentIssuer {
    /// Generation 1: the issuer the process starts with.
    pub fn new(issuer: Issuer) -> Self {
        CurrentIssuer(Arc::new(Shared {
            issuer: RwLock::new(Arc::new(issuer)),
            status: Mutex::new(ReloadStatus {
                generation: 1,
                ..ReloadStatus::default()
            }),
        }))
    }

    pub fn get(&self) -> Arc<Issuer> {
        self.0.issuer.read().expect("issuer lock").clone()
    }

    /// Swap in a newly loaded issuer; returns its generation.
    pub fn replace(&self, issuer: Issuer) -> u64 {
        *self.0.issuer.write().expect("issuer lock") = Arc::new(issuer);
        let mut status = self.0.status.lock().expect("status lock");
        status.generation += 1;
        status.last_error = None;
        metrics::gauge!("tokenhook_reload_generation").set(status.generation as f64);
        status.generation
    }

    /// Record a refused reload: the running issuer stays.
    pub fn refused(&self, reason: &str, err: &ManifestError) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut status = self.0.status.lock().expect("status lock");
        status.failures += 1;
        status.last_error = Some(ReloadError {
            reason: reason.to_string(),
            field: err.field.clone(),
            message: err.message.clone(),
            at,
        });
        metrics::counter!("tokenhook_reload_failures_total").increment(1);
    }

    pub fn status(&self) -> ReloadStatus {
        self.0.status.lock().expect("status lock").clone()
    }
}

/// Reload on SIGHUP or on a change to the manifest or any hook module it
/// names (checked every [`WATCH_INTERVAL`]). A manifest that fails to load
/// is refused, the running one stays, and it is not tried again until the
/// files change again (or SIGHUP).
pub async fn watch(path: PathBuf, services: Services, current: CurrentIssuer) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP handler");
    // What the running issuer was loaded from, so a change made while it was
    // loading is not missed.
    let mut seen = current.get().sources().clone();
    metrics::gauge!("tokenhook_reload_generation").set(current.status().generation as f64);
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        let reason = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = tick.tick() => {
                let now = SourceFiles::read(&path);
                if now == seen { continue; }
                "file change"
            }
        };
        // What this attempt reads: a change made while it loads differs from
        // it, so a refused load is retried once the files change again.
        let attempted = SourceFiles::read(&path);
        match Issuer::load(&path, &services).await {
            Ok(issuer) => {
                let hooks = issuer.hook_names().join(", ");
                seen = issuer.sources().clone();
                let generation = current.replace(issuer);
                tracing::info!(manifest = %path.display(), reason, hooks, generation, "manifest reloaded");
            }
            Err(err) => {
                seen = attempted;
                current.refused(reason, &err);
                tracing::error!(manifest = %path.display(), reason, error = %err, "manifest refused; the running configuration stays");
            }
        }
    }
}
