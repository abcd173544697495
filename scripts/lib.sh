# Helpers shared by the scripts (sourced, not run): free ports, waiting for a port, RSS,
# installing Debian packages when missing. Needs only bash.

# A TCP port on 127.0.0.1 that nothing listens on, below the kernel's ephemeral range: a
# port in that range may be the local end of a closed client connection in TIME_WAIT (after
# a test run there are thousands), and then a listener cannot bind it, SO_REUSEADDR or not.
free_port() {
  local p lo=32768
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  [ "$lo" -ge 12000 ] || lo=50000 # no room below the range: 40000-49999, as before
  while :; do
    p=$(( (RANDOM << 1 | RANDOM & 1) % 10000 + lo - 10000 ))
    (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# Waits up to 10 s for something to listen on 127.0.0.1:$1; exits the script otherwise.
wait_port() {
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 never opened" >&2
  exit 1
}

# Resident memory of process $1 in KiB (0 once it is gone).
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# apt-get install of the given packages (none: nothing to do), with sudo when not root.
apt_install() {
  [ $# -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The benchmarks' scratch directory ($work) and the processes they start ($pids), both
# removed on exit. Record every background pid with pids+=(…) in the script itself: a pid
# appended inside $(…) or <(…) is lost with that subshell.
bench_workdir() {
  work=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
}

# The 1 KB JSON body of bench/post.lua (under $1, the repository root).
bench_body() {
  python3 -c 'import re,sys; print(re.search(r"\[\[(.*)\]\]", open(sys.argv[1]).read(), re.S).group(1), end="")' "$1/bench/post.lua"
}

# The credential each benchmark request carries: the API key, or with AUTH=meta Meta's
# X-Hub-Signature-256 of the body (secret bench-app-secret, as the servers are started).
bench_auth_header() {
  if [ "${AUTH:-key}" = meta ]; then
    echo "X-Hub-Signature-256: sha256=$(bench_body "$1" | openssl dgst -sha256 -hmac bench-app-secret -r | cut -d' ' -f1)"
  else
    echo "X-API-Key: bench-key"
  fi
}

# An empty Redis on port $1 before a measured round. Nothing consumes in the ingest
# benchmarks, so the relay's backlog grows with every webhook stored; past
# RELAY_MAX_STREAM_LEN (1,000,000) it rightly answers 503 without storing, and near it appends
# take the exact (scripted) path: either way a round would no longer measure stored
# webhooks. The relay samples its backlog every 500 ms, so the second after the flush lets it
# see the empty stream.
fresh_redis() {
  redis-cli -p "$1" FLUSHALL >/dev/null
  sleep 1
}
