#!/usr/bin/env bash
# Stops what `make up` started: SIGTERM (the gateway drains and flushes its ledger), then
# SIGKILL after 35 s; then Redis and PostgreSQL (fast shutdown).
set -euo pipefail
cd "$(dirname "$0")/.."
run=.run
shopt -s nullglob
for pidfile in "$run"/pids/*.pid; do
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 350); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "down: stopped $name"
  fi
  rm -f "$pidfile"
done
scripts/redis.sh stop "$run/redis"
scripts/pg.sh stop "$run/pg"
[ -f "$run/pg/PG_VERSION" ] && echo "down: stopped postgresql"
exit 0
