#!/usr/bin/env bash
# Brings a fresh machine to the point where Swarm builds, tests and runs its demo:
# Node.js 24 (the machine's, or one installed into .tools/node), the Debian packages a purpose needs, npm dependencies, the TypeScript build.
#
#   scripts/setup.sh demo    what the demo needs (nothing beyond Node)
#   scripts/setup.sh test    plus the S3 server (Ceph RGW) the tests run against, nginx and openssl for the HTTP origin's tests, FUSE and the loaders the FUSE tests use,
#                            rclone, GNU time and aria2 (bench/fanout's BitTorrent baseline) for the benches
#
# Installs missing Debian packages when it can (root and apt-get); otherwise it names them and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

purpose=${1:-demo}
. scripts/node-env.sh

packages=()
case "$purpose" in
  demo) ;;
  # FUSE view tests: fuse (fusermount) and libfuse2 for the mount; fio, numpy and torch read it as real loaders do
  # the OCI origin: Debian's docker-registry (CNCF distribution) and htpasswd for its basic-auth runs;
  # the HTTP origin: nginx, and openssl for its test CA; the fleet page test drives chromium;
  # the monitoring test runs prometheus and promtool; the benches compare with rclone and measure
  # children's CPU and peak RSS with GNU time; bench/fanout's BitTorrent case runs aria2c
  test) packages+=(ceph-mon ceph-osd radosgw fuse libfuse2 fio python3-numpy python3-torch docker-registry apache2-utils nginx openssl chromium prometheus rclone time aria2) ;;
  *) echo "swarm setup: unknown purpose '$purpose' (demo|test)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "swarm setup: installing ${missing[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "swarm setup: missing Debian packages: ${missing[*]}" >&2
    echo "  install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "swarm setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund >&2
fi

# the kernel FUSE adapter's addon, built from this repository's C source with node-gyp (bundled
# with npm) against the installed Node's headers; rebuilt when a source is newer than the build
addon=packages/fuse-kernel/build/Release/swarm_fuse.node
if [ ! -f "$addon" ] || [ -n "$(find packages/fuse-kernel/native packages/fuse-kernel/binding.gyp -newer "$addon" 2>/dev/null | head -1)" ]; then
  echo "swarm setup: building the FUSE addon (node-gyp)" >&2
  if ! npm run --silent build:native -w @swarm/fuse-kernel >&2; then
    if [ "$purpose" = test ]; then
      echo "swarm setup: the FUSE addon did not build; it needs a C compiler, make, python3 and Node's headers (Debian: apt-get install build-essential python3; headers come with Node or: npm config set nodedir <node prefix>)" >&2
      exit 1
    fi
    echo "swarm setup: the FUSE addon did not build; mounts will use fuse-native instead" >&2
  fi
fi

npx tsc -b >&2
