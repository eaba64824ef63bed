#!/usr/bin/env bash
# Installs the console's third-party files (gateway/console/package-lock.json: pinned, with the
# registry's integrity hashes that npm ci checks) into gateway/console/node_modules, where the
# build copies them from after checking gateway/console/vendor.sha256. Quiet when up to date.
set -euo pipefail
cd "$(dirname "$0")/../gateway/console"
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.tollgate-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  echo "deps: npm ci (gateway/console/)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_sum" >"$stamp"
fi
