#!/usr/bin/env bash
# npm run bench [-- --quick] [-- --profile]: builds the cache CLI, then runs the benchmark (bench/main.ts),
# bounded to 10 minutes (build ≤ 2, run ≤ 7.7); bench/main.ts stops everything it started, also on failure or a signal.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk curl docker-registry; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed: run scripts/install-test-deps.sh (as root)" >&2; exit 1; }
done
timeout 120s npm run -s build
exec timeout --kill-after=15s 460s node -r ts-node/register/transpile-only bench/main.ts "$@"
