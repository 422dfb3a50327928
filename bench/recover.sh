#!/bin/bash
# The recovery benchmark of `make bench` (docs/format.md, Recovery):
#
# A site with VIDEOS videos of VIDEO_MIB MiB each (incompressible; default 5 of 48 MiB)
# sends its backup and videos to SeaweedFS; a blank tree then runs `neopro-backup
# recover`. Against the same server, in the same run, curl fetches the same objects (the
# archive and every video, signed with --aws-sigv4) one after the other: the floor of
# any recovery that reads them.
#                    goals: recover wall <= 3x curl's; peak RSS <= 16 MiB
#
# Best of REPS (default 3) for both, interleaved. Prints the table and writes
# target/bench/recover-results.md. A missed goal is reported (exit 0; BENCH_STRICT=1
# makes it exit 1); a real error exits non-zero.
#
# Needs: curl (7.75 or later, for --aws-sigv4), python3, sha256sum, /usr/bin/time, and
# SeaweedFS (scripts/seaweedfs.sh installs it into .xtools/ and starts it on free ports).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${BIN:-$ROOT/target/release/neopro-backup}"
WORK="$ROOT/target/bench/recover"
RESULTS="$ROOT/target/bench/recover-results.md"
VIDEOS="${VIDEOS:-5}"
VIDEO_MIB="${VIDEO_MIB:-48}"
REPS="${REPS:-3}"
GOAL_RATIO=3
GOAL_RSS_KIB=$((16 * 1024))
ACCESS_KEY=NEOPROTESTKEY
SECRET_KEY=neopro-test-secret-0123456789
BUCKET=neopro-test

say() { printf '[bench/recover] %s\n' "$*" >&2; }
die() { printf '[bench/recover] ERROR: %s\n' "$*" >&2; exit 1; }
for tool in curl python3 sha256sum /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -x "$BIN" ] || die "$BIN is missing: cargo build --release first"

