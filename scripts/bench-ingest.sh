#!/usr/bin/env bash
# Ingest benchmark: the release server against the nginx + Lua reference doing the same job
# (POST body -> XADD -> 200 after Redis replied), measured in the same run on the same machine.
#
# Redis (AOF everysec) and the servers under test share CPU 0; wrk runs on CPU 1.
# wrk: 1 thread, 50 connections, 1 KB JSON body (bench/post.lua), 3 rounds of 10 s after a
# warm-up. The relay, the conventional peer of issue 15 (bench/axum-peer: axum + redis-rs,
# built here when missing) and the reference all listen at once, and each round measures
# each of them in turn (the order turning), so a shared machine's drift hits them alike.
# Prints req/s, p50, p99 (medians of the rounds), the ratio relay/reference, the relay's RSS,
# and for the relay and the peer the server's and Redis's CPU time per webhook (utime+stime
# from /proc/<pid>/stat over the measured rounds), peak RSS (VmHWM), and each round's
# relay/peer ratios.
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
user_ticks() { awk '{ print $14 }' "/proc/$1/stat"; }
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
# (fresh_redis, outside the measured CPU); prints "rps p50 p99" medians. For the ceilings,
# measured on their own after the systems under test.
measure() {
  local url=$1
  fresh_redis "$redis_port"
  wrk_run "$url" 3 >/dev/null
  : >"$work/runs"
  for _ in $(seq "$runs"); do
    fresh_redis "$redis_port"
    wrk_run "$url" "$secs" >>"$work/runs"
  done
  check_rounds "$url" "$work/runs"
  printf '%s %s %s\n' "$(cut -d' ' -f1 "$work/runs" | median)" \
    "$(cut -d' ' -f2 "$work/runs" | median)" "$(cut -d' ' -f3 "$work/runs" | median)"
}

# A round with non-2xx answers measured something else than stored webhooks: it is recorded
# in $work/invalid and the script fails after the table.
check_rounds() { # NAME FILE
  awk -v u="$1" '$5 > 0 { print u ": " $5 " non-2xx answers in a round" }' "$2" >>"$work/invalid"
}

# start NAME PORT COMMAND...: a system under test, on CPU 0 with Redis.
declare -A url server_pid
start() {
  local name=$1 port=$2; shift 2
  $pin_srv "$@" 2>"$work/$name.log" &
  pids+=($!); server_pid[$name]=$!; url[$name]=http://127.0.0.1:$port/webhook
  wait_port "$port"
}

# --- the systems under test, all listening at once ---
# The relay; the conventional peer of issue 15, axum (hyper) + redis-rs doing the same work
# (bench/axum-peer); the reference, nginx + Lua with one worker.
port=$(free_port)
REDIS_URL="redis://127.0.0.1:$redis_port" RELAY_LISTEN="127.0.0.1:$port" RELAY_API_KEYS=bench-key \
  RELAY_META_APP_SECRET=bench-app-secret RELAY_STREAM=bench:relay RUST_LOG=warn \
  start relay "$port" "$bin" server
peer=$root/bench/axum-peer/target/release/axum-peer
[ -x "$peer" ] || cargo build --release --quiet --manifest-path "$root/bench/axum-peer/Cargo.toml"
port=$(free_port)
REDIS_URL="redis://127.0.0.1:$redis_port" RELAY_LISTEN="127.0.0.1:$port" RELAY_API_KEYS=bench-key \
  RELAY_STREAM=bench:peer start axum_peer "$port" "$peer" server
port=$(free_port)
sed -e "s#@DIR@#$work#g" -e "s#@HTTP_PORT@#$port#g" -e "s#@REDIS_PORT@#$redis_port#g" \
  "$root/bench/nginx-lua-xadd.conf.template" >"$work/nginx.conf"
start nginx_lua "$port" nginx -c "$work/nginx.conf" -g 'daemon off;' -e "$work/nginx-error.log"
sleep 0.5
rss_idle=$(rss_kb "${server_pid[relay]}"); peer_idle=$(rss_kb "${server_pid[axum_peer]}")

# The rounds alternate between the systems, the order turning each round, so that the
# machine's drift (a shared machine's speed can change by 2x from one minute to the next)
# hits all of them alike. Each round starts from an empty Redis, outside the measured CPU,
# and appends "rps p50 p99 requests non2xx server_ticks redis_ticks server_user_ticks" to
# $work/runs.NAME.
systems=(relay axum_peer nginx_lua)
for name in "${systems[@]}"; do
  fresh_redis "$redis_port"; wrk_run "${url[$name]}" 3 >/dev/null # warm-up
  : >"$work/runs.$name"
