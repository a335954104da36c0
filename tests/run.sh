#!/usr/bin/env bash
# Every test tokenhook has, from a fresh clone: installs what it needs, builds
# the hooks, checks format and lints, runs the whole suite, cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A cold run needs about 8 GB of disk (docs/performance.md, The test run).
step "toolchain ($(df -h --output=avail . | tail -1 | tr -d ' ') free here)"
rustup target add wasm32-unknown-unknown >/dev/null
# tests/tests/arm64.rs builds the Lambda bootstrap for arm64, as `sam build` does.
rustup target add aarch64-unknown-linux-gnu >/dev/null
rustup component add clippy rustfmt >/dev/null 2>&1 || true

step "system packages (Debian), only those missing"
# qemu-user-static + libc6-arm64-cross: tests/tests/arm64.rs runs the arm64
# Lambda bootstrap; chromium + chromium-driver: tests/tests/playground.rs.
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || missing+=(libc6-arm64-cross)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "python tools (moto, cfn-lint, cargo-lambda, zig) into .venv"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]' cfn-lint cargo-lambda ziglang
export PATH="$PWD/.venv/bin:$PATH"

# No incremental cache: a cold run (CI) reuses nothing from it, and it was
# 1.6 GB of the disk. Set CARGO_INCREMENTAL=1 to keep one between local runs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "format"
cargo fmt --all --check

step "build every hook to wasm (cargo hooks)"
cargo hooks

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

if [ -f template.yaml ]; then
    step "cfn-lint template.yaml"
    cfn-lint template.yaml
fi

# Unoptimised build (FUZZ_BUILD=dev): cold, 40 % of the CPU of cargo-fuzz's
# optimised default (about 5 min on 2 cores, then 5 x 20 s of runs); enough
# executions for a bounded smoke run (docs/fuzzing.md: costs, longer runs).
step "fuzz: each target 20 s from its seeds (tests/fuzz/run.sh; docs/fuzzing.md)"
FUZZ_BUILD=dev FUZZ_SECONDS=20 bash tests/fuzz/run.sh

step "disk used by the build"
du -sh target 2>/dev/null || true
df -h --output=avail . | tail -1
