#!/usr/bin/env bash
# Start a throwaway PostgreSQL for the test suite and export AGENTFIREWALL_TEST_POSTGRES_URL.
#
#   source .ci/postgres.sh      (CI: .ci/run sources it)
#   bash .ci/postgres.sh        (prints the export line)
#
# Installs PostgreSQL from Debian when no /usr/lib/postgresql/*/bin/initdb exists,
# initialises a cluster in a temp dir owned by the `postgres` user (initdb refuses root),
# starts it on 127.0.0.1 on a free port and creates the database `agentfirewall_test`.
# The server stops when the shell that started it exits (a trap), or with
#   pg_ctl -D "$AGENTFIREWALL_TEST_PGDATA" stop
_af_pg_main() {
  local bindir pgdata port log runas
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "postgres.sh: PostgreSQL is not installed and this is not root: apt-get install postgresql" >&2
      return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  runas=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    runas=(runuser -u postgres --)
  fi
  pgdata=$(mktemp -d /tmp/af-pg.XXXXXX)
  [ "$(id -u)" -eq 0 ] && chown postgres "$pgdata"
  chmod 700 "$pgdata"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log="$pgdata.log"
  touch "$log"; [ "$(id -u)" -eq 0 ] && chown postgres "$log"
  "${runas[@]}" "$bindir/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null \
    || "${runas[@]}" "$bindir/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >/dev/null || return 1
  "${runas[@]}" "$bindir/pg_ctl" -D "$pgdata" -l "$log" -w -t 60 \
    -o "-h 127.0.0.1 -p $port -k $pgdata -c fsync=off -c max_connections=300" start >/dev/null || {
    cat "$log" >&2; return 1; }
  "${runas[@]}" "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt \
    -c "CREATE DATABASE agentfirewall_test" >/dev/null || return 1
  export AGENTFIREWALL_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/agentfirewall_test"
  export AGENTFIREWALL_TEST_PGDATA="$pgdata"
  echo "export AGENTFIREWALL_TEST_POSTGRES_URL=$AGENTFIREWALL_TEST_POSTGRES_URL"
  if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # sourced: stop the cluster when the calling shell exits
    trap "${runas[*]} '$bindir/pg_ctl' -D '$pgdata' -m fast stop >/dev/null 2>&1 || true" EXIT
  fi
}
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  _af_pg_main
else
  _af_pg_main || return 1
fi
