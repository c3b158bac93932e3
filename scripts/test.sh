#!/usr/bin/env bash
# Runs every test against the folder store and a real S3 server (versitygw),
# which it installs (cached) and starts on loopback, then stops again.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/s3-server.sh start)"
trap 'scripts/s3-server.sh stop >/dev/null 2>&1 || true' EXIT

go vet ./...
go test -race -count=1 -timeout 30m -cover ./...
