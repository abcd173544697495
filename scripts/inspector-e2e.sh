#!/usr/bin/env bash
# The web inspector in a real browser (headless Chromium through chromedriver): see
# scripts/inspector-e2e.py. Installs chromium, chromium-driver and redis-server when missing
# (Debian packages), builds the binary and the demo app, and saves the screenshot to
# docs/inspector.png (or $1).
# With INSPECTOR_OPTIONAL=1 (CI), a browser that cannot be installed is reported and skipped;
# a failure of the page itself still fails.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
shot=${1:-docs/inspector.png}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ] && ! apt_install "${missing[@]}"; then
  if [ "${INSPECTOR_OPTIONAL:-0}" = 1 ]; then
    echo "inspector-e2e: SKIPPED, cannot install ${missing[*]}" >&2
    exit 0
  fi
  echo "inspector-e2e: cannot install ${missing[*]}" >&2
  exit 1
fi
cargo build --quiet --bin crm-relay --example demo_sink
mkdir -p "$(dirname "$shot")"
python3 scripts/inspector-e2e.py target/debug/crm-relay target/debug/examples/demo_sink "$shot"
