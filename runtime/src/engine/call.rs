//! The call protocol: a fresh, limited instance per call → alloc, write the
//! event, run → read and parse the output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokenhook_sdk::wire::{ALLOC_EXPORT, Command, HookOutput, LogLine, MEMORY_EXPORT, RUN_EXPORT};
use wasmtime::{Engine, Extern, Instance, InstancePre, ModuleExport, Store};

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
    alloc: Option<ModuleExport>,
    run: Option<ModuleExport>,
}

impl Exports {
    pub(super) fn of(module: &wasmtime::Module) -> Self {
        Exports {
            memory: module.get_export_index(MEMORY_EXPORT),
            alloc: module.get_export_index(ALLOC_EXPORT),
            run: module.get_export_index(RUN_EXPORT),
        }
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
        let started = Instant::now();
        let _running = self.owner.clock.running();
        let mut store = self.new_store();
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
        let instance = self.instantiate(store)?;
        let contract =
            |what: &str| HookFailure::new(FailureKind::ContractMismatch, what.to_string());
        let mut export = |at: Option<ModuleExport>| {
            at.and_then(|at| instance.get_module_export(&mut *store, &at))
        };
        let memory = export(self.exports.memory)
            .and_then(Extern::into_memory)
            .ok_or_else(|| contract("no memory export"))?;
        let no_func = |name: &str| contract(&format!("failed to find function export `{name}`"));
        let alloc = export(self.exports.alloc)
            .and_then(Extern::into_func)
            .ok_or_else(|| no_func(ALLOC_EXPORT))?;
        let run = export(self.exports.run)
            .and_then(Extern::into_func)
            .ok_or_else(|| no_func(RUN_EXPORT))?;
        let alloc = alloc
            .typed::<i32, i32>(&*store)
            .map_err(|e| contract(&format!("{e:#}")))?;
        let run = run
            .typed::<(i32, i32), i64>(&*store)
            .map_err(|e| contract(&format!("{e:#}")))?;
        // For `tokenhook.log`, which then needs no lookup either.
        store.data_mut().memory = Some(memory);

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
}

/// Ticks from now until the deadline; rounded up, plus one because the next
/// tick may come at any moment, so a hook never gets less than its timeout.
fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    (timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
}
