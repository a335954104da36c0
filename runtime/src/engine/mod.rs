//! The hook engine: turns a wasm module into a ready, pre-linked hook in clear
//! stages, and runs it in a fresh, limited instance per call.
//!
//! load: digest pin → limits within the ceiling → [`inspect`] (imports, exports,
//! contract version, declared memory/table) → compile once ([`cache`]) →
//! pre-link (`InstancePre`). call: fresh `Store` + instance from the pooling
//! allocator → fuel + epoch deadline (start function included) → alloc, write
//! event, run → read and parse output. Every failure is a [`HookFailure`].

mod cache;
pub mod failure;
pub mod inspect;
pub mod limits;
pub mod precompiled;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokenhook_sdk::wire::{
    ALLOC_EXPORT, Command, HOST_MODULE, HookOutput, LOG_IMPORT, LogLevel, LogLine, MEMORY_EXPORT,
    RUN_EXPORT,
};
use wasmtime::{
    Caller, Config, Enabled, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker,
    PoolConcurrencyLimitError, PoolingAllocationConfig, ResourceLimiter, Store, Trap,
};

pub use failure::{FailureKind, HookFailure};
pub use inspect::ModuleInfo;
pub use limits::Limits;
pub use precompiled::Precompiled;

/// How often the background thread advances the epoch. Deadlines are exact to
/// about one tick; a shorter tick costs more idle wake-ups.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Bytes of a finished instance's memory (and table) that are zeroed in place
/// for reuse rather than returned to the kernel. Returning pages costs page
/// faults on the next call and, once several threads run hooks, TLB
/// shootdowns across cores; zeroing a small hook's few hundred KiB is cheaper.
/// Memory beyond this is returned as usual.
pub const KEEP_RESIDENT: usize = 512 << 10;
/// A hook keeps at most this many log lines per call; further lines are counted.
pub const MAX_LOG_LINES: usize = 32;
/// Log lines are logged cut to this many bytes, after the host has redacted
/// the hook's secrets from them (`hook_secrets::Redactor::log_line`).
pub const MAX_LOG_LINE_BYTES: usize = 1024;
/// The engine keeps this many bytes of a log line (cut at a character
/// boundary and marked `…`): more than is logged, so that redaction runs on
/// more than the logged part and a secret across the 1 KiB cut is masked
/// whole. Bounds a call's log memory to 32 × 4 KiB.
pub const MAX_LOG_LINE_RAW_BYTES: usize = 4096;

/// Engine-wide settings. Per-hook limits are in [`Limits`].
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Hook instances that may be alive at once, across all requests. Default
    /// 256. Each slot reserves (but does not commit) address space for a memory
    /// of up to [`Limits::CEILING`]; when all are busy a call fails with
    /// `resource_limit` instead of waiting.
    pub max_instances: u32,
    /// Where compiled modules are kept between runs. Default `None`: compile
    /// once per process. Must be a directory only tokenhook can write.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances: 256,
            cache_dir: None,
        }
    }
}

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
}

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
    pub fn new(settings: EngineSettings) -> Self {
        let inner = Arc::new(Inner {
            cache: cache::ModuleCache::new(settings.cache_dir.clone()),
            settings,
            engines: Mutex::new(Vec::new()),
            fingerprints: Mutex::new(Vec::new()),
            load_log: Mutex::new(None),
        });
        spawn_epoch_ticker(Arc::downgrade(&inner));
        HookEngine { inner }
    }

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
                pre,
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

fn build_engine(settings: &EngineSettings, stack: u64) -> wasmtime::Result<Engine> {
    Engine::new(&engine_config(settings, stack, None)?)
}

