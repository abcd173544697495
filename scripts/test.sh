#!/usr/bin/env bash
# The project's test command (README "Tests"; CI runs it through .ci/run).
# Installs what the tests need when it is missing, then runs the same checks CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# A real reverse proxy in front of the server (tests/integration/proxy.rs); about 3 s.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt_install "${need[@]}"
  # Debian starts the packaged services; the tests start their own servers and need none.
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo systemctl disable --now redis-server nginx >/dev/null 2>&1 || true
fi
command -v rustfmt >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
