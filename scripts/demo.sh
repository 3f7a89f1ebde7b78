#!/usr/bin/env bash
# The main job on embedded defaults: installs what it needs, then brings up the mesh and a compute.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/cmd/pgmesh-demo.js "$@"
