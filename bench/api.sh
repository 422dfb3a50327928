#!/bin/bash
# The API benchmark of `make bench`: `neopro-backup serve` against a re-creation of the
# old Node/Express admin server's backups routes (bench/node/old-admin-server.js), on the
# same BACKUP_DIRs, in the same run, on loopback.
#
#   idle RSS (after one request)              VmRSS                    goal <= 3 MiB
#   GET /api/backups, 7 archives              wrk -t2 -c16 -d10s       goal >= 7,500 req/s, p99 <= 50 ms
#   GET /api/backups, 1,000 archives          wrk -t2 -c16 -d10s       goal >= 1,000 req/s, p99 <= 50 ms
#   peak RSS under wrk -t2 -c64 -d10s         VmRSS sampled each 50 ms goal <= 16 MiB
#   open fds before and after all the load    /proc/PID/fd             goal: no leak
#
# Prints a table and writes it to target/bench/api-results.md. A missed goal is reported
# (exit 0; BENCH_STRICT=1 makes it exit 1); a real error (a server that does not start,
# a wrong answer, wrk reporting errors) exits non-zero.
#
# How it measures:
# - BACKUP_DIRs under target/bench/api/: 7 and 1,000 archives named one day apart (sparse
#   files of realistic sizes: both servers only stat them), a last-backup-status.json,
#   a backup.log, and the schedule switched off so the daemon writes nothing meanwhile;
# - each server is started on 127.0.0.1:0 for one data set, answers one request, rests a
#   second (idle RSS, fds), then takes wrk -c16 and wrk -c64 (RSS sampled during the
#   latter), rests a second (fds again), and is stopped; old and new alternate;
# - wrk and the server share this machine's CPUs (both servers alike); the table says
#   which machine it ran on. DURATION=seconds changes the 10 s of each wrk run.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${BIN:-$ROOT/target/release/neopro-backup}"
OLD_JS="$ROOT/bench/node/old-admin-server.js"
WORK="$ROOT/target/bench/api"
RESULTS="$ROOT/target/bench/api-results.md"
DURATION="${DURATION:-10}"
GOAL_IDLE_KIB=$((3 * 1024))
GOAL_RPS_7=7500
GOAL_RPS_1000=1000
GOAL_P99_MS=50
GOAL_LOAD_KIB=$((16 * 1024))

say() { printf '[bench/api] %s\n' "$*" >&2; }
die() { printf '[bench/api] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing wrk"
        apt-get install -y -qq wrk >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } ||
            die "cannot install wrk: apt-get install wrk"
    else
        die "wrk is needed: apt-get install wrk"
    fi
fi
for t in node npm curl python3 awk; do
    command -v "$t" >/dev/null || die "$t is needed"
done
if command -v cargo >/dev/null; then
    cargo build --release --locked >&2 || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "no release binary at $BIN (cargo build --release)"
if [ ! -f "$ROOT/bench/node/node_modules/express/package.json" ]; then
    say "installing express into bench/node/node_modules (npm)"
    (cd "$ROOT/bench/node" && npm ci --no-audit --no-fund --omit=dev --loglevel=error >&2) ||
        die "npm ci in bench/node failed"
fi
EXPRESS_VERSION=$(node -p "require('$ROOT/bench/node/node_modules/express/package.json').version")

# ---------------------------------------------------------------- data sets
rm -rf "$WORK"
mkdir -p "$WORK/neopro/webapp" "$WORK/neopro/sync-agent" "$WORK/etc"
echo '{}' >"$WORK/neopro/webapp/configuration.json"
echo 'A=1' >"$WORK/neopro/sync-agent/.env"
echo 'SITE_NAME=bench' >"$WORK/etc/site.conf"
: >"$WORK/etc/backup.conf"

# make_dataset DIR N: N archives, one a day back from today 03:00, 0.5 to 2 MB each.
make_dataset() {
    python3 - "$1" "$2" <<'PY'
import json, os, random, sys, time
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
rng = random.Random(n)
now = time.time()
base = time.mktime(time.localtime(now)[:3] + (3, 0, 0, 0, 0, -1))
for i in range(n):
    t = base - i * 86400
    name = time.strftime("backup-%Y%m%d-%H%M%S.tar.gz", time.localtime(t))
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.truncate(rng.randint(500_000, 2_000_000))
    os.utime(p, (t, t))
newest = time.strftime("backup-%Y%m%d-%H%M%S.tar.gz", time.localtime(base))
ts = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
status = {"timestamp": ts, "date": ts[:10], "success": True, "archive": newest,
          "size": "1.2 MB", "size_bytes": 1258291, "backups_count": n,
          "retention_days": 7, "duration_ms": 41, "warnings": [], "error": None,
          "last_success": ts}
with open(os.path.join(d, "last-backup-status.json"), "w") as f:
    json.dump(status, f)
with open(os.path.join(d, "auto-backup.json"), "w") as f:
    f.write('{"enabled":false}')
with open(os.path.join(d, "backup.log"), "w") as f:
    for i in range(30):
        f.write(f"{ts} [INFO] backup done: {newest} (1.2 MB, 41 ms, {n} archive(s) kept)\n")
PY
}
make_dataset "$WORK/dir7" 7
make_dataset "$WORK/dir1000" 1000

