//! Trap classification: what went wrong in a call, named for the caller.

use tokenhook_sdk::wire::LogLevel;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap};

use super::call::HookModule;
use super::failure::{FailureKind, HookFailure};
use super::limiter::CallState;

impl HookModule {
    /// Name what went wrong, from the limiter's record and the trap code.
    pub(super) fn classify(&self, err: wasmtime::Error, store: &Store<CallState>) -> HookFailure {
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
