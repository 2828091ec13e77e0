#!/usr/bin/env bash
# The demo on the embedded default: a file:// origin in a temporary directory, no server, no cloud account.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node-env.sh
scripts/setup.sh demo
exec node agents/swarm/dist/demo.js "$@"
