#!/usr/bin/env bash
# Fuzzes the request parser (pipelined head + body framing, whole vs split) and the chunked
# decoder with cargo-fuzz (libFuzzer; needs a nightly toolchain). Seeds: fuzz/seeds/.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 600)
# A crash leaves its input in fuzz/artifacts/<target>/: add it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in request_stream chunked; do
  mkdir -p "fuzz/corpus/$target"
  cp -n fuzz/seeds/$target/* "fuzz/corpus/$target/" 2>/dev/null || true
  echo "== fuzzing $target for ${secs}s"
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$secs" -timeout=5 -max_len=70000
done