/// The one wasmtime configuration of every hook engine: the issuer's own
/// (`target` `None`: this host, CPU features detected) and the ones that
/// precompile hooks (`tokenhook bundle --target`, and the issuer's check of a
/// bundle's fingerprint). One function, so they cannot drift apart: code made
/// with another configuration is refused by the fingerprint check, then by
/// wasmtime itself.
///
/// An explicit `target` (even this host's triple) means a baseline CPU for
/// that architecture: no CPU feature is detected or assumed, so the code runs
/// on every CPU of the architecture.
pub fn engine_config(
    settings: &EngineSettings,
    stack: u64,
    target: Option<&str>,
) -> wasmtime::Result<Config> {
    let ceiling = Limits::CEILING;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(settings.max_instances)
        .total_memories(settings.max_instances)
        .total_tables(settings.max_instances)
        .total_component_instances(0)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(ceiling.memory as usize)
        .table_elements(ceiling.table_elements as usize)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        // Reset only the pages a call wrote (Linux ≥ 6.7), not the whole
        // resident prefix: a hook's initial memory is a few hundred KiB (its
        // stack, data and allocator arena) of which a call writes a few pages.
        // Without it, every call rewrote 256 KiB per example hook, evicting
        // the caches the rest of the request needs. Elsewhere: the memset.
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(stack as usize)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(target) = target {
        config.target(target)?;
    }
    Ok(config)
}

