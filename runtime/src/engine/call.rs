//! The call protocol: a fresh, limited instance per call → alloc, write the
//! event, run → read and parse the output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokenhook_sdk::wire::{
    ALLOC_EXPORT, Command, HookOutput, INIT_EXPORT, LogLine, MEMORY_EXPORT, RUN_EXPORT,
};
use wasmtime::{
    Engine, Extern, ExternType, Func, FuncType, Instance, InstancePre, ModuleExport, Store, ValRaw,
    ValType,
};

use super::failure::{FailureKind, HookFailure};
use super::inspect::ModuleInfo;
use super::limiter::CallState;
use super::limits::Limits;
use super::setup::EPOCH_TICK;

/// A validated, compiled, pre-linked hook with its limits.
pub struct HookModule {
    pub info: ModuleInfo,
    pub limits: Limits,
    pub(super) engine: Engine,
    pub(super) pre: InstancePre<CallState>,
    pub(super) exports: Exports,
    /// The engine's shared state, kept alive by every module loaded from it:
    /// its epoch clock (so a call's deadline holds) lives as long as any hook.
    pub(super) owner: Arc<super::Inner>,
}

/// The contract's exports, resolved once at load: a call reaches them by
/// index instead of looking their names up (and the host's log import reaches
/// the memory the same way). `None` for one a module lacks (refused at load).
#[derive(Clone, Copy)]
pub(super) struct Exports {
    memory: Option<ModuleExport>,
    /// `(len) -> ptr`: where the host writes the input.
    alloc: Option<Entry>,
    /// `(ptr, len) -> (out_ptr << 32) | out_len`, as `init` is.
    run: Option<Entry>,
    /// Optional: the config prepared once ([`HookModule::prepare`]).
    init: Option<Entry>,
}

impl Exports {
    pub(super) fn of(module: &wasmtime::Module) -> Self {
        Exports {
            memory: module.get_export_index(MEMORY_EXPORT),
            alloc: Entry::of(module, ALLOC_EXPORT, &[ValType::I32], ValType::I32),
            run: Entry::of(
                module,
                RUN_EXPORT,
                &[ValType::I32, ValType::I32],
                ValType::I64,
            ),
            init: Entry::of(
                module,
                INIT_EXPORT,
                &[ValType::I32, ValType::I32],
                ValType::I64,
            ),
        }
    }
}

/// A function export of the contract whose type was checked once, at load,
/// against the compiled module's own type of it: calls then pass raw values
/// without a per-call type check (which costs a type-registry lookup and its
/// reference count, ≈ 0.3 µs per call).
#[derive(Clone, Copy)]
struct Entry {
    at: ModuleExport,
    params: usize,
}

impl Entry {
    /// The export `name` if it is a function `(params) -> (result)`; `None`
    /// otherwise (inspect refuses such a module before this is asked).
    fn of(
        module: &wasmtime::Module,
        name: &str,
        params: &[ValType],
        result: ValType,
    ) -> Option<Entry> {
        let expected = FuncType::new(module.engine(), params.iter().cloned(), [result]);
        match module.get_export(name)? {
            ExternType::Func(ty) if FuncType::eq(&ty, &expected) => Some(Entry {
                at: module.get_export_index(name)?,
                params: params.len(),
            }),
            _ => None,
        }
    }

    /// This entry in `instance` (an instance of the module it was checked on).
    fn bind(&self, instance: &Instance, store: &mut Store<CallState>) -> Option<Bound> {
        let func = instance
            .get_module_export(store, &self.at)
            .and_then(Extern::into_func)?;
        Some(Bound {
            func,
            params: self.params,
        })
    }
}

/// An [`Entry`] of one instance, ready to call.
#[derive(Clone, Copy)]
struct Bound {
    func: Func,
    params: usize,
}

