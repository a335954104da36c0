//! Hostile hooks are contained: each fails with its own named kind, as data,
//! and the next call on the same engine succeeds. Uses the real corpus in
//! tests/hostile/ and real Rust hooks built to wasm.

use std::time::Duration;

use tokenhook::engine::{FailureKind, HookEngine, Limits};
use tokenhook_tests::{hook_wasm, hostile};

fn event() -> Vec<u8> {
    let event = tokenhook_sdk::testing::EventBuilder::new()
        .client_metadata("tenant", "acme")
        .build();
    serde_json::to_vec(&event).unwrap()
}

fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Call `name` and expect `kind`; then prove the engine still serves a good hook.
fn assert_contained(engine: &HookEngine, name: &str, limits: Limits, kind: FailureKind) {
    let module = engine
        .load(&read(hostile(name)), None, limits)
        .unwrap_or_else(|f| panic!("{name} should load: {f}"));
    let call = module.call(&event());
    let failure = call.outcome.expect_err(name);
    assert_eq!(failure.kind, kind, "{name}: {failure}");
    let good = engine
        .load(&read(hostile("ok_minimal")), None, Limits::default())
        .unwrap();
    let next = good.call(&event());
    assert!(next.outcome.is_ok(), "after {name}: {:?}", next.outcome);
}

fn assert_refused(engine: &HookEngine, name: &str, kind: FailureKind, mentions: &str) {
    let err = match engine.load(&read(hostile(name)), None, Limits::default()) {
        Ok(_) => panic!("{name} must be refused at load"),
        Err(err) => err,
    };
    assert_eq!(err.kind, kind, "{name}: {err}");
    assert!(
        err.message.contains(mentions),
        "{name}: `{err}` should mention `{mentions}`"
    );
}

/// Fuel at the host ceiling and a 20 ms deadline: only the deadline stops a loop.
fn deadline_only() -> Limits {
    Limits {
        fuel: Limits::CEILING.fuel,
        timeout: Duration::from_millis(20),
        ..Limits::default()
    }
}

#[test]
fn a_correct_minimal_hook_runs_and_logs() {
    let engine = HookEngine::new(Default::default());
    let module = engine
        .load(&read(hostile("ok_minimal")), None, Limits::default())
        .unwrap();
    let call = module.call(&event());
    assert_eq!(
        call.outcome.unwrap(),
        vec![tokenhook_sdk::Command::AddScope("read:orders".into())]
    );
    assert_eq!(call.logs.len(), 1);
    assert_eq!(call.logs[0].message, "hello from wat");
    assert!(call.usage.fuel_used > 0);
}

#[test]
fn runaway_cpu_is_stopped_by_fuel_or_by_the_deadline() {
    let engine = HookEngine::new(Default::default());
    assert_contained(
        &engine,
        "infinite_loop",
        Limits::default(),
        FailureKind::OutOfFuel,
    );
    let timeout = FailureKind::Timeout;
    assert_contained(&engine, "infinite_loop", deadline_only(), timeout);
}

