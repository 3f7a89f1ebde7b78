#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every test (contracts, services, C modules, benchmarks' parts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
status=$?
set -e
# Plain closing lines, whatever the reporter printed above them: a file that failed outside its tests counts as failed.
node dist/test/report/print-vitest-summary.js "$report" "$status"
exit $status
