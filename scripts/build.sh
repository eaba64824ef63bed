#!/usr/bin/env bash
# Configures (once) and builds Tollgate into build/ with Ninja and ccache.
set -euo pipefail
cd "$(dirname "$0")/.."
# The console embeds its pinned third-party files: installed first (quiet when up to date).
scripts/console_deps.sh
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
fi
cmake --build build
