#!/usr/bin/env bash
# Installs everything pgmesh needs on Debian bookworm with Node 20, as root:
# Debian packages, npm dependencies, the C modules, the TypeScript build and
# the Postgres bundle. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  postgresql-15 postgresql-contrib postgresql-server-dev-15  # vanilla PG 15, contrib, PGXS for pgext/
  make gcc pkg-config libseccomp-dev util-linux              # C modules; setpriv/prlimit for sandboxing
  procps                                                     # pgrep: tests check that nothing is left running
  iproute2                                                   # ip netns: the multi-host drill puts each service on its own host
  python3 python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc # the Python client test
  libprotobuf-dev                                            # google/protobuf/*.proto: Debian's protoc finds the well-known types only here
  zstd                                                       # the ExtensionStore's Neon gateway layout serves zstd tars (Node 20's zlib has no zstd)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  # Debian's postgresql package would create and start a "main" cluster; pgmesh starts its own.
  mkdir -p /etc/postgresql-common
  [ -f /etc/postgresql-common/createcluster.conf ] || echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A real Debian-built extension that is not installed: the demo and tests pack and publish it.
mkdir -p .pgmesh/debs
if ! compgen -G ".pgmesh/debs/postgresql-15-hypopg_*.deb" >/dev/null; then
  (cd .pgmesh/debs && { apt-get download postgresql-15-hypopg 2>/dev/null || { apt-get update -qq && apt-get download postgresql-15-hypopg; }; })
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

for module in pgext/*/; do
  [ -f "$module/Makefile" ] && make -s -C "$module" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
done

npx tsc -p tsconfig.json
node dist/cmd/bundle.js --out .pgmesh/bundle
