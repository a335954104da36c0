//! The guest side of the contract: memory exchange and the host's log import.
//! Everything here is called by code that [`export_hook!`](crate::export_hook)
//! generates; hook authors never call it directly.

use std::any::Any;
use std::sync::OnceLock;

use crate::view::Json;
use crate::wire::{Event, HookError, HookOutput, LogLevel};
use crate::{Decision, EventView};

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "tokenhook")]
unsafe extern "C" {
    #[link_name = "log"]
    fn host_log(level: i32, ptr: *const u8, len: i32);
}

/// Send one line to the host's log for this call (in a native test, to
/// [`crate::testing::take_logs`]).
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the pointer and length describe `message`, which outlives the call.
    unsafe {
        host_log(level as i32, message.as_ptr(), message.len() as i32)
    };
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_log(level, message);
}

/// `tokenhook_alloc`: a buffer the host writes the event into. The instance
/// lives for one call only, so nothing is ever freed.
pub fn alloc(len: usize) -> *mut u8 {
    let mut buf = Vec::<u8>::with_capacity(len);
    let ptr = buf.as_mut_ptr();
    std::mem::forget(buf);
    ptr
}

/// Run `hook` on the event JSON in `input` and return the output JSON.
pub fn run_json(input: &[u8], hook: impl FnOnce(&Event) -> Result<Decision, HookError>) -> Vec<u8> {
    respond(crate::reader::read_event(input).map(|event| {
        let result = hook(&event);
        discard(event);
        result
    }))
}

/// [`run_json`] for a hook that takes the event as an [`EventView`].
pub fn run_json_view(
    input: &[u8],
    hook: impl FnOnce(&EventView<'_>) -> Result<Decision, HookError>,
) -> Vec<u8> {
    respond(EventView::read(input).map(|event| {
        let result = hook(&event);
        discard(event);
        result
    }))
}

/// What `tokenhook_init` prepared from the config. Set once per module
/// image: the host keeps the memory the init call wrote and starts every
/// call from it, so every call finds it set.
static PREPARED: OnceLock<Box<dyn Any + Send + Sync>> = OnceLock::new();

/// `tokenhook_init`: build the hook's prepared config with `prepare` and keep
/// it for every call (see [`crate::wire::INIT_EXPORT`]).
///
/// # Safety
/// As for [`run`], with the config JSON as the input.
pub unsafe fn init<T: Any + Send + Sync>(
    ptr: *const u8,
    len: usize,
    prepare: impl FnOnce(Json<'_>) -> Result<T, HookError>,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        exchange(ptr, len, |input| {
            let prepared = prepare(Json::new(input)).and_then(|config| {
                PREPARED
                    .set(Box::new(config))
                    .map(|()| Decision::new())
                    .map_err(|_| HookError::new("the config was prepared twice"))
            });
            respond(Ok(prepared))
        })
    }
}

/// The config `tokenhook_init` prepared, as the type `prepare` returns.
fn prepared<T: Any>() -> Result<&'static T, HookError> {
    PREPARED
        .get()
        .and_then(|config| config.downcast_ref::<T>())
        .ok_or_else(|| {
            HookError::new("the host did not prepare this hook's config (tokenhook_init)")
        })
}

/// [`run`] for a hook that also takes the config `tokenhook_init` prepared;
/// `_prepare` ties its type to the hook's at compile time.
///
/// # Safety
/// As for [`run`].
pub unsafe fn run_prepared<T: Any + Send + Sync>(
    ptr: *const u8,
    len: usize,
    _prepare: impl FnOnce(Json<'_>) -> Result<T, HookError>,
    hook: impl FnOnce(&Event, &T) -> Result<Decision, HookError>,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        exchange(ptr, len, |input| match prepared::<T>() {
            Ok(config) => run_json(input, |event| hook(event, config)),
            Err(err) => respond(Ok(Err(err))),
        })
    }
}

/// [`run_prepared`] for a hook that takes the event as an [`EventView`].
///
/// # Safety
/// As for [`run`].
pub unsafe fn run_view_prepared<T: Any + Send + Sync>(
    ptr: *const u8,
    len: usize,
    _prepare: impl FnOnce(Json<'_>) -> Result<T, HookError>,
    hook: impl FnOnce(&EventView<'_>, &T) -> Result<Decision, HookError>,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        exchange(ptr, len, |input| match prepared::<T>() {
            Ok(config) => run_json_view(input, |event| hook(event, config)),
            Err(err) => respond(Ok(Err(err))),
        })
    }
}

