#!/usr/bin/env bash
# Every test tokenhook has, from a fresh clone: installs what it needs, builds
# the hooks, checks format and lints, runs the whole suite, cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
rustup target add wasm32-unknown-unknown >/dev/null
rustup component add clippy rustfmt >/dev/null 2>&1 || true

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