done
for round in $(seq "$runs"); do
  for i in 0 1 2; do
    name=${systems[$(( (round + i) % 3 ))]}
    fresh_redis "$redis_port"
    pid=${server_pid[$name]}
    s0=$(ticks "$pid"); u0=$(user_ticks "$pid"); r0=$(ticks "$redis_pid")
    line=$(wrk_run "${url[$name]}" "$secs")
    echo "$line $(( $(ticks "$pid") - s0 )) $(( $(ticks "$redis_pid") - r0 ))" \
      "$(( $(user_ticks "$pid") - u0 ))" >>"$work/runs.$name"
  done
done

# NAME -> "rps p50 p99 server_µs redis_µs server_user_µs": medians of the rounds, CPU over
# all of them.
summary() {
  local f=$work/runs.$1 n st rt ut
  check_rounds "${url[$1]}" "$f"
  read -r n st rt ut < <(awk '{ n += $4; s += $6; r += $7; u += $8 } END { print n + 0, s + 0, r + 0, u + 0 }' "$f")
  printf '%s %s %s %s %s %s\n' "$(cut -d' ' -f1 "$f" | median)" "$(cut -d' ' -f2 "$f" | median)" \
    "$(cut -d' ' -f3 "$f" | median)" "$(cpu_us "$st" "$n")" "$(cpu_us "$rt" "$n")" "$(cpu_us "$ut" "$n")"
}
read -r relay_rps relay_p50 relay_p99 relay_us relay_redis_us relay_user_us < <(summary relay)
read -r peer_rps peer_p50 peer_p99 peer_us peer_redis_us peer_user_us < <(summary axum_peer)
read -r ref_rps ref_p50 ref_p99 _ _ _ < <(summary nginx_lua)
rss_load=$(rss_kb "${server_pid[relay]}")
relay_hwm=$(hwm_kb "${server_pid[relay]}"); peer_hwm=$(hwm_kb "${server_pid[axum_peer]}")
# Round by round, relay against peer: "req/s ratio/CPU-per-webhook ratio" (the rounds' nth
# lines are the same minute's).
rounds=$(paste -d' ' "$work/runs.relay" "$work/runs.axum_peer" | awk '{
  cr = ($4 > 0 ? $6 / $4 : 0); cp = ($12 > 0 ? $14 / $12 : 0)
  printf "%s%.2f/%.2f", (NR > 1 ? " " : ""), ($9 > 0 ? $1 / $9 : 0), (cp > 0 ? cr / cp : 0) }')
# Their medians: steadier than the pooled figures when one round hit a stall of the machine.
round_medians=$(for k in 1 2; do tr ' ' '\n' <<<"$rounds" | cut -d/ -f$k | median; done | paste -sd' ')
for name in "${systems[@]}"; do kill "${server_pid[$name]}"; wait "${server_pid[$name]}" 2>/dev/null || true; done

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
echo "RESULT relay $relay_rps $relay_p50 $relay_p99 $rss_idle $rss_load $relay_hwm $relay_us $relay_redis_us $relay_user_us"
echo "RESULT axum_peer $peer_rps $peer_p50 $peer_p99 $peer_idle $peer_hwm $peer_us $peer_redis_us $peer_user_us"
echo "RESULT nginx_lua $ref_rps $ref_p50 $ref_p99"
echo "RESULT rounds $rounds"
echo "RESULT round_medians $round_medians"
echo
echo "binary: ${bin#$root/}"
echo "ingest, 1 KB POST (auth: ${AUTH:-key}), wrk -t1 -c$conns, median of $runs x ${secs}s, Redis AOF everysec, server+Redis on CPU 0"
printf '%-26s %10s %9s %9s\n' system req/s p50_ms p99_ms
printf '%-26s %10s %9s %9s\n' "crm-relay server" "$relay_rps" "$relay_p50" "$relay_p99"
printf '%-26s %10s %9s %9s\n' "nginx+Lua XADD (reference)" "$ref_rps" "$ref_p50" "$ref_p99"
printf '%-26s %10s %9s %9s\n' "axum + redis-rs (peer)" "$peer_rps" "$peer_p50" "$peer_p99"
echo "round by round, relay/peer (req/s ratio / CPU per webhook ratio): $rounds (medians ${round_medians/ //})"
echo "server CPU per webhook: relay ${relay_us} µs (user ${relay_user_us}), peer ${peer_us} µs (user ${peer_user_us}) (ratio $(awk -v a="$relay_us" -v b="$peer_us" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'), target <= 0.6); Redis: ${relay_redis_us} / ${peer_redis_us} µs"
echo "peak RSS: relay ${relay_hwm} KiB, peer ${peer_hwm} KiB"
echo "ratio relay/reference: $ratio   (target >= 1.3)"
echo "relay RSS: idle ${rss_idle} KiB, after load ${rss_load} KiB   (target idle <= 4096 KiB)"
if [ -s "$work/invalid" ]; then
  echo "error: these measures are not of stored webhooks:" >&2
  cat "$work/invalid" >&2
  exit 1
fi