/// Advance every engine's epoch each [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(inner: Weak<Inner>) {
    std::thread::Builder::new()
        .name("tokenhook-epoch".into())
        .spawn(move || {
            while let Some(inner) = inner.upgrade() {
                for (_, engine) in inner.engines.lock().expect("engine lock").iter() {
                    engine.increment_epoch();
                }
                drop(inner);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn epoch thread");
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

/// A validated, compiled, pre-linked hook with its limits.
pub struct HookModule {
    pub info: ModuleInfo,
    pub limits: Limits,
    engine: Engine,
    pre: InstancePre<CallState>,
}

/// Resources one call used, reported beside its limits.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Usage {
    pub fuel_used: u64,
    /// Largest linear-memory size the instance reached, in bytes.
    pub memory_peak: u64,
    #[serde(serialize_with = "as_micros")]
    pub wall_time: Duration,
}

fn as_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

/// The result of one hook call: commands or a failure, plus logs and usage.
#[derive(Debug)]
pub struct HookCall {
    pub outcome: Result<Vec<Command>, HookFailure>,
    pub logs: Vec<LogLine>,
    /// Log lines beyond [`MAX_LOG_LINES`] that were dropped.
    pub logs_dropped: usize,
    pub usage: Usage,
}

impl HookModule {
    /// Run the hook on one event (JSON) in a fresh instance.
    pub fn call(&self, event_json: &[u8]) -> HookCall {
        let started = Instant::now();
        let mut store = Store::new(&self.engine, CallState::new(&self.limits));
        store.limiter(|state| &mut state.limiter);
        let outcome = self.run(&mut store, event_json);
        let fuel_left = store.get_fuel().unwrap_or(0);
        let state = store.into_data();
        HookCall {
            outcome,
            usage: Usage {
                fuel_used: self.limits.fuel.saturating_sub(fuel_left),
                memory_peak: state.limiter.memory_peak as u64,
                wall_time: started.elapsed(),
            },
            logs: state.logs,
            logs_dropped: state.logs_dropped,
        }
    }

    /// The module's export names, for optional declarations such as
    /// `tokenhook_reads=` ([`tokenhook_sdk::wire::READS_EXPORT_PREFIX`]).
    pub fn export_names(&self) -> impl Iterator<Item = &str> {
        self.pre.module().exports().map(|export| export.name())
    }

    /// Create (and drop) a fresh instance without calling the hook: the fixed
    /// cost of every call, for benchmarks and readiness checks.
    pub fn instantiate_only(&self) -> Result<(), HookFailure> {
        let mut store = Store::new(&self.engine, CallState::new(&self.limits));
        store.limiter(|state| &mut state.limiter);
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| self.classify(e, &store))?;
        store.set_epoch_deadline(deadline_ticks(self.limits.timeout));
        store.epoch_deadline_trap();
        self.pre
            .instantiate(&mut store)
            .map_err(|e| self.classify(e, &store))?;
        Ok(())
    }

    fn run(&self, store: &mut Store<CallState>, input: &[u8]) -> Result<Vec<Command>, HookFailure> {
        if input.len() as u64 > self.limits.max_input {
            return Err(HookFailure::new(
                FailureKind::InputTooLarge,
                format!(
                    "event is {} bytes, the hook's input cap is {}",
                    input.len(),
                    self.limits.max_input
                ),
            ));
        }
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| self.classify(e, store))?;
        store.set_epoch_deadline(deadline_ticks(self.limits.timeout));
        store.epoch_deadline_trap();

        let instance = self
            .pre
            .instantiate(&mut *store)
            .map_err(|e| self.classify(e, store))?;
        let contract =
            |what: &str| HookFailure::new(FailureKind::ContractMismatch, what.to_string());
        let memory = instance
            .get_memory(&mut *store, MEMORY_EXPORT)
            .ok_or_else(|| contract("no memory export"))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut *store, ALLOC_EXPORT)
            .map_err(|e| contract(&format!("{e:#}")))?;
        let run = instance
            .get_typed_func::<(i32, i32), i64>(&mut *store, RUN_EXPORT)
            .map_err(|e| contract(&format!("{e:#}")))?;

        let len = input.len() as i32;
        let ptr = alloc
            .call(&mut *store, len)
            .map_err(|e| self.classify(e, store))?;
        memory.write(&mut *store, ptr as u32 as usize, input).map_err(|_| {
            HookFailure::new(
                FailureKind::InvalidOutput,
                format!("`{ALLOC_EXPORT}` returned {ptr:#x}, which does not fit {len} bytes in memory"),
            )
        })?;
        let packed = run
            .call(&mut *store, (ptr, len))
            .map_err(|e| self.classify(e, store))? as u64;
        let (out_ptr, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        if out_len as u64 > self.limits.max_output {
            return Err(HookFailure::new(
                FailureKind::OutputTooLarge,
                format!(
                    "output is {out_len} bytes, the hook's output cap is {}",
                    self.limits.max_output
                ),
            ));
        }
        let output = memory
            .data(&*store)
            .get(out_ptr..out_ptr.saturating_add(out_len))
            .ok_or_else(|| {
                HookFailure::new(
                    FailureKind::InvalidOutput,
                    format!("output range {out_ptr:#x}+{out_len} lies outside the hook's memory"),
                )
            })?;
        match serde_json::from_slice::<HookOutput>(output) {
            Ok(HookOutput::Commands(commands)) => Ok(commands),
            Ok(HookOutput::Error(err)) => {
                Err(HookFailure::new(FailureKind::HookError, err.message))
            }
            Err(err) => Err(HookFailure::new(
                FailureKind::InvalidOutput,
                format!("output is not contract-v1 JSON: {err}"),
            )),
        }
    }

    /// Name what went wrong, from the limiter's record and the trap code.
    fn classify(&self, err: wasmtime::Error, store: &Store<CallState>) -> HookFailure {
        let state = store.data();
        if let Some(desired) = state.limiter.memory_refused {
            return HookFailure::new(
                FailureKind::MemoryLimit,
                format!(
                    "linear memory would grow to {desired} bytes, above the cap of {} bytes",
                    self.limits.memory
                ),
            );
        }
        if let Some(desired) = state.limiter.table_refused {
            return HookFailure::new(
                FailureKind::ResourceLimit,
                format!(
                    "table would grow to {desired} elements, above the cap of {}",
                    self.limits.table_elements
                ),
            );
        }
        if err.is::<PoolConcurrencyLimitError>() {
            return HookFailure::new(
                FailureKind::ResourceLimit,
                format!("all hook instance slots are busy: {err}"),
            );
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => HookFailure::new(
                FailureKind::Timeout,
                format!("deadline of {:?} passed", self.limits.timeout),
            ),
            Some(Trap::OutOfFuel) => HookFailure::new(
                FailureKind::OutOfFuel,
                format!("fuel budget of {} exhausted", self.limits.fuel),
            ),
            Some(Trap::StackOverflow) => HookFailure::new(
                FailureKind::StackOverflow,
                format!("wasm stack cap of {} bytes exceeded", self.limits.stack),
            ),
            Some(trap) => {
                let panic =
                    state.logs.iter().rev().find(|l| {
                        l.level == LogLevel::Error && l.message.starts_with("hook panicked")
                    });
                let message = match panic {
                    Some(line) => format!("{trap}; {}", line.message),
                    None => trap.to_string(),
                };
                HookFailure::new(FailureKind::Trap, message)
            }
            None => HookFailure::new(FailureKind::Trap, format!("{err:#}")),
        }
    }
}

