#!/bin/bash
# The engine benchmark of `make bench`: `neopro-backup run` against a re-creation of the
# old bash script (bench/old-backup.sh) on the same generated trees, in the same run.
#
#   wall time, 200 videos     median of $REPS runs of each        goal: old/new >= 20x
#   wall time, 20,000 videos  median of $REPS (new), $OLD_REPS_LARGE (old)   goal >= 100x
#   peak RSS of a run         /usr/bin/time -f %M, worst of 3     goal: <= 4 MiB
#   stripped release binary   bytes                               goal: <= 2 MiB
#   bytes written per run     write_bytes of /proc/<pid>/io       goal: <= archive + 16 KiB
#
# Prints a table and writes it to target/bench/engine-results.md. A missed goal is
# reported (exit 0; BENCH_STRICT=1 makes it exit 1); a real error (a run that fails, a
# tool that is missing, an archive that does not hold what it should) exits non-zero.
#
# How it measures:
# - trees come from bench/lib/gentree.py (deterministic; small video files, since the
#   inventory only stats them and INCLUDE_VIDEOS is false) under target/bench/engine/;
# - every measured run gets a fresh BACKUP_DIR holding 10 planted archives 1..10 days
#   old (so both tools' rotation has work to do), after a `sync`, so that it starts from
#   clean pages like a daily run does; old and new runs alternate;
# - bench/lib/runio.py times a run and reads /proc/<pid>/io while the process is a
#   zombie (waitid WNOWAIT), before reaping it; reaped children are included;
# - BACKUP_DIRs live on a journaled ext4 image mounted on a loop device (when root and
#   the tools allow it; BENCH_LOOPFS=0 turns it off), like the ext4 root of a Pi's SD
#   card. On a journaled ext4 the metadata blocks (inode table, bitmaps, directory) go
#   through the journal thread and write_bytes is the process's file data; on an ext4
#   without a journal (this CI's root) they are charged to the process, about 4 pages
#   per run, and on tmpfs nothing is counted at all. The results say which was used.
# - the old script's runs go through /usr/bin/time for their RSS (about 1 ms added to
#   runs of 0.3 s and more); the new binary's RSS is taken in separate runs.
# - everything is warm in the page cache (just generated, one warm-up run each): this
#   measures the work each flow does, not the SD card's read speed.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${BIN:-$ROOT/target/release/neopro-backup}"
OLD="$ROOT/bench/old-backup.sh"
LIB="$ROOT/bench/lib"
WORK="$ROOT/target/bench/engine"
RESULTS="$ROOT/target/bench/engine-results.md"
SMALL="${SMALL:-200}"
LARGE="${LARGE:-20000}"
REPS="${REPS:-5}"
OLD_REPS_LARGE="${OLD_REPS_LARGE:-3}"
# Time budget of this script, seconds: the old script at 20,000 videos takes about a
# minute per run on an idle 2-core machine, several on a loaded one. A further old run
# starts only when it should end within the budget (at least one always runs).
BUDGET_S="${BUDGET_S:-540}"
RSS_REPS=3
GOAL_SPEEDUP_SMALL=20
GOAL_SPEEDUP_LARGE=100
GOAL_RSS_KIB=4096
GOAL_BIN_BYTES=$((2 * 1024 * 1024))
GOAL_WRITE_SLACK=16384

