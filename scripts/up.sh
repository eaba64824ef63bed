#!/usr/bin/env bash
# Starts the local stack in the background, data and logs under .run/:
#   tollgate-dev-upstream on 127.0.0.1:8090 (the development upstream: an echo fixture, not a model)
#   tollgate on 127.0.0.1:8080 (OpenAI API) and 127.0.0.1:8081 (health, readiness, metrics)
# Safe to run twice: running processes are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
run=.run
mkdir -p "$run/logs" "$run/pids"

running() { [ -f "$run/pids/$1.pid" ] && kill -0 "$(cat "$run/pids/$1.pid")" 2>/dev/null; }

start() {
  local name=$1
  shift
  if running "$name"; then
    echo "up: $name already running (pid $(cat "$run/pids/$name.pid"))"
    return
  fi
  nohup "$@" >>"$run/logs/$name.log" 2>&1 &
  echo $! >"$run/pids/$name.pid"
  echo "up: started $name (pid $!), log $run/logs/$name.log"
}

wait_ready() {
  local name=$1 url=$2
  for _ in $(seq 1 100); do
    if curl -sf -o /dev/null "$url"; then return 0; fi
    if ! running "$name"; then break; fi
    sleep 0.1
  done
  echo "up: $name did not become ready at $url; last log lines:" >&2
  tail -n 20 "$run/logs/$name.log" >&2
  exit 1
}

start dev-upstream build/bin/tollgate-dev-upstream --listen 127.0.0.1:8090
wait_ready dev-upstream http://127.0.0.1:8090/v1/models
TOLLGATE_LOGGING__USAGE_LOG="$PWD/$run/logs/usage.log" start gateway build/bin/tollgate
wait_ready gateway http://127.0.0.1:8081/readyz

cat >"$run/env" <<ENV
TOLLGATE_URL=http://127.0.0.1:8080
TOLLGATE_ADMIN_URL=http://127.0.0.1:8081
ENV

cat <<MSG

Tollgate is up (embedded default config). Settings for clients and tollctl: $run/env
Usage records: $run/logs/usage.log    Stop everything: make down

Try it:
  curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"dev-echo","messages":[{"role":"user","content":"Hello, Tollgate!"}]}'
MSG
