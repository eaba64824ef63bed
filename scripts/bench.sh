#!/usr/bin/env bash
# Runs the benchmarks; docs/BENCHMARKS.md records what they printed and on which machine.
#   scripts/bench.sh [tokenizer|proxy|tls|full|ledger|usage|budgets|engine|batch|console|all] [bench options]
#   (default: all)
# `tls` is the proxy benchmark with an https upstream (nginx with proxy_ssl as the baseline);
# `full` is Tollgate with auth, ledger, budgets and a price book against nginx.
# The ledger and usage benchmarks run against their own PostgreSQL in .run/bench-pg
# (127.0.0.1:55433).
set -euo pipefail
cd "$(dirname "$0")/.."
export TOLLGATE_BIN_DIR="$PWD/build/bin"
which=${1:-all}
case "$which" in tokenizer | proxy | tls | full | ledger | usage | budgets | engine | batch | console | all) shift || true ;; *) which=all ;; esac
if [ "$which" = tokenizer ] || [ "$which" = all ]; then node tests/bench/tokenizer_bench.mjs; fi
if [ "$which" = proxy ] || [ "$which" = all ]; then node tests/bench/proxy_bench.mjs "$@"; fi
if [ "$which" = tls ] || [ "$which" = all ]; then node tests/bench/proxy_bench.mjs --tls "$@"; fi
if [ "$which" = full ] || [ "$which" = all ]; then node tests/bench/full_bench.mjs "$@"; fi
if [ "$which" = budgets ] || [ "$which" = all ]; then node tests/bench/budgets_bench.mjs "$@"; fi
if [ "$which" = engine ] || [ "$which" = all ]; then node tests/bench/engine_bench.mjs "$@"; fi
if [ "$which" = batch ] || [ "$which" = all ]; then node tests/bench/batch_bench.mjs "$@"; fi
if [ "$which" = console ] || [ "$which" = all ]; then node tests/bench/console_bench.mjs "$@"; fi
for part in ledger usage; do
  if [ "$which" = "$part" ] || [ "$which" = all ]; then
    mkdir -p .run && chmod 755 .run
    scripts/pg.sh start .run/bench-pg 55433
    url=postgresql://tollgate@127.0.0.1:55433/tollgate
    TOLLGATE_DATABASE__URL=$url build/bin/tollgate migrate
    build/bin/tollgate-$part-bench --db "$url" "$@"
    scripts/pg.sh stop .run/bench-pg
  fi
done
