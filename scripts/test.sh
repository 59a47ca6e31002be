#!/usr/bin/env bash
# The whole test suite, on a fresh machine of the project's kind: installs and starts
# the services the tests need, checks formatting and lints, then runs every test
# against SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh run writes about 7 GB (the build, sandbox images, services and their data;
# 5.1 GB at its peak where the apt packages were already installed).
# Say so first when the disk is short: "No space left on device" midway says little.
free_gb() { df -P -BG . | awk 'NR == 2 { sub("G", "", $4); print $4 }'; }
echo "== disk: $(free_gb) GB free"
if [ "$(free_gb)" -lt 10 ]; then
  echo "test.sh: warning: $(free_gb) GB free; a fresh run writes about 7 GB" >&2
fi

eval "$(scripts/test-services.sh)"
# An independent Standard Webhooks implementation (PyPI) checks our signatures.
eval "$(scripts/python-test-deps.sh)"

# No incremental compilation: CI builds from a clean clone, where it only adds work and
# 4 GB of target/debug/incremental (a third of what a fresh run writes to its disk).
# It is not part of cargo's fingerprint, so later `cargo build`s reuse these artifacts.
# CARGO_INCREMENTAL=1 scripts/test.sh keeps it for repeated local runs.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: cargo-nextest missing, installing" >&2
  cargo install --locked cargo-nextest >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (the runtime binaries the process-sandbox tests start)"
cargo build --workspace --bins
echo "== web: lint, types, unit tests, API types match the contract"
# `cargo build` above built web/dist (crates/corral-api/build.rs) and installed web/node_modules.
(cd web && npm run --silent lint && npm run --silent typecheck && npm test --silent \
  && ../target/debug/corral openapi | npm run --silent check:api -- -)
echo "== sandbox images (debug binaries)"
# The container tests would otherwise build them on first use, compiling for minutes
# while other tests run against their timeouts; then they find them up to date.
scripts/build-images.sh --profile debug --tag test >/dev/null
echo "== cargo nextest"
cargo nextest run --workspace --no-fail-fast "$@"
echo "== dashboard end to end (headless Chromium against the binary's embedded dashboard)"
scripts/web-e2e.sh target/debug/corral
echo "== disk: $(free_gb) GB free after the run"
