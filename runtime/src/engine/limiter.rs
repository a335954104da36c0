//! Per-call store data and the limiter that enforces a hook's memory and
//! table caps.

use tokenhook_sdk::wire::LogLine;
use wasmtime::{Memory, ResourceLimiter};

use super::limits::Limits;

/// Per-call store data.
pub(super) struct CallState {
    pub(super) limiter: CallLimiter,
    pub(super) logs: Vec<LogLine>,
    pub(super) logs_dropped: usize,
    /// The instance's memory once instantiated, for `tokenhook.log`.
    pub(super) memory: Option<Memory>,
}

impl CallState {
    pub(super) fn new(limits: &Limits) -> Self {
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
            memory: None,
        }
    }
}

/// Enforces the per-hook memory and table caps and records peak use. Growth
/// past a cap traps at once (rather than returning -1 to the guest), so the
/// failure is reported as `memory_limit`, not as whatever the guest does next.
pub(super) struct CallLimiter {
    memory_cap: usize,
    table_cap: usize,
    pub(super) memory_peak: usize,
    pub(super) memory_refused: Option<usize>,
    pub(super) table_refused: Option<usize>,
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
