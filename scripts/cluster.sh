#!/usr/bin/env bash
# A Tollgate cluster on one machine, shaped as on several (deploy/README.md): three gateways
# (each its own process, spool, usage log and operator port) behind HAProxy, a Redis Cluster of
# three masters with one replica each, one PostgreSQL, the bundled engine, the demo tenant.
#   scripts/cluster.sh up                start what is not running; write DIR/env
#   scripts/cluster.sh down              stop everything (gateways drain first)
#   scripts/cluster.sh status            HAProxy's view of the gateways
#   scripts/cluster.sh rolling-restart   restart the gateways one by one without losing a request
#   scripts/cluster.sh start-gateway N / stop-gateway N    one gateway (N = 1..3)
#   scripts/cluster.sh start-infer / start-redis    the engine / stopped Redis nodes, again
# Ports (TOLLGATE_CLUSTER_BASE, default 8090): HAProxy API BASE, HAProxy admin BASE+100,
# gateway N API BASE+N and operator BASE+100+N, the engine BASE+10; Redis nodes
# TOLLGATE_CLUSTER_REDIS_BASE+1..6 (default 7100; their bus ports are 10000 above);
# PostgreSQL TOLLGATE_CLUSTER_PG_PORT (default 55440). Data, logs and pids under
# TOLLGATE_CLUSTER_DIR (default .run/cluster).
set -euo pipefail
# shellcheck source=scripts/proc.sh
. "$(dirname "$0")/proc.sh"
cd "$(dirname "$0")/.."
root=$PWD
dir=$(realpath -m "${TOLLGATE_CLUSTER_DIR:-.run/cluster}")
base=${TOLLGATE_CLUSTER_BASE:-8090}
redis_base=${TOLLGATE_CLUSTER_REDIS_BASE:-7100}
pg_port=${TOLLGATE_CLUSTER_PG_PORT:-55440}
gateways=(1 2 3)
redis_ports=()
for i in 1 2 3 4 5 6; do redis_ports+=($((redis_base + i))); done
db_url="postgresql://tollgate@127.0.0.1:$pg_port/tollgate"
lb_api=127.0.0.1:$base
lb_admin=127.0.0.1:$((base + 100))
infer_addr=127.0.0.1:$((base + 10))
# The gateways' longest graceful stop: the drain (server.drain_timeout_ms, 30 s by default)
# plus the ledger's last flush (up to 10 s), plus 5 s.
drain_ms=${TOLLGATE_SERVER__DRAIN_TIMEOUT_MS:-30000}
stop_wait_tenths=$(((drain_ms + 15000) / 100))

mkdir -p "$dir/logs" "$dir/pids"
chmod 755 "$dir"  # PostgreSQL runs as the postgres user and must reach DIR/pg

pid_of() { cat "$dir/pids/$1.pid" 2>/dev/null || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && alive "$p"; }

wait_url() {  # wait_url NAME URL [TENTHS]
  local name=$1 url=$2 tenths=${3:-300}
  for _ in $(seq 1 "$tenths"); do
    curl -sf --max-time 2 -o /dev/null "$url" && return 0
    sleep 0.1
  done
  echo "cluster: $name did not answer $url; last log lines:" >&2
  tail -n 20 "$dir/logs/$name.log" >&2 || true
  return 1
}

stop_pid() {  # stop_pid NAME: SIGTERM, wait for the graceful stop, then SIGKILL
  local name=$1 p
  p=$(pid_of "$name")
  if [ -n "$p" ] && alive "$p"; then
    kill -TERM "$p"
    for _ in $(seq 1 "$stop_wait_tenths"); do alive "$p" || break; sleep 0.1; done
    if alive "$p"; then
      echo "cluster: $name still running after $((stop_wait_tenths / 10)) s, killing it" >&2
      kill -KILL "$p"
    fi
  fi
  rm -f "$dir/pids/$name.pid"
}

# One command on HAProxy's admin socket; prints the answer.
haproxy_cmd() {
  python3 - "$dir/haproxy.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode())
PY
}

# HAProxy's status and current sessions of backend gateways' server gwN: "UP 0", "DRAIN 3", ...
lb_server() {
  haproxy_cmd "show stat" | awk -F, -v sv="gw$1" '$1 == "gateways" && $2 == sv { print $18, $5 }'
}

secrets() {
  if [ ! -f "$dir/secrets" ]; then
    (umask 077 && cat >"$dir/secrets" <<SECRETS
TOLLGATE_ADMIN_TOKEN=adm-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOLLGATE_FINANCE_TOKEN=fin-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
SECRETS
    )
  fi
  # shellcheck disable=SC1091
  . "$dir/secrets"
}

