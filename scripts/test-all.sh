#!/usr/bin/env bash
# Everything on a fresh Debian machine, as root: install what the tests need, start the shared services,
# run every test, stop what was started (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
trap 'bash scripts/test-services.sh stop' EXIT
bash scripts/test-services.sh start
# jest transpiles each file alone (isolatedModules); the type check of tests, bench and harness is here.
npx tsc -p tsconfig.test.json --noEmit
npm test -- "$@"