/// The epoch ticker parks while no hook runs (an idle issuer wakes no CPU)
/// and a call wakes it: a deadline fires after the clock was parked, and
/// the clock parks again afterwards.
#[test]
fn a_deadline_fires_after_the_epoch_clock_was_parked() {
    let engine = HookEngine::new(Default::default());
    let parked = |engine: &HookEngine| {
        // Bounded wait, not a timing assertion: it parks after IDLE_TICKS ticks.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !engine.epoch_clock_parked() {
            assert!(
                std::time::Instant::now() < deadline,
                "the epoch clock never parked while idle"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    for hook in ["infinite_loop", "start_loop"] {
        parked(&engine);
        assert_contained(&engine, hook, deadline_only(), FailureKind::Timeout);
    }
}

/// A hook keeps its deadline when the engine that loaded it is dropped: the
/// epoch clock lives as long as any module does.
#[test]
fn a_hook_outliving_its_engine_keeps_its_deadline() {
    let module = {
        let engine = HookEngine::new(Default::default());
        engine
            .load(&read(hostile("infinite_loop")), None, deadline_only())
            .unwrap()
    };
    let failure = module.call(&event()).outcome.expect_err("a loop");
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
}

#[test]
fn the_start_function_is_under_the_same_limits() {
    let engine = HookEngine::new(Default::default());
    assert_contained(
        &engine,
        "start_loop",
        Limits::default(),
        FailureKind::OutOfFuel,
    );
    let deadline_only = deadline_only();
    assert_contained(&engine, "start_loop", deadline_only, FailureKind::Timeout);
}

#[test]
fn memory_growth_stops_at_the_cap() {
    let engine = HookEngine::new(Default::default());
    let small = Limits {
        memory: 1 << 20,
        ..Limits::default()
    };
    assert_contained(&engine, "memory_bomb", small, FailureKind::MemoryLimit);
    assert_contained(
        &engine,
        "memory_bomb",
        Limits::default(),
        FailureKind::MemoryLimit,
    );
}

#[test]
fn unbounded_recursion_overflows_the_capped_stack() {
    let engine = HookEngine::new(Default::default());
    assert_contained(
        &engine,
        "recursion",
        Limits::default(),
        FailureKind::StackOverflow,
    );
    let small_stack = Limits {
        stack: 64 << 10,
        ..Limits::default()
    };
    assert_contained(
        &engine,
        "recursion",
        small_stack,
        FailureKind::StackOverflow,
    );
}

#[test]
fn bad_output_is_refused() {
    let engine = HookEngine::new(Default::default());
    assert_contained(
        &engine,
        "huge_output",
        Limits::default(),
        FailureKind::OutputTooLarge,
    );
    assert_contained(
        &engine,
        "invalid_json",
        Limits::default(),
        FailureKind::InvalidOutput,
    );
    assert_contained(
        &engine,
        "unknown_command",
        Limits::default(),
        FailureKind::InvalidOutput,
    );
    assert_contained(
        &engine,
        "out_of_bounds_output",
        Limits::default(),
        FailureKind::InvalidOutput,
    );
    assert_contained(
        &engine,
        "error_output",
        Limits::default(),
        FailureKind::HookError,
    );
}

#[test]
fn oversized_input_is_not_handed_over() {
    let engine = HookEngine::new(Default::default());
    let tiny_input = Limits {
        max_input: 64,
        ..Limits::default()
    };
    assert_contained(
        &engine,
        "ok_minimal",
        tiny_input,
        FailureKind::InputTooLarge,
    );
}

#[test]
fn a_rust_panic_is_a_trap_with_the_panic_message() {
    let engine = HookEngine::new(Default::default());
    let module = engine
        .load(&read(hook_wasm("panic_hook")), None, Limits::default())
        .unwrap();
    let failure = module.call(&event()).outcome.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Trap);
    assert!(failure.message.contains("deliberate panic"), "{failure}");
    // The same module, called again, fails the same way: no state survives.
    assert_eq!(
        module.call(&event()).outcome.unwrap_err().kind,
        FailureKind::Trap
    );
}

#[test]
fn modules_that_break_the_contract_are_refused_at_load() {
    let engine = HookEngine::new(Default::default());
    assert_refused(
        &engine,
        "wasi_import",
        FailureKind::ForbiddenImport,
        "wasi_snapshot_preview1.fd_write",
    );
    assert_refused(
        &engine,
        "unknown_import",
        FailureKind::ForbiddenImport,
        "evil.syscall",
    );
    assert_refused(
        &engine,
        "missing_export",
        FailureKind::ContractMismatch,
        "tokenhook_run",
    );
    assert_refused(
        &engine,
        "wrong_version",
        FailureKind::ContractMismatch,
        "v2",
    );
    assert_refused(
        &engine,
        "huge_memory_min",
        FailureKind::ResourceLimit,
        "initial memory",
    );
}

#[test]
fn a_pinned_digest_must_match() {
    let engine = HookEngine::new(Default::default());
    let bytes = read(hostile("ok_minimal"));
    let wrong = "0".repeat(64);
    let err = engine
        .load(&bytes, Some(&wrong), Limits::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::DigestMismatch);
    let right = tokenhook::engine::sha256_hex(&bytes);
    assert!(engine.load(&bytes, Some(&right), Limits::default()).is_ok());
}

#[test]
fn not_wasm_at_all_is_an_invalid_module() {
    let engine = HookEngine::new(Default::default());
    let err = engine
        .load(b"\0asm garbage", None, Limits::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::InvalidModule);
}

#[test]
fn limits_above_the_host_ceiling_are_refused() {
    let engine = HookEngine::new(Default::default());
    let greedy = Limits {
        memory: Limits::CEILING.memory * 2,
        ..Limits::default()
    };
    let err = engine
        .load(&read(hostile("ok_minimal")), None, greedy)
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::ResourceLimit);
    assert!(err.message.contains("memory"), "{err}");
}

#[test]
fn one_engine_serves_concurrent_calls_with_fresh_instances() {
    let engine = HookEngine::new(Default::default());
    let good = std::sync::Arc::new(
        engine
            .load(&read(hook_wasm("tenant_claims")), None, Limits::default())
            .unwrap(),
    );
    // tenant-claims prepares its config (the default) once.
    let names = std::sync::Arc::new(good.prepare(b"null").unwrap());
    let bad = std::sync::Arc::new(
        engine
            .load(&read(hostile("infinite_loop")), None, Limits::default())
            .unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (good, bad, names) = (good.clone(), bad.clone(), names.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    if i % 2 == 0 {
                        let call = good.call_prepared(names.as_ref().as_ref(), &event());
                        let commands = call.outcome.unwrap();
                        assert_eq!(commands.len(), 1, "tenant claim only: {commands:?}");
                    } else {
                        assert_eq!(
                            bad.call(&event()).outcome.unwrap_err().kind,
                            FailureKind::OutOfFuel
                        );
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Nothing survives from one call to the next: not globals, not the data
/// segment, not the rest of the initial memory, not grown pages. The pooling
/// allocator reuses the same memory slot for the same module, so this is
/// what proves that a reused slot is reset.
#[test]
fn no_state_survives_between_calls_on_a_reused_slot() {
    let engine = HookEngine::new(Default::default());
    let snoop = engine
        .load(&read(hostile("snoop")), None, Limits::default())
        .unwrap();
    let other = engine
        .load(&read(hook_wasm("tenant_claims")), None, Limits::default())
        .unwrap();
    let names = other.prepare(b"null").unwrap();
    for round in 0..20 {
        let call = snoop.call(&event());
        assert_eq!(
            call.outcome.as_ref().map_err(|f| f.to_string()),
            Ok(&vec![]),
            "call {round} saw state from an earlier call"
        );
        if round % 5 == 4 {
            assert!(
                other
                    .call_prepared(names.as_ref(), &event())
                    .outcome
                    .is_ok()
            );
        }
    }
}
