//! Per-hook resource limits and their defaults.

use std::time::Duration;

use serde::Serialize;

/// Hard limits for one hook call. Every field has a safe default; a manifest
/// may lower or raise them per hook (raising beyond [`Limits::CEILING`] is
/// refused when the manifest loads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Fuel (≈ wasm instructions) per call, the deterministic CPU limit.
    /// Default 10,000,000: a few milliseconds of compiled wasm, ~100× what the
    /// example hooks use. Counting fuel costs a few percent of guest speed.
    pub fuel: u64,
    /// Wall-clock deadline per call, start function included, enforced with
    /// epoch interruption. Default 50 ms. The deadline is checked at epoch
    /// ticks ([`super::EPOCH_TICK`]), so it is exact to about one tick.
    pub timeout: Duration,
    /// Linear-memory cap in bytes. Default 16 MiB. A module that declares a
    /// larger minimum is refused at load; growing past the cap traps.
    pub memory: u64,
    /// Table elements cap. Default 10,000.
    pub table_elements: u64,
    /// Wasm stack cap in bytes. Default 512 KiB (wasmtime's default). Hooks
    /// with different stack caps are compiled by different engines, since the
    /// stack limit is an engine setting in wasmtime.
    pub stack: u64,
    /// Largest event JSON the host will hand the hook. Default 64 KiB.
    pub max_input: u64,
    /// Largest output JSON the host will read back. Default 64 KiB.
    pub max_output: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 10_000_000,
            timeout: Duration::from_millis(50),
            memory: 16 << 20,
            table_elements: 10_000,
            stack: 512 << 10,
            max_input: 64 << 10,
            max_output: 64 << 10,
        }
    }
}

impl Limits {
    /// The most any hook may be given: what the instance pool reserves per slot.
    pub const CEILING: Limits = Limits {
        fuel: 1_000_000_000,
        timeout: Duration::from_secs(5),
        memory: 256 << 20,
        table_elements: 100_000,
        stack: 4 << 20,
        max_input: 1 << 20,
        max_output: 1 << 20,
    };

    /// The first limit that exceeds [`Limits::CEILING`], as `(name, value, ceiling)`.
    pub fn above_ceiling(&self) -> Option<(&'static str, String, String)> {
        let c = Limits::CEILING;
        let checks = [
            ("fuel", self.fuel, c.fuel),
            ("memory", self.memory, c.memory),
            ("table_elements", self.table_elements, c.table_elements),
            ("stack", self.stack, c.stack),
            ("max_input", self.max_input, c.max_input),
            ("max_output", self.max_output, c.max_output),
        ];
        if let Some((name, v, max)) = checks.into_iter().find(|(_, v, max)| v > max) {
            return Some((name, v.to_string(), max.to_string()));
        }
        (self.timeout > c.timeout).then(|| {
            (
                "timeout",
                format!("{:?}", self.timeout),
                format!("{:?}", c.timeout),
            )
        })
    }
}
