#!/usr/bin/env bash
# Runs the benchmarks; docs/BENCHMARKS.md records what they printed and on which machine.
#   scripts/bench.sh [tokenizer|proxy|all] [proxy bench options]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
export TOLLGATE_BIN_DIR="$PWD/build/bin"
which=${1:-all}
case "$which" in tokenizer | proxy | all) shift || true ;; *) which=all ;; esac
if [ "$which" != proxy ]; then node tests/bench/tokenizer_bench.mjs; fi
if [ "$which" != tokenizer ]; then node tests/bench/proxy_bench.mjs "$@"; fi
