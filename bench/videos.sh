#!/bin/bash
# The videos benchmark of `make bench` (docs/format.md, Videos offsite):
#
# 1. Offsite: the same video set (VIDEOS_GIB GiB of incompressible files, default 2) sent
#    by `neopro-backup run` with VIDEOS_OFFSITE and by restic to the same SeaweedFS, in
#    one run: first run, second run (nothing new), peak RSS, bytes sent (counted by a
#    TCP forwarder in front of the server), and the video files the second night opens
#    (strace; goal 0: no video byte read).          goals: second night < 200 KiB sent
# 2. 20,000 small videos, first and second night: peak RSS.          goal: <= 8 MiB
# 3. INCLUDE_VIDEOS against `tar cf` (and `tar czf`) on the same files, best of REPS:
#    the first night (hashes computed on the way) and the next ones (hash cache).
#                               goal: every night >= 0.8x tar cf (wall), the first too
#
# Prints the tables and writes target/bench/videos-results.md. A missed goal is reported
# (exit 0; BENCH_STRICT=1 makes it exit 1); a real error exits non-zero.
#
# Needs: restic, strace, GNU tar, gzip, python3, curl, and SeaweedFS (scripts/seaweedfs.sh
# install puts it into .xtools/). The server runs on free loopback ports, its own.
# Timings are wall-clock on a shared machine: the load average is printed with them.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${BIN:-$ROOT/target/release/neopro-backup}"
WORK="$ROOT/target/bench/videos"
RESULTS="$ROOT/target/bench/videos-results.md"
VIDEOS_GIB="${VIDEOS_GIB:-2}"
FILE_MIB="${FILE_MIB:-64}"
REPS="${REPS:-3}"
SMALL_VIDEOS="${SMALL_VIDEOS:-20000}"
RUN_TAR_CZF="${RUN_TAR_CZF:-1}"
# Which parts run (all by default): offsite small local.
PARTS="${PARTS:-offsite small local}"
part() { [[ " $PARTS " == *" $1 "* ]]; }
GOAL_SECOND_BYTES=$((200 * 1024))
GOAL_RSS_KIB=8192
GOAL_SPEED=0.8
ACCESS_KEY=NEOPROBENCHKEY
SECRET_KEY=neopro-bench-secret-0123456789
BUCKET=neopro-bench

say() { printf '[bench/videos] %s\n' "$*" >&2; }
die() { printf '[bench/videos] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in restic strace tar gzip python3 curl /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y ${tool##*/})"
done
[ -x "$BIN" ] || die "$BIN is missing: cargo build --release first"
bash scripts/seaweedfs.sh install
WEED="$ROOT/.xtools/seaweedfs-venv/bin/weed"

rm -rf "$WORK"
mkdir -p "$WORK" "$(dirname "$RESULTS")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK/weed" "$WORK/src" "$WORK/small" "$WORK/bk"* "$WORK/out" "$WORK/restic-cache"
}
trap cleanup EXIT

