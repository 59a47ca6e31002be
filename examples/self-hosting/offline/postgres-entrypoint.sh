#!/bin/sh
# First start: initdb with the POSTGRES_* variables (as the official image does),
# password authentication over TCP; then run the server in the foreground.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
USER_NAME=${POSTGRES_USER:-postgres}
DB_NAME=${POSTGRES_DB:-$USER_NAME}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$USER_NAME" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$DB_NAME" != postgres ]; then
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    psql -U "$USER_NAME" -d postgres -qc "CREATE DATABASE \"$DB_NAME\""
    pg_ctl -D "$PGDATA" -w stop >/dev/null
  fi
  echo "postgres-entrypoint: initialized $PGDATA (user $USER_NAME, database $DB_NAME)"
fi
exec postgres -D "$PGDATA"
