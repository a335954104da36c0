#!/usr/bin/env bash
# Build the Zig tenant-claims hook: ./build.sh [OUT.wasm]
# (default: target/zig-hooks/zig_tenant_claims.wasm under the repository).
#
# zig: $ZIG if set (a command, e.g. "python -m ziglang"), else `zig` on PATH,
# else the one the cargo-lambda pip package brings into .venv (tests/run.sh
# installs it), run as `.venv/bin/python -m ziglang`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/target/zig-hooks/zig_tenant_claims.wasm}"
if [ -n "${ZIG:-}" ]; then
    read -r -a zig <<<"$ZIG"
elif command -v zig >/dev/null; then
    zig=(zig)
elif [ -x "$repo/.venv/bin/python" ] && "$repo/.venv/bin/python" -c 'import ziglang' 2>/dev/null; then
    zig=("$repo/.venv/bin/python" -m ziglang)
else
    echo "zig not found: install it, set ZIG, or run tests/run.sh (installs ziglang into .venv)" >&2
    exit 1
fi
cache="$repo/target/zig-cache"
mkdir -p "$(dirname "$out")" "$cache"
# wasm32-freestanding: a core module, no WASI. -fno-entry: a library-like
# module with no _start. -rdynamic: export the `export fn`s. --stack: a 64 KiB
# wasm stack keeps initial memory small (the host resets it after each call).
"${zig[@]}" build-exe "$here/hook.zig" \
    -target wasm32-freestanding -O ReleaseSmall -fno-entry -rdynamic --stack 65536 \
    --cache-dir "$cache" --global-cache-dir "$cache" \
    -femit-bin="$out"
echo "$out"
