#!/usr/bin/env bash
# Loopback S3 server (versitygw, posix backend) for the S3 tests.
#
#   scripts/s3-server.sh install   build versitygw into the tools dir if missing
#   scripts/s3-server.sh start     install if needed, start, print exports
#   scripts/s3-server.sh stop      stop the server started by "start"
#   scripts/s3-server.sh env       print the exports
#
#   eval "$(scripts/s3-server.sh start)" && go test ./...
#
# Environment: EPOCH_TOOLS_DIR (default ~/.cache/epoch-dedup-tools),
# EPOCH_S3_DATA (default /tmp/epoch-dedup-s3), EPOCH_S3_PORT (default 7070).
# Status messages go to stderr so that stdout stays eval-able.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
TOOLS_DIR=${EPOCH_TOOLS_DIR:-$HOME/.cache/epoch-dedup-tools}
BIN_DIR=$TOOLS_DIR/bin
BIN=$BIN_DIR/versitygw
DATA_DIR=${EPOCH_S3_DATA:-/tmp/epoch-dedup-s3}
PORT=${EPOCH_S3_PORT:-7070}
ACCESS=epochtest
SECRET=epochtestsecret
BUCKET=epoch-test
# The run dir (pid file, log) sits next to the data dir, not inside it:
# inside, versitygw would list it as a bucket.
RUN_DIR=${DATA_DIR%/}.run
PID_FILE=$RUN_DIR/versitygw.pid
LOG_FILE=$RUN_DIR/versitygw.log

log() { echo "s3-server: $*" >&2; }

# installed: the binary exists and was built from the pinned version.
installed() {
	[[ -x $BIN ]] && go version -m "$BIN" 2>/dev/null |
		grep -q "^[[:space:]]*mod[[:space:]]*github.com/versity/versitygw[[:space:]]*$VERSITYGW_VERSION"
}

cmd_install() {
	# Another process may be building it right now (go install writes the
	# binary only at the end): wait for it rather than building twice.
	local waited=0
	while pgrep -f "go install github.com/versity/versitygw" >/dev/null 2>&1 && ! installed; do
		((waited == 0)) && log "waiting for a running versitygw install"
		((waited += 5))
		if ((waited > 600)); then
			log "gave up waiting for the other install"
			break
		fi
		sleep 5
	done
	if installed; then
		return 0
	fi
	log "installing versitygw $VERSITYGW_VERSION into $BIN_DIR (takes a few minutes cold)"
	mkdir -p "$BIN_DIR"
	GOBIN=$BIN_DIR go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
}

running() {
	[[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

cmd_env() {
	cat <<EOF
export EPOCH_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT
export EPOCH_TEST_S3_ACCESS_KEY=$ACCESS
export EPOCH_TEST_S3_SECRET_KEY=$SECRET
export EPOCH_TEST_S3_BUCKET=$BUCKET
EOF
}

cmd_start() {
	cmd_install
	if running; then
		log "already running (pid $(cat "$PID_FILE"))"
		cmd_env
		return 0
	fi
	if port_open; then
		log "port $PORT is taken by another process; set EPOCH_S3_PORT"
		exit 1
	fi
	# posix backend: a bucket is a directory in the data dir.
	mkdir -p "$DATA_DIR/$BUCKET" "$RUN_DIR"
	nohup "$BIN" --port "127.0.0.1:$PORT" --access "$ACCESS" --secret "$SECRET" --quiet \
		posix "$DATA_DIR" >"$LOG_FILE" 2>&1 &
	echo $! >"$PID_FILE"
	local i
	for ((i = 0; i < 300; i++)); do
		if port_open; then
			log "versitygw listening on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"), data $DATA_DIR, log $LOG_FILE)"
			cmd_env
			return 0
		fi
		if ! running; then
			log "versitygw exited; log:"
			cat "$LOG_FILE" >&2
			rm -f "$PID_FILE"
			exit 1
		fi
		sleep 0.1
	done
	log "versitygw did not answer on port $PORT within 30 s; log: $LOG_FILE"
	exit 1
}

cmd_stop() {
	if ! running; then
		log "not running"
		rm -f "$PID_FILE"
		return 0
	fi
	local pid
	pid=$(cat "$PID_FILE")
	kill "$pid"
	local i
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid"
	fi
	rm -f "$PID_FILE"
	log "stopped pid $pid"
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
*)
	echo "usage: $0 install|start|stop|env" >&2
	exit 2
	;;
esac
