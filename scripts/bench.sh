#!/usr/bin/env bash
# One benchmark table: ingest (the static server against nginx+Lua XADD, nginx `return 200`
# and redis-benchmark XADD, all in the same run) and delivery (latency at 1,000/s, drain),
# printed as markdown. `scripts/bench.sh > BENCHMARKS.md` records a run.
# Usage: scripts/bench.sh [RUNS] [SECONDS]    (defaults: 3 runs of 10 s for ingest)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; secs=${2:-10}
ingest=$(REFERENCES=all scripts/bench-ingest.sh "$runs" "$secs")
delivery=$(scripts/bench-delivery.sh 100000 4 16 64)
get() { printf '%s\n' "$1" | awk -v k="$2" '$1 == "RESULT" && $2 == k { $1 = ""; $2 = ""; print substr($0, 3) }'; }
read -r relay_rps relay_p50 relay_p99 rss_idle rss_load relay_hwm relay_us relay_rus relay_uus < <(get "$ingest" relay)
read -r peer_rps peer_p50 peer_p99 peer_idle peer_hwm peer_us peer_rus peer_uus < <(get "$ingest" axum_peer)
# "total (user + system)"
split() { awk -v t="$1" -v u="$2" 'BEGIN { printf "%s (%s + %.1f)", t, u, t - u }'; }
read -r ref_rps ref_p50 ref_p99 < <(get "$ingest" nginx_lua)
rounds=$(get "$ingest" rounds)
read -r med_rps med_cpu < <(get "$ingest" round_medians)
read -r ret_rps ret_p50 ret_p99 < <(get "$ingest" nginx_return_200)
read -r rb_rps _ _ < <(get "$ingest" redis_benchmark_xadd)
read -r rb16_rps _ _ < <(get "$ingest" redis_benchmark_xadd_p16)
read -r e2e50 e2e99 send50 send99 client_idle < <(get "$delivery" latency)
ratio() { awk -v a="$1" -v b="${2:-$ref_rps}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

cat <<MD
# crm-relay benchmarks

Run on $(date -u +%Y-%m-%d) by \`scripts/bench.sh $runs $secs\` on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),
$(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -sr); Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2) with
\`--appendonly yes --appendfsync everysec\`. Ingest: servers and Redis pinned to CPU 0, wrk (1 thread,
50 connections, 1 KB JSON body) on CPU 1, median of $runs rounds of ${secs} s after a warm-up. The
relay, the peer and nginx+Lua listen at once, and each round measures each of them in turn from
an empty Redis, so the machine's drift hits all three alike. The machine is shared: compare the
ratios, measured in the same run, rather than absolute numbers.

## Ingest (POST → XADD → 200)

| system | req/s | p50 ms | p99 ms | RSS idle / peak | server CPU µs / webhook (user + system) | Redis CPU µs / webhook | ratio to nginx+Lua |
|---|---:|---:|---:|---|---:|---:|---:|
| **crm-relay server** (static musl binary) | $relay_rps | $relay_p50 | $relay_p99 | $rss_idle KiB / $relay_hwm KiB | $(split "$relay_us" "$relay_uus") | $relay_rus | **$(ratio "$relay_rps")** |
| axum + redis-rs peer (\`bench/axum-peer\`) | $peer_rps | $peer_p50 | $peer_p99 | $peer_idle KiB / $peer_hwm KiB | $(split "$peer_us" "$peer_uus") | $peer_rus | $(ratio "$peer_rps") |
| nginx + Lua XADD (reference, \`bench/\`) | $ref_rps | $ref_p50 | $ref_p99 | — | — | — | 1.00 |
| nginx \`return 200\`, no Redis (HTTP ceiling) | $ret_rps | $ret_p50 | $ret_p99 | — | — | — | $(ratio "$ret_rps") |
| redis-benchmark XADD 1 KB, 50 clients (Redis ceiling) | $rb_rps | — | — | — | — | — | $(ratio "$rb_rps") |
| redis-benchmark XADD 1 KB, pipeline 16 | $rb16_rps | — | — | — | — | — | $(ratio "$rb16_rps") |

Against the axum peer, same run: **throughput $(ratio "$relay_rps" "$peer_rps")×** (target ≥ 1.2), **server CPU per webhook
$(ratio "$relay_us" "$peer_us")×** (target ≤ 0.6), p99 $relay_p99 ms against $peer_p99 ms. Targets of the nginx
reference: ratio ≥ 1.3, p99 ≤ 3 ms, idle RSS ≤ 4 MB.

Round by round against the peer (req/s ratio / server CPU per webhook ratio, each pair
measured within the same minute): $rounds; medians **${med_rps}×** req/s and **${med_cpu}×**
server CPU per webhook.

## Delivery (server → Redis → client → app)

| measure | figure | target |
|---|---|---|
| end to end at 1,000 webhooks/s, from \`X-Relay-Received-At\` (ms resolution) | p50 $e2e50 ms, p99 $e2e99 ms | p50 ≤ 1 ms, p99 ≤ 5 ms |
| sender → app at 1,000/s (µs clock) | p50 $send50 ms, p99 $send99 ms | |
$(get "$delivery" drain | while read -r c rate peak; do echo "| drain of 100,000 stored webhooks, RELAY_CONCURRENCY=$c | $rate deliveries/s, client peak RSS $peak KiB | ≥ 20,000/s |"; done)
| client RSS idle | $client_idle KiB | |

(The delivery benchmark runs the glibc release build, \`cargo build --release\`.)
MD
