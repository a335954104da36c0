#!/usr/bin/env bash
# Every test tokenhook has, from a fresh clone: installs what it needs, builds
# the hooks, checks format and lints, runs the whole suite, cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
rustup target add wasm32-unknown-unknown >/dev/null
# tests/tests/arm64.rs builds the Lambda bootstrap for arm64, as `sam build` does.
rustup target add aarch64-unknown-linux-gnu >/dev/null
rustup component add clippy rustfmt >/dev/null 2>&1 || true

step "qemu-aarch64-static and arm64 glibc (tests/tests/arm64.rs runs the arm64 bootstrap)"
if ! command -v qemu-aarch64-static >/dev/null || [ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq qemu-user-static libc6-arm64-cross >/dev/null
fi

step "python tools (moto, cfn-lint, cargo-lambda) into .venv"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]' cfn-lint cargo-lambda
export PATH="$PWD/.venv/bin:$PATH"

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