start_gateway() {
  local n=$1 name=gw$1
  if running "$name"; then return 0; fi
  secrets
  mkdir -p "$dir/$name"
  # Every gateway: the same database, Redis Cluster, engine and tokens; its own ports, spool
  # and usage log. One I/O thread each (three of them share this machine).
  TOLLGATE_SERVER__LISTEN=127.0.0.1:$((base + n)) \
  TOLLGATE_SERVER__ADMIN_LISTEN=127.0.0.1:$((base + 100 + n)) \
  TOLLGATE_SERVER__THREADS=${TOLLGATE_CLUSTER_GATEWAY_THREADS:-1} \
  TOLLGATE_UPSTREAMS__INFER__BASE_URL=http://$infer_addr/v1 \
  TOLLGATE_LOGGING__USAGE_LOG="$dir/$name/usage.log" \
  TOLLGATE_DATABASE__URL="$db_url" \
  TOLLGATE_LEDGER__SPOOL_DIR="$dir/$name/spool" \
  TOLLGATE_AUTH__ADMIN_TOKEN="$TOLLGATE_ADMIN_TOKEN" \
  TOLLGATE_AUTH__FINANCE_TOKEN="$TOLLGATE_FINANCE_TOKEN" \
  TOLLGATE_BUDGETS__REDIS="$(printf '127.0.0.1:%s,' "${redis_ports[@]}" | sed 's/,$//')" \
  TOLLGATE_BUDGETS__REDIS_CLUSTER=true \
  GLIBC_TUNABLES=glibc.malloc.tcache_count=256 \
    nohup "$root/build/bin/tollgate" >>"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/pids/$name.pid"
  wait_url "$name" "http://127.0.0.1:$((base + 100 + n))/readyz"
}

start_infer() {
  local model=.run/models/tiny-llama
  if [ ! -f "$model/model.safetensors" ]; then
    build/bin/tollgate-infer make-model --preset tiny --tokenizer .cache/tokenizers/llama3.tokenizer.json \
      --out "$model" >/dev/null
  fi
  if ! running infer; then
    nohup build/bin/tollgate-infer serve --model "$model" --name tiny-llama --listen "$infer_addr" \
      --kv-cache-mb 32 >>"$dir/logs/infer.log" 2>&1 &
    echo $! >"$dir/pids/infer.pid"
  fi
  wait_url infer "http://$infer_addr/health"
}

start_haproxy() {
  if running haproxy; then return 0; fi
  export TOLLGATE_CLUSTER_DIR=$dir TOLLGATE_HAPROXY_ERRORS=$root/deploy/haproxy/errors
  export TOLLGATE_LB_API=$lb_api TOLLGATE_LB_ADMIN=$lb_admin
  for n in "${gateways[@]}"; do
    export "TOLLGATE_GW${n}_API=127.0.0.1:$((base + n))"
    export "TOLLGATE_GW${n}_ADMIN=127.0.0.1:$((base + 100 + n))"
    export "TOLLGATE_GW${n}_ADMIN_PORT=$((base + 100 + n))"
  done
  haproxy -f deploy/haproxy/haproxy.cfg -D -p "$dir/pids/haproxy.pid" >>"$dir/logs/haproxy.log" 2>&1
  wait_url haproxy "http://$lb_admin/readyz"
}

wait_redis_replicas() {
  for _ in $(seq 1 300); do
    local up=0
    for p in "${redis_ports[@]}"; do
      redis-cli -p "$p" info replication 2>/dev/null | grep -q 'master_link_status:up' && up=$((up + 1))
    done
    [ "$up" -ge 3 ] && return 0
    sleep 0.1
  done
  echo "cluster: the Redis replicas did not catch up with their masters" >&2
  return 1
}

up() {
  secrets
  scripts/pg.sh start "$dir/pg" "$pg_port"
  TOLLGATE_DATABASE__URL="$db_url" build/bin/tollgate migrate >/dev/null
  echo "cluster: PostgreSQL on 127.0.0.1:$pg_port"
  if [ -f "$dir/redis/${redis_ports[0]}/nodes.conf" ]; then
    scripts/redis.sh cluster-resume "$dir/redis" "${redis_ports[@]}"
  else
    REDIS_CLUSTER_REPLICAS=1 scripts/redis.sh cluster "$dir/redis" "${redis_ports[@]}"
  fi
  wait_redis_replicas
  echo "cluster: Redis Cluster on 127.0.0.1:${redis_ports[0]}..${redis_ports[5]} (3 masters, 3 replicas)"

  start_infer
  echo "cluster: tollgate-infer on $infer_addr"
  for n in "${gateways[@]}"; do start_gateway "$n"; done
  echo "cluster: gateways on 127.0.0.1:$((base + 1))..$((base + 3)) (operator $((base + 101))..$((base + 103)))"
  start_haproxy
  echo "cluster: HAProxy on $lb_api (API) and $lb_admin (admin, finance)"
  demo_tenant
}