/// The output JSON for a hook's result, or for an event it could not read.
fn respond(result: Result<Result<Decision, HookError>, crate::reader::ReadError>) -> Vec<u8> {
    let output = match result {
        Ok(Ok(decision)) => HookOutput::Commands(decision.into_commands()),
        Ok(Err(err)) => HookOutput::Error(err),
        Err(err) => HookOutput::Error(HookError::new(format!("cannot read event: {err}"))),
    };
    let json = crate::writer::write_output(&output);
    discard(output);
    json
}

/// Drop `value`, except on wasm: there the instance (and all its memory) is
/// thrown away after the call, and the bump allocator frees nothing anyway,
/// so walking the event's maps and strings to drop them is wasted fuel
/// (about a tenth of a typical call's).
fn discard<T>(value: T) {
    #[cfg(target_arch = "wasm32")]
    std::mem::forget(value);
    #[cfg(not(target_arch = "wasm32"))]
    drop(value);
}

/// `tokenhook_run`: read the event at `ptr`, run the hook, leave the output in
/// memory and return `(out_ptr << 32) | out_len`.
///
/// # Safety
/// `ptr..ptr+len` must be the buffer the host filled after `tokenhook_alloc(len)`.
pub unsafe fn run(
    ptr: *const u8,
    len: usize,
    hook: impl FnOnce(&Event) -> Result<Decision, HookError>,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { exchange(ptr, len, |input| run_json(input, hook)) }
}

