#!/usr/bin/env bash
# Ingest benchmark: the release server against the nginx + Lua reference doing the same job
# (POST body -> XADD -> 200 after Redis replied), measured in the same run on the same machine.
#
# Redis (AOF everysec) and the server under test share CPU 0; wrk runs on CPU 1.
# wrk: 1 thread, 50 connections, 1 KB JSON body (bench/post.lua), 3 x 10 s after a warm-up.
# Prints req/s, p50, p99 (medians of the runs), the ratio relay/reference and the relay's RSS.
# Also the conventional peer of issue 15 (bench/axum-peer: axum + redis-rs, built here when
# missing), and for the relay and the peer the server's and Redis's CPU time per webhook
# (utime+stime from /proc/<pid>/stat over the measured runs) and peak RSS (VmHWM).
#
# Needs: redis-server, wrk, nginx + libnginx-mod-http-lua (installed with apt-get when missing).
# Usage: scripts/bench-ingest.sh [RUNS] [SECONDS]
# AUTH=meta sends Meta's X-Hub-Signature-256 (HMAC of the body, checked by the relay with
# RELAY_META_APP_SECRET) instead of the API key; the reference takes the same requests.
# It measures the static binary (scripts/build-static.sh); BIN=target/release/crm-relay
# measures another build, e.g. the glibc one from `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$(pwd)
runs=${1:-3}
secs=${2:-10}
conns=50

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
apt_install "${need[@]}"
cpus=$(nproc)
pin_srv="taskset -c 0"; pin_load="taskset -c 1"
if [ "$cpus" -lt 2 ]; then echo "note: 1 CPU, not pinning"; pin_srv=""; pin_load=""; fi

if [ -n "${BIN:-}" ]; then
  bin=$(realpath "$BIN")
else
  # The shipped artifact: the static musl binary (mimalloc), see scripts/build-static.sh.
  "$root/scripts/build-static.sh" >/dev/null
  bin=$root/target/x86_64-unknown-linux-musl/release/crm-relay
fi
bench_workdir


redis_port=$(free_port)
$pin_srv redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' \
  --appendonly yes --appendfsync everysec --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!; pids+=($redis_pid)
wait_port "$redis_port"

# Servers start as under systemd: without this shell's SSL_CERT_FILE / SSL_CERT_DIR (a
# directory of certificates read at start inflates idle RSS by megabytes).
unset SSL_CERT_FILE SSL_CERT_DIR

# The credential every request carries.
auth_header=$(bench_auth_header "$root")

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hwm_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)
# µs of CPU per request: cpu_us TICKS REQUESTS
cpu_us() { awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }'; }

# One wrk run: prints "req_per_s p50_ms p99_ms requests non2xx".
wrk_run() {
  local url=$1 duration=$2
  $pin_load wrk -t1 -c"$conns" -d"${duration}s" --latency -H "$auth_header" \
    -s "$root/bench/post.lua" "$url" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
    / requests in / { n = $1 } /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, n, bad }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Runs $runs measured rounds against $1 after a warm-up, each from an empty Redis
# (fresh_redis, outside the measured CPU); prints "rps p50 p99" medians and, with SERVER_PID,
# its CPU µs per request and Redis's. A round with non-2xx answers measured something else
# than stored webhooks: it is recorded in $work/invalid and the script fails after the table.
measure() {
  local url=$1 st=0 rt=0 s0=0 r0
  fresh_redis "$redis_port"
  wrk_run "$url" 3 >/dev/null
  : >"$work/runs"
  for _ in $(seq "$runs"); do
    fresh_redis "$redis_port"
    [ -n "${SERVER_PID:-}" ] && s0=$(ticks "$SERVER_PID")
    r0=$(ticks "$redis_pid")
    wrk_run "$url" "$secs" >>"$work/runs"
    [ -n "${SERVER_PID:-}" ] && st=$((st + $(ticks "$SERVER_PID") - s0))
    rt=$((rt + $(ticks "$redis_pid") - r0))
  done
  awk -v u="$url" '$5 > 0 { print u ": " $5 " non-2xx answers in a round" }' "$work/runs" >>"$work/invalid"
  local n; n=$(awk '{ n += $4 } END { print n + 0 }' "$work/runs")
  local su=- ru
  [ -n "${SERVER_PID:-}" ] && su=$(cpu_us "$st" "$n")
  ru=$(cpu_us "$rt" "$n")
  printf '%s %s %s %s %s\n' "$(cut -d' ' -f1 "$work/runs" | median)" \
    "$(cut -d' ' -f2 "$work/runs" | median)" "$(cut -d' ' -f3 "$work/runs" | median)" "$su" "$ru"
}

# --- the relay ---
relay_port=$(free_port)
REDIS_URL="redis://127.0.0.1:$redis_port" RELAY_LISTEN="127.0.0.1:$relay_port" RELAY_API_KEYS=bench-key RELAY_META_APP_SECRET=bench-app-secret \
  RELAY_STREAM=bench:relay RUST_LOG=warn $pin_srv "$bin" server 2>"$work/relay.log" &
relay_pid=$!; pids+=($relay_pid)
wait_port "$relay_port"
sleep 0.5
rss_idle=$(rss_kb "$relay_pid")
read -r relay_rps relay_p50 relay_p99 relay_us relay_redis_us < <(SERVER_PID=$relay_pid measure "http://127.0.0.1:$relay_port/webhook")
rss_load=$(rss_kb "$relay_pid"); relay_hwm=$(hwm_kb "$relay_pid")
kill "$relay_pid"; wait "$relay_pid" 2>/dev/null || true