# ---------------------------------------------------------------- servers
PID=""
URL=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    if [ -n "${SAMPLER:-}" ]; then kill "$SAMPLER" 2>/dev/null || true; fi
}
trap cleanup EXIT

# start_server old|new DIR: sets PID and URL.
start_server() {
    local kind=$1 dir=$2 log="$WORK/$1-$(basename "$2").log" pat
    : >"$log"
    if [ "$kind" = old ]; then
        BACKUP_DIR="$dir" PORT=0 HOST=127.0.0.1 BACKUP_SCRIPT="$ROOT/bench/old-backup.sh" \
            node "$OLD_JS" >"$log" 2>&1 &
        pat='listening on http://127\.0\.0\.1:[0-9]+'
    else
        env -i NEOPRO_DIR="$WORK/neopro" BACKUP_DIR="$dir" SITE_CONF="$WORK/etc/site.conf" \
            LISTEN=127.0.0.1:0 NEOPRO_CATCHUP_DELAY=3600 TZ=UTC \
            "$BIN" --config "$WORK/etc/backup.conf" serve >"$log" 2>&1 &
        pat='serving on http://127\.0\.0\.1:[0-9]+'
    fi
    PID=$!
    local i
    for i in $(seq 1 200); do
        URL=$(grep -oE "$pat" "$log" | head -1 | grep -oE 'http://.*' || true)
        [ -n "$URL" ] && break
        kill -0 "$PID" 2>/dev/null || die "the $kind server exited: $(cat "$log")"
        sleep 0.05
    done
    [ -n "$URL" ] || die "the $kind server did not start: $(cat "$log")"
}

stop_server() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

# run_wrk CONNECTIONS -> "req_per_s p99_ms socket_errors"; a wrong answer (non-2xx) is
# fatal; socket errors (timeouts of a server that cannot keep up) are counted.
# --timeout 10s: a slow answer is measured, not dropped from the latency figures.
run_wrk() {
    local c=$1 out
    out=$(wrk -t2 -c"$c" -d"${DURATION}s" --timeout 10s --latency "$URL/api/backups")
    if grep -q 'Non-2xx' <<<"$out"; then
        die "wrk -c$c against $URL got wrong answers:
$out"
    fi
    local rps p99 errs
    errs=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000;
        printf "%.2f", v }' <<<"$out")
    [ -n "$rps" ] && [ -n "$p99" ] || die "cannot read wrk's output:
$out"
    echo "$rps $p99 ${errs:-0}"
}

# peak_rss_during CONNECTIONS -> "req_per_s p99_ms socket_errors peak_rss_kib"
peak_rss_during() {
    local c=$1 peakf="$WORK/peak" r
    echo 0 >"$peakf"
    (
        peak=0
        while kill -0 "$PID" 2>/dev/null; do
            v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status" 2>/dev/null || echo 0)
            if [ "${v:-0}" -gt "$peak" ]; then peak=$v; echo "$peak" >"$peakf"; fi
            sleep 0.05
        done
    ) &
    SAMPLER=$!
    r=$(run_wrk "$c")
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=""
    echo "$r $(cat "$peakf")"
}

# measure old|new DIR N: prints, in this order (see `field`):
#   idle_kib rps16 p99_16 err16 rps64 p99_64 err64 peak64_kib after_kib fds0 fds1
measure() {
    local kind=$1 dir=$2 n=$3 body
    start_server "$kind" "$dir"
    body=$(curl -fsS "$URL/api/backups") || die "$kind: GET /api/backups failed"
    grep -q "\"total\":$n[,}]" <<<"$body" || die "$kind: expected total $n in ${body:0:300}"
    sleep 1
    local idle fds0 r16 r64 after fds1
    idle=$(rss_kib "$PID")
    fds0=$(fds "$PID")
    r16=$(run_wrk 16)
    r64=$(peak_rss_during 64)
    sleep 1
    after=$(rss_kib "$PID")
    fds1=$(fds "$PID")
    stop_server
    echo "$idle $r16 $r64 $after $fds0 $fds1"
}

say "machine: $(nproc) CPU(s), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$LOAD_BEFORE" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    say "WARNING: load average $LOAD_BEFORE on $(nproc) CPU(s): other work shares this machine, figures will be low"
fi
say "each wrk run lasts ${DURATION} s; 8 runs"
declare -A R
for n in 7 1000; do
    for kind in old new; do
        say "$kind server, $n archives"
        R[$kind,$n]=$(measure "$kind" "$WORK/dir$n" "$n")
        say "  idle_kib rps16 p99_16 err16 rps64 p99_64 err64 peak64_kib after_kib fds0 fds1: ${R[$kind,$n]}"
    done
