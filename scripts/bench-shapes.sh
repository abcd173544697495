#!/usr/bin/env bash
# The small-VPS shapes of issue 15, for the relay (static binary) and the axum + redis-rs peer
# in the same run, each measure on one right after the other: server + Redis sharing CPU 0,
# the load on CPU 1.
#   - wrk at 10 and at 200 connections: req/s, p50, p99;
#   - oha at fixed offered rates (RATES, default 5,000, 20,000, 30,000 and 40,000/s), 50
#     connections: what was achieved, p50, p99, errors. With --latency-correction each
#     latency counts from when the request was due, not from when a busy connection got to
#     send it (coordinated omission): a server that falls behind shows its queue in the tail.
#     hey's -q cannot do this (its workers wait, hiding the queue) nor go much past 20,000/s
#     on one CPU; oha reaches about 59,000/s here.
# Needs: redis-server, wrk (apt-get), oha (cargo install, about 3 minutes, when missing).
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
apt_install "${need[@]}"
command -v oha >/dev/null || cargo install oha --locked --quiet
rates=${RATES:-5000 20000 30000 40000}
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

# wrk CONNS URL -> "rps p50 p99 non2xx"
wrk_at() {
  $pin1 wrk -t1 -c"$1" -d"${secs}s" --latency -H "X-API-Key: bench-key" -s "$root/bench/post.lua" "$2" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 } /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad }'
}

# An empty Redis before each measure (see fresh_redis in lib.sh).
fresh() { fresh_redis "$redis_port"; }

# oha RATE URL -> "RATE achieved p50 p99 errors": non-200 answers and failed requests, not
# the requests still in flight when the time is up (oha's "aborted due to deadline").
oha_at() {
  $pin1 oha -z "${secs}s" -c 50 -q "$1" --latency-correction --no-tui \
    -m POST -T application/json -H "X-API-Key: bench-key" -D "$body" "$2" | awk -v rate="$1" '
    function ms(v, unit) { if (unit ~ /^(µs|us)$/) return v / 1000; if (unit ~ /^sec/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +50\.00% in/ { p50 = ms($3, $4) } /^ +99\.00% in/ { p99 = ms($3, $4) }
    /^Status code distribution/ { section = "status"; next } /^Error distribution/ { section = "error"; next }
    /^ +\[/ { n = $2; if (section == "error") { sub(/^ +\[/, ""); n = $0 + 0 }
             if ((section == "error" && !/aborted due to deadline/) || (section == "status" && $1 != "[200]")) bad += n }
    END { printf "%s %.0f %.2f %.2f %d\n", rate, rps, p50, p99, bad }'
}

# Both servers listen at once; each measure runs on one and then the other (which goes first
# alternates), so a shared machine's drift hits both alike.
declare -A url
for name in relay axum_peer; do
  bin=$relay; [ "$name" = relay ] || bin=$peer
  port=$(free_port)
  REDIS_URL="redis://127.0.0.1:$redis_port" RELAY_LISTEN="127.0.0.1:$port" RELAY_API_KEYS=bench-key \
    RELAY_ADMIN_LISTEN= RELAY_STREAM="bench:$name" RUST_LOG=warn $pin0 "$bin" server 2>"$work/$name.log" &
  pids+=($!)
  wait_port "$port"
  url[$name]="http://127.0.0.1:$port/webhook"
  wrk_at 50 "${url[$name]}" >/dev/null # warm-up
done

# One line per measure and system: "NAME MEASURE req/s p50 p99 errors".
turn=0
for measure in c=10 c=200 $rates; do
  order=(relay axum_peer); [ $((turn++ % 2)) = 0 ] || order=(axum_peer relay)
  for name in "${order[@]}"; do
    fresh
    case $measure in
      c=*) echo "$name $measure $(wrk_at "${measure#c=}" "${url[$name]}")" ;;
      *) oha_at "$measure" "${url[$name]}" | awk -v n="$name" '{ print n, $1 "/s", $2, $3, $4, $5 }' ;;
    esac
  done
done | tee "$work/results"

echo
echo "server + Redis on CPU 0, load on CPU 1, ${secs}s per measure, 1 KB POST, Redis AOF everysec"
echo "(c=N: wrk, closed loop; N/s: oha offering N requests/s on 50 connections, latency-corrected)"
printf '%-10s | %-9s | %8s | %8s | %8s | %6s\n' measure system "req/s" "p50 ms" "p99 ms" errors
awk '{ print $2, $1, $3, $4, $5, $6 }' "$work/results" | sort -s -k1,1V -k2,2r | while read -r m n r p50 p99 e; do
  printf '%-10s | %-9s | %8s | %8s | %8s | %6s\n' "$m" "$n" "$r" "$p50" "$p99" "$e"
done
