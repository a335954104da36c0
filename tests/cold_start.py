#!/usr/bin/env python3
"""Cold start, measured from outside: process start -> first signed token.

Usage: python3 tests/cold_start.py [BINARY] [RUNS] [OTHER_BINARY ...]
  BINARY  the tokenhook binary (default target/release/tokenhook; build it with
          `cargo build --release -p tokenhook` and the hooks with `cargo hooks`)
  RUNS    runs per variant (default 15)
  OTHER_BINARY  more builds to compare A/B in the same run: each bundles with
          itself, and runs alternate between the binaries, so machine load
          affects them alike

Bundles examples/manifest.toml twice into a temporary directory: with every hook
precompiled for this machine (`bundle --target native`) and, as the baseline,
with the precompiled entries removed (every hook compiled at start). A client
with a `sha256:` secret is added, so the first request measures the issuer, not
an argon2 hash. Each run starts `tokenhook serve` on a fresh port, polls the
port every 0.2 ms, requests a token (client_credentials, all four hooks), and
takes the time from just before the process was spawned to the token
response. Prints min / median / max per variant and the issuer's own start-up
breakdown line of the last run. Nothing is cached across runs (no --hook-cache).
"""

import hashlib
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "cold-start-secret-0123456789abcdefghijklmnopqrstuvwxyz"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bundle(binary, tmp, target, out):
    examples = os.path.join(ROOT, "examples")
    text = open(os.path.join(examples, "manifest.toml")).read()
    text = text.replace(
        "../target/hooks/wasm32-unknown-unknown/hook",
        os.path.join(ROOT, "target/hooks/wasm32-unknown-unknown/hook"),
    )
    text = text.replace("~/.tokenhook/dev-key.pem", os.path.join(tmp, "dev-key.pem"))
    text = text.replace('"dev-hmac-key.txt"', json.dumps(os.path.join(examples, "dev-hmac-key.txt")))
    text += f"""
[[clients]]
id = "cold-start"
secret_hash = "sha256:{hashlib.sha256(SECRET.encode()).hexdigest()}"
metadata = {{ tenant = "acme", plan = "pro" }}

[[grants]]
client = "cold-start"
api = "https://api.example.com"
scopes = ["read:orders", "read:status"]
"""
    source = os.path.join(tmp, "source.toml")
    open(source, "w").write(text)
    subprocess.run(
        [binary, "bundle", "--target", target, "--manifest", source, "--out", out],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return os.path.join(out, "manifest.toml")


def without_precompiled(manifest, out):
    # Drop every [hooks.precompiled] table: the same bundle, compiled at start.
    text = open(manifest).read()
    text = re.sub(r"\n\[hooks\.precompiled\]\n(?:[^\n\[]+\n)*", "\n", text)
    open(out, "w").write(text)
    return out


def one_run(binary, manifest):
    port = free_port()
    auth = "Basic " + __import__("base64").b64encode(f"cold-start:{SECRET}".encode()).decode()
    body = "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example.com"
    env = dict(os.environ, RUST_LOG="info")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "serve", "--manifest", manifest, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port)
                conn.connect()
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(proc.stderr.read().decode())
                time.sleep(0.0002)
        conn.request(
            "POST",
            "/oauth/token",
            body,
            {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"},
        )
        response = json.loads(conn.getresponse().read())
        elapsed = (time.perf_counter() - start) * 1000
        assert "access_token" in response, response
    finally:
        proc.terminate()
        _, err = proc.communicate()
    startup = next(
        (json.loads(l) for l in err.decode().splitlines() if '"start-up"' in l), None
    )
    return elapsed, startup


def main():
    first = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/tokenhook")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    binaries = [os.path.abspath(b) for b in [first] + sys.argv[3:]]
    with tempfile.TemporaryDirectory() as tmp:
        variants = []  # (binary, variant name, manifest)
        for i, binary in enumerate(binaries):
            work = os.path.join(tmp, str(i))
            os.mkdir(work)
            precompiled = bundle(binary, work, "native", os.path.join(work, "bundle"))
            compiled = without_precompiled(precompiled, os.path.join(work, "bundle", "compiled.toml"))
            one_run(binary, precompiled)  # generates the dev key once
            variants += [(binary, "precompiled", precompiled), (binary, "compiled", compiled)]
        times = {id(v): [] for v in variants}
        last = {}
        # Interleaved: run k of every variant before run k+1 of any.
        for _ in range(runs):
            for v in variants:
                t, last[id(v)] = one_run(v[0], v[2])
                times[id(v)].append(t)
        for v in variants:
            binary, name, _ = v
            ts = times[id(v)]
            if len(binaries) > 1:
                print(binary)
            print(
                f"{name:12} process start -> first token: min {min(ts):.1f} ms, "
                f"median {statistics.median(ts):.1f} ms, max {max(ts):.1f} ms ({runs} runs)"
            )
            if last.get(id(v)):
                print(f"{'':12} issuer's breakdown (last run): {json.dumps(last[id(v)]['fields'])}")


if __name__ == "__main__":
    main()