done

# field KIND N INDEX (1-based, in the order `measure` prints)
field() { awk -v i="$3" '{ print $i }' <<<"${R[$1,$2]}"; }

# ---------------------------------------------------------------- table
FAILED=0
ROWS=""
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
rate() { awk -v r="$1" 'BEGIN { printf "%\047.0f req/s", r }'; }
ms() { awk -v m="$1" 'BEGIN { printf "%.2f ms", m }'; }
times() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "—" }'; }
verdict() { # OK(0/1)
    if [ "$1" = 1 ]; then echo PASS; else FAILED=1; echo FAIL; fi
}
le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? 1 : 0 }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? 1 : 0 }'; }
row() { ROWS+="| $1 | $2 | $3 | $4 | $5 | $6 |"$'\n'; }

label() { if [ "$1" = 1000 ]; then echo "1,000"; else echo "$1"; fi; }
errs() { # KIND N INDEX: " (N socket errors)" when there were any
    local e; e=$(field "$1" "$2" "$3")
    [ "$e" != 0 ] && echo " ($e socket errors)"
    return 0
}
o=$(field old 7 1); w=$(field new 7 1)
row "idle RSS (7 archives, after one request)" "$(mib "$o")" "$(mib "$w")" "$(times "$o" "$w") less" "≤ 3 MiB" "$(verdict "$(le "$w" $GOAL_IDLE_KIB)")"
for n in 7 1000; do
    goal=$GOAL_RPS_7; [ "$n" = 1000 ] && goal=$GOAL_RPS_1000
    o=$(field old $n 2); w=$(field new $n 2)
    row "GET /api/backups, $(label $n) archives, wrk -t2 -c16" "$(rate "$o")$(errs old $n 4)" "$(rate "$w")$(errs new $n 4)" "$(times "$w" "$o") more" "≥ $(label $goal) req/s" "$(verdict "$(ge "$w" "$goal")")"
    o=$(field old $n 3); w=$(field new $n 3)
    row "p99 latency, $(label $n) archives, wrk -t2 -c16" "$(ms "$o")" "$(ms "$w")" "$(times "$o" "$w") less" "≤ $GOAL_P99_MS ms" "$(verdict "$(le "$w" $GOAL_P99_MS)")"
done
for n in 7 1000; do
    o=$(field old $n 5); w=$(field new $n 5)
    row "GET /api/backups, $(label $n) archives, wrk -t2 -c64 (info)" "$(rate "$o")$(errs old $n 7)" "$(rate "$w")$(errs new $n 7)" "$(times "$w" "$o") more" "—" "—"
    o=$(field old $n 8); w=$(field new $n 8)
    row "peak RSS under wrk -t2 -c64, $(label $n) archives" "$(mib "$o")" "$(mib "$w")" "$(times "$o" "$w") less" "≤ 16 MiB" "$(verdict "$(le "$w" $GOAL_LOAD_KIB)")"
    o=$(field old $n 9); w=$(field new $n 9)
    row "RSS 1 s after the load, $(label $n) archives (info)" "$(mib "$o")" "$(mib "$w")" "$(times "$o" "$w") less" "—" "—"
done
for n in 7 1000; do
    o0=$(field old $n 10); o1=$(field old $n 11); w0=$(field new $n 10); w1=$(field new $n 11)
    row "open fds before → after the load, $(label $n) archives" "$o0 → $o1" "$w0 → $w1" "—" "no leak" "$(verdict "$(le "$w1" "$w0")")"
done

BIN_BYTES=$(stat -c %s "$BIN")
{
    echo "## neopro-backup serve vs the old Express admin server (bench/api.sh)"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPU(s): $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo);"
    echo "Linux $(uname -r); node $(node --version), express $EXPRESS_VERSION; $(wrk --version 2>&1 | head -1 | awk '{ print $1, $2 }');"
    echo "neopro-backup: ${BIN#"$ROOT"/} ($BIN_BYTES bytes). Loopback; wrk shares the CPUs with the server;"
    echo "${DURATION} s per wrk run, --timeout 10s; load average $LOAD_BEFORE before the run, $(cut -d' ' -f1 /proc/loadavg) after."
    echo
    echo "| metric | old Express | neopro-backup | ratio | goal | result |"
    echo "|---|---|---|---|---|---|"
    printf '%s' "$ROWS"
} | tee "$RESULTS"
say "written to ${RESULTS#"$ROOT"/}"

if [ "$FAILED" = 1 ]; then
    say "some goals were missed"
    [ "${BENCH_STRICT:-0}" = 1 ] && exit 1
fi
exit 0