rm -rf "$WORK"
mkdir -p "$WORK" "$(dirname "$RESULTS")"
started_weed=0
cleanup() {
    [ "$started_weed" = 0 ] || bash scripts/seaweedfs.sh stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# A server already started by scripts/seaweedfs.sh (make test-offsite, a developer) is
# used as it is; else one is started, and stopped at the end.
if [ -f target/seaweedfs/env ] && (set -a; . target/seaweedfs/env; curl -s -o /dev/null --max-time 2 "$NEOPRO_TEST_S3/"); then
    say "using the SeaweedFS of target/seaweedfs/env"
else
    bash scripts/seaweedfs.sh start >/dev/null
    started_weed=1
fi
set -a; . target/seaweedfs/env; set +a
curl -s -o /dev/null -X POST "$NEOPRO_TEST_FILER/buckets/$BUCKET/" || die "cannot create the bucket"
PREFIX="bench-recover-$$"

# --- the site ---------------------------------------------------------------------------
SRC="$WORK/site"
mkdir -p "$SRC/neopro/webapp" "$SRC/neopro/sync-agent" "$SRC/neopro/videos/club" "$SRC/etc"
printf '{"club":"bench"}\n' >"$SRC/neopro/webapp/configuration.json"
printf 'TOKEN=bench\n' >"$SRC/neopro/sync-agent/.env"
printf 'SITE_ID=bench\n' >"$SRC/etc/site.conf"
say "generating $VIDEOS videos of $VIDEO_MIB MiB"
for i in $(seq 1 "$VIDEOS"); do
    head -c $((VIDEO_MIB * 1024 * 1024)) /dev/urandom >"$SRC/neopro/videos/club/clip-$i.mp4"
done
s3=(S3_ENDPOINT="$NEOPRO_TEST_S3" S3_BUCKET=$BUCKET S3_ACCESS_KEY=$ACCESS_KEY
    S3_SECRET_KEY=$SECRET_KEY S3_PREFIX="$PREFIX" SITE_ID=bench VIDEOS_OFFSITE=true)
env -i PATH=/usr/bin:/bin TZ=UTC "${s3[@]}" NEOPRO_DIR="$SRC/neopro" SITE_CONF="$SRC/etc/site.conf" \
    BACKUP_DIR="$SRC/bk" "$BIN" --config /dev/null run >"$WORK/site.out" 2>&1 \
    || { cat "$WORK/site.out" >&2; die "the site's backup failed"; }
grep -q 'offsite: 1 copy(ies) sent' "$WORK/site.out" || { cat "$WORK/site.out" >&2; die "nothing sent"; }
ARCHIVE=$(cd "$SRC/bk" && ls backup-*.tar.gz | tail -n 1)
KEYS=("$PREFIX/bench/$ARCHIVE")
for f in "$SRC"/neopro/videos/club/*; do
    h=$(sha256sum "$f" | cut -d' ' -f1)
    KEYS+=("$PREFIX/videos/sha256/${h:0:2}/$h")
done
TOTAL=$(( $(stat -c %s "$SRC/bk/$ARCHIVE") + VIDEOS * VIDEO_MIB * 1024 * 1024 ))

# --- one recovery, one curl pass ----------------------------------------------------------
recover_once() {
    rm -rf "$WORK/blank"
    mkdir -p "$WORK/blank"
    /usr/bin/time -f '%e %M' -o "$WORK/time" env -i PATH=/usr/bin:/bin TZ=UTC "${s3[@]}" \
        NEOPRO_DIR="$WORK/blank/neopro" SITE_CONF="$WORK/blank/etc/site.conf" \
        BACKUP_DIR="$WORK/blank/bk" "$BIN" --config /dev/null recover >"$WORK/out" 2>&1 \
        || { tail -20 "$WORK/out" >&2; die "recover failed"; }
    for f in "$SRC"/neopro/videos/club/*; do
        cmp -s "$f" "$WORK/blank/neopro/videos/club/${f##*/}" || die "recover: ${f##*/} differs"
    done
    cat "$WORK/time"
}
curl_once() {
    rm -rf "$WORK/curl"
    mkdir -p "$WORK/curl"
    local t0 t1 i=0
    t0=$(date +%s.%N)
    for k in "${KEYS[@]}"; do
        i=$((i + 1))
        curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
            -o "$WORK/curl/$i" "$NEOPRO_TEST_S3/$BUCKET/$k" || die "curl $k failed"
    done
    t1=$(date +%s.%N)
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$t1"
}

best_r=999999 best_rss=0 best_c=999999
for rep in $(seq 1 "$REPS"); do
    read -r t rss < <(recover_once)
    c=$(curl_once)
    say "rep $rep: recover ${t}s (${rss} KiB peak), curl ${c}s"
    best_r=$(python3 -c "print(min($best_r, $t))")
    best_c=$(python3 -c "print(min($best_c, $c))")
    [ "$rss" -gt "$best_rss" ] && best_rss=$rss
done
ratio=$(python3 -c "print(f'{$best_r / max($best_c, 0.001):.2f}')")
mib=$(python3 -c "print(f'{$TOTAL / 1048576:.0f}')")
load=$(cut -d' ' -f1-3 /proc/loadavg)
ok_ratio=$(python3 -c "print('yes' if $ratio <= $GOAL_RATIO else 'NO')")
ok_rss=$([ "$best_rss" -le "$GOAL_RSS_KIB" ] && echo yes || echo NO)
{
    echo "# Recovery from the bucket ($VIDEOS videos of $VIDEO_MIB MiB + the archive: $mib MiB; best of $REPS; load $load)"
    echo
    echo "| | wall (s) | peak RSS (KiB) | goal | met |"
    echo "|---|---|---|---|---|"
    echo "| neopro-backup recover | $best_r | $best_rss (highest of the runs) | <= 16 MiB | $ok_rss |"
    echo "| curl, the same objects one after the other | $best_c | - | | |"
    echo "| ratio recover / curl | $ratio | | <= $GOAL_RATIO | $ok_ratio |"
} | tee "$RESULTS"
if [ "$ok_ratio" != yes ] || [ "$ok_rss" != yes ]; then
    say "a goal was missed"
    [ "${BENCH_STRICT:-0}" = 1 ] && exit 1
fi
exit 0
