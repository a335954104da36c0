//! The hook engine: turns a wasm module into a ready, pre-linked hook in clear
//! stages, and runs it in a fresh, limited instance per call.
//!
//! load: digest pin → limits within the ceiling → [`inspect`] (imports, exports,
//! contract version, declared memory/table) → compile once ([`cache`]) →
//! pre-link (`InstancePre`). call: fresh `Store` + instance from the pooling
//! allocator → fuel + epoch deadline (start function included) → alloc, write
//! event, run → read and parse output. Every failure is a [`HookFailure`].
//!
//! One file per stage: `setup` (the wasmtime configuration), `clock` (the
//! epoch ticker, parked while no hook runs),
//! `load`, `call` (the call protocol and the one place a call's `Store` is set
//! up), `classify` (traps and refusals named as [`FailureKind`]s), `limiter`
//! (per-call state, memory and table caps), `host` (the `tokenhook.log`
//! import); [`inspect`], [`cache`], [`precompiled`], [`limits`] and
//! [`failure`] as before. Everything public is re-exported here.

mod cache;
mod call;
mod classify;
mod clock;
pub mod failure;
mod host;
pub mod inspect;
mod limiter;
pub mod limits;
mod load;
pub mod precompiled;
mod runner;
mod setup;

use std::sync::{Arc, Mutex};

use wasmtime::Engine;

pub use call::{HookCall, HookModule, PreparedConfig, Usage};
pub use clock::IDLE_TICKS;
pub use failure::{FailureKind, HookFailure};
pub use host::{MAX_LOG_LINE_BYTES, MAX_LOG_LINE_RAW_BYTES, MAX_LOG_LINES};
pub use inspect::ModuleInfo;
pub use limits::Limits;
pub use load::{CodeSource, HookLoad, sha256_hex};
pub use precompiled::Precompiled;
pub use setup::{EPOCH_TICK, EngineSettings, KEEP_RESIDENT, engine_config};

/// Compiles, caches and runs hooks. `Send + Sync`: share one per process.
#[derive(Clone)]
pub struct HookEngine {
    inner: Arc<Inner>,
}

struct Inner {
    settings: EngineSettings,
    /// One wasmtime engine per distinct wasm stack cap (an engine setting).
    engines: Mutex<Vec<(u64, Engine)>>,
    cache: cache::ModuleCache,
    /// Per stack cap, the fingerprint precompiled artifacts must carry
    /// ([`precompiled`]); computed when the first artifact is offered.
    fingerprints: Mutex<Vec<(u64, String)>>,
    /// How each named hook was loaded, while someone records (start-up).
    load_log: Mutex<Option<Vec<HookLoad>>>,
    /// Advances the engines' epochs while calls are in flight.
    clock: Arc<clock::EpochClock>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.clock.stop();
    }
}

impl HookEngine {
    /// A hook engine with `settings`; starts the epoch ticker thread, which
    /// stops once the last clone is dropped.
    pub fn new(settings: EngineSettings) -> Self {
        let inner = Arc::new(Inner {
            cache: cache::ModuleCache::new(settings.cache_dir.clone()),
            settings,
            engines: Mutex::new(Vec::new()),
            fingerprints: Mutex::new(Vec::new()),
            load_log: Mutex::new(None),
            clock: Arc::default(),
        });
        clock::EpochClock::start(inner.clock.clone(), Arc::downgrade(&inner));
        HookEngine { inner }
    }

    /// Whether the epoch ticker is parked: no hook call has been in flight
    /// for [`clock::IDLE_TICKS`] ticks. A call wakes it before it runs.
    pub fn epoch_clock_parked(&self) -> bool {
        self.inner.clock.is_parked()
    }
}
