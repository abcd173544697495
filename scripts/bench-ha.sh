#!/usr/bin/env bash
# What high availability costs, measured in one run: the release server storing webhooks in
#   single     one Redis (AOF everysec), as most deployments run;
#   replica    a primary with one replica (asynchronous replication, RELAY_MIN_REPLICAS unset);
#   wait1      the same with RELAY_MIN_REPLICAS=1 (WAIT 1 after every XADD).
# For each: wrk with 50 connections (throughput) and with 1 connection (the latency one
# webhook sees), and the CPU the server and the primary spend per webhook (from
# /proc/<pid>/stat). From the single-Redis figures it projects the capacity of N partitions
# on N cluster masters (one Redis core each).
#
# The server and the primary share CPU 0; wrk and the replica run on CPU 1 (a replica is
# another machine in production; here it must not steal the primary's core), the replica at a
# higher priority than wrk (nice -10 when root), so that its acknowledgements are not queued
# behind the load generator.
# Needs: redis-server, wrk (installed with apt-get when missing).
# Usage: scripts/bench-ha.sh [RUNS] [SECONDS]   (defaults: 3 runs of 5 s per measure)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$(pwd)
runs=${1:-3}
secs=${2:-5}

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v wrk >/dev/null || need+=(wrk)
apt_install "${need[@]}"
pin0="taskset -c 0"; pin1="taskset -c 1"
if [ "$(nproc)" -lt 2 ]; then echo "note: 1 CPU, not pinning"; pin0=""; pin1=""; fi

cargo build --release --quiet --bin crm-relay
bin=$root/target/release/crm-relay
bench_workdir

# redis NAME PIN [ARGS...]: starts a redis-server in $work/NAME; prints its port.
redis() {
  local name=$1 pin=$2 port; shift 2
  port=$(free_port)
  mkdir -p "$work/$name"
  $pin redis-server --port "$port" --bind 127.0.0.1 --dir "$work/$name" --save '' \
    --appendonly yes --appendfsync everysec "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  echo "$port $!"
}

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# wrk_run URL CONNS: prints "rps p50_ms p99_ms requests".
wrk_run() {
  $pin1 wrk -t1 -c"$2" -d"${secs}s" --latency -H "X-API-Key: bench-key" \
    -s "$root/bench/post.lua" "$1" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
    / requests in / { n = $1 } /Non-2xx/ { bad = $NF }
    END { if (bad > 0) print "warning: " bad " non-2xx answers" > "/dev/stderr"; printf "%.0f %.3f %.3f %d\n", rps, p50, p99, n }'
}

# measure NAME REDIS_PORT REDIS_PID [VAR=VALUE...]: one server, both loads; prints a RESULT line
# "name rps50 p50 p99 rps1 p50_1 p99_1 server_us redis_us".
measure() {
  local name=$1 rport=$2 rpid=$3 port spid; shift 3
  port=$(free_port)
  env "$@" REDIS_URL="redis://127.0.0.1:$rport" RELAY_LISTEN="127.0.0.1:$port" RELAY_API_KEYS=bench-key \
    RELAY_ADMIN_LISTEN= RELAY_STREAM="bench:{$name}" RUST_LOG=warn $pin0 "$bin" server 2>"$work/$name-server.log" &
  spid=$!; pids+=($spid)
  wait_port "$port"
  local url="http://127.0.0.1:$port/webhook"
  wrk_run "$url" 50 >/dev/null # warm-up
  : >"$work/$name.50"; : >"$work/$name.1"
  local s0 r0 n=0
  s0=$(ticks "$spid"); r0=$(ticks "$rpid")
  for _ in $(seq "$runs"); do
    wrk_run "$url" 50 | tee -a "$work/$name.50" >/dev/null
  done
  local scpu=$(( $(ticks "$spid") - s0 )) rcpu=$(( $(ticks "$rpid") - r0 ))
  n=$(awk '{ n += $4 } END { print n }' "$work/$name.50")
  for _ in $(seq "$runs"); do wrk_run "$url" 1 >>"$work/$name.1"; done
  kill "$spid"; wait "$spid" 2>/dev/null || true
  col() { cut -d' ' -f"$2" "$1" | median; }
  echo "RESULT $name $(col "$work/$name.50" 1) $(col "$work/$name.50" 2) $(col "$work/$name.50" 3)" \
    "$(col "$work/$name.1" 1) $(col "$work/$name.1" 2) $(col "$work/$name.1" 3)" \
    "$(awk -v t="$scpu" -v n="$n" -v hz="$hz" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')" \
    "$(awk -v t="$rcpu" -v n="$n" -v hz="$hz" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')"
}

# redis runs in a subshell (process substitution): record its pids here for the cleanup.
read -r single_port single_pid < <(redis single "$pin0")
pids+=("$single_pid")
wait_port "$single_port"
measure single "$single_port" "$single_pid" | tee "$work/results"

read -r primary_port primary_pid < <(redis primary "$pin0")
pids+=("$primary_pid")
wait_port "$primary_port"
prio=""; [ "$(id -u)" -eq 0 ] && prio="nice -n -10"
read -r replica_port replica_pid < <(redis replica "$prio $pin1" --replicaof 127.0.0.1 "$primary_port")
pids+=("$replica_pid")
wait_port "$replica_port"
until redis-cli -p "$replica_port" info replication | grep -q 'master_link_status:up'; do sleep 0.1; done
measure replica "$primary_port" "$primary_pid" | tee -a "$work/results"
measure wait1 "$primary_port" "$primary_pid" RELAY_MIN_REPLICAS=1 | tee -a "$work/results"

get() { awk -v k="$1" '$2 == k { $1 = ""; $2 = ""; print substr($0, 3) }' "$work/results"; }
echo
echo "ingest, 1 KB POST, median of $runs x ${secs}s; server + primary on CPU 0, wrk + replica on CPU 1"
printf '%-34s %9s %8s %8s %9s %8s %8s %10s %9s\n' setup "req/s@50" p50_ms p99_ms "req/s@1" p50_ms p99_ms server_us redis_us
for k in single replica wait1; do
  read -r a b c d e f g h < <(get "$k")
  case $k in
    single) label="one Redis";;
    replica) label="primary + replica, async";;
    wait1) label="primary + replica, MIN_REPLICAS=1";;
  esac
  printf '%-34s %9s %8s %8s %9s %8s %8s %10s %9s\n' "$label" "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h"
done
read -r s_rps _ _ _ s_p50 _ s_us r_us < <(get single)
read -r w_rps _ _ _ w_p50 _ _ _ < <(get wait1)
awk -v s="$s_rps" -v w="$w_rps" -v sl="$s_p50" -v wl="$w_p50" 'BEGIN {
  printf "RELAY_MIN_REPLICAS=1: %.2fx the throughput of one Redis, +%.3f ms per webhook at 1 connection\n", w / s, wl - sl }'
awk -v r="$r_us" -v s="$s_us" 'BEGIN {
  cap = 1e6 / r; srv = 1e6 / s
  printf "capacity per partition (one Redis core at %.1f us/webhook): about %.0f webhooks/s;\n", r, cap
  printf "N partitions on N masters: about N x %.0f/s, given N x %.1f server cores (%.1f us/webhook each)\n", cap, cap * s / 1e6, s }'