say() { printf '[bench/engine] %s\n' "$*" >&2; }
die() { printf '[bench/engine] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
for t in python3 bash tar gzip find ls du sync awk sort stat; do
    command -v "$t" >/dev/null || die "$t is needed"
done
if [ ! -x /usr/bin/time ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing GNU time (/usr/bin/time)"
        apt-get install -y -qq time >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq time >/dev/null 2>&1; } ||
            die "cannot install the Debian package time"
    else
        die "/usr/bin/time is missing: apt-get install time"
    fi
fi
/usr/bin/time -f %M true 2>&1 >/dev/null | grep -qE '^[0-9]+$' || die "/usr/bin/time is not GNU time"
if [ ! -x "$BIN" ]; then
    say "building the release binary"
    cargo build --release --locked >&2 || die "cargo build --release failed"
fi
BIN=$(realpath "$BIN")

# Keys of the new tool that may leak in from the caller's environment.
unset RETENTION_DAYS INCLUDE_VIDEOS SERVICES BACKUP_TIME LISTEN API_TOKEN \
    S3_ENDPOINT S3_BUCKET S3_REGION S3_PREFIX S3_ACCESS_KEY S3_SECRET_KEY SITE_ID \
    S3_RETENTION_DAYS ENCRYPT_TO ALERT_WEBHOOK PING_URL ON_FAILURE_CMD

# ---------------------------------------------------------------- work area
MNT="$WORK/backupfs"
cleanup() {
    if [ -n "${MOUNTED:-}" ] && mountpoint -q "$MNT" 2>/dev/null; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    fi
    mountpoint -q "$MNT" 2>/dev/null || rm -f "$WORK/backupfs.img" "$WORK/stripped"
    [ -n "${SHM:-}" ] && rm -rf "$SHM"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A mount left by an interrupted run.
if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" || die "cannot unmount $MNT"; fi
rm -rf "$WORK"
mkdir -p "$WORK/trees"
avail_kib=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
[ "$avail_kib" -ge $((1024 * 1024)) ] || die "less than 1 GiB free under $WORK"
printf '' >"$WORK/empty.conf" # --config: never read /etc/neopro/backup.conf

# Where the measured commands' stdout/stderr go: a tmpfs, so it is not counted as disk writes.
SHM=""
for d in /dev/shm /run /tmp; do
    if [ -d "$d" ] && [ -w "$d" ] && [ "$(stat -f -c %T "$d")" = tmpfs ]; then
        SHM=$(mktemp -d -p "$d" neopro-bench.XXXXXX)
        break
    fi
done
OUTLOG="${SHM:+$SHM/out.log}"
OUTLOG="${OUTLOG:-/dev/null}"

fstype() { df -PT "$1" | awk 'NR==2 {print $2}'; }

# The volume holding the BACKUP_DIRs.
VOL="$WORK/backups"
VOL_DESC=""
if [ "${BENCH_LOOPFS:-auto}" != 0 ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null &&
    command -v losetup >/dev/null && losetup -f >/dev/null 2>&1; then
    mkdir -p "$MNT"
    truncate -s 1G "$WORK/backupfs.img"
    if mkfs.ext4 -q -F -b 4096 -L neopro-bench "$WORK/backupfs.img" >/dev/null 2>&1 &&
        mount -o loop "$WORK/backupfs.img" "$MNT" 2>/dev/null; then
        MOUNTED=1
        VOL="$MNT"
        VOL_DESC="journaled ext4 (4 KiB blocks) on a loop device, image in target/bench/engine"
    else
        say "cannot mount a loop ext4 image: BACKUP_DIRs stay on the disk of target/"
    fi
fi
mkdir -p "$VOL"
if [ -z "$VOL_DESC" ]; then
    fs=$(fstype "$VOL")
    dev=$(df -P "$VOL" | awk 'NR==2 {print $1}')
    VOL_DESC="$fs on $dev (target/bench/engine)"
    case "$fs" in
    tmpfs | ramfs) VOL_DESC="$VOL_DESC — tmpfs: write_bytes is not counted, those rows are meaningless" ;;
    esac
fi
say "BACKUP_DIRs on: $VOL_DESC"

# ---------------------------------------------------------------- helpers
# plant DIR: a fresh BACKUP_DIR with 10 archives from 1 to 10 days ago (name and mtime).
plant() {
    mkdir -p "$1"
    local now d t f
    now=$(date +%s)
    for d in 1 2 3 4 5 6 7 8 9 10; do
        t=$((now - d * 86400))
        f="$1/backup-$(date -d "@$t" +%Y%m%d-%H%M%S).tar.gz"
        printf 'planted archive %s\n' "$d" >"$f"
        touch -d "@$t" "$f"
    done
}

# newest DIR: the archive of today's run (the newest name).
newest() {
    local a
    a=$(find "$1" -maxdepth 1 -name 'backup-*.tar.gz' -type f | sort | tail -n 1)
    [ -n "$a" ] || die "no archive in $1"
    printf '%s\n' "$a"
}

# measure [NAME=VALUE...] -- /ABSOLUTE/COMMAND [ARGS...]: runs it with runio, sets
# M_WALL M_RC M_WB M_CWB M_CPU.
measure() {
    local line
    line=$(python3 "$LIB/runio.py" "$OUTLOG" "$@") || die "runio failed on: $*"
    read -r M_WALL M_RC M_WB M_CWB _ M_CPU <<<"$line"
    if [ "$M_RC" != 0 ]; then
        [ -f "$OUTLOG" ] && tail -n 20 "$OUTLOG" >&2
        die "exit code $M_RC from: $*"
    fi
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) exit 1; if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
maxof() { sort -g | tail -n 1; }

# run_new NEOPRO_DIR SITE_CONF BACKUP_DIR [extra env...]
run_new() {
    local n=$1 s=$2 b=$3
    shift 3
    measure NEOPRO_DIR="$n" SITE_CONF="$s" BACKUP_DIR="$b" "$@" -- "$BIN" --config "$WORK/empty.conf" run
}
run_old() {
    local n=$1 s=$2 b=$3
    measure NEOPRO_DIR="$n" SITE_CONF="$s" BACKUP_DIR="$b" -- /usr/bin/time -f %M -o "$SHM/old-rss" \
        "$(command -v bash)" "$OLD"
}

# Sanity: both archives hold an inventory of N videos; the new one verifies.
check_old_archive() { # archive N
    local lines
    lines=$(tar -xzOf "$1" --wildcards '*/videos-inventory.txt' | wc -l)
    [ "$lines" = "$2" ] || die "old archive $1: $lines inventory lines, expected $2"
}
check_new_archive() {
    local lines
    "$BIN" --config "$WORK/empty.conf" verify "$1" >/dev/null 2>&1 || die "neopro-backup verify $1 failed"
    lines=$(tar -xzOf "$1" --wildcards '*/videos-inventory.txt' | grep -vc '^#' || true)
    [ "$lines" = "$2" ] || die "new archive $1: $lines inventory lines, expected $2"
}

declare -A R # results

# bench_size N OLD_REPS
bench_size() {
    local n=$1 old_reps=$2 tree="$WORK/trees/t$1" i
    say "generating a tree with $n videos"
    python3 "$LIB/gentree.py" "$tree" "$n" || die "gentree failed"
    local src="$tree/neopro" site="$tree/site.conf"
    # Warm-up, not measured: page cache, binaries, and the first-read atime updates of
    # the sources (on an ext4 without journal they would be charged to the first run).
    cat "$src/webapp/configuration.json" "$src/sync-agent/.env" "$site" >/dev/null
    run_new "$src" "$site" "$VOL/warm-new-$n"
    [ "$n" -le 2000 ] && run_old "$src" "$site" "$VOL/warm-old-$n"
    rm -rf "$VOL/warm-new-$n" "$VOL/warm-old-$n"

    local oc=() nc=() ow=() nw=() ob=() nb=() ocb=() orss=() oarch=() narch=() nslack=() a b
    local last_old=0
    for ((i = 1; i <= REPS; i++)); do
        if [ "$i" -le "$old_reps" ] && [ "$i" -gt 1 ] &&
            [ "$(awk -v e="$(($(date +%s) - started))" -v l="$last_old" -v b="$BUDGET_S" \
                'BEGIN { print (e + 1.2 * l + 20 > b) ? 1 : 0 }')" = 1 ]; then
            say "$n videos: time budget (${BUDGET_S} s) reached: old script run $((i - 1)) time(s), not $old_reps"
            old_reps=$((i - 1))
        fi
        if [ "$i" -le "$old_reps" ]; then
            b="$VOL/old-$n-$i"
            plant "$b"
            sync
            say "$n videos: old script, run $i/$old_reps"
            run_old "$src" "$site" "$b"
            a=$(newest "$b")
            [ "$i" = 1 ] && check_old_archive "$a" "$n"
            last_old=$M_WALL
            ow+=("$M_WALL") oc+=("$M_CPU") ob+=("$M_WB") ocb+=("$M_CWB") orss+=("$(cat "$SHM/old-rss")")
            oarch+=("$(stat -c %s "$a")")
            rm -rf "$b"
        fi
        b="$VOL/new-$n-$i"
        plant "$b"
        sync
        say "$n videos: neopro-backup run, run $i/$REPS"
        run_new "$src" "$site" "$b"
        a=$(newest "$b")
        [ "$i" = 1 ] && check_new_archive "$a" "$n"
        nw+=("$M_WALL") nc+=("$M_CPU") nb+=("$M_WB")
        narch+=("$(stat -c %s "$a")")
        nslack+=("$((M_WB - $(stat -c %s "$a")))")
        rm -rf "$b"
    done
    R[$n.old_reps]=$old_reps
    R[$n.old_wall]=$(printf '%s\n' "${ow[@]}" | median)
    R[$n.new_wall]=$(printf '%s\n' "${nw[@]}" | median)
    R[$n.old_wb]=$(printf '%s\n' "${ob[@]}" | maxof)
    R[$n.old_cwb]=$(printf '%s\n' "${ocb[@]}" | maxof)
    R[$n.new_wb]=$(printf '%s\n' "${nb[@]}" | maxof)
    R[$n.new_slack]=$(printf '%s\n' "${nslack[@]}" | maxof)
    R[$n.old_arch]=$(printf '%s\n' "${oarch[@]}" | maxof)
    R[$n.new_arch]=$(printf '%s\n' "${narch[@]}" | maxof)
    R[$n.old_rss]=$(printf '%s\n' "${orss[@]}" | maxof)
    R[$n.old_cpu]=$(printf '%s\n' "${oc[@]}" | median)
    R[$n.new_cpu]=$(printf '%s\n' "${nc[@]}" | median)
    R[$n.new_wbs]="${nb[*]}"
    R[$n.new_archs]="${narch[*]}"
    R[$n.old_walls]="${ow[*]}"
    R[$n.new_walls]="${nw[*]}"

    # Engine alone: the same run without systemctl on PATH (service states "unknown").
    local ew=()
    for ((i = 1; i <= REPS; i++)); do
        b="$VOL/eng-$n-$i"
        plant "$b"
        sync
        run_new "$src" "$site" "$b" PATH=/nonexistent
        ew+=("$M_WALL")
        rm -rf "$b"
    done
    R[$n.eng_wall]=$(printf '%s\n' "${ew[@]}" | median)

    # Peak RSS of the new binary: /usr/bin/time -f %M, worst of RSS_REPS; as is (with its
    # `systemctl is-active` child, which %M includes) and without systemctl on PATH.
    local rs=() re=()
    for ((i = 1; i <= RSS_REPS; i++)); do
        b="$VOL/rss-$n-$i"
        plant "$b"
        env NEOPRO_DIR="$src" SITE_CONF="$site" BACKUP_DIR="$b" \
            /usr/bin/time -f %M -o "$SHM/rss" "$BIN" --config "$WORK/empty.conf" run >/dev/null 2>&1 ||
            die "neopro-backup run failed (RSS run)"
        rs+=("$(cat "$SHM/rss")")
        rm -rf "$b"
        plant "$b"
        env NEOPRO_DIR="$src" SITE_CONF="$site" BACKUP_DIR="$b" PATH=/nonexistent \
            /usr/bin/time -f %M -o "$SHM/rss" "$BIN" --config "$WORK/empty.conf" run >/dev/null 2>&1 ||
            die "neopro-backup run failed (RSS run)"
        re+=("$(cat "$SHM/rss")")
        rm -rf "$b"
    done
    R[$n.new_rss]=$(printf '%s\n' "${rs[@]}" | maxof)
    R[$n.eng_rss]=$(printf '%s\n' "${re[@]}" | maxof)
    rm -rf "$tree"
}

[ -n "$SHM" ] || die "no writable tmpfs (/dev/shm, /run, /tmp) for the runs' output"
started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
bench_size "$SMALL" "$REPS"
bench_size "$LARGE" "$OLD_REPS_LARGE"

# Binary size: the release binary, stripped (the profile strips it; strip again to be sure).
BIN_BYTES=$(stat -c %s "$BIN")
if command -v strip >/dev/null; then
    strip -o "$WORK/stripped" "$BIN" 2>/dev/null && BIN_BYTES=$(stat -c %s "$WORK/stripped")
fi

# ---------------------------------------------------------------- the table
f_time() { awk -v s="$1" 'BEGIN { if (s >= 1) printf "%.2f s", s; else printf "%.1f ms", s * 1000 }'; }
f_kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
f_mib_k() { awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "—"; else if (a / b < 10) printf "%.1f×", a / b; else printf "%.0f×", a / b }'; }
verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; } # $1: 1 when met
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? 1 : 0 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? 1 : 0 }'; }

rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }
for n in "$SMALL" "$LARGE"; do
    nf=$(printf "%'d" "$n" 2>/dev/null || echo "$n")
    oreps=${R[$n.old_reps]}
    sp=$(awk -v a="${R[$n.old_wall]}" -v b="${R[$n.new_wall]}" 'BEGIN { print a / b }')
    if [ "$n" = "$SMALL" ]; then g=$GOAL_SPEEDUP_SMALL; else g=$GOAL_SPEEDUP_LARGE; fi
    row "wall time, $nf videos (median; old ×$oreps, new ×$REPS)" "$(f_time "${R[$n.old_wall]}")" \
        "$(f_time "${R[$n.new_wall]}")" "$(ratio "${R[$n.old_wall]}" "${R[$n.new_wall]}")" "≥ ${g}×" \
        "$(verdict "$(ge "$sp" "$g")")"
    row "↳ CPU time, user + system (median)" "$(f_time "${R[$n.old_cpu]}")" "$(f_time "${R[$n.new_cpu]}")" \
        "$(ratio "${R[$n.old_cpu]}" "${R[$n.new_cpu]}")" "" "info"
    row "↳ wall, new without systemctl on PATH (engine alone)" "" "$(f_time "${R[$n.eng_wall]}")" \
        "$(ratio "${R[$n.old_wall]}" "${R[$n.eng_wall]}")" "" "info"