/// [`run`] for a hook that takes the event as an [`EventView`].
///
/// # Safety
/// As for [`run`].
pub unsafe fn run_view(
    ptr: *const u8,
    len: usize,
    hook: impl FnOnce(&EventView<'_>) -> Result<Decision, HookError>,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { exchange(ptr, len, |input| run_json_view(input, hook)) }
}

/// The memory side of `tokenhook_run`: the event in, the output left in
/// memory, `(out_ptr << 32) | out_len` back.
///
/// # Safety
/// As for [`run`].
unsafe fn exchange(ptr: *const u8, len: usize, run: impl FnOnce(&[u8]) -> Vec<u8>) -> u64 {
    install_panic_logger();
    // SAFETY: guaranteed by the caller (the host, following the contract).
    let input = unsafe { std::slice::from_raw_parts(ptr, len) };
    let output = run(input).into_boxed_slice();
    let out_len = output.len() as u64;
    let out_ptr = Box::into_raw(output) as *mut u8 as usize as u64;
    (out_ptr << 32) | out_len
}

/// A panic aborts the instance with a bare `unreachable` trap; log the panic
/// message first so the host can say why.
fn install_panic_logger() {
    std::panic::set_hook(Box::new(|info| {
        log(LogLevel::Error, &format!("hook panicked: {info}"));
    }));
}

/// The event parts `export_hook!(..., reads = [...])` accepts: a misspelt
/// part is a compile error rather than a part that silently stays empty.
#[doc(hidden)]
#[allow(non_upper_case_globals)]
pub mod parts {
    pub const client: () = ();
    pub const api: () = ();
    pub const requested_scopes: () = ();
    pub const granted_scopes: () = ();
    pub const context: () = ();
    pub const token: () = ();
    pub const config: () = ();
    pub const secrets: () = ();
}

/// Turn a function `fn(&Event) -> Result<Decision, HookError>` into a hook
/// module: exports the contract-v1 marker, `tokenhook_alloc` and
/// `tokenhook_run`. Only on wasm; a native build (unit tests) exports nothing.
///
/// ```ignore
/// use tokenhook_sdk::prelude::*;
///
/// fn my_hook(event: &Event) -> Result<Decision, HookError> { Ok(Decision::new()) }
/// export_hook!(my_hook);
/// ```
///
/// Optionally, name the parts of the event the hook reads (any of `client`,
/// `api`, `requested_scopes`, `granted_scopes`, `context`, `token`, `config`,
/// `secrets`): the host then sends only those, which is less for the hook to
/// parse on every call. A part not named arrives empty (its default), so name
/// every part the hook reads, including through helpers such as
/// [`Event::config_as`](crate::wire::Event) (`config`) and `Event::secret`
/// (`secrets`). Native tests get the whole event either way.
///
/// ```ignore
/// export_hook!(my_hook, reads = [client, token, config]);
/// ```
///
/// A hook that takes the event as a borrowed [`EventView`](crate::EventView)
/// (`fn(&EventView) -> Result<Decision, HookError>`) is exported with `view:`
/// before its name; `reads` works the same:
///
/// ```ignore
/// export_hook!(view: my_hook, reads = [client, token, config]);
/// ```
///
/// A hook whose config takes work to read (lists to parse, ranges, rules)
/// names a function that prepares it, `fn(Json) -> Result<T, HookError>`,
/// with `config:`; the hook then takes `&T` after the event. The host calls
/// it once, when the hook loads (a config it refuses stops the load, naming
/// the hook), and every call starts from what it prepared: no config in the
/// event, nothing parsed per call. Leave `config` out of `reads`.
///
/// ```ignore
/// struct Rules { clients: Vec<String> }
///
/// fn rules(config: Json<'_>) -> Result<Rules, HookError> { /* ... */ }
///
/// fn my_hook(event: &EventView<'_>, rules: &Rules) -> Result<Decision, HookError> {
///     Ok(Decision::new())
/// }
/// export_hook!(view: my_hook, config: rules, reads = [client]);
/// ```
#[macro_export]
macro_rules! export_hook {
    (view: $hook:path, config: $prepare:path, reads = [$($part:ident),+ $(,)?]) => {
        $crate::export_hook!(@prepared run_view_prepared, $hook, $prepare);
        $crate::export_hook!(@reads $($part),+);
    };
    (view: $hook:path, config: $prepare:path) => {
        $crate::export_hook!(@prepared run_view_prepared, $hook, $prepare);
    };
    (view: $hook:path, reads = [$($part:ident),+ $(,)?]) => {
        $crate::export_hook!(@exports run_view, $hook);
        $crate::export_hook!(@reads $($part),+);
    };
    (view: $hook:path) => {
        $crate::export_hook!(@exports run_view, $hook);
    };
    ($hook:path, config: $prepare:path, reads = [$($part:ident),+ $(,)?]) => {
        $crate::export_hook!(@prepared run_prepared, $hook, $prepare);
        $crate::export_hook!(@reads $($part),+);
    };
    ($hook:path, config: $prepare:path) => {
        $crate::export_hook!(@prepared run_prepared, $hook, $prepare);
    };
    ($hook:path, reads = [$($part:ident),+ $(,)?]) => {
        $crate::export_hook!(@exports run, $hook);
        $crate::export_hook!(@reads $($part),+);
    };
    ($hook:path) => {
        $crate::export_hook!(@exports run, $hook);
    };
    (@reads $($part:ident),+) => {
        const _: () = {
            $(let _: () = $crate::guest::parts::$part;)+
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // The declaration is the export's name (see wire::READS_EXPORT_PREFIX).
            #[unsafe(export_name = concat!("tokenhook_reads=", $(stringify!($part), ",",)+))]
            pub extern "C" fn tokenhook_reads() {}
        };
    };
    (@exports $runner:ident, $hook:path) => {
        $crate::export_hook!(@contract);
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn tokenhook_run(ptr: i32, len: i32) -> i64 {
                // SAFETY: the host calls this per contract v1, after tokenhook_alloc.
                unsafe { $crate::guest::$runner(ptr as usize as *const u8, len as usize, $hook) as i64 }
            }
        };
    };
    (@prepared $runner:ident, $hook:path, $prepare:path) => {
        $crate::export_hook!(@contract);
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn tokenhook_init(ptr: i32, len: i32) -> i64 {
                // SAFETY: the host calls this per contract v1, after tokenhook_alloc.
                unsafe { $crate::guest::init(ptr as usize as *const u8, len as usize, $prepare) as i64 }
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn tokenhook_run(ptr: i32, len: i32) -> i64 {
                // SAFETY: the host calls this per contract v1, after tokenhook_alloc.
                unsafe {
                    $crate::guest::$runner(ptr as usize as *const u8, len as usize, $prepare, $hook)
                        as i64
                }
            }
        };
    };
    (@contract) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            pub extern "C" fn tokenhook_abi_v1() {}

            #[unsafe(no_mangle)]
            pub extern "C" fn tokenhook_alloc(len: i32) -> i32 {
                $crate::guest::alloc(len as usize) as i32
            }
        };
    };
}