/// Ticks from now until the deadline; rounded up, plus one because the next
/// tick may come at any moment, so a hook never gets less than its timeout.
fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    (timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
}

/// Per-call store data.
struct CallState {
    limiter: CallLimiter,
    logs: Vec<LogLine>,
    logs_dropped: usize,
}

impl CallState {
    fn new(limits: &Limits) -> Self {
        CallState {
            limiter: CallLimiter {
                memory_cap: limits.memory as usize,
                table_cap: limits.table_elements as usize,
                memory_peak: 0,
                memory_refused: None,
                table_refused: None,
            },
            logs: Vec::new(),
            logs_dropped: 0,
        }
    }
}

/// Enforces the per-hook memory and table caps and records peak use. Growth
/// past a cap traps at once (rather than returning -1 to the guest), so the
/// failure is reported as `memory_limit`, not as whatever the guest does next.
struct CallLimiter {
    memory_cap: usize,
    table_cap: usize,
    memory_peak: usize,
    memory_refused: Option<usize>,
    table_refused: Option<usize>,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_refused = Some(desired);
            wasmtime::bail!("memory cap of {} bytes exceeded", self.memory_cap);
        }
        self.memory_peak = self.memory_peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_cap {
            self.table_refused = Some(desired);
            wasmtime::bail!("table cap of {} elements exceeded", self.table_cap);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// `tokenhook.log(level, ptr, len)`: keep a bounded number of bounded lines.
fn host_log(
    mut caller: Caller<'_, CallState>,
    level: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<()> {
    let Some(Extern::Memory(memory)) = caller.get_export(MEMORY_EXPORT) else {
        wasmtime::bail!("tokenhook.log called by a module without a memory export");
    };
    let (data, state) = memory.data_and_store_mut(&mut caller);
    if state.logs.len() >= MAX_LOG_LINES {
        state.logs_dropped += 1;
        return Ok(());
    }
    let start = ptr as u32 as usize;
    let end = start.saturating_add(len as u32 as usize);
    let Some(bytes) = data.get(start..end) else {
        wasmtime::bail!("tokenhook.log called with a range outside memory");
    };
    let mut kept = &bytes[..bytes.len().min(MAX_LOG_LINE_RAW_BYTES)];
    if kept.len() < bytes.len()
        && let Err(e) = std::str::from_utf8(kept)
        && e.error_len().is_none()
    {
        // The cut split a character: drop its first bytes rather than end in
        // U+FFFD, so the bytes before the cut stay comparable for redaction.
        kept = &kept[..e.valid_up_to()];
    }
    let mut message = String::from_utf8_lossy(kept).into_owned();
    if bytes.len() > MAX_LOG_LINE_RAW_BYTES {
        message.push('…');
    }
    state.logs.push(LogLine {
        level: LogLevel::from_raw(level),
        message,
    });
    Ok(())
}