done
for n in "$SMALL" "$LARGE"; do
    nf=$(printf "%'d" "$n" 2>/dev/null || echo "$n")
    old_rss=${R[$n.old_rss]}
    row "peak RSS of a run, $nf videos (%M, worst of $RSS_REPS)" "$(f_mib_k "$old_rss")" \
        "$(f_mib_k "${R[$n.new_rss]}")" "$(ratio "$old_rss" "${R[$n.new_rss]}")" "≤ 4 MiB" \
        "$(verdict "$(le "${R[$n.new_rss]}" "$GOAL_RSS_KIB")")"
    row "↳ the engine process alone (no systemctl child)" "" "$(f_mib_k "${R[$n.eng_rss]}")" "" "≤ 4 MiB" \
        "$(verdict "$(le "${R[$n.eng_rss]}" "$GOAL_RSS_KIB")")"
done
row "stripped release binary" "—" "$(f_kib "$BIN_BYTES")" "" "≤ 2 MiB" "$(verdict "$(le "$BIN_BYTES" "$GOAL_BIN_BYTES")")"
for n in "$SMALL" "$LARGE"; do
    nf=$(printf "%'d" "$n" 2>/dev/null || echo "$n")
    row "bytes written per run, $nf videos (write_bytes, worst run)" "$(f_kib "${R[$n.old_wb]}")" \
        "$(f_kib "${R[$n.new_wb]}")" "$(ratio "${R[$n.old_wb]}" "${R[$n.new_wb]}")" \
        "≤ archive + 16 KiB" "$(verdict "$(le "${R[$n.new_slack]}" "$GOAL_WRITE_SLACK")")"
    row "↳ archive size / new: written beyond its archive (worst run)" "$(f_kib "${R[$n.old_arch]}")" \
        "$(f_kib "${R[$n.new_arch]}") / +$(f_kib "${R[$n.new_slack]}")" "" "≤ +16 KiB" "info"
