//! The engine as the pipeline's [`HookRunner`]: a call's result mapped onto
//! the chain's own types ([`crate::hooks`]). The mapping moves the commands,
//! logs and cause; it allocates nothing.

use crate::hooks::{self, HookRunner};

use super::{FailureKind, HookCall, HookFailure, HookModule, PreparedConfig, Usage};

impl HookRunner for HookModule {
    fn call(&self, event_json: &[u8]) -> hooks::HookCall {
        HookModule::call(self, event_json).into()
    }

    fn prepare(&self, config_json: &[u8]) -> Result<Option<hooks::Prepared>, hooks::HookFailure> {
        Ok(HookModule::prepare(self, config_json)?.map(|p| hooks::Prepared(Box::new(p))))
    }

    fn call_prepared(&self, prepared: &hooks::Prepared, event_json: &[u8]) -> hooks::HookCall {
        // The chain gives back what `prepare` above made.
        let prepared = prepared.0.downcast_ref::<PreparedConfig>();
        HookModule::call_prepared(self, prepared, event_json).into()
    }
}

impl From<HookCall> for hooks::HookCall {
    fn from(call: HookCall) -> Self {
        hooks::HookCall {
            outcome: call.outcome.map_err(hooks::HookFailure::from),
            logs: call.logs,
            logs_dropped: call.logs_dropped,
            usage: call.usage.into(),
        }
    }
}

impl From<Usage> for hooks::Usage {
    fn from(usage: Usage) -> Self {
        hooks::Usage {
            fuel_used: usage.fuel_used,
            memory_peak: usage.memory_peak,
            wall_time: usage.wall_time,
        }
    }
}

impl From<HookFailure> for hooks::HookFailure {
    fn from(failure: HookFailure) -> Self {
        hooks::HookFailure {
            kind: failure.kind.into(),
            message: failure.message,
        }
    }
}

impl From<FailureKind> for hooks::FailureKind {
    fn from(kind: FailureKind) -> Self {
        use hooks::FailureKind as Call;
        match kind {
            FailureKind::Timeout => Call::Timeout,
            FailureKind::OutOfFuel => Call::OutOfFuel,
            FailureKind::MemoryLimit => Call::MemoryLimit,
            FailureKind::StackOverflow => Call::StackOverflow,
            FailureKind::Trap => Call::Trap,
            FailureKind::InputTooLarge => Call::InputTooLarge,
            FailureKind::OutputTooLarge => Call::OutputTooLarge,
            FailureKind::InvalidOutput => Call::InvalidOutput,
            FailureKind::HookError => Call::HookError,
            FailureKind::ContractMismatch => Call::ContractMismatch,
            FailureKind::ResourceLimit => Call::ResourceLimit,
            FailureKind::SecretsUnavailable => Call::SecretsUnavailable,
            // Raised only while a module loads (a loaded module passed
            // them); should one ever come from a call, it is the module
            // breaking the contract.
            FailureKind::ForbiddenImport
            | FailureKind::DigestMismatch
            | FailureKind::InvalidModule => Call::ContractMismatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind a call can fail with keeps its name across the seam: logs,
    /// metrics and captures read the same words as before.
    #[test]
    fn call_failure_kinds_keep_their_names() {
        for kind in [
            FailureKind::Timeout,
            FailureKind::OutOfFuel,
            FailureKind::MemoryLimit,
            FailureKind::StackOverflow,
            FailureKind::Trap,
            FailureKind::InputTooLarge,
            FailureKind::OutputTooLarge,
            FailureKind::InvalidOutput,
            FailureKind::HookError,
            FailureKind::ContractMismatch,
            FailureKind::ResourceLimit,
            FailureKind::SecretsUnavailable,
        ] {
            assert_eq!(hooks::FailureKind::from(kind).as_str(), kind.as_str());
        }
    }
}
