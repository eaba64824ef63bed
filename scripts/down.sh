#!/usr/bin/env bash
# Stops what `make up` started: SIGTERM (the gateway drains and flushes its ledger), then
# SIGKILL only after the longest graceful stop; then Redis and PostgreSQL (fast shutdown).
set -euo pipefail
# shellcheck source=scripts/proc.sh
. "$(dirname "$0")/proc.sh"
cd "$(dirname "$0")/.."
run=.run
# The gateway's longest graceful stop: server.drain_timeout_ms (30 s unless overridden) for the
# in-flight requests, then up to 10 s for the ledger's last flush (gateway/main.cpp), plus 5 s.
drain_ms=${TOLLGATE_SERVER__DRAIN_TIMEOUT_MS:-30000}
wait_tenths=$(((drain_ms + 10000 + 5000) / 100))
shopt -s nullglob
for pidfile in "$run"/pids/*.pid; do
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 1 "$wait_tenths"); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "down: $name still running after $((wait_tenths / 10)) s, killing it" >&2
      kill -KILL "$pid"
    fi
    echo "down: stopped $name"
  fi
  rm -f "$pidfile"
done
scripts/redis.sh stop "$run/redis"
scripts/pg.sh stop "$run/pg"
[ -f "$run/pg/PG_VERSION" ] && echo "down: stopped postgresql"
exit 0
