#!/usr/bin/env bash
# Soak: webhooks at a steady rate end to end for a long time while Redis is SIGKILLed and
# restarted every minute and the client is SIGKILLed every minute (30 s later). Prints the
# ledger verdict (every webhook answered 200 delivered or dead-lettered; duplicates counted)
# and the RSS of both roles every 10 s.
# Usage: scripts/soak.sh [SECONDS] [RATE]      (defaults: 600 s at 200 webhooks/s)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$(pwd)
secs=${1:-600}
rate=${2:-200}
command -v redis-server >/dev/null || apt_install redis-server
cargo build --release --quiet
cargo build --release --quiet --example bench_tool
bin=$root/target/release/crm-relay
tool=$root/target/release/examples/bench_tool
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}" ${client_pid:-} ${redis_pid:-}; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis_port=$(free_port); server_port=$(free_port); sink_port=$(free_port)
export REDIS_URL=redis://127.0.0.1:$redis_port RELAY_STREAM=soak RELAY_DLQ_STREAM=soak:dlq RUST_LOG=warn
start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly yes \
    --appendfsync always >>"$work/redis.log" 2>&1 &
  redis_pid=$!
  wait_port "$redis_port"
}
start_client() {
  RELAY_TARGET_URL=http://127.0.0.1:$sink_port/in RELAY_CONSUMER=soak RELAY_ADMIN_LISTEN= \
    RELAY_BACKOFF_BASE=100ms RELAY_BACKOFF_MAX=2s RELAY_BREAKER_COOLDOWN=1s "$bin" client 2>>"$work/client.log" &
  client_pid=$!
}
start_redis
"$tool" record-sink "127.0.0.1:$sink_port" "$work/received" & pids+=($!)
wait_port "$sink_port"
RELAY_LISTEN=127.0.0.1:$server_port RELAY_ADMIN_LISTEN= RELAY_API_KEYS=soak "$bin" server 2>"$work/server.log" &
server_pid=$!; pids+=($server_pid)
wait_port "$server_port"
start_client

echo "soak: ${secs}s at ${rate}/s; Redis SIGKILL every minute (t=60,120,...), client SIGKILL every minute (t=30,90,...)"
"$tool" ledger-load "http://127.0.0.1:$server_port/webhook/soak" soak "$rate" "$secs" "$work/ledger" >"$work/load.out" &
load_pid=$!
printf '%6s %12s %12s\n' t server_kib client_kib
t=0
while kill -0 "$load_pid" 2>/dev/null; do
  sleep 10; t=$((t + 10))
  printf '%6s %12s %12s\n' "$t" "$(rss_kb "$server_pid")" "$(rss_kb "$client_pid")"
  if [ $((t % 60)) -eq 0 ]; then
    kill -9 "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
    sleep 2; start_redis; echo "       t=$t: Redis killed, restarted after 2 s"
  elif [ $((t % 60)) -eq 30 ]; then
    kill -9 "$client_pid"; wait "$client_pid" 2>/dev/null || true
    start_client; echo "       t=$t: client killed and restarted"
  fi
done
wait "$load_pid" || true
cat "$work/load.out"

# Settle: every ledger entry delivered (or dead-lettered), within 2 minutes.
sort -u "$work/ledger" >"$work/ledger.sorted"
for _ in $(seq 120); do
  sort -u "$work/received" >"$work/received.sorted"
  missing=$(comm -23 "$work/ledger.sorted" "$work/received.sorted" | wc -l)
  [ "$missing" -eq 0 ] && break
  sleep 1
done
dlq=$(redis-cli -p "$redis_port" XLEN soak:dlq)
received=$(wc -l <"$work/received"); unique=$(wc -l <"$work/received.sorted")
accepted=$(wc -l <"$work/ledger.sorted")
echo "verdict: accepted=$accepted delivered_unique=$unique duplicates=$((received - unique)) dlq=$dlq missing=$missing"
if [ "$missing" -ne 0 ]; then
  echo "LOST: $missing webhooks answered 200 never reached the app, e.g.:"; comm -23 "$work/ledger.sorted" "$work/received.sorted" | head -5
  exit 1
fi
echo "OK: nothing lost"