# The demo tenant, project and key (as `make up` makes them), created once.
demo_tenant() {
  export TOLLGATE_ADMIN_URL=http://$lb_admin TOLLGATE_ADMIN_TOKEN
  local key=""
  [ -f "$dir/demo-key" ] && key=$(cat "$dir/demo-key")
  if [ -z "$key" ] || [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" \
      "http://$lb_api/v1/models")" != 200 ]; then
    local tenant project
    tenant=$(build/bin/tollctl tenants create --name "Demo tenant" --field id)
    project=$(build/bin/tollctl projects create --tenant "$tenant" --name "Demo project" --field id)
    key=$(build/bin/tollctl keys create --tenant "$tenant" --project "$project" --name demo --field key)
    build/bin/tollctl budgets create --tenant "$tenant" --metric tokens --window month \
      --limit 1000000 --field id >/dev/null
    (umask 077 && echo "$key" >"$dir/demo-key")
    echo "$tenant" >"$dir/demo-tenant"
    echo "cluster: created demo tenant $tenant with a budget of 1,000,000 tokens per month"
  fi
  cat >"$dir/env" <<ENV
export TOLLGATE_URL=http://$lb_api
export TOLLGATE_ADMIN_URL=http://$lb_admin
export TOLLGATE_API_KEY=$key
export TOLLGATE_ADMIN_TOKEN=$TOLLGATE_ADMIN_TOKEN
export TOLLGATE_FINANCE_TOKEN=$TOLLGATE_FINANCE_TOKEN
export TOLLGATE_DATABASE_URL=$db_url
export TOLLGATE_REDIS_NODES=$(printf '127.0.0.1:%s,' "${redis_ports[@]}" | sed 's/,$//')
ENV
  chmod 600 "$dir/env"
  echo "cluster: settings for clients and tollctl in $dir/env (. $dir/env)"
}

down() {
  stop_pid haproxy
  for n in "${gateways[@]}"; do stop_pid "gw$n" & done
  wait
  stop_pid infer
  scripts/redis.sh cluster-stop "$dir/redis"
  scripts/pg.sh stop "$dir/pg"
  echo "cluster: stopped"
}

# Takes gateway N out of HAProxy (drain: no new requests, in-flight ones finish), waits until
# HAProxy has no session on it, stops it (SIGTERM: it drains and flushes its ledger), starts it
# again, waits for /readyz and puts it back.
restart_gateway() {
  local n=$1
  haproxy_cmd "set server gateways/gw$n state drain" >/dev/null
  haproxy_cmd "set server gateway_admin/gw$n state drain" >/dev/null
  for _ in $(seq 1 "$stop_wait_tenths"); do
    [ "$(lb_server "$n" | cut -d' ' -f2)" = 0 ] && break
    sleep 0.1
  done
  stop_pid "gw$n"
  start_gateway "$n"
  haproxy_cmd "set server gateways/gw$n state ready" >/dev/null
  haproxy_cmd "set server gateway_admin/gw$n state ready" >/dev/null
  for _ in $(seq 1 100); do
    [ "$(lb_server "$n" | cut -d' ' -f1)" = UP ] && return 0
    sleep 0.1
  done
  echo "cluster: HAProxy does not see gw$n up again" >&2
  return 1
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status)
    for n in "${gateways[@]}"; do echo "gw$n $(lb_server "$n")"; done
    ;;
  rolling-restart)
    for n in "${gateways[@]}"; do
      restart_gateway "$n"
      echo "cluster: restarted gw$n"
    done
    ;;
  start-gateway) start_gateway "${2:?gateway number}" ;;
  stop-gateway) stop_pid "gw${2:?gateway number}" ;;
  start-infer) start_infer ;;
  start-redis)
    scripts/redis.sh cluster-resume "$dir/redis" "${redis_ports[@]}"
    wait_redis_replicas
    ;;
  *)
    echo "usage: scripts/cluster.sh up | down | status | rolling-restart | start-gateway N | stop-gateway N" >&2
    exit 2
    ;;
esac
