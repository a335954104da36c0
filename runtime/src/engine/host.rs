//! The host function a hook may import: `tokenhook.log`.

use tokenhook_sdk::wire::{LogLevel, LogLine, MEMORY_EXPORT};
use wasmtime::{Caller, Extern};

use super::limiter::CallState;

/// A hook keeps at most this many log lines per call; further lines are counted.
pub const MAX_LOG_LINES: usize = 32;
/// Log lines are logged cut to this many bytes, after the host has redacted
/// the hook's secrets from them (`secrets::hooks::Redactor::log_line`).
pub const MAX_LOG_LINE_BYTES: usize = 1024;
/// The engine keeps this many bytes of a log line (cut at a character
/// boundary and marked `…`): more than is logged, so that redaction runs on
/// more than the logged part and a secret across the 1 KiB cut is masked
/// whole. Bounds a call's log memory to 32 × 4 KiB.
pub const MAX_LOG_LINE_RAW_BYTES: usize = 4096;

/// `tokenhook.log(level, ptr, len)`: keep a bounded number of bounded lines.
pub(super) fn host_log(
    mut caller: Caller<'_, CallState>,
    level: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<()> {
    // Known after instantiation; a start function calling in looks it up.
    let memory = match caller.data().memory {
        Some(memory) => memory,
        None => match caller.get_export(MEMORY_EXPORT) {
            Some(Extern::Memory(memory)) => memory,
            _ => wasmtime::bail!("tokenhook.log called by a module without a memory export"),
        },
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