# --- SeaweedFS on free ports (each service's port and its gRPC port, +10000) ---------
BASE=$(python3 - <<'EOF'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(500):
    b = random.randrange(20000, 29000, 10)
    if all(free(b + i) and free(b + i + 10000) for i in range(8)):
        print(b); break
EOF
)
[ -n "$BASE" ] || die "no free port range for SeaweedFS"
S3_PORT=$BASE; PROXY_PORT=$((BASE + 7))
mkdir -p "$WORK/weed/data"
cat >"$WORK/weed/identities.json" <<EOF
{"identities": [{"name": "bench", "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
setsid "$WEED" mini -dir="$WORK/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.config="$WORK/weed/identities.json" -admin.ui=false -webdav=false \
    -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    -s3.port=$S3_PORT -filer.port=$((BASE + 1)) -master.port=$((BASE + 2)) \
    -volume.port=$((BASE + 3)) -admin.port=$((BASE + 4)) -debug.port=$((BASE + 5)) \
    -s3.debug.port=$((BASE + 6)) >"$WORK/weed/weed.log" 2>&1 </dev/null &
PIDS+=($!)
for _ in $(seq 1 240); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$S3_PORT/" || true)" = 403 ] && break
    sleep 0.5
done
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$S3_PORT/" || true)" = 403 ] \
    || { tail -20 "$WORK/weed/weed.log" >&2; die "SeaweedFS did not start"; }
python3 bench/lib/countproxy.py "$PROXY_PORT" 127.0.0.1 "$S3_PORT" "$WORK/counts" 2>"$WORK/proxy.log" &
PIDS+=($!)
for _ in $(seq 1 50); do [ -s "$WORK/counts" ] && break; sleep 0.1; done
say "SeaweedFS on 127.0.0.1:$S3_PORT, counted through 127.0.0.1:$PROXY_PORT"
sent_bytes() { cut -d' ' -f1 "$WORK/counts"; }

# --- The video set --------------------------------------------------------------------
SRC="$WORK/src"
mkdir -p "$SRC/neopro/webapp" "$SRC/neopro/sync-agent" "$SRC/neopro/videos/sponsors" "$SRC/neopro/videos/club"
printf '{"club":"bench"}\n' >"$SRC/neopro/webapp/configuration.json"
printf 'TOKEN=bench\n' >"$SRC/neopro/sync-agent/.env"
printf 'SITE_ID=bench\n' >"$SRC/site.conf"
NFILES=$((VIDEOS_GIB * 1024 / FILE_MIB))
say "generating $VIDEOS_GIB GiB of incompressible videos ($NFILES files of $FILE_MIB MiB)"
for i in $(seq 1 "$NFILES"); do
    d=sponsors; [ $((i % 4)) = 0 ] && d=club
    head -c $((FILE_MIB * 1024 * 1024)) /dev/urandom >"$SRC/neopro/videos/$d/clip-$i.mp4"
done
TOTAL=$(du -sb "$SRC/neopro/videos" | cut -f1)
warm() { cat "$SRC"/neopro/videos/*/* >/dev/null; }

# One measured command: "wall_s rss_kib" in $WORK/time; its output in $WORK/out.
measure() {
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>&1 || {
        tail -20 "$WORK/out" >&2
        die "failed: $*"
    }
}

ours_env=(env -i PATH=/usr/bin:/bin TZ=UTC NEOPRO_DIR="$SRC/neopro" SITE_CONF="$SRC/site.conf"
    S3_ENDPOINT="http://127.0.0.1:$PROXY_PORT" S3_BUCKET=$BUCKET S3_ACCESS_KEY=$ACCESS_KEY
    S3_SECRET_KEY=$SECRET_KEY S3_PREFIX=neopro SITE_ID=bench VIDEOS_OFFSITE=true)
# The bucket (a folder of the filer).
curl -s -o /dev/null -X POST "http://127.0.0.1:$((BASE + 1))/buckets/$BUCKET/" || die "cannot create the bucket"

# --- 1. Offsite: ours -----------------------------------------------------------------
O1_T=- O1_RSS=0 O2_T=- O2_RSS=0 O1_B=0 O2_B=0 O3_OPENED=0 R1_T=- R1_RSS=- R2_T=- R2_RSS=- R1_B=0 R2_B=0 RESTIC_V=-
S1_T=- S1_RSS=0 S2_T=- S2_RSS=0
if part offsite; then
warm
say "neopro-backup, first run"
b0=$(sent_bytes)
measure "${ours_env[@]}" BACKUP_DIR="$WORK/bk" "$BIN" --config /dev/null run
read -r O1_T O1_RSS <"$WORK/time"
b1=$(sent_bytes); O1_B=$((b1 - b0))
say "neopro-backup, second run"
sleep 1
measure "${ours_env[@]}" BACKUP_DIR="$WORK/bk" "$BIN" --config /dev/null run
read -r O2_T O2_RSS <"$WORK/time"
b2=$(sent_bytes); O2_B=$((b2 - b1))
# A third night under strace: which files it opens (none of the videos, goal).
sleep 1
strace -f -qq -e trace=open,openat -o "$WORK/strace" "${ours_env[@]}" BACKUP_DIR="$WORK/bk" \
    "$BIN" --config /dev/null run >"$WORK/out" 2>&1 || die "third run failed"
O3_OPENED=$(grep -cE 'open(at)?\(.*\.mp4"' "$WORK/strace" || true)
grep -q "offsite: 1 copy(ies) sent" "$WORK/out" || die "the third run sent no archive"

# --- 1. Offsite: restic ---------------------------------------------------------------
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$WORK/restic-cache"
export AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY
REPO="s3:http://127.0.0.1:$PROXY_PORT/$BUCKET/restic"
restic -r "$REPO" init >"$WORK/out" 2>&1 || { cat "$WORK/out" >&2; die "restic init"; }
warm
say "restic, first run"
b0=$(sent_bytes)
measure restic -r "$REPO" backup "$SRC/neopro"
read -r R1_T R1_RSS <"$WORK/time"
b1=$(sent_bytes); R1_B=$((b1 - b0))
say "restic, second run"
measure restic -r "$REPO" backup "$SRC/neopro"
read -r R2_T R2_RSS <"$WORK/time"
b2=$(sent_bytes); R2_B=$((b2 - b1))
RESTIC_V=$(restic version | cut -d' ' -f2)
fi

# --- 2. 20,000 small videos: peak RSS -------------------------------------------------
if part small; then
say "$SMALL_VIDEOS small videos, two nights"
python3 - "$WORK/small" "$SMALL_VIDEOS" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(root, "neopro", "webapp"), exist_ok=True)
open(os.path.join(root, "neopro", "webapp", "configuration.json"), "w").write("{}\n")
for i in range(n):
    d = os.path.join(root, "neopro", "videos", "sponsor-%03d" % (i // 200))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "clip-%05d-sponsor-spot.mp4" % i), "wb") as f:
        f.write(os.urandom(256))
EOF
small_env=("${ours_env[@]}" NEOPRO_DIR="$WORK/small/neopro" SITE_ID=small BACKUP_DIR="$WORK/bk-small")
measure "${small_env[@]}" "$BIN" --config /dev/null run
read -r S1_T S1_RSS <"$WORK/time"
sleep 1
measure "${small_env[@]}" "$BIN" --config /dev/null run
read -r S2_T S2_RSS <"$WORK/time"
rm -rf "$WORK/small" "$WORK/bk-small"
fi

# --- 3. INCLUDE_VIDEOS against tar ----------------------------------------------------
TAR_T=1 TAR_C=1 TARS_T=1 TARS_C=1 I1_T=1 I1_C=1 I2_T=1 I2_C=1 ARCH_B=0 TARZ_T=skipped
if part local; then
local_env=(env -i PATH=/usr/bin:/bin TZ=UTC NEOPRO_DIR="$SRC/neopro" SITE_CONF="$SRC/site.conf"
    INCLUDE_VIDEOS=true RETENTION_DAYS=1)
# Each run appends "wall cpu" (cpu: user + system seconds) to a file; the best wall
# and the best cpu of the runs are reported.
best_wall() { cut -d' ' -f1 "$1" | sort -n | head -1; }
best_cpu() { cut -d' ' -f2 "$1" | sort -n | head -1; }
timed() { # $1: results file; the rest: the command
    local out=$1
    shift
    /usr/bin/time -f '%e %U %S' -o "$WORK/time" "$@" >"$WORK/out" 2>&1 || {
        tail -20 "$WORK/out" >&2
        die "failed: $*"
    }
    python3 -c "import sys; e,u,s=open(sys.argv[1]).read().split()[:3]; print(e, f'{float(u)+float(s):.2f}')" \
        "$WORK/time" >>"$out"
}
mkdir -p "$WORK/tar"
run_tar() { # $1: c or cz; $2: 1 to fsync the result; $3: results file
    rm -f "$WORK/tar/x.tar"
    warm
    timed "$3" sh -c "tar $1f '$WORK/tar/x.tar' -C '$SRC' neopro && { [ $2 = 0 ] || sync '$WORK/tar/x.tar'; }"
}
: >"$WORK/tc"; : >"$WORK/tcs"; : >"$WORK/tcz"; : >"$WORK/t1"; : >"$WORK/t2"
say "tar cf, and tar cf then fsync, best of $REPS"
for _ in $(seq 1 "$REPS"); do run_tar c 0 "$WORK/tc"; run_tar c 1 "$WORK/tcs"; done
TAR_T=$(best_wall "$WORK/tc"); TAR_C=$(best_cpu "$WORK/tc")
TARS_T=$(best_wall "$WORK/tcs"); TARS_C=$(best_cpu "$WORK/tcs")
rm -f "$WORK/tar/x.tar"
ours_local() { # a fresh BACKUP_DIR when $1 = fresh (no hash cache); results to $2
    if [ "$1" = fresh ]; then rm -rf "$WORK/bk-local"; fi
    rm -f "$WORK"/bk-local/backup-*.tar.gz
    warm
    timed "$2" "${local_env[@]}" BACKUP_DIR="$WORK/bk-local" "$BIN" --config /dev/null run
}
say "INCLUDE_VIDEOS, first night (no hash cache), best of $REPS"
for _ in $(seq 1 "$REPS"); do ours_local fresh "$WORK/t1"; done
I1_T=$(best_wall "$WORK/t1"); I1_C=$(best_cpu "$WORK/t1")
say "INCLUDE_VIDEOS, next nights (hash cache), best of $REPS"
for _ in $(seq 1 "$REPS"); do ours_local warm "$WORK/t2"; done
I2_T=$(best_wall "$WORK/t2"); I2_C=$(best_cpu "$WORK/t2")
ARCH=$(ls "$WORK"/bk-local/backup-*.tar.gz | tail -1)
gzip -t "$ARCH" || die "gzip -t refuses the INCLUDE_VIDEOS archive"
tar -tzf "$ARCH" >/dev/null || die "GNU tar refuses the INCLUDE_VIDEOS archive"
"$BIN" --config /dev/null verify "$ARCH" >/dev/null || die "verify refuses the INCLUDE_VIDEOS archive"
ARCH_B=$(stat -c %s "$ARCH")
rm -rf "$WORK/bk-local"
TARZ_T=skipped
if [ "$RUN_TAR_CZF" = 1 ]; then
    say "tar czf, once"
    run_tar cz 0 "$WORK/tcz"
    TARZ_T=$(best_wall "$WORK/tcz"); TARZ_C=$(best_cpu "$WORK/tcz")
fi
rm -rf "$WORK/tar"
fi
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# --- The tables -----------------------------------------------------------------------
human() { numfmt --to=iec-i --suffix=B "$1"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
missed=()
[ "$O2_B" -lt "$GOAL_SECOND_BYTES" ] || missed+=("second night sent $O2_B bytes (goal < $GOAL_SECOND_BYTES)")
[ "$O3_OPENED" = 0 ] || missed+=("the second night opened $O3_OPENED video file(s) (goal 0)")
for r in "$O1_RSS" "$O2_RSS" "$S1_RSS" "$S2_RSS"; do
    [ "$r" -le "$GOAL_RSS_KIB" ] || missed+=("peak RSS $r KiB (goal <= $GOAL_RSS_KIB KiB)")
done
SPEED=$(ratio "$TAR_T" "$I2_T")
SPEED_SYNC=$(ratio "$TARS_T" "$I2_T")
python3 -c "import sys; sys.exit(0 if $SPEED >= $GOAL_SPEED else 1)" \
    || missed+=("INCLUDE_VIDEOS at ${SPEED}x tar cf's wall time (goal >= ${GOAL_SPEED}x; ${SPEED_SYNC}x tar cf + fsync, which it does)")
SPEED1=$(ratio "$TAR_T" "$I1_T")
python3 -c "import sys; sys.exit(0 if $SPEED1 >= $GOAL_SPEED else 1)" \
    || missed+=("INCLUDE_VIDEOS, first night, at ${SPEED1}x tar cf's wall time (goal >= ${GOAL_SPEED}x)")

{
    echo "## Videos offsite: $(human "$TOTAL") of incompressible videos ($NFILES files), SeaweedFS on loopback"
    echo
    echo "| | neopro-backup | restic $RESTIC_V |"
    echo "|---|---|---|"
    echo "| first run, wall | ${O1_T} s | ${R1_T} s |"
    echo "| second run (nothing new), wall | ${O2_T} s | ${R2_T} s |"
    echo "| peak RSS, first / second run | ${O1_RSS} / ${O2_RSS} KiB | ${R1_RSS} / ${R2_RSS} KiB |"
    echo "| bytes sent, first run | $(human "$O1_B") | $(human "$R1_B") |"
    echo "| bytes sent, second run | $(human "$O2_B") | $(human "$R2_B") |"
    echo "| video files opened by a night with nothing new | $O3_OPENED | - |"
    echo
    echo "## $SMALL_VIDEOS small videos (VIDEOS_OFFSITE)"
    echo
    echo "| night | wall | peak RSS |"
    echo "|---|---|---|"
    echo "| first (every video hashed and sent) | ${S1_T} s | ${S1_RSS} KiB |"
    echo "| second (nothing new) | ${S2_T} s | ${S2_RSS} KiB |"
    echo
    echo "## INCLUDE_VIDEOS against tar, the same $(human "$TOTAL"), best of $REPS (archive $(human "$ARCH_B"))"
    echo
    echo "| | wall | speed vs tar cf (wall) | vs tar cf + fsync (wall) | cpu (user+sys) | speed vs tar cf (cpu) |"
    echo "|---|---|---|---|---|---|"
    echo "| tar cf | ${TAR_T} s | 1.00 | | ${TAR_C} s | 1.00 |"
    echo "| tar cf, then fsync of the archive | ${TARS_T} s | $(ratio "$TAR_T" "$TARS_T") | 1.00 | ${TARS_C} s | $(ratio "$TAR_C" "$TARS_C") |"
    echo "| neopro-backup run, first night (SHA-256 computed on the way) | ${I1_T} s | $(ratio "$TAR_T" "$I1_T") | $(ratio "$TARS_T" "$I1_T") | ${I1_C} s | $(ratio "$TAR_C" "$I1_C") |"
    echo "| neopro-backup run, next nights (hash cache) | ${I2_T} s | ${SPEED} | ${SPEED_SYNC} | ${I2_C} s | $(ratio "$TAR_C" "$I2_C") |"
    if [ "$TARZ_T" != skipped ]; then
        echo "| tar czf | ${TARZ_T} s | $(ratio "$TAR_T" "$TARZ_T") | | ${TARZ_C} s | $(ratio "$TAR_C" "$TARZ_C") |"
    fi
    echo
    echo "neopro-backup fsyncs its archive (tar does not); load average at the end: $LOAD."
    if [ ${#missed[@]} -gt 0 ]; then
        echo
        for m in "${missed[@]}"; do echo "- MISSED: $m"; done
    fi
} | tee "$RESULTS"

if [ ${#missed[@]} -gt 0 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
    exit 1
fi
