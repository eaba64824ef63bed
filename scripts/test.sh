#!/usr/bin/env bash
# Runs every test: Catch2 unit tests, then the node-driven integration and end-to-end suites
# (real gateway, real development upstream, the official openai client, curl, promtool).
set -euo pipefail
cd "$(dirname "$0")/.."
ctest --test-dir build --output-on-failure "$@"
