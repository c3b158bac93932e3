#!/usr/bin/env bash
# Runs every test against the folder store and a real S3 server (versitygw),
# which it installs (cached) and starts on loopback. A server that was
# already running is used and left running; one started here is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${EPOCH_S3_PORT:-7070}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	eval "$(scripts/s3-server.sh env)"
else
	eval "$(scripts/s3-server.sh start)"
	trap 'scripts/s3-server.sh stop >/dev/null 2>&1 || true' EXIT
fi

go vet ./...
go test -race -count=1 -timeout 30m -cover "${@:-./...}"
