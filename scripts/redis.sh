#!/usr/bin/env bash
# Runs a local Redis 7 as a plain process: data and log in DIR, listening on 127.0.0.1:PORT only,
# no persistence (budget counters are rebuilt from the ledger), optional password.
#   scripts/redis.sh start DIR PORT [PASSWORD]
#   scripts/redis.sh stop DIR
set -euo pipefail
cmd=${1:?usage: redis.sh start DIR PORT [PASSWORD] | stop DIR}
dir=$(realpath -m "${2:?data folder}")
case "$cmd" in
  start)
    port=${3:?port}
    mkdir -p "$dir"
    if [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then exit 0; fi
    args=(--port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid"
          --logfile "$dir/redis.log" --save "" --appendonly no)
    if [ -n "${4:-}" ]; then args+=(--requirepass "$4"); fi
    redis-server "${args[@]}"
    for _ in $(seq 1 50); do
      if redis-cli -p "$port" ${4:+-a "$4" --no-auth-warning} ping 2>/dev/null | grep -q PONG; then exit 0; fi
      sleep 0.1
    done
    echo "redis.sh: Redis did not start on port $port; log:" >&2
    tail -n 20 "$dir/redis.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$dir/redis.pid" ]; then
      pid=$(cat "$dir/redis.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$dir/redis.pid"
    fi
    ;;
  *)
    echo "usage: redis.sh start DIR PORT [PASSWORD] | stop DIR" >&2
    exit 2
    ;;
esac
