#!/usr/bin/env bash
# The whole test suite: type check, then every test/**/*.test.ts with Node's test
# runner. Each test file starts (and stops) the services it needs: the Temporal
# dev server, the Rancher simulator, PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "type check (tsc --noEmit)"
npx tsc --noEmit -p .
echo "lint (eslint: layers, determinism of workflows, floating promises)"
npx eslint .
mapfile -t files < <(find test -name '*.test.ts' -not -path '*/fixtures/*' | sort)
exec node --import tsx --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
