#!/usr/bin/env bash
# Starts the local stack in the background, data and logs under .run/:
#   PostgreSQL 15 on 127.0.0.1:55432 (data in .run/pg), schema applied by `tollgate migrate`
#   Redis 7 on 127.0.0.1:56379 (budgets and rate limits; .run/redis)
#   tollgate-infer on 127.0.0.1:8000 (the bundled engine, serving `tiny-llama`: a deterministic
#     random model generated once into .run/models/tiny-llama; docs/ENGINE.md)
#   tollgate on 127.0.0.1:8080 (OpenAI API) and 127.0.0.1:8081 (health, metrics, admin, finance)
# then creates a demo tenant, project and API key with a monthly token budget and a
# tokens-per-minute limit (once) and writes .run/env.
# Safe to run twice: running processes are left alone, the demo key is reused.
set -euo pipefail
# shellcheck source=scripts/proc.sh
. "$(dirname "$0")/proc.sh"
cd "$(dirname "$0")/.."
run=.run
mkdir -p "$run/logs" "$run/pids"
chmod 755 "$run"  # the database runs as the postgres user and must reach .run/pg
pg_port=55432
redis_port=56379
db_url="postgresql://tollgate@127.0.0.1:$pg_port/tollgate"

running() { [ -f "$run/pids/$1.pid" ] && alive "$(cat "$run/pids/$1.pid")"; }

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

# Tokens for the admin and finance APIs: made once, kept in .run/secrets.
if [ ! -f "$run/secrets" ]; then
  umask 077
  cat >"$run/secrets" <<SECRETS
TOLLGATE_ADMIN_TOKEN=adm-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOLLGATE_FINANCE_TOKEN=fin-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
SECRETS
  umask 022
fi
# shellcheck disable=SC1091
. "$run/secrets"

scripts/pg.sh start "$run/pg" "$pg_port"
echo "up: PostgreSQL on 127.0.0.1:$pg_port (data $run/pg)"
TOLLGATE_DATABASE__URL="$db_url" build/bin/tollgate migrate
scripts/redis.sh start "$run/redis" "$redis_port"
echo "up: Redis on 127.0.0.1:$redis_port"

model_dir=$run/models/tiny-llama
if [ ! -f "$model_dir/model.safetensors" ]; then
  build/bin/tollgate-infer make-model --preset tiny --tokenizer .cache/tokenizers/llama3.tokenizer.json \
    --out "$model_dir" >/dev/null
  echo "up: generated the tiny model in $model_dir"
fi
# 32 MiB of key/value cache: 32 sequences of the tiny model's whole 4,096-position context.
start infer build/bin/tollgate-infer serve --model "$model_dir" --name tiny-llama --listen 127.0.0.1:8000 \
  --kv-cache-mb 32
wait_ready infer http://127.0.0.1:8000/health
TOLLGATE_LOGGING__USAGE_LOG="$PWD/$run/logs/usage.log" \
TOLLGATE_DATABASE__URL="$db_url" \
TOLLGATE_LEDGER__SPOOL_DIR="$PWD/$run/spool" \
TOLLGATE_AUTH__ADMIN_TOKEN="$TOLLGATE_ADMIN_TOKEN" \
TOLLGATE_AUTH__FINANCE_TOKEN="$TOLLGATE_FINANCE_TOKEN" \
TOLLGATE_BUDGETS__REDIS="127.0.0.1:$redis_port" \
GLIBC_TUNABLES=glibc.malloc.tcache_count=256 \
  start gateway build/bin/tollgate
wait_ready gateway http://127.0.0.1:8081/readyz

# The demo tenant, project and key, created once; a key that no longer works is replaced.
export TOLLGATE_ADMIN_URL=http://127.0.0.1:8081 TOLLGATE_ADMIN_TOKEN
demo_key=""
[ -f "$run/demo-key" ] && demo_key=$(cat "$run/demo-key")
if [ -z "$demo_key" ] || [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $demo_key" \
    http://127.0.0.1:8080/v1/models)" != 200 ]; then
  tenant=$(build/bin/tollctl tenants create --name "Demo tenant" --field id)
  project=$(build/bin/tollctl projects create --tenant "$tenant" --name "Demo project" --field id)
  demo_key=$(build/bin/tollctl keys create --tenant "$tenant" --project "$project" --name demo --field key)
  build/bin/tollctl budgets create --tenant "$tenant" --metric tokens --window month \
    --limit 1000000 --field id >/dev/null
  build/bin/tollctl budgets create --tenant "$tenant" --metric tokens --window minute \
    --limit 20000 --field id >/dev/null
  # A price book for the demo model (docs/PRICING.md) and the tenant's plan.
  cat >"$run/demo-price-book.json" <<'BOOK'
{"name": "Demo prices", "currency": "USD", "tier_mode": "graduated", "effective_at": 1767225600,
 "models": {"tiny-llama": {"input": [{"up_to": 1000000, "rate": "150000"}, {"rate": "120000"}],
                         "cached_input": [{"rate": "75000"}],
                         "output": [{"rate": "600000"}]}}}
BOOK
  book=$(build/bin/tollctl price-books create --file "$run/demo-price-book.json" --field id)
  build/bin/tollctl plans set --tenant "$tenant" --price-book "$book" --field tenant_id >/dev/null
  (umask 077 && echo "$demo_key" >"$run/demo-key")
  echo "$tenant" >"$run/demo-tenant"
  echo "up: created demo tenant $tenant, project $project, an API key, a budget of 1,000,000"
  echo "    tokens per month, a limit of 20,000 tokens per minute, and price book $book"
fi
demo_tenant=$(cat "$run/demo-tenant" 2>/dev/null || true)

# `export` lines: `. .run/env` (or `source`) puts them in the environment of what runs next,
# tollctl included.
cat >"$run/env" <<ENV
export TOLLGATE_URL=http://127.0.0.1:8080
export TOLLGATE_ADMIN_URL=http://127.0.0.1:8081
export TOLLGATE_API_KEY=$demo_key
export TOLLGATE_ADMIN_TOKEN=$TOLLGATE_ADMIN_TOKEN
export TOLLGATE_FINANCE_TOKEN=$TOLLGATE_FINANCE_TOKEN
export TOLLGATE_DATABASE_URL=$db_url
ENV
chmod 600 "$run/env"

cat <<MSG

Tollgate is up (embedded default config, PostgreSQL ledger). Settings for clients and tollctl:
$run/env (load them with: . $run/env)
Usage rows: psql $db_url -c 'TABLE usage_events'    Stop everything: make down

Try it (-i shows the x-ratelimit-* headers; a max_tokens beyond the model's 4,096-token context is a 400):
  curl -si http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer $demo_key" \\
    -H 'Content-Type: application/json' \\
    -d '{"model":"tiny-llama","messages":[{"role":"user","content":"Hello, Tollgate!"}],"max_tokens":16}'
What the demo tenant's month has cost so far (micro-units, priced by its price book):
  . $run/env; build/bin/tollctl costs preview --tenant ${demo_tenant:-<tenant id>}
MSG
