#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks the contracts, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx vitest run "$@"
