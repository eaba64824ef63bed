#!/usr/bin/env bash
# Runs a local PostgreSQL 15 as a plain process: data in DIR, listening on 127.0.0.1:PORT only,
# superuser `tollgate` with trust auth on loopback (a development and test database, not a
# production set-up), and a database `tollgate`.
#   scripts/pg.sh start DIR PORT   initialise DIR if needed, start, create the database
#   scripts/pg.sh stop DIR         fast shutdown
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` system user of
# the Debian package (DIR is handed to that user; every folder above it must be traversable).
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
cmd=${1:?usage: pg.sh start DIR PORT | stop DIR}
dir=$(realpath -m "${2:?data folder}")

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    port=${3:?port}
    # The postgres user must reach DIR. When a folder above it is closed to other users (a
    # clone under /root, say), the data goes to /var/lib/tollgate-dev/ and DIR becomes a link.
    if [ "$(id -u)" = 0 ] && [ ! -e "$dir" ] && \
        ! runuser -u postgres -- test -x "$(dirname "$dir")" 2>/dev/null; then
      real=/var/lib/tollgate-dev/$(echo "$dir" | sha256sum | cut -c1-16)
      mkdir -p "$real" "$(dirname "$dir")"
      chmod 755 /var/lib/tollgate-dev
      ln -sfn "$real" "$dir"
      echo "pg.sh: postgres cannot reach $(dirname "$dir"); data in $real (linked from $dir)" >&2
      dir=$real
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
      chmod 700 "$dir"
      as_owner "$bin/initdb" -D "$dir" -U tollgate --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$dir.initdb.log" 2>&1 || { cat "$dir.initdb.log" >&2; exit 1; }
    fi
    # Running means: the postmaster in postmaster.pid exists and is not a zombie (a server
    # killed with -9 can linger as one until its parent reaps it, and pg_ctl would count it).
    if [ -f "$dir/postmaster.pid" ]; then
      pid=$(head -n 1 "$dir/postmaster.pid")
      state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
      if [ -n "$state" ] && [ "${state:0:1}" != Z ]; then
        exit 0
      fi
    fi
    # After a kill -9 the old server's backends may hold its shared memory for a moment:
    # retry the start for a few seconds.
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
      rm -f "$dir/postmaster.pid"  # left by a kill -9; pg_ctl status said nothing runs
      if as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 30 \
          -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" \
          start >/dev/null; then
        break
      fi
      if [ "$attempt" = 10 ]; then tail -n 20 "$dir/server.log" >&2; exit 1; fi
      sleep 0.5
    done
    if ! psql -h 127.0.0.1 -p "$port" -U tollgate -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'tollgate'" | grep -q 1; then
      psql -h 127.0.0.1 -p "$port" -U tollgate -d postgres -qc "CREATE DATABASE tollgate" >/dev/null
    fi
    ;;
  stop)
    if [ -f "$dir/PG_VERSION" ]; then
      as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
  *)
    echo "usage: pg.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
