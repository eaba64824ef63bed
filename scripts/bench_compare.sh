#!/usr/bin/env bash
# Before-and-after benchmarks of a change, in one run on one machine: builds REV (the commit
# before the change, say) into .run/bench-base/ (a detached git worktree with its own build
# folder), then runs the proxy and budgets benchmarks alternately against that build and this
# tree's build/ (base, this, base, this, ...), so that a shift in the machine's load falls on
# both alike. Each run prints its own ratios against nginx or budgets-off, measured in that run.
#   scripts/bench_compare.sh REV [proxy|budgets|both] [pairs] [bench options]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/bench_compare.sh REV [proxy|budgets|both] [pairs] [bench options]}
which=${2:-both}
pairs=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
base=.run/bench-base
mkdir -p .run
if [ -d "$base" ]; then git -C "$base" checkout -q --detach "$rev"; else git worktree add -q --detach "$base" "$rev"; fi
ln -sfn "$PWD/.cache" "$base/.cache"
ln -sfn "$PWD/tests/node_modules" "$base/tests/node_modules"
(cd "$base" && CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1 scripts/build.sh)
scripts/build.sh
for bench in proxy budgets; do
  [ "$which" = both ] || [ "$which" = "$bench" ] || continue
  for i in $(seq 1 "$pairs"); do
    for side in base this; do
      dir="$PWD/build/bin"; [ "$side" = base ] && dir="$PWD/$base/build/bin"
      echo "== $bench, pair $i, $side ($( [ "$side" = base ] && echo "$rev" || git rev-parse --short HEAD))"
      TOLLGATE_BIN_DIR="$dir" node "tests/bench/${bench}_bench.mjs" "$@"
    done
  done
done
