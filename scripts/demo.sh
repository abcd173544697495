#!/usr/bin/env bash
# The main job, end to end, on this machine: Redis, the relay server and client, and a small
# local app ("sink"), all on free loopback ports. Sends the signed Meta sample payloads with
# curl, shows what the app received (and that Meta's signature still verifies), shows one
# webhook dead-lettered and replayed, then stops everything it started.
# Usage: scripts/demo.sh      (installs redis-server with apt-get when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$(pwd)
fixtures=$root/tests/fixtures/meta

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt_install "${need[@]}"
  # Debian starts the packaged service; the demo starts its own Redis.
  systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

say "building (cargo build --release)"
cargo build --release --quiet
cargo build --release --quiet --example demo_sink
bin=$root/target/release/crm-relay

work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # A failed demo leaves something to read: the end of every log, before they go.
  if [ "$rc" -ne 0 ]; then
    for log in "$work"/*.log "$work"/sink.out; do
      [ -s "$log" ] || continue
      printf '\n\033[1m== last lines of %s\033[0m\n' "$(basename "$log")" >&2
      tail -n 20 "$log" >&2
    done
    echo "demo failed (exit $rc)" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

redis_port=$(free_port); server_port=$(free_port); server_admin=$(free_port)
client_admin=$(free_port); sink_port=$(free_port)
export REDIS_URL=redis://127.0.0.1:$redis_port RELAY_STREAM='demo:{webhooks}' RELAY_DLQ_STREAM='demo:{webhooks}:dlq'

say "starting Redis (AOF, fsync always, noeviction) on :$redis_port"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly yes \
  --appendfsync always --maxmemory-policy noeviction >"$work/redis.log" 2>&1 &
pids+=($!); wait_port "$redis_port"

say "starting the relay server on :$server_port"
RELAY_LISTEN=127.0.0.1:$server_port RELAY_ADMIN_LISTEN=127.0.0.1:$server_admin \
  RELAY_API_KEYS=demo-key RELAY_META_APP_SECRET=test-app-secret RELAY_META_VERIFY_TOKEN=demo-token \
  "$bin" server 2>"$work/server.log" &
pids+=($!); wait_port "$server_port"

say "starting the local app (sink) on :$sink_port and the relay client"
"$root/target/release/examples/demo_sink" "127.0.0.1:$sink_port" test-app-secret >"$work/sink.out" &
pids+=($!); wait_port "$sink_port"
RELAY_TARGET_URL=http://127.0.0.1:$sink_port/webhooks RELAY_ADMIN_LISTEN=127.0.0.1:$client_admin \
  RELAY_CONSUMER=demo-client RELAY_BACKOFF_BASE=200ms RELAY_BACKOFF_MAX=2s \
  "$bin" client 2>"$work/client.log" &
pids+=($!); wait_port "$client_admin"

say "Meta's verification handshake"
echo "GET /webhook/whatsapp?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=demo-token -> $(
  curl -sS "http://127.0.0.1:$server_port/webhook/whatsapp?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=demo-token")"

say "sending the 10 signed Meta samples with curl (exact bytes: --data-binary @file)"
# signatures.SYNTHETIC.json lists each "file" followed by its "X-Hub-Signature-256" (the
# "pitfall_demo" part after the vectors is left out).
sed '/pitfall_demo/,$d' "$fixtures/signatures.SYNTHETIC.json" |
  grep -oE '"(file|X-Hub-Signature-256)": "[^"]+"' | cut -d'"' -f4 |
  paste - - | while read -r file sig; do
    printf '%-46s ' "$file"
    curl -sS -H 'Content-Type: application/json' -H "X-Hub-Signature-256: $sig" \
      --data-binary "@$fixtures/$file" "http://127.0.0.1:$server_port/webhook/whatsapp"
    echo
  done
printf '%-46s ' "a wrong signature"
curl -sS -o /dev/null -w '%{http_code}\n' -H 'X-Hub-Signature-256: sha256=00' --data-binary '{}' \
  "http://127.0.0.1:$server_port/webhook/whatsapp"

sink_lines() { wc -l <"$work/sink.out"; }
for _ in $(seq 100); do [ "$(sink_lines)" -ge 10 ] && break; sleep 0.05; done
say "what the local app received"
cat "$work/sink.out"

say "one webhook the app refuses (422): dead-lettered"
curl -sS -H 'X-API-Key: demo-key' --data-binary '{"order":42,"reject":true}' "http://127.0.0.1:$server_port/webhook/shop"
echo
for _ in $(seq 50); do
  [ "$("$bin" dlq list 2>/dev/null | wc -l)" -ge 2 ] && break
  sleep 0.1
done
"$bin" dlq list

tail -n 1 "$work/sink.out"

say "replaying it (the app accepts it now; same X-Relay-Id)"
"$bin" dlq replay --all
for _ in $(seq 100); do [ "$(sink_lines)" -ge 12 ] && break; sleep 0.05; done
tail -n 1 "$work/sink.out"

say "metrics (client admin listener)"
curl -sS "http://127.0.0.1:$client_admin/metrics" | grep -E '^relay_(deliveries_total|dlq_length|backlog|breaker_open)'

say "done: stopping everything"
