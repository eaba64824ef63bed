#!/usr/bin/env bash
# Runs the benchmarks; docs/BENCHMARKS.md records what they printed and on which machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOLLGATE_BIN_DIR="$PWD/build/bin"
node tests/bench/proxy_bench.mjs "$@"
