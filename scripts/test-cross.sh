#!/usr/bin/env bash
# Proves each static binary of `make cross` on the CPU of the Pi it is for, under
# qemu-user (Debian's qemu-user):
#   arm-unknown-linux-musleabihf    qemu-arm -cpu arm1176       Pi Zero / 1 (ARMv6: an ARMv7
#                                                               instruction dies with SIGILL)
#   armv7-unknown-linux-musleabihf  qemu-arm -cpu cortex-a7     Pi 2 / 3 in 32-bit
#   aarch64-unknown-linux-musl      qemu-aarch64 -cpu cortex-a53  Pi 3 / 4 / 5 in 64-bit
#   x86_64-unknown-linux-musl       natively
# For each: `file` says static and there is no ELF interpreter, size <= 2 MiB, a real
# `run` of a generated tree (a 5 GiB sparse video for 64-bit sizes on 32-bit CPUs, names
# with spaces and accents), the archive read back by GNU tar + `sha256sum -c`, checked by
# the x86_64 binary's `verify`, its files byte-compared with the sources and with what
# the x86_64 binary makes of the same tree; a second run with INCLUDE_VIDEOS=true; HTTPS
# (rustls/ring) to a local TLS server through `fleet`, when the binary has it; then
# `serve` under the same emulation: sd_notify READY=1 and WATCHDOG=1 on a NOTIFY_SOCKET,
# GET /healthz, GET /api/backups, a backup made by POST /api/backups/create, the file
# downloaded, and a clean stop on SIGTERM.
# Usage: scripts/test-cross.sh [TRIPLE...]   Prints `N passed, N failed`; exit 1 on failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

ALL="arm-unknown-linux-musleabihf armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl x86_64-unknown-linux-musl"
[ $# -gt 0 ] || set -- $ALL
# The Pi builds must stay under 2 MiB (a Pi Zero's SD card and RAM); the x86_64 build is
# the lab's (CI, benchmarks, a VM), never installed on a Pi: 2.5 MiB.
MAX_SIZE=$((2 * 1024 * 1024))
MAX_SIZE_X86=$((5 * 512 * 1024))
CROSS_DIR=${CROSS_DIR:-target/cross}
REF=$CROSS_DIR/x86_64-unknown-linux-musl/release/neopro-backup

pass=0 fail=0 skipped=0
ok() { pass=$((pass + 1)); echo "  ok   $*"; }
ko() { fail=$((fail + 1)); echo "  FAIL $*"; }
# A check that cannot run here: said loudly, and a failure under CI=true.
cannot() {
    if [ "${CI:-}" = true ]; then ko "cannot run: $*"; else skipped=$((skipped + 1)); echo "  SKIP $*"; fi
}
check() { # check "description" command...
    local what=$1; shift
    if "$@" >"$W/check.out" 2>&1; then ok "$what"; else ko "$what"; sed 's/^/       | /' "$W/check.out" | head -20; fi
}

runner() { # the emulator command line for a target
    case $1 in
        arm-unknown-linux-musleabihf) echo "qemu-arm -cpu arm1176" ;;
        armv7-unknown-linux-musleabihf) echo "qemu-arm -cpu cortex-a7" ;;
        aarch64-unknown-linux-musl) echo "qemu-aarch64 -cpu cortex-a53" ;;
        x86_64-unknown-linux-musl) echo "" ;;
    esac
}

for tool in qemu-arm qemu-aarch64 file curl python3 tar sha256sum readelf; do
    command -v $tool >/dev/null || { echo "test-cross: $tool is missing (scripts/test-deps.sh cross installs it)"; exit 1; }
done
[ -x "$REF" ] || { echo "test-cross: $REF is missing: run 'make cross' first"; exit 1; }

