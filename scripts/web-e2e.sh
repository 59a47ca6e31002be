#!/usr/bin/env bash
# The dashboard's end-to-end tests (web/e2e, headless Chromium through
# playwright-core) against the dashboard as the server binary serves it: starts
# `corral serve` (tier 0, process sandboxes) from a temporary directory on a free
# loopback port, runs `npm run test:e2e`, stops the server. Needs `cargo build`
# first (it embeds web/dist) and Chromium (scripts/test-services.sh installs it).
#   scripts/web-e2e.sh [target/debug/corral]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/debug/corral}")
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  if [ -n "${SERVER:-}" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
(cd "$WORK" && CORRAL_LISTEN="127.0.0.1:$PORT" CORRAL_SANDBOX=process CORRAL_WARM_POOL_SIZE=0 \
  exec "$BIN" serve >"$WORK/server.log" 2>&1) &
SERVER=$!
for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fs "http://127.0.0.1:$PORT/" | grep -q '<div id="root">' \
  || { echo "web-e2e: the server does not serve the dashboard" >&2; tail -n 30 "$WORK/server.log" >&2; exit 1; }
cd web
if ! CORRAL_E2E_URL="http://127.0.0.1:$PORT" npm run --silent test:e2e; then
  echo "web-e2e: failed; the server's log:" >&2
  tail -n 50 "$WORK/server.log" >&2
  exit 1
fi