# --- the conventional peer: axum (hyper) + redis-rs, the same work (bench/axum-peer) ---
peer=$root/bench/axum-peer/target/release/axum-peer
[ -x "$peer" ] || cargo build --release --quiet --manifest-path "$root/bench/axum-peer/Cargo.toml"
peer_port=$(free_port)
REDIS_URL="redis://127.0.0.1:$redis_port" RELAY_LISTEN="127.0.0.1:$peer_port" RELAY_API_KEYS=bench-key \
  RELAY_STREAM=bench:peer $pin_srv "$peer" server 2>"$work/peer.log" &
peer_pid=$!; pids+=($peer_pid)
wait_port "$peer_port"
sleep 0.5
peer_idle=$(rss_kb "$peer_pid")
read -r peer_rps peer_p50 peer_p99 peer_us peer_redis_us < <(SERVER_PID=$peer_pid measure "http://127.0.0.1:$peer_port/webhook")
peer_hwm=$(hwm_kb "$peer_pid")
kill "$peer_pid"; wait "$peer_pid" 2>/dev/null || true

# --- the reference: nginx + Lua, one worker ---
nginx_port=$(free_port)
sed -e "s#@DIR@#$work#g" -e "s#@HTTP_PORT@#$nginx_port#g" -e "s#@REDIS_PORT@#$redis_port#g" \
  "$root/bench/nginx-lua-xadd.conf.template" >"$work/nginx.conf"
$pin_srv nginx -c "$work/nginx.conf" -g 'daemon off;' -e "$work/nginx-error.log" 2>>"$work/nginx-error.log" &
pids+=($!)
wait_port "$nginx_port"
read -r ref_rps ref_p50 ref_p99 _ _ < <(measure "http://127.0.0.1:$nginx_port/webhook")

kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# --- with REFERENCES=all: the HTTP and Redis ceilings, in the same run ---
if [ "${REFERENCES:-}" = all ]; then
  ret_port=$(free_port)
  cat >"$work/nginx-200.conf" <<CONF
worker_processes 1;
pid $work/nginx-200.pid;
error_log $work/nginx-200-error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ret_port; location / { return 200 "ok"; } } }
CONF
  $pin_srv nginx -c "$work/nginx-200.conf" -g 'daemon off;' -e "$work/nginx-200-error.log" 2>>"$work/nginx-200-error.log" &
  pids+=($!)
  wait_port "$ret_port"
  read -r ret_rps ret_p50 ret_p99 _ _ < <(measure "http://127.0.0.1:$ret_port/webhook")
  value=$(head -c 1000 /dev/zero | tr '\0' x)
  rb() { # extra args; prints requests/s
    timeout 60 $pin_load redis-benchmark -p "$redis_port" -c "$conns" -n 300000 -q "$@" \
      XADD bench:rb MAXLEN '~' 100000 '*' body "$value" | tr '\r' '\n' | awk '/requests per second/ { v = $(NF-5) } END { print v + 0 }'
  }
  rb_plain=$(rb); rb_pipe=$(rb -P 16)
  echo "RESULT nginx_return_200 $ret_rps $ret_p50 $ret_p99"
  echo "RESULT redis_benchmark_xadd $rb_plain - -"
  echo "RESULT redis_benchmark_xadd_p16 $rb_pipe - -"
fi

ratio=$(awk -v a="$relay_rps" -v b="$ref_rps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
echo "RESULT relay $relay_rps $relay_p50 $relay_p99 $rss_idle $rss_load $relay_hwm $relay_us $relay_redis_us"
echo "RESULT axum_peer $peer_rps $peer_p50 $peer_p99 $peer_idle $peer_hwm $peer_us $peer_redis_us"
echo "RESULT nginx_lua $ref_rps $ref_p50 $ref_p99"
echo
echo "binary: ${bin#$root/}"
echo "ingest, 1 KB POST (auth: ${AUTH:-key}), wrk -t1 -c$conns, median of $runs x ${secs}s, Redis AOF everysec, server+Redis on CPU 0"
printf '%-26s %10s %9s %9s\n' system req/s p50_ms p99_ms
printf '%-26s %10s %9s %9s\n' "crm-relay server" "$relay_rps" "$relay_p50" "$relay_p99"
printf '%-26s %10s %9s %9s\n' "nginx+Lua XADD (reference)" "$ref_rps" "$ref_p50" "$ref_p99"
printf '%-26s %10s %9s %9s\n' "axum + redis-rs (peer)" "$peer_rps" "$peer_p50" "$peer_p99"
echo "server CPU per webhook: relay ${relay_us} µs, peer ${peer_us} µs (ratio $(awk -v a="$relay_us" -v b="$peer_us" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'), target <= 0.6); Redis: ${relay_redis_us} / ${peer_redis_us} µs"
echo "peak RSS: relay ${relay_hwm} KiB, peer ${peer_hwm} KiB"
echo "ratio relay/reference: $ratio   (target >= 1.3)"
echo "relay RSS: idle ${rss_idle} KiB, after load ${rss_load} KiB   (target idle <= 4096 KiB)"
if [ -s "$work/invalid" ]; then
  echo "error: these measures are not of stored webhooks:" >&2
  cat "$work/invalid" >&2
  exit 1
fi