W=$(mktemp -d /tmp/neopro-test-cross.XXXXXX)
SERVE_PID=
TLS_PID=
cleanup() {
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null
    [ -n "$TLS_PID" ] && kill "$TLS_PID" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

# A tree like a club's Pi.
make_tree() { # make_tree DIR [with-sparse]
    local n=$1/neopro
    mkdir -p "$n/webapp" "$n/sync-agent" "$n/videos/Matchs 2024/été" "$n/videos/pubs" "$1/etc"
    printf '{"name":"Club Test","version":"2.1","teams":["Seniors","U18"],"é":"ü"}\n' >"$n/webapp/configuration.json"
    printf 'SYNC_TOKEN=s3cr3t-token\nSERVER_URL=https://example.invalid\n' >"$n/sync-agent/.env"
    printf 'SITE_ID=club-test\nSITE_NAME="Club Test"\n' >"$1/etc/site.conf"
    head -c 300000 /dev/urandom >"$n/videos/Matchs 2024/été/but final.MP4"
    head -c 120000 /dev/urandom >"$n/videos/pubs/sponsor.mkv"
    head -c 5000 /dev/urandom >"$n/videos/pubs/intro.Mov"
    echo "not a video" >"$n/videos/pubs/notes.txt"
    touch -d '2024-06-01 12:00:00' "$n/videos/pubs/sponsor.mkv"
    if [ "${2:-}" = with-sparse ]; then
        truncate -s 5G "$n/videos/pubs/big-match.avi" # 64-bit sizes on 32-bit ARM
    fi
}

tree_env() { # environment for a tree in $1, archives in $2 (as text, for bash -c strings:
    # our temp paths have no spaces)
    echo NEOPRO_DIR="$1/neopro" BACKUP_DIR="$2" SITE_CONF="$1/etc/site.conf" \
        SERVICES=nginx RETENTION_DAYS=7 TZ=Europe/Paris
}
tenv() { # tenv TREE OUT COMMAND...: runs COMMAND in that environment
    local t=$1 o=$2; shift 2
    env NEOPRO_DIR="$t/neopro" BACKUP_DIR="$o" SITE_CONF="$t/etc/site.conf" \
        SERVICES=nginx RETENTION_DAYS=7 TZ=Europe/Paris "$@"
}

only_archive() { ls "$1"/backup-*.tar.gz 2>/dev/null | tail -n 1; }

# What the x86_64 binary makes of the tree: the reference for the other CPUs.
make_tree "$W/tree" with-sparse
mkdir -p "$W/ref-out"
tenv "$W/tree" "$W/ref-out" "$REF" --config /dev/null run >/dev/null 2>&1
REF_ARCHIVE=$(only_archive "$W/ref-out")
mkdir -p "$W/ref-x" && [ -n "$REF_ARCHIVE" ] && tar -xzf "$REF_ARCHIVE" -C "$W/ref-x"
REF_DIR=$(ls -d "$W"/ref-x/backup-* 2>/dev/null | head -n 1)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# HTTPS (rustls with ring: ring's C and assembly are compiled by zig for each CPU): a
# local TLS server with its own CA, RSA keys (ring's bignum assembly) and TLS 1.3
# (ECDHE, AES-GCM/ChaCha, HKDF). `fleet` lists the bucket over it on each emulated CPU.
TLS_PORT= TLS_WHY= TLS_BROKEN=
if ! "$REF" --help | grep -q '^ *fleet'; then
    TLS_BROKEN=1 TLS_WHY="the x86_64 binary has no 'fleet' command"
elif ! command -v openssl >/dev/null; then
    TLS_WHY="openssl is missing (scripts/test-deps.sh cross installs it)"
else
    mkdir -p "$W/tls"
    (
        cd "$W/tls" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=neopro-test-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
        openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf
    ) >"$W/tls/openssl.log" 2>&1
    # The server binds a free port itself and writes it to port.txt once it is listening.
    python3 - "$W/tls" >"$W/tls/requests.log" 2>"$W/tls/server.log" <<'EOF2' &
import http.server, os, ssl, sys, threading
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
                b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>neopro-test</Name>'
                b'<Prefix>neopro/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>'
                b'<Delimiter>/</Delimiter><IsTruncated>false</IsTruncated></ListBucketResult>')
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        auth = "signed" if self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256") else "unsigned"
        print(self.command, self.path, self.request.version(), self.request.cipher()[0], auth, flush=True)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(d + "/srv.pem", d + "/srv.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(d + "/port.tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(d + "/port.tmp", d + "/port.txt")
threading.Timer(600, srv.shutdown).start()
srv.serve_forever()
EOF2
    TLS_PID=$!
    # Listening once port.txt exists (written after bind + listen); 30 s at most.
    deadline=$((SECONDS + 30))
    while [ ! -s "$W/tls/port.txt" ] && [ $SECONDS -lt $deadline ] && kill -0 "$TLS_PID" 2>/dev/null; do sleep 0.1; done
    if [ -s "$W/tls/port.txt" ]; then
        TLS_PORT=$(cat "$W/tls/port.txt")
    else
        TLS_BROKEN=1 TLS_WHY="the local TLS server did not start: $(tail -3 "$W/tls/openssl.log" "$W/tls/server.log" | tr '\n' ' ')"
    fi
fi

for t in "$@"; do
    echo "== $t ($(runner "$t" || true))"
    bin=$CROSS_DIR/$t/release/neopro-backup
    if [ ! -x "$bin" ]; then ko "$t: $bin exists (run 'make cross')"; continue; fi
    EMU=$(runner "$t")
    B() { $EMU "$bin" --config /dev/null "$@"; }

    # --- the file itself
    size=$(stat -c %s "$bin")
    case $t in
    x86_64-*) check "size $size bytes <= 2.5 MiB (not a Pi build)" test "$size" -le "$MAX_SIZE_X86" ;;
    *) check "size $size bytes <= 2 MiB" test "$size" -le "$MAX_SIZE" ;;
    esac
    desc=$(file -b "$bin")
    check "file: static ($desc)" grep -Eq 'statically linked|static-pie linked' <<<"$desc"
    check "no ELF interpreter, no shared libraries" bash -c "! readelf -lW '$bin' | grep -q INTERP && ! readelf -dW '$bin' | grep -q NEEDED"
    check "--version runs on the emulated CPU" B --version

    # --- a real backup
    out=$W/$t/out
    mkdir -p "$out"
    check "run exits 0" tenv "$W/tree" "$out" $EMU "$bin" --config /dev/null run
    a=$(only_archive "$out")
    if [ -z "$a" ]; then ko "an archive was made"; continue; fi
    name=$(basename "$a" .tar.gz)
    check "archive mode is 0600" test "$(stat -c %a "$a")" = 600
    x=$W/$t/x
    mkdir -p "$x"
    check "GNU tar extracts it, one top folder $name/" bash -c "tar -xzf '$a' -C '$x' && [ \"\$(ls '$x')\" = '$name' ]"
    check "sha256sum -c MANIFEST.sha256 inside the folder" bash -c "cd '$x/$name' && sha256sum --quiet -c MANIFEST.sha256"
    check "x86_64 binary's verify accepts it" "$REF" --config /dev/null verify "$a"
    check "configuration.json, sync-agent.env, site.conf are byte-exact copies" bash -c "
        cmp '$W/tree/neopro/webapp/configuration.json' '$x/$name/configuration.json' &&
        cmp '$W/tree/neopro/sync-agent/.env' '$x/$name/sync-agent.env' &&
        cmp '$W/tree/etc/site.conf' '$x/$name/site.conf'"
    check "videos-inventory.txt equals the x86_64 binary's (5 GiB sparse file included)" bash -c "
        [ -n '$REF_DIR' ] && cmp '$REF_DIR/videos-inventory.txt' '$x/$name/videos-inventory.txt' &&
        grep -qP \"^5368709120\\t.*\\tpubs/big-match.avi\$\" '$x/$name/videos-inventory.txt'"
    check "system-info.txt names the service and the disk use" bash -c "grep -q nginx '$x/$name/system-info.txt' && [ \$(wc -l <'$x/$name/system-info.txt') -ge 4 ]"
    check "status --json says success" bash -c "env $(tree_env "$W/tree" "$out") $EMU '$bin' --config /dev/null status --json | grep -q '\"success\":true'"
    check "list shows the archive" bash -c "env $(tree_env "$W/tree" "$out") $EMU '$bin' --config /dev/null list | grep -q '$name'"

    # --- with the videos themselves (streams real data through gzip on this CPU)
    make_tree "$W/$t/vtree"
    vout=$W/$t/vout
    mkdir -p "$vout"
    check "run with INCLUDE_VIDEOS=true exits 0" tenv "$W/$t/vtree" "$vout" env INCLUDE_VIDEOS=true $EMU "$bin" --config /dev/null run
    va=$(only_archive "$vout")
    check "its videos come back byte-exact and verify passes" bash -c "
        [ -n '$va' ] && mkdir -p '$W/$t/vx' && tar -xzf '$va' -C '$W/$t/vx' &&
        cmp '$W/$t/vtree/neopro/videos/Matchs 2024/été/but final.MP4' '$W/$t/vx/$(basename "$va" .tar.gz)/videos/Matchs 2024/été/but final.MP4' &&
        '$REF' --config /dev/null verify '$va'"

    # --- HTTPS on this CPU (rustls + ring)
    if [ -n "$TLS_PORT" ]; then
        before=$(wc -l <"$W/tls/requests.log")
        check "HTTPS on this CPU: fleet lists a bucket over TLS (rustls/ring), signed request" bash -c "
            env S3_ENDPOINT=https://127.0.0.1:$TLS_PORT S3_BUCKET=neopro-test S3_ACCESS_KEY=AKIATEST S3_SECRET_KEY=secret-key-for-tests \
                SSL_CERT_FILE='$W/tls/ca.pem' BACKUP_DIR='$W/$t/out' $EMU '$bin' --config /dev/null fleet | tee >(cat >&2) | grep -q '0 site' &&
            tail -n +$((before + 1)) '$W/tls/requests.log' | tee >(cat >&2) | grep -q '^GET .* TLSv1.3 .* signed\$'"
    elif [ -n "$TLS_BROKEN" ]; then
        ko "HTTPS on this CPU: $TLS_WHY"
    else
        cannot "HTTPS on this CPU: $TLS_WHY"
    fi

    # --- the daemon, answering real HTTP requests on the emulated CPU
    if ! B --help | grep -q '^ *serve'; then
        ko "serve: this binary has no 'serve' command in --help"
        continue
    fi
    sock=$W/$t/notify.sock
    sout=$W/$t/sout
    mkdir -p "$sout"
    # Collect sd_notify datagrams as systemd would.
    python3 - "$sock" >"$W/$t/notify.log" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); s.settimeout(0.5)
