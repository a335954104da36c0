//! The start-up breakdown: where a cold start's time went, logged once, as one
//! JSON line (`"message": "start-up"`), when the first request has been
//! answered, so Lambda's init duration (and the first invoke) can be read from
//! the function's logs.
//!
//! Phases, each in milliseconds from the previous one's end:
//! `config_ms` (process start in `main` → configuration read, tokio and, when
//! needed, the AWS SDK set up), `keys_ms` (manifest parse and key source, up to
//! the first hook), `hooks_ms` (first hook's load start → last hook's end,
//! hook secrets included), `rest_ms` (the issuer's remaining set-up), then
//! `first_request_ms` (the first request's own handling). `ready_ms` and
//! `first_response_ms` are totals since process start. `hooks` lists each hook
//! as `name=code/ms` with `code` one of `precompiled`, `cache`, `memory`,
//! `compiled`; `compiled` counts the hooks Cranelift compiled at start.
//! Time before `main` (exec, dynamic loading) is not included.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{CodeSource, HookLoad};

/// What start-up measured, until the first request completes it.
#[derive(Debug)]
pub struct Startup {
    /// When `main` began (the earliest instant the process can take).
    pub process_start: Instant,
    /// Configuration done, the issuer's load begins.
    pub issuer_start: Instant,
    /// The issuer is loaded.
    pub ready: Instant,
    /// How each hook loaded, in order.
    pub hooks: Vec<HookLoad>,
    pub lambda: bool,
}

static PENDING: Mutex<Option<Startup>> = Mutex::new(None);
/// Set once the breakdown is logged: later requests skip the lock.
static LOGGED: AtomicBool = AtomicBool::new(false);

/// Keep the measurements until the first request has been answered.
pub fn ready(startup: Startup) {
    *PENDING.lock().expect("startup lock") = Some(startup);
}

/// A request was answered in `took`: the first one logs the breakdown.
pub fn request_done(took: Duration) {
    if LOGGED.load(Ordering::Relaxed) {
        return;
    }
    let Some(startup) = PENDING.lock().expect("startup lock").take() else {
        return;
    };
    LOGGED.store(true, Ordering::Relaxed);
    let now = Instant::now();
    let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
    let first_hook = startup.hooks.iter().map(|h| h.started).min();
    let last_hook = startup.hooks.iter().map(|h| h.started + h.took).max();
    let (hooks_from, hooks_to) = match (first_hook, last_hook) {
        (Some(from), Some(to)) => (from, to),
        _ => (startup.ready, startup.ready),
    };
    let listing = startup
        .hooks
        .iter()
        .map(|h| format!("{}={}/{}", h.hook, h.code.as_str(), ms(h.took)))
        .collect::<Vec<_>>()
        .join(" ");
    let count = |code| startup.hooks.iter().filter(|h| h.code == code).count();
    tracing::info!(
        config_ms = ms(startup.issuer_start - startup.process_start),
        keys_ms = ms(hooks_from.saturating_duration_since(startup.issuer_start)),
        hooks_ms = ms(hooks_to.saturating_duration_since(hooks_from)),
        rest_ms = ms(startup.ready.saturating_duration_since(hooks_to)),
        ready_ms = ms(startup.ready - startup.process_start),
        first_request_ms = ms(took),
        first_response_ms = ms(now - startup.process_start),
        hooks = %listing,
        precompiled = count(CodeSource::Precompiled),
        cached = count(CodeSource::Cache),
        compiled = count(CodeSource::Compiled),
        lambda = startup.lambda,
        "start-up"
    );
}
