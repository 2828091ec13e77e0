#!/usr/bin/env bash
# Runs a benchmark from bench/ (all of them without an argument). Benchmarks print figures and their
# ratio to a baseline measured in the same run; results also go to bench/results/.
# BENCH_WORKERS sets the threads of Swarm's byte path (`--workers`, where the build takes it) and of
# the necessary-work baselines in origin-pull and peer-transfer (default: the available parallelism);
# SWARM_BENCH_CLI runs another build's cli.js instead of this checkout's.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node-env.sh
scripts/setup.sh test
names=("$@")
[ ${#names[@]} -gt 0 ] || names=($(for dir in bench/*/; do [ -f "$dir/run.mjs" ] && basename "$dir"; done))
for name in "${names[@]}"; do
  echo "== bench/$name" >&2
  node "bench/$name/run.mjs"
done
