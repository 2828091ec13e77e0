#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (packages, dependencies, build), then vitest.
# The S3 server is started by vitest's global setup (test/setup/s3-server.ts) and stopped after.
# Results: .test-results/vitest.json (vitest's JSON report), read by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node-env.sh
scripts/setup.sh test
mkdir -p .test-results
exec npx vitest run --reporter=default --reporter=json --outputFile.json=.test-results/vitest.json "$@"
