#!/usr/bin/env bash
# Installs (when missing) and starts what the test suite needs on a fresh Debian
# machine, then prints the environment to export. Idempotent: safe to run again.
#   eval "$(scripts/test-services.sh)"
set -euo pipefail

log() { echo "test-services: $*" >&2; }

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# --- PostgreSQL -----------------------------------------------------------------
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing PostgreSQL"
  apt_install postgresql
fi
PG_VERSION=$(ls /etc/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h 2>/dev/null | awk '{print $4}' | grep -q online; then
  log "starting PostgreSQL $PG_VERSION"
  pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start >&2
fi
for _ in $(seq 1 50); do
  if su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
su postgres -c "psql -qtAc \"select 1 from pg_roles where rolname='corral'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"create role corral login createdb password 'corral'\"" >&2
# Raise the connection ceiling: every test gets its own database and pool.
current=$(su postgres -c "psql -qtAc 'show max_connections'")
if [ "$current" -lt 500 ]; then
  log "raising max_connections to 500 (restart)"
  su postgres -c "psql -qc 'alter system set max_connections = 500'" >&2
  pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main restart >&2
  for _ in $(seq 1 50); do
    if su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
fi
# Drop databases left by earlier test runs.
for db in $(su postgres -c "psql -qtAc \"select datname from pg_database where datname like 'corral_t_%'\""); do
  su postgres -c "psql -qc 'drop database if exists \"$db\"'" >/dev/null 2>&1 || true
done

# --- Chromium (the dashboard's end-to-end tests) ---------------------------------
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium"
  apt_install chromium
fi
if ! command -v npm >/dev/null 2>&1; then
  log "installing nodejs and npm"
  apt_install nodejs npm
fi

# --- Docker ---------------------------------------------------------------------
# The container tests (runtime/container-it) need a running engine and debootstrap
# for the offline base image (scripts/build-images.sh).
if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io"
  apt_install docker.io
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  apt_install debootstrap
fi
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  # setsid: the engine must outlive this script and the shell that eval'd it.
  setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 150); do
    if docker info >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  if ! docker info >/dev/null 2>&1; then
    log "dockerd did not answer within 30s; see /var/log/dockerd.log"
    tail -n 20 /var/log/dockerd.log >&2 || true
    exit 1
  fi
fi

# --- Redis (tier 2 tests) ----------------------------------------------------------
# On its own loopback port, without persistence; tests give every server a unique
# key prefix, and the outage drill starts a private redis-server of its own.
REDIS_PORT=${CORRAL_TEST_REDIS_PORT:-6390}
if ! command -v redis-server >/dev/null 2>&1; then
  log "installing redis-server"
  apt_install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  log "starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --daemonize yes --logfile /var/log/corral-test-redis.log >&2
  for _ in $(seq 1 50); do
    if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
fi

# --- docker-compose (the self-hosting files are validated with it) ----------------
if ! command -v docker-compose >/dev/null 2>&1; then
  log "installing docker-compose"
  apt_install docker-compose
fi

echo "export CORRAL_TEST_DATABASE_URL=postgres://corral:corral@127.0.0.1:5432/postgres"
echo "export CORRAL_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/"
