#!/usr/bin/env bash
# The small-VPS shapes of issue 15, for the relay (static binary) and the axum + redis-rs peer
# in the same run: server + Redis sharing CPU 0, the load on CPU 1.
#   - wrk at 10 and at 200 connections: req/s, p50, p99;
#   - hey at a fixed offered rate (5,000/s and 20,000/s): what was achieved, p50, p99, errors
#     (a server that cannot keep up shows it as a lower achieved rate and a long tail).
# Needs: redis-server, wrk, hey (installed with apt-get when missing).
# Usage: scripts/bench-shapes.sh [SECONDS]   (default 5 per measure; BIN=path measures another relay build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$(pwd)
secs=${1:-5}

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v wrk >/dev/null || need+=(wrk)
command -v hey >/dev/null || need+=(hey)
apt_install "${need[@]}"
pin0="taskset -c 0"; pin1="taskset -c 1"
if [ "$(nproc)" -lt 2 ]; then echo "note: 1 CPU, not pinning"; pin0=""; pin1=""; fi
"$root/scripts/build-static.sh" >/dev/null
relay=${BIN:-$root/target/x86_64-unknown-linux-musl/release/crm-relay}
peer=$root/bench/axum-peer/target/release/axum-peer
[ -x "$peer" ] || cargo build --release --quiet --manifest-path "$root/bench/axum-peer/Cargo.toml"
unset SSL_CERT_FILE SSL_CERT_DIR
bench_workdir

redis_port=$(free_port)
$pin0 redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' \
  --appendonly yes --appendfsync everysec >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"
body="$work/body.json"
bench_body "$root" >"$body"

# wrk CONNS URL -> "rps p50 p99"
wrk_at() {
  $pin1 wrk -t1 -c"$1" -d"${secs}s" --latency -H "X-API-Key: bench-key" -s "$root/bench/post.lua" "$2" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 } /Non-2xx/ { bad = $NF }
    END { if (bad > 0) print "warning: " bad " non-2xx answers" > "/dev/stderr"; printf "%.0f %.2f %.2f\n", rps, p50, p99 }'
}

# An empty Redis before each measure (see fresh_redis in lib.sh).
fresh() { fresh_redis "$redis_port"; }

# hey RATE URL -> "achieved p50 p99 non200": 50 workers sharing the offered rate.
hey_at() {
  local workers=50
  $pin1 hey -z "${secs}s" -c "$workers" -q $(( $1 / workers )) -m POST -T application/json \
    -H "X-API-Key: bench-key" -D "$body" "$2" | awk '
    /Requests\/sec:/ { rps = $2 }
    /^ +50% in/ { p50 = $3 * 1000 } /^ +99% in/ { p99 = $3 * 1000 }
    /^ +\[[0-9]+\]/ { code = substr($1, 2, 3); if (code != "200") bad += $2 }
    END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad }'
}

# shapes NAME BIN STREAM: prints one RESULT line.
shapes() {
  local name=$1 bin=$2 port pid url
  port=$(free_port)
  REDIS_URL="redis://127.0.0.1:$redis_port" RELAY_LISTEN="127.0.0.1:$port" RELAY_API_KEYS=bench-key \
    RELAY_ADMIN_LISTEN= RELAY_STREAM="bench:$name" RUST_LOG=warn $pin0 "$bin" server 2>"$work/$name.log" &
  pid=$!; pids+=($pid)
  wait_port "$port"
  url="http://127.0.0.1:$port/webhook"
  wrk_at 50 "$url" >/dev/null # warm-up
  echo "RESULT $name $(fresh; wrk_at 10 "$url") $(fresh; wrk_at 200 "$url") $(fresh; hey_at 5000 "$url")" \
    "$(fresh; hey_at 20000 "$url")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

shapes relay "$relay" | tee "$work/results"
shapes axum_peer "$peer" | tee -a "$work/results"

echo
echo "server + Redis on CPU 0, load on CPU 1, ${secs}s per measure, 1 KB POST"
printf '%-10s | %-24s | %-24s | %-30s | %-30s\n' system "wrk c=10: req/s p50 p99" "wrk c=200: req/s p50 p99" \
  "5k/s offered: got p50 p99 err" "20k/s offered: got p50 p99 err"
while read -r _ name a b c d e f g h i j k l m n; do
  printf '%-10s | %7s %6s %8s ms | %7s %6s %8s ms | %6s %6s %8s ms %4s | %6s %6s %8s ms %4s\n' \
    "$name" "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i" "$j" "$k" "$l" "$m" "$n"
done <"$work/results"
