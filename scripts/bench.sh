#!/usr/bin/env bash
# Runs the benchmarks (bench/RESULTS.md explains them) against the folder
# store and a local S3 server (versitygw, started here if not running).
# Extra arguments go to `epoch-dedup bench`, e.g. --quick or --out DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

go build -o bin/epoch-dedup ./cmd/epoch-dedup
port=${EPOCH_S3_PORT:-7070}
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	trap 'scripts/s3-server.sh stop >/dev/null 2>&1 || true' EXIT
fi
eval "$(scripts/s3-server.sh start)"
export EPOCH_S3_ENDPOINT=$EPOCH_TEST_S3_ENDPOINT EPOCH_S3_ACCESS_KEY=$EPOCH_TEST_S3_ACCESS_KEY \
	EPOCH_S3_SECRET_KEY=$EPOCH_TEST_S3_SECRET_KEY EPOCH_S3_BUCKET=$EPOCH_TEST_S3_BUCKET \
	EPOCH_S3_PREFIX=bench/
bin/epoch-dedup bench --s3 --out "${BENCH_OUT:-bench/results}" "$@"