impl Bound {
    /// Call it with `args` (as many i32s as its type has); its one result.
    fn call(&self, store: &mut Store<CallState>, args: &[i32]) -> wasmtime::Result<ValRaw> {
        assert_eq!(args.len(), self.params, "arguments of a contract export");
        let mut slots = [ValRaw::i32(0); 2];
        for (slot, arg) in slots.iter_mut().zip(args) {
            *slot = ValRaw::i32(*arg);
        }
        // SAFETY: `func` is an export of an instance of the module whose own
        // type for it was checked when its `Entry` was made: `params` i32
        // arguments and one result, which `slots` has room for (the first
        // slot holds the result on return). No GC values are involved.
        unsafe {
            self.func
                .call_unchecked(&mut *store, &mut slots[..self.params.max(1)])?
        };
        Ok(slots[0])
    }
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

/// What a hook's `tokenhook_init` made of its config: the bytes of linear
/// memory the call changed, which every call's fresh instance starts from.
/// Made by [`HookModule::prepare`] from this module and this config only,
/// and never leaves the process.
#[derive(Clone, Debug, Default)]
pub struct PreparedConfig {
    /// The memory's size after the init call, in bytes (it may have grown).
    memory_size: usize,
    /// Changed ranges: `(offset, length)` into memory, their bytes in `bytes`.
    ranges: Vec<(usize, usize)>,
    bytes: Vec<u8>,
}

impl PreparedConfig {
    /// The diff of `after` against `before` (bytes past `before`'s end
    /// against zero, as a grown memory starts). Ranges closer than a cache
    /// line are merged: fewer, larger copies per call.
    fn diff(before: &[u8], after: &[u8]) -> PreparedConfig {
        const MERGE_GAP: usize = 64;
        let mut prepared = PreparedConfig {
            memory_size: after.len(),
            ..Default::default()
        };
        let differs = |i: usize| after[i] != before.get(i).copied().unwrap_or(0);
        let mut i = 0;
        while i < after.len() {
            // Most of memory is unchanged: skip it a cache line at a time.
            let line = i..i + MERGE_GAP;
            if line.end <= before.len() && after[line.clone()] == before[line] {
                i += MERGE_GAP;
                continue;
            }
            if !differs(i) {
                i += 1;
                continue;
            }
            let start = i;
            let mut end = i + 1;
            let mut probe = end;
            while probe < after.len() && probe - end < MERGE_GAP {
                if differs(probe) {
                    end = probe + 1;
                }
                probe += 1;
            }
            prepared.ranges.push((start, end - start));
            prepared.bytes.extend_from_slice(&after[start..end]);
            i = end;
        }
        prepared
    }

    /// How many bytes each call copies.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Write the prepared bytes into a fresh instance's memory (growing it
    /// first if the init call grew it).
    fn restore(
        &self,
        memory: wasmtime::Memory,
        store: &mut Store<CallState>,
    ) -> Result<(), HookFailure> {
        let size = memory.data_size(&*store);
        if size < self.memory_size {
            let pages = (self.memory_size - size).div_ceil(memory.page_size(&*store) as usize);
            memory.grow(&mut *store, pages as u64).map_err(|e| {
                HookFailure::new(
                    FailureKind::MemoryLimit,
                    format!("cannot grow memory to the prepared config's size: {e:#}"),
                )
            })?;
        }
        let data = memory.data_mut(&mut *store);
        let mut from = 0;
        for &(offset, len) in &self.ranges {
            data[offset..offset + len].copy_from_slice(&self.bytes[from..from + len]);
            from += len;
        }
        Ok(())
    }
}

/// The result of one hook call: commands or a failure, plus logs and usage.
#[derive(Debug)]
pub struct HookCall {
    pub outcome: Result<Vec<Command>, HookFailure>,
    pub logs: Vec<LogLine>,
    /// Log lines beyond [`MAX_LOG_LINES`](super::MAX_LOG_LINES) that were dropped.
    pub logs_dropped: usize,
    pub usage: Usage,
}

impl HookModule {
    /// Run the hook on one event (JSON) in a fresh instance.
    pub fn call(&self, event_json: &[u8]) -> HookCall {
        self.call_prepared(None, event_json)
    }

    /// Whether the module prepares its config once (exports `tokenhook_init`).
    pub fn prepares_config(&self) -> bool {
        self.exports.init.is_some()
    }

