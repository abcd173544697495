#!/usr/bin/env bash
# Checks deploy/*.service and deploy/*.socket with `systemd-analyze verify` (installs systemd when missing).
# The units point at /usr/local/bin/crm-relay; verify needs the executable to exist, so they
# are checked in a copy that points at the freshly built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
# Any build of the binary will do: the static one when scripts/build-static.sh ran (CI).
bin=$(pwd)/target/x86_64-unknown-linux-musl/release/crm-relay
if [ ! -x "$bin" ]; then
  cargo build --release --quiet
  bin=$(pwd)/target/release/crm-relay
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# The tunnel unit's ssh may be missing where this runs: verify the unit, not the machine.
ssh_bin=/usr/bin/ssh; [ -x "$ssh_bin" ] || ssh_bin=/bin/true
for unit in deploy/*.service deploy/*.socket; do
  sed -e "s#/usr/local/bin/crm-relay#$bin#g" -e "s#/usr/bin/ssh#$ssh_bin#g" "$unit" >"$work/$(basename "$unit")"
done
# systemd-analyze reports some mistakes (an unknown Restart= value, say) only as warnings
# with exit code 0: any output at all counts as a problem.
rc=0
out=$(cd "$work" && systemd-analyze verify ./*.service ./*.socket 2>&1) || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
  printf '%s\n' "$out" >&2
  echo "verify-systemd: problems found (exit $rc)" >&2
  exit 1
fi
echo "verify-systemd: deploy/*.service deploy/*.socket OK"
