#!/usr/bin/env bash
# Runs a local Redis 7 as a plain process: data and log in DIR, listening on 127.0.0.1:PORT only,
# no persistence (budget counters are rebuilt from the ledger), optional password. `cluster`
# starts one such node per port in DIR/PORT with cluster mode on and joins them into a Redis
# Cluster of masters (no replicas; REDIS_CLUSTER_REPLICAS=1 gives each master one replica, from
# twice as many ports), waiting until every node reports cluster_state:ok.
#   scripts/redis.sh start DIR PORT [PASSWORD]
#   scripts/redis.sh start-tls DIR PORT CERTDIR [CLIENT_CERTS]  (TLS only, on PORT; CERTDIR as
#       scripts/test_certs.sh makes it; CLIENT_CERTS yes|optional|no, default optional)
#   scripts/redis.sh stop DIR
#   scripts/redis.sh cluster DIR PORT PORT PORT...
#   scripts/redis.sh cluster-tls DIR CERTDIR PORT PORT PORT...   (TLS only, cluster bus too)
#   scripts/redis.sh cluster-resume DIR PORT PORT PORT...   (restart stopped nodes, same cluster)
#   scripts/redis.sh cluster-stop DIR
set -euo pipefail
# shellcheck source=scripts/proc.sh
. "$(dirname "$0")/proc.sh"
usage="usage: redis.sh start DIR PORT [PASSWORD] | start-tls DIR PORT CERTDIR [yes|optional|no] | stop DIR | cluster DIR PORT... | cluster-tls DIR CERTDIR PORT... | cluster-resume DIR PORT... | cluster-stop DIR"
cmd=${1:?$usage}
dir=$(realpath -m "${2:?data folder}")

# start_node DIR PORT PASSWORD [extra redis-server arguments...]; PORT is where it is pinged
# (with TLS_CLI set: the redis-cli TLS arguments)
start_node() {
  local ndir=$1 port=$2 password=$3
  shift 3
  mkdir -p "$ndir"
  if [ -f "$ndir/redis.pid" ] && alive "$(cat "$ndir/redis.pid")"; then return 0; fi
  local args=(--port "$port" --bind 127.0.0.1 --dir "$ndir" --daemonize yes --pidfile "$ndir/redis.pid"
              --logfile "$ndir/redis.log" --save "" --appendonly no "$@")
  if [ -n "$password" ]; then args+=(--requirepass "$password"); fi
  redis-server "${args[@]}"
  for _ in $(seq 1 50); do
    if redis-cli -p "$port" ${TLS_CLI:-} ${password:+-a "$password" --no-auth-warning} ping 2>/dev/null | grep -q PONG; then return 0; fi
    sleep 0.1
  done
  echo "redis.sh: Redis did not start on port $port; log:" >&2
  tail -n 20 "$ndir/redis.log" >&2
  return 1
}

stop_node() {
  local ndir=$1
  if [ -f "$ndir/redis.pid" ]; then
    local pid
    pid=$(cat "$ndir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    rm -f "$ndir/redis.pid"
  fi
}

case "$cmd" in
  start)
    start_node "$dir" "${3:?port}" "${4:-}"
    ;;
  start-tls)
    port=${3:?port}
    certs=$(realpath "${4:?certificate folder}")
    TLS_CLI="--tls --cacert $certs/ca.crt --cert $certs/client.crt --key $certs/client.key" \
      start_node "$dir" "$port" "" --port 0 --tls-port "$port" --tls-cert-file "$certs/server.crt" \
      --tls-key-file "$certs/server.key" --tls-ca-cert-file "$certs/ca.crt" \
      --tls-auth-clients "${5:-optional}"
    ;;
  stop)
    stop_node "$dir"
    ;;
  cluster | cluster-resume | cluster-tls)
    shift 2
    certs=""
    if [ "$cmd" = cluster-tls ]; then
      # Clients and the cluster bus over TLS only (tls-cluster), with CERTDIR as in start-tls.
      certs=$(realpath "${1:?certificate folder}")
      shift
      export TLS_CLI="--tls --cacert $certs/ca.crt --cert $certs/client.crt --key $certs/client.key"
    fi
    [ $# -ge 3 ] || { echo "redis.sh: a cluster needs at least three ports" >&2; exit 2; }
    nodes=()
    for port in "$@"; do
      if [ "$cmd" != cluster-resume ]; then
        # A fresh cluster each time: a node that kept its nodes.conf would refuse to join.
        stop_node "$dir/$port"
        rm -rf "${dir:?}/$port"
      fi
      tls=()
      if [ -n "$certs" ]; then
        # The cluster bus's outgoing connections present the client certificate (the server
        # certificate is for serverAuth only).
        tls=(--port 0 --tls-port "$port" --tls-cluster yes --tls-cert-file "$certs/server.crt"
             --tls-key-file "$certs/server.key" --tls-ca-cert-file "$certs/ca.crt"
             --tls-client-cert-file "$certs/client.crt" --tls-client-key-file "$certs/client.key"
             --tls-auth-clients optional)
      fi
      start_node "$dir/$port" "$port" "" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout 2000 "${tls[@]}"
      nodes+=("127.0.0.1:$port")
    done
    if [ "$cmd" != cluster-resume ]; then
      # shellcheck disable=SC2086
      redis-cli ${TLS_CLI:-} --cluster create "${nodes[@]}" --cluster-replicas "${REDIS_CLUSTER_REPLICAS:-0}" \
        --cluster-yes >"$dir/create.log" 2>&1 || {
        echo "redis.sh: redis-cli --cluster create failed:" >&2; cat "$dir/create.log" >&2; exit 1; }
    fi
    for _ in $(seq 1 200); do
      ok=0
      for port in "$@"; do
        # shellcheck disable=SC2086
        if redis-cli -p "$port" ${TLS_CLI:-} cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then ok=$((ok + 1)); fi
      done
      [ "$ok" -eq $# ] && exit 0
      sleep 0.1
    done
    echo "redis.sh: the cluster did not reach cluster_state:ok" >&2
    exit 1
    ;;
  cluster-stop)
    for ndir in "$dir"/*/; do
      [ -f "$ndir/redis.pid" ] && stop_node "${ndir%/}"
    done
    exit 0
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
