//! Hook failures as data: every way a hook can fail has a kind and a cause.

use std::fmt;

use serde::Serialize;

/// Why a hook did not produce usable commands. Stable snake_case names, used in
/// logs, CLI output and `docs/hook-abi.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The wall-clock deadline passed.
    Timeout,
    /// The fuel budget ran out.
    OutOfFuel,
    /// Linear memory would have grown past the cap.
    MemoryLimit,
    /// The wasm stack cap was exceeded.
    StackOverflow,
    /// Any other trap (a panic, `unreachable`, out-of-bounds access...).
    Trap,
    /// The event is larger than the hook's input cap.
    InputTooLarge,
    /// The hook's output is larger than its output cap.
    OutputTooLarge,
    /// The output is not valid contract-v1 JSON, or lies outside memory.
    InvalidOutput,
    /// The hook returned `{"error": ...}`.
    HookError,
    /// The module imports something other than the host's `tokenhook` module.
    ForbiddenImport,
    /// Missing or mistyped exports, or another contract version.
    ContractMismatch,
    /// The module's SHA-256 differs from the pinned one.
    DigestMismatch,
    /// Not a valid wasm module, or one the engine cannot compile.
    InvalidModule,
    /// A host resource ran out (instance pool, memory declared above the cap).
    ResourceLimit,
    /// The hook was not run: its Secrets Manager secrets could not be read
    /// for longer than `hook_secret_max_stale`.
    SecretsUnavailable,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::StackOverflow => "stack_overflow",
            FailureKind::Trap => "trap",
            FailureKind::InputTooLarge => "input_too_large",
            FailureKind::OutputTooLarge => "output_too_large",
            FailureKind::InvalidOutput => "invalid_output",
            FailureKind::HookError => "hook_error",
            FailureKind::ForbiddenImport => "forbidden_import",
            FailureKind::ContractMismatch => "contract_mismatch",
            FailureKind::DigestMismatch => "digest_mismatch",
            FailureKind::InvalidModule => "invalid_module",
            FailureKind::ResourceLimit => "resource_limit",
            FailureKind::SecretsUnavailable => "secrets_unavailable",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hook failure: its kind and a human-readable cause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HookFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl HookFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        HookFailure {
            kind,
            message: message.into(),
        }
    }
}
