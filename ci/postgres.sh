#!/usr/bin/env bash
# Runs hindsight-postgres's tests (the whole conformance kit, its doc tests)
# and its docs build against a throwaway PostgreSQL server: installed from
# Debian's packages if `initdb`/`pg_ctl` are missing, started as the
# `postgres` user (initdb refuses root) on a loopback port, with its data
# and socket in a temporary directory, and stopped and removed on exit,
# whatever happened.
#
# Port: $HINDSIGHT_PG_PORT, 54329 by default.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${HINDSIGHT_PG_PORT:-54329}"

# A PostgreSQL program: on the PATH, or the newest under /usr/lib/postgresql.
find_pg() {
  command -v "$1" 2>/dev/null \
    || ls -1 /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
}

initdb="$(find_pg initdb || true)"
pg_ctl="$(find_pg pg_ctl || true)"
if [ -z "$initdb" ] || [ -z "$pg_ctl" ]; then
  echo "PostgreSQL not found: installing Debian's postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql > /dev/null
  initdb="$(find_pg initdb)"
  pg_ctl="$(find_pg pg_ctl)"
fi
"$pg_ctl" --version

# As root, the server runs as `postgres` (created if missing); otherwise as
# whoever runs this.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "$*"
  else
    sh -c "$*"
  fi
}
if [ "$(id -u)" = 0 ] && ! id postgres > /dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi

dir="$(mktemp -d /tmp/hindsight-pg.XXXXXX)"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
stop() {
  as_pg "'$pg_ctl' -D '$dir/data' -m immediate stop" > /dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

as_pg "'$initdb' -D '$dir/data' -A trust -U postgres" > "$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log"; exit 1; }
# fsync off: the data is thrown away. Connections: every test thread opens
# up to three pools of 10 plus a listener each.
as_pg "'$pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -o \"-p $port -k $dir \
  -c listen_addresses=127.0.0.1 -c max_connections=500 -c fsync=off\" start" > /dev/null \
  || { cat "$dir/server.log"; exit 1; }

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
cargo test -p hindsight-postgres || { tail -n 50 "$dir/server.log"; exit 1; }
# The `tracing` feature's spans, on this server too.
cargo test -p hindsight-postgres --features tracing --test tracing \
  || { tail -n 50 "$dir/server.log"; exit 1; }
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p hindsight-postgres