    /// Give a module that exports `tokenhook_init` its config, once: a fresh
    /// instance, under the hook's limits, is called with `config_json`, and
    /// what the call changed in memory is kept for every call
    /// ([`HookModule::call_prepared`]). `Ok(None)` for a module without it.
    /// A config the hook refuses is a `HookError` failure with its message.
    pub fn prepare(&self, config_json: &[u8]) -> Result<Option<PreparedConfig>, HookFailure> {
        let Some(init) = self.exports.init else {
            return Ok(None);
        };
        let _running = self.owner.clock.running();
        let mut store = self.new_store();
        let instance = self.instantiate(&mut store)?;
        let (memory, alloc, _) = self.contract_exports(&instance, &mut store)?;
        let init = init
            .bind(&instance, &mut store)
            .ok_or_else(|| no_func(INIT_EXPORT))?;
        let before = memory.data(&store).to_vec();
        let prepared = self
            .exchange(&mut store, memory, alloc, init, config_json)
            .and_then(|commands| match commands.len() {
                0 => Ok(PreparedConfig::diff(&before, memory.data(&store))),
                n => Err(contract(&format!(
                    "`{INIT_EXPORT}` returned {n} commands; it may only prepare the config"
                ))),
            });
        // Whatever the outcome: an `explain` run with a config the hook
        // refuses must not leave the running server's slot any slower.
        release_pages(memory, &mut store);
        prepared.map(Some)
    }

    /// [`HookModule::call`] starting from a prepared config (see
    /// [`HookModule::prepare`]).
    pub fn call_prepared(&self, prepared: Option<&PreparedConfig>, event_json: &[u8]) -> HookCall {
        let started = Instant::now();
        let _running = self.owner.clock.running();
        let mut store = self.new_store();
        let outcome = self.run(&mut store, prepared, event_json);
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
        let _running = self.owner.clock.running();
        let mut store = self.new_store();
        self.instantiate(&mut store)?;
        Ok(())
    }

    /// A fresh store for one call: its state and the limiter that enforces the
    /// memory and table caps. The one place a call's store is made.
    fn new_store(&self) -> Store<CallState> {
        let mut store = Store::new(&self.engine, CallState::new(&self.limits));
        store.limiter(|state| &mut state.limiter);
        store
    }

    /// Arm the fuel budget and the epoch deadline, then instantiate: armed
    /// first, so the module's start function runs under both.
    fn instantiate(&self, store: &mut Store<CallState>) -> Result<Instance, HookFailure> {
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| self.classify(e, store))?;
        store.set_epoch_deadline(deadline_ticks(self.limits.timeout));
        store.epoch_deadline_trap();
        self.pre
            .instantiate(&mut *store)
            .map_err(|e| self.classify(e, store))
    }

    fn run(
        &self,
        store: &mut Store<CallState>,
        prepared: Option<&PreparedConfig>,
        input: &[u8],
    ) -> Result<Vec<Command>, HookFailure> {
        let instance = self.instantiate(store)?;
        let (memory, alloc, run) = self.contract_exports(&instance, store)?;
        if let Some(prepared) = prepared {
            prepared.restore(memory, store)?;
        }
        self.exchange(store, memory, alloc, run, input)
    }

    /// The memory, `tokenhook_alloc` and `tokenhook_run` of a fresh instance.
    fn contract_exports(
        &self,
        instance: &Instance,
        store: &mut Store<CallState>,
    ) -> Result<(wasmtime::Memory, Bound, Bound), HookFailure> {
        let memory = self
            .exports
            .memory
            .and_then(|at| instance.get_module_export(&mut *store, &at))
            .and_then(Extern::into_memory)
            .ok_or_else(|| contract("no memory export"))?;
        let mut bind = |entry: Option<Entry>, name| {
            entry
                .and_then(|entry| entry.bind(instance, store))
                .ok_or_else(|| no_func(name))
        };
        let alloc = bind(self.exports.alloc, ALLOC_EXPORT)?;
        let run = bind(self.exports.run, RUN_EXPORT)?;
        // For `tokenhook.log`, which then needs no lookup either.
        store.data_mut().memory = Some(memory);
        Ok((memory, alloc, run))
    }

