#!/usr/bin/env bash
# npm run bench [-- --quick] [-- --profile]: builds the cache CLI from the committed HEAD (not the work tree, so
# the figures belong to one commit), then runs the benchmark (bench/main.ts). Bounded to 10 minutes (build ≤ 2,
# run ≤ 7.7); bench/main.ts stops everything it started, also on failure or a signal.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk curl docker-registry git; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed: run scripts/install-test-deps.sh (as root)" >&2; exit 1; }
done
commit=$(git rev-parse --short HEAD)
build=$(mktemp -d "${TMPDIR:-/tmp}/dtr-cache-bench-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
git archive HEAD lib bin tsconfig.json | tar -x -C "$build"
ln -s "$PWD/node_modules" "$build/node_modules"
echo "bench: building $commit in $build" >&2
# tsc still emits JavaScript on type errors; those are reported, and only a missing CLI stops the benchmark.
(cd "$build" && timeout 120s node node_modules/typescript/bin/tsc -p tsconfig.json) ||
  echo "bench: tsc reported errors in $commit (output above); benchmarking the JavaScript it emitted" >&2
[ -f "$build/dist/bin/dtr-cache.js" ] || { echo "bench: the build of $commit produced no dist/bin/dtr-cache.js" >&2; exit 1; }
status=0
timeout --kill-after=15s 460s node -r ts-node/register/transpile-only bench/main.ts --cli="$build/dist/bin/dtr-cache.js" --commit="$commit" "$@" || status=$?
exit $status