end = time.time() + 60
while time.time() < end:
    try:
        print(s.recv(4096).decode(), flush=True)
    except socket.timeout:
        pass
EOF
    NPID=$!
    for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
    # `env` directly (not tenv, a function): $! must be the daemon itself for the SIGTERM.
    env NEOPRO_DIR="$W/tree/neopro" BACKUP_DIR="$sout" SITE_CONF="$W/tree/etc/site.conf" \
        SERVICES=nginx TZ=Europe/Paris LISTEN=127.0.0.1:0 NOTIFY_SOCKET="$sock" \
        WATCHDOG_USEC=2000000 NEOPRO_CATCHUP_DELAY=3600 \
        $EMU "$bin" --config /dev/null serve >"$W/$t/serve.log" 2>&1 &
    SERVE_PID=$!
    # It binds a free port itself (LISTEN=…:0) and logs "serving on http://ADDR".
    up=0 port=
    deadline=$((SECONDS + 20))
    while [ $SECONDS -lt $deadline ] && kill -0 "$SERVE_PID" 2>/dev/null; do
        port=$(sed -n 's|.*serving on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$W/$t/serve.log" | head -n 1)
        if [ -n "$port" ] && [ "$(curl -s -m 2 "http://127.0.0.1:$port/healthz")" = ok ]; then up=1; break; fi
        sleep 0.2
    done
    check "GET /healthz answers 200 ok" bash -c "[ $up = 1 ] && [ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/healthz)\" = 200 ]"
    check "GET /api/backups answers JSON" bash -c "curl -sf -D - http://127.0.0.1:$port/api/backups | tee >(cat >&2) | grep -qi '^content-type: application/json'"
    check "POST /api/backups/create makes a backup" bash -c "curl -sf -X POST http://127.0.0.1:$port/api/backups/create | tee >(cat >&2) | grep -q '\"success\":true'"
    sa=$(only_archive "$sout")
    check "GET /api/backups/download/… returns that archive, byte-exact" bash -c "
        [ -n '$sa' ] && curl -sf -o '$W/$t/dl.tar.gz' http://127.0.0.1:$port/api/backups/download/$(basename "$sa") &&
        cmp '$sa' '$W/$t/dl.tar.gz' && '$REF' --config /dev/null verify '$W/$t/dl.tar.gz'"
    # WATCHDOG_USEC=2 s: the daemon pings every second; 10 s at most under emulation.
    deadline=$((SECONDS + 10))
    until grep -q '^WATCHDOG=1' "$W/$t/notify.log" || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
    check "sd_notify: READY=1 then WATCHDOG=1 on NOTIFY_SOCKET" bash -c "grep -q '^READY=1' '$W/$t/notify.log' && grep -q '^WATCHDOG=1' '$W/$t/notify.log'"
    kill -TERM "$SERVE_PID" 2>/dev/null
    stopped=0
    for _ in $(seq 50); do kill -0 "$SERVE_PID" 2>/dev/null || { stopped=1; break; }; sleep 0.2; done
    check "SIGTERM stops it within 10 s" test $stopped = 1
    [ $stopped = 1 ] || kill -KILL "$SERVE_PID" 2>/dev/null
    wait "$SERVE_PID" 2>/dev/null
    SERVE_PID=
    kill "$NPID" 2>/dev/null; wait "$NPID" 2>/dev/null
    check "it told systemd STOPPING=1" grep -q '^STOPPING=1' "$W/$t/notify.log"
done

if [ "$skipped" -gt 0 ]; then echo "test-cross: $pass passed, $fail failed, $skipped skipped"; else echo "test-cross: $pass passed, $fail failed"; fi
[ "$fail" = 0 ]
