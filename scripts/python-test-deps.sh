#!/usr/bin/env bash
# Provides a Python with, from PyPI, the `standardwebhooks` package (the independent
# Standard Webhooks implementation the webhook signing is cross-checked against) and
# `schemathesis` (the contract fuzzer run over the whole API on both backends) and
# `moto[server]` (an S3-protocol server the tier-3 storage tests write to).
# Idempotent: the venv is reused when it can already import the package.
# Prints exactly one line on stdout, everything else goes to stderr:
#   eval "$(scripts/python-test-deps.sh)"
set -euo pipefail

log() { echo "python-test-deps: $*" >&2; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${CORRAL_TEST_VENV:-$ROOT/target/test-venv}"
PY="$VENV/bin/python"

has_package() {
  [ -x "$PY" ] && "$PY" -c 'import standardwebhooks.webhooks' >/dev/null 2>&1 \
    && [ -x "$VENV/bin/schemathesis" ] && [ -x "$VENV/bin/moto_server" ]
}

if ! has_package; then
  if ! command -v python3 >/dev/null 2>&1; then
    log "python3 is not installed"
    exit 1
  fi
  # A venv left half-built by an interrupted run has no working pip; start over.
  if [ -d "$VENV" ] && ! "$PY" -m pip --version >/dev/null 2>&1; then
    log "removing the broken venv at $VENV"
    rm -rf "$VENV"
  fi
  if [ ! -x "$PY" ]; then
    mkdir -p "$(dirname "$VENV")"
    if ! python3 -m venv "$VENV" >&2; then
      rm -rf "$VENV"
      if [ "$(id -u)" -ne 0 ]; then
        log "python3 cannot create a venv; install python3-venv (needs root)"
        exit 1
      fi
      log "installing python3-venv"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
      python3 -m venv "$VENV" >&2
    fi
  fi
  log "installing standardwebhooks, schemathesis and moto[server] into $VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check standardwebhooks 'schemathesis>=4.3,<5' 'moto[server]>=5,<6' >&2
  if ! has_package; then
    log "standardwebhooks, schemathesis or moto is still missing from $VENV"
    exit 1
  fi
fi

printf 'export CORRAL_TEST_PYTHON=%q CORRAL_SCHEMATHESIS=%q CORRAL_TEST_MOTO_SERVER=%q\n' "$PY" "$VENV/bin/schemathesis" "$VENV/bin/moto_server"