    /// One exchange of contract v1: `input` written where `tokenhook_alloc`
    /// says, `entry` (`tokenhook_run` or `tokenhook_init`) called on it, its
    /// output read back and parsed.
    fn exchange(
        &self,
        store: &mut Store<CallState>,
        memory: wasmtime::Memory,
        alloc: Bound,
        entry: Bound,
        input: &[u8],
    ) -> Result<Vec<Command>, HookFailure> {
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
        let len = input.len() as i32;
        let ptr = alloc
            .call(store, &[len])
            .map_err(|e| self.classify(e, store))?
            .get_i32();
        memory.write(&mut *store, ptr as u32 as usize, input).map_err(|_| {
            HookFailure::new(
                FailureKind::InvalidOutput,
                format!("`{ALLOC_EXPORT}` returned {ptr:#x}, which does not fit {len} bytes in memory"),
            )
        })?;
        let packed = entry
            .call(store, &[ptr, len])
            .map_err(|e| self.classify(e, store))?
            .get_i64() as u64;
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
}

/// Give the init instance's pages back before its memory slot is reset.
/// Reading its whole memory for the diff mapped every page of the slot, and
/// the pool gives a module its last slot again: every later call in it
/// would pay for each mapped page in the reset's page scan (measured: the
/// `PAGEMAP_SCAN` `ioctl` +1.3 µs per call). Dropped, the pages read as the
/// module's initial memory again (its image, or zeros), which is what the
/// reset makes of them anyway.
fn release_pages(memory: wasmtime::Memory, store: &mut Store<CallState>) {
    #[cfg(target_os = "linux")]
    {
        let data = memory.data_mut(store);
        // SAFETY: `data` is this store's linear memory, borrowed exclusively
        // and not used again: the store is dropped next. MADV_DONTNEED on
        // its private mappings only makes the pages read as their initial
        // content, which the slot's reset restores in any case.
        unsafe {
            libc::madvise(data.as_mut_ptr().cast(), data.len(), libc::MADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (memory, store);
}

fn contract(what: &str) -> HookFailure {
    HookFailure::new(FailureKind::ContractMismatch, what.to_string())
}

fn no_func(name: &str) -> HookFailure {
    contract(&format!("failed to find function export `{name}`"))
}

/// Ticks from now until the deadline; rounded up, plus one because the next
/// tick may come at any moment, so a hook never gets less than its timeout.
fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    (timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
}

#[cfg(test)]
mod tests {
    use super::{Exports, PreparedConfig};

    /// Calls pass raw values on the strength of this check: an export of
    /// another type is no entry at all.
    #[test]
    fn an_entry_is_only_a_function_of_the_contracts_type() {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(
            &engine,
            r#"(module
                (memory (export "memory") 1)
                (func (export "tokenhook_alloc") (param i32) (result i32) local.get 0)
                (func (export "tokenhook_run") (param i32 i32) (result i32) i32.const 0)
                (global (export "tokenhook_init") i32 (i32.const 0)))"#,
        )
        .unwrap();
        let exports = Exports::of(&module);
        assert!(exports.memory.is_some());
        assert!(exports.alloc.is_some());
        assert!(
            exports.run.is_none(),
            "(i32, i32) -> (i32) is not tokenhook_run"
        );
        assert!(exports.init.is_none(), "a global is not tokenhook_init");
    }

    fn ranges(before: &[u8], after: &[u8]) -> Vec<(usize, usize)> {
        let prepared = PreparedConfig::diff(before, after);
        let copied: usize = prepared.ranges.iter().map(|(_, len)| len).sum();
        assert_eq!(copied, prepared.len());
        prepared.ranges
    }

    #[test]
    fn the_diff_keeps_changed_bytes_merging_near_ones() {
        let before = vec![0u8; 4096];
        assert!(ranges(&before, &before).is_empty());
        let mut after = before.clone();
        after[3] = 1;
        after[40] = 2;
        after[1000] = 3;
        after[4095] = 4;
        assert_eq!(
            ranges(&before, &after),
            [(3, 38), (1000, 1), (4095, 1)],
            "within a cache line: one copy"
        );
        let prepared = PreparedConfig::diff(&before, &after);
        assert_eq!(prepared.bytes[0], 1);
        assert_eq!(prepared.bytes[37], 2);
    }

    #[test]
    fn grown_memory_is_compared_with_zeros() {
        let before = vec![7u8; 128];
        let mut after = before.clone();
        after.extend_from_slice(&[0u8; 200]);
        after[300] = 9;
        let prepared = PreparedConfig::diff(&before, &after);
        assert_eq!(prepared.ranges, [(300, 1)]);
        assert_eq!(prepared.memory_size, 328);
    }
}
