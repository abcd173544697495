#!/usr/bin/env bash
# A/B ingest benchmark of two server binaries in the same run: both listen at once (each
# with its own stream) on CPU 0 with Redis, and wrk (CPU 1) alternates between them, ROUNDS
# times, so that the machine's drift hits both alike. Prints each one's median req/s and p99,
# its CPU time per request (utime+stime from /proc over all its rounds: steadier than req/s on
# a shared machine; its user part, the process's own code, apart) and the ratios B/A. AUTH=meta signs every request (X-Hub-Signature-256) instead of the key.
# AOF=no runs Redis without its append-only file (default: AOF, fsync every second): Redis's
# own AOF writes grow with the rate it is fed, and at wrk -c50 they set the p99 of the faster
# system, not its server. AOF=norewrite keeps the AOF but turns off its automatic rewrites
# (a fork and a copy of the whole dataset, on CPU 0, every time the file doubles).
# Usage: scripts/bench-ab.sh BIN_A BIN_B [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$(pwd)
a=$(realpath "$1"); b=$(realpath "$2"); rounds=${3:-6}; secs=${4:-5}
command -v wrk >/dev/null || apt_install wrk
command -v redis-server >/dev/null || apt_install redis-server
command -v redis-cli >/dev/null || apt_install redis-tools
bench_workdir
auth_header=$(bench_auth_header "$root")
redis_port=$(free_port)
case "${AOF:-yes}" in
  yes) persistence=(--appendonly yes --appendfsync everysec); aof="AOF everysec" ;;
  no) persistence=(--appendonly no); aof="no AOF" ;;
  norewrite) persistence=(--appendonly yes --appendfsync everysec --auto-aof-rewrite-percentage 0)
    aof="AOF everysec, no automatic rewrite" ;;
  *) echo "AOF must be yes, no or norewrite" >&2; exit 2 ;;
esac
taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' \
  "${persistence[@]}" >"$work/redis.log" 2>&1 &
pids+=($!); wait_port "$redis_port"
start() { # bin stream -> port
  local port; port=$(free_port)
  REDIS_URL="redis://127.0.0.1:$redis_port" RELAY_LISTEN="127.0.0.1:$port" RELAY_API_KEYS=bench-key \
    RELAY_META_APP_SECRET=bench-app-secret RELAY_ADMIN_LISTEN= RELAY_STREAM="$2" RUST_LOG=warn \
    taskset -c 0 "$1" server >/dev/null 2>>"$work/servers.log" &
  pids+=($!); wait_port "$port"; echo "$port $!"
}
read -r pa pida < <(start "$a" bench:a); read -r pb pidb < <(start "$b" bench:b)
# start runs in a subshell (process substitution): its pids+= is lost, so record them here.
pids+=("$pida" "$pidb")
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
user_ticks() { awk '{ print $14 }' "/proc/$1/stat"; }
# Redis's forks so far (AOF rewrites: each copies the whole dataset on CPU 0, and the faster
# system, storing more per round, triggers more of them).
forks() { redis-cli -p "$redis_port" INFO stats | awk -F: '/^total_forks:/ { print $2 + 0 }'; }
run() { # port seconds -> "rps p99_ms"
  taskset -c 1 wrk -t1 -c50 -d"$2s" --latency -H "$auth_header" -s "$root/bench/post.lua" \
    "http://127.0.0.1:$1/webhook" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 } /Non-2xx/ { bad = $NF }
    END { if (bad > 0) { print "error: " bad " non-2xx answers: not a measure of stored webhooks" > "/dev/stderr"; exit 1 }
          printf "%.0f %.3f\n", rps, p99 }'
}
run "$pa" 2 >/dev/null; run "$pb" 2 >/dev/null
: >"$work/a"; : >"$work/b"
cpu_a=0; cpu_b=0; user_a=0; user_b=0; forks_a=0; forks_b=0
# Every round from an empty Redis (see fresh_redis): nothing consumes, and a relay past its
# RELAY_MAX_STREAM_LEN answers 503 instead of storing.
for _ in $(seq "$rounds"); do
  fresh_redis "$redis_port"
  t0=$(ticks "$pida"); u0=$(user_ticks "$pida"); f0=$(forks); run "$pa" "$secs" >>"$work/a"
  cpu_a=$((cpu_a + $(ticks "$pida") - t0)); user_a=$((user_a + $(user_ticks "$pida") - u0))
  forks_a=$((forks_a + $(forks) - f0))
  fresh_redis "$redis_port"
  t0=$(ticks "$pidb"); u0=$(user_ticks "$pidb"); f0=$(forks); run "$pb" "$secs" >>"$work/b"
  cpu_b=$((cpu_b + $(ticks "$pidb") - t0)); user_b=$((user_b + $(user_ticks "$pidb") - u0))
  forks_b=$((forks_b + $(forks) - f0))
done
hz=$(getconf CLK_TCK)
# µs of server CPU per request: ticks / Hz over the requests of every round.
per_req() { awk -v t="$1" -v hz="$hz" -v s="$secs" '{ n += $1 * s } END { printf "%.2f", t / hz * 1e6 / n }' "$2"; }
ua=$(per_req "$cpu_a" "$work/a"); ub=$(per_req "$cpu_b" "$work/b")
usa=$(per_req "$user_a" "$work/a"); usb=$(per_req "$user_b" "$work/b")
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ra=$(cut -d' ' -f1 "$work/a" | median); rb=$(cut -d' ' -f1 "$work/b" | median)
qa=$(cut -d' ' -f2 "$work/a" | median); qb=$(cut -d' ' -f2 "$work/b" | median)
echo "auth ${AUTH:-key}, $rounds alternating rounds of ${secs}s, wrk -c50, server+Redis on CPU 0, Redis $aof"
echo "A $1: $ra req/s, p99 $qa ms, $ua µs CPU/request (user $usa), $forks_a Redis forks   (runs: $(cut -d' ' -f1 "$work/a" | tr '\n' ' '))"
echo "B $2: $rb req/s, p99 $qb ms, $ub µs CPU/request (user $usb), $forks_b Redis forks   (runs: $(cut -d' ' -f1 "$work/b" | tr '\n' ' '))"
awk -v a="$ra" -v b="$rb" -v ua="$ua" -v ub="$ub" -v sa="$usa" -v sb="$usb" 'BEGIN {
  printf "ratio B/A: req/s %.3f, CPU per request %.3f (user %.3f, system %.3f)\n", b / a, ub / ua, sb / sa, (ub - sb) / (ua - sa) }'
