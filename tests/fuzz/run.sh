#!/usr/bin/env bash
# Run every fuzz target (or the ones named) for a short, bounded time from its
# committed seed corpus; fail if any target crashes. tests/run.sh calls this.
#
#   tests/fuzz/run.sh                      # each target FUZZ_SECONDS (default 20) s
#   FUZZ_SECONDS=600 tests/fuzz/run.sh key_set manifest
#   FUZZ_BUILD=dev tests/fuzz/run.sh       # what tests/run.sh (CI) runs
#
# FUZZ_BUILD=release (default) builds optimised, as `cargo fuzz` does: the
# fastest fuzzing, for long runs. FUZZ_BUILD=dev builds unoptimised
# (`cargo fuzz --dev`): a cold build costs a fraction of the CPU and each
# execution runs slower, the trade for a short run on CI (docs/fuzzing.md).
#
# Builds with cargo-fuzz on nightly (both installed here when missing) into
# target/fuzz. New inputs go to target/fuzz/corpus/<target>, never into the
# committed seeds; a crash is saved under tests/fuzz/artifacts/<target>/ and its
# reproduction command printed. docs/fuzzing.md: longer runs, crashes → tests.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${FUZZ_SECONDS:-20}"
case "${FUZZ_BUILD:-release}" in
    release) profile=() ;;
    dev) profile=(--dev) ;;
    *) echo "fuzz: FUZZ_BUILD is release or dev, not '$FUZZ_BUILD'" >&2; exit 2 ;;
esac
all=(token_request lambda_event hook_output manifest key_set sdk_event)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The issuer's dependencies at the versions it ships with (the fuzz crate is a
# workspace of its own, so it would otherwise resolve them afresh).
cp Cargo.lock tests/fuzz/Cargo.lock
target_dir="$PWD/target/fuzz"
# No sanitizer: the code under test is safe Rust (and C that ASan would not
# instrument); panics, overflow checks and debug assertions are what we catch,
# at about twice the speed of an ASan build. See docs/fuzzing.md for `-s address`.
# One cargo invocation builds all the targets (the issuer is compiled once for
# them); `cargo fuzz run` below then finds them built.
opts=(--fuzz-dir tests/fuzz --sanitizer none "${profile[@]}" --target-dir "$target_dir")
fuzz=(cargo +nightly fuzz run "${opts[@]}")
cargo +nightly fuzz build "${opts[@]}"

mkdir -p "$target_dir/logs"
failed=()
for target in "${targets[@]}"; do
    work="$target_dir/corpus/$target"
    log="$target_dir/logs/$target.log"
    mkdir -p "$work"
    # -timeout: an input that takes over 10 s is a hang, reported like a crash.
    if "${fuzz[@]}" "$target" "$work" "tests/fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        # The last status line (coverage, features, corpus) and the totals.
        done_line=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        printf 'fuzz %-14s %ss %s, %s runs (%s/s): %s\n' "$target" "$seconds" "${FUZZ_BUILD:-release}" "$runs" "$rate" "$done_line"
    else
        failed+=("$target")
        printf '\nfuzz %s FAILED; the end of %s:\n' "$target" "$log"
        tail -n 40 "$log"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crash in ${failed[*]}; the inputs are under tests/fuzz/artifacts/ (docs/fuzzing.md)" >&2
    exit 1
fi
echo "fuzz: ${targets[*]}: no crash in ${seconds}s each"
