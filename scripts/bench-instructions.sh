#!/usr/bin/env bash
# The server's user-space instructions per stored webhook, counted by valgrind (callgrind):
# repeatable to a few tenths of a percent, where timed runs on a shared machine swing by
# several percent, so a step of 1-2% shows. Two runs of the same binary, N1 and N2 webhooks (hey, c=50, 1 KB
# POSTs, the API key): the difference divided by N2-N1, so start-up cancels. Batches to
# Redis are larger under valgrind than natively (the server is slower), and valgrind runs
# SHA-256 in software: compare builds with it, and confirm in time with bench-ab.sh.
# With TOP=n, also prints the n costliest functions per webhook (inclusive).
# Usage: scripts/bench-instructions.sh [BIN] [N1] [N2]
#   BIN defaults to a static build with symbols (as scripts/build-static.sh builds it, std
#   rebuilt), made in target/instructions.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$(pwd)
n1=${2:-2000}; n2=${3:-12000}
if [ -n "${1:-}" ]; then
  bin=$(realpath "$1")
else
  CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=1 scripts/static-cargo.sh build \
    --release --locked --target x86_64-unknown-linux-musl --target-dir target/instructions \
    --bin crm-relay >&2
  bin=$root/target/instructions/x86_64-unknown-linux-musl/release/crm-relay
fi
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v hey >/dev/null || need+=(hey)
command -v redis-server >/dev/null || need+=(redis-server)
apt_install "${need[@]}"
bench_workdir
bench_body "$root" >"$work/body.json"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no \
  >"$work/redis.log" 2>&1 &
pids+=($!); wait_port "$redis_port"

# Serves N webhooks under callgrind; prints the instructions of the whole run.
count() {
  local port out=$work/callgrind.$1 server answered
  port=$(free_port)
  REDIS_URL="redis://127.0.0.1:$redis_port" RELAY_LISTEN="127.0.0.1:$port" RELAY_API_KEYS=bench-key \
    RELAY_ADMIN_LISTEN= RELAY_STREAM="instructions:$1" RUST_LOG=warn \
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" server \
    >/dev/null 2>"$work/valgrind.$1.log" &
  server=$!
  pids+=("$server")
  # valgrind starts slowly: up to a minute.
  for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  answered=$(taskset -c 1 hey -n "$1" -c 50 -m POST -H "X-API-Key: bench-key" \
    -T application/json -D "$work/body.json" "http://127.0.0.1:$port/webhook" |
    awk '/\[200\]/ { print $2 }')
  if [ "${answered:-0}" != "$1" ]; then
    echo "error: $1 webhooks sent, ${answered:-0} answered 200" >&2
    exit 1
  fi
  kill -TERM "$server"
  wait "$server" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

a=$(count "$n1")
b=$(count "$n2")
echo "$bin: $(( (b - a) / (n2 - n1) )) user-space instructions per webhook ($n1 and $n2 webhooks)"
if [ -n "${TOP:-}" ]; then
  command -v callgrind_annotate >/dev/null || apt_install valgrind
  # Inclusive, per webhook (start-up included, a few instructions); the frames that hold
  # everything (start, main, the runtime's loop) are left out.
  callgrind_annotate --inclusive=yes "$work/callgrind.$n2" 2>/dev/null |
    sed -E 's#/root/\.cargo/registry/src/[^/]+/##; s#/rustc/[0-9a-f]+/library/##; s# \[/.*\]$##' |
    awk -v n="$n2" -v top="$TOP" '
      /PROGRAM TOTALS/ { total = $1; gsub(",", "", total); next }
      /^ *[0-9,]+ \(/ { v = $1; gsub(",", "", v); if (v + 0 > 0.95 * total) next
        sub(/^ *[0-9,]+ \( *[0-9.]+%\) +(\* +)?/, ""); if (++shown <= top) printf "%8d  %s\n", v / n, $0 }'
fi
