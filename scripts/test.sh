#!/usr/bin/env bash
# Runs every test: Catch2 unit tests, the node-driven integration and end-to-end suites (real
# gateway, real development upstream, the official openai client, curl, promtool) and the
# fuzzers; then the unit, integration and end-to-end suites again against an AddressSanitizer +
# UndefinedBehaviorSanitizer build, failing on any report (leaks included). The cluster suites
# (tests/cluster: three gateways, chaos, up to 8 minutes) run once, on the regular build.
set -euo pipefail
cd "$(dirname "$0")/.."
ctest --test-dir build --output-on-failure "$@"

echo "test: the same suites under ASan + UBSan (build-asan/)"
if [ ! -f build-asan/build.ninja ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
    >/dev/null
fi
cmake --build build-asan
reports=$(mktemp -d)
ASAN_OPTIONS="log_path=$reports/asan" UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1" \
  ctest --test-dir build-asan --output-on-failure -E 'fuzz|cluster' "$@"
if [ -n "$(ls -A "$reports")" ]; then
  echo "test: sanitizer reports:" >&2
  cat "$reports"/* >&2
  exit 1
fi
rm -rf "$reports"
