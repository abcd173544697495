#!/usr/bin/env bash
# Delivery benchmark: release server + client + a fast sink (examples/bench_tool.rs).
#  (a) end-to-end latency at a fixed 1,000 webhooks/s for 10 s: server receive -> sink
#      receive from X-Relay-Received-At (ms resolution, as stored) and sender -> sink (µs);
#  (b) drain: 100,000 stored webhooks, time until the sink has all of them -> deliveries/s,
#      for each RELAY_CONCURRENCY given (default "4 16 64"); client RSS idle and during the drain.
# Redis: AOF everysec. Usage: scripts/bench-delivery.sh [N] [CONCURRENCIES...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$(pwd)
n=${1:-100000}; shift || true
concs=("${@:-4 16 64}"); read -r -a concs <<<"${concs[*]}"

command -v redis-server >/dev/null || apt_install redis-server
cargo build --release --quiet
cargo build --release --quiet --example bench_tool
bin=$root/target/release/crm-relay
tool=$root/target/release/examples/bench_tool
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly yes \
  --appendfsync everysec >"$work/redis.log" 2>&1 &
pids+=($!); wait_port "$redis_port"
redis_url="redis://127.0.0.1:$redis_port"

start_client() { # stream concurrency sink_port
  REDIS_URL=$redis_url RELAY_STREAM=$1 RELAY_TARGET_URL="http://127.0.0.1:$3/in" RELAY_CONCURRENCY=$2 \
    RUST_LOG=warn "$bin" client 2>>"$work/client.log" &
  client_pid=$!; pids+=($client_pid)
}

# (a) latency at a fixed rate
server_port=$(free_port); sink_port=$(free_port)
REDIS_URL=$redis_url RELAY_LISTEN=127.0.0.1:$server_port RELAY_API_KEYS=bench RELAY_STREAM=bench:lat \
  RUST_LOG=warn "$bin" server 2>"$work/server.log" &
pids+=($!); wait_port "$server_port"
"$tool" sink "127.0.0.1:$sink_port" 10000 >"$work/lat.txt" & sink_pid=$!; pids+=($sink_pid)
wait_port "$sink_port"
start_client bench:lat 4 "$sink_port"
sleep 1
rss_idle=$(rss_kb "$client_pid")
"$tool" load "http://127.0.0.1:$server_port/webhook" bench 1000 10 >/dev/null
wait "$sink_pid" || true
kill "$client_pid"; wait "$client_pid" 2>/dev/null || true
lat=$(cat "$work/lat.txt")

# (b) drain
drain_lines=()
for c in "${concs[@]}"; do
  stream="bench:drain:$c"; sink_port=$(free_port)
  "$tool" fill "$redis_url" "$stream" "$n" >/dev/null
  "$tool" sink "127.0.0.1:$sink_port" "$n" >"$work/drain.txt" & sink_pid=$!; pids+=($sink_pid)
  wait_port "$sink_port"
  t0=$(date +%s.%N)
  start_client "$stream" "$c" "$sink_port"
  peak=0
  while kill -0 "$sink_pid" 2>/dev/null; do
    r=$(rss_kb "$client_pid"); [ "${r:-0}" -gt "$peak" ] && peak=$r
    sleep 0.2
  done
  t1=$(date +%s.%N)
  kill "$client_pid"; wait "$client_pid" 2>/dev/null || true
  rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
  echo "RESULT drain $c $rate $peak"
  drain_lines+=("$(printf 'concurrency %-3s  %8s deliveries/s (client start -> last delivery)  sink-side %s  client peak RSS %s KiB' \
    "$c" "$rate" "$(grep -o 'rate=[0-9]*' "$work/drain.txt")" "$peak")")
done

field() { printf '%s\n' "$lat" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
echo "RESULT latency $(field e2e_p50_ms) $(field e2e_p99_ms) $(field send_p50_ms) $(field send_p99_ms) $rss_idle"
echo
echo "delivery benchmark (Redis AOF everysec, 1 KB bodies, $(nproc) CPUs)"
echo "(a) fixed 1,000 webhooks/s for 10 s, concurrency 4:"
echo "    $lat"
echo "    client RSS idle: ${rss_idle} KiB"
echo "(b) drain of $n stored webhooks:"
for l in "${drain_lines[@]}"; do echo "    $l"; done
echo "targets: e2e p50 <= 1 ms, p99 <= 5 ms, drain >= 20,000/s"