done

fails=$(printf '%s\n' "${rows[@]}" | grep -c '| FAIL |$' || true)
elapsed=$(($(date +%s) - started))
{
    echo "# Engine benchmark: neopro-backup run vs the old bash script"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), \
$(nproc) CPU(s) ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || uname -m)), \
Linux $(uname -r); BACKUP_DIRs on $VOL_DESC; sources and trees on $(fstype "$WORK/trees") under target/bench; \
warm page cache; load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; \
benchmark took ${elapsed} s."
    echo
    echo "| metric | old script | neopro-backup | old/new | goal | result |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "- Wall times of every run, seconds — $SMALL videos: old ${R[$SMALL.old_walls]}; new ${R[$SMALL.new_walls]}."
    echo "  $LARGE videos: old ${R[$LARGE.old_walls]}; new ${R[$LARGE.new_walls]}."
    echo "- Bytes written by each new run / its archive, bytes — $SMALL videos: ${R[$SMALL.new_wbs]} / ${R[$SMALL.new_archs]};"
    echo "  $LARGE videos: ${R[$LARGE.new_wbs]} / ${R[$LARGE.new_archs]}. write_bytes counts whole 4 KiB pages: the"
    echo "  archive's pages, one page of last-backup-status.json and one of backup.log."
    echo "- Old RSS is the largest process of the script (%M of its tree: bash, tar, gzip, ls …)."
    echo "  New RSS, first line: %M of \`neopro-backup run\`, which includes its \`systemctl is-active\`"
    echo "  child; second line: the same run with systemctl off PATH (states \`unknown\`), i.e. the engine alone."
    echo "- Old bytes written include its staging copies; of those, ${R[$SMALL.old_cwb]} B ($SMALL) and"
    echo "  ${R[$LARGE.old_cwb]} B ($LARGE) were dropped before write-back (cancelled_write_bytes) because"
    echo "  the staging folder was deleted within seconds."
    echo "- Old script: bench/old-backup.sh (the old auto-backup.sh flow: cp into a staging folder,"
    echo "  \`find -exec ls -lh {} \\;\`, system info, \`tar czf\`, \`find -mtime +7 -delete\`)."
} >"$RESULTS"
cat "$RESULTS"
say "results written to ${RESULTS#"$ROOT"/}; $fails goal(s) missed"
if [ "$fails" -gt 0 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then exit 1; fi
exit 0
