#!/bin/bash
# The fleet dashboard's benchmark: `neopro-backup fleet serve` over a bucket of
# SITES sites x ARCHIVES archives (default 1,000 x 30: 31,000 objects with the statuses)
# in SeaweedFS on this machine.
#
#   cold read: first GET /api/fleet of a fresh daemon, 3 runs    goal < 5 s each
#   warm: GET /api/fleet, /metrics and / from the cache, 50 each  goal < 100 ms (max)
#   peak RSS of the daemon over all of it (VmHWM)                 goal < 32 MiB
#
# The bucket: NEOPRO_TEST_S3 and NEOPRO_TEST_FILER when set (a SeaweedFS already
# running), else scripts/seaweedfs.sh starts one (and stops it at the end). The objects
# are written once by bench/lib/genfleet.py under the prefix bench-fleet-SITESxARCHIVES/
# (kept for the next run: the generator skips a prefix it already filled).
#
# Prints a table and writes it to target/bench/fleet-results.md. A missed goal is
# reported (exit 0; BENCH_STRICT=1 makes it exit 1); a real error (no server, a wrong
# answer) exits non-zero.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${BIN:-$ROOT/target/release/neopro-backup}"
WORK="$ROOT/target/bench/fleet"
RESULTS="$ROOT/target/bench/fleet-results.md"
SITES="${SITES:-1000}"
ARCHIVES="${ARCHIVES:-30}"
WARM_N=50
GOAL_COLD_MS=5000
GOAL_WARM_MS=100
GOAL_RSS_KIB=$((32 * 1024))
BUCKET=neopro-test
PREFIX="bench-fleet-${SITES}x${ARCHIVES}"
# The identity of scripts/seaweedfs.sh.
ACCESS_KEY=NEOPROTESTKEY
SECRET_KEY=neopro-test-secret-0123456789

say() { printf '[bench/fleet] %s\n' "$*" >&2; }
die() { printf '[bench/fleet] ERROR: %s\n' "$*" >&2; exit 1; }

for t in curl python3 awk; do
    command -v "$t" >/dev/null || die "$t is needed"
done
if [ -z "${BIN_PREBUILT:-}" ] && command -v cargo >/dev/null; then
    cargo build --release --locked >&2 || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "no release binary at $BIN (cargo build --release)"

mkdir -p "$WORK"
STARTED_WEED=""
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    if [ -n "$STARTED_WEED" ]; then bash scripts/seaweedfs.sh stop || true; fi
}
trap cleanup EXIT

if [ -z "${NEOPRO_TEST_S3:-}" ] || [ -z "${NEOPRO_TEST_FILER:-}" ]; then
    say "starting SeaweedFS (scripts/seaweedfs.sh)"
    bash scripts/seaweedfs.sh start >&2 || die "SeaweedFS did not start"
    STARTED_WEED=1
    NEOPRO_TEST_S3=${NEOPRO_TEST_S3:-http://127.0.0.1:8333}
    NEOPRO_TEST_FILER=${NEOPRO_TEST_FILER:-http://127.0.0.1:8888}
fi
say "S3 $NEOPRO_TEST_S3, filer $NEOPRO_TEST_FILER"

# ---------------------------------------------------------------- the bucket
t0=$(date +%s)
python3 bench/lib/genfleet.py "$NEOPRO_TEST_FILER" "$BUCKET" "$PREFIX" "$SITES" "$ARCHIVES" ||
    die "cannot fill the bucket"
say "bucket ready in $(($(date +%s) - t0)) s"
: >"$WORK/empty.conf"

# start_daemon: a fresh `fleet serve` on a port the system picks; sets PID and URL.
start_daemon() {
    local log="$WORK/serve-$1.log" i
    : >"$log"
    env -i PATH=/usr/bin:/bin TZ=UTC S3_ENDPOINT="$NEOPRO_TEST_S3" S3_BUCKET="$BUCKET" \
        S3_ACCESS_KEY="$ACCESS_KEY" S3_SECRET_KEY="$SECRET_KEY" S3_PREFIX="$PREFIX" \
        NEOPRO_FLEET_CACHE_SECS=3600 \
        "$BIN" --config "$WORK/empty.conf" fleet serve --listen 127.0.0.1:0 2>"$log" &
    PID=$!
    for i in $(seq 1 100); do
        URL=$(grep -oE 'serving on http://127\.0\.0\.1:[0-9]+' "$log" | grep -oE 'http://.*' || true)
        [ -n "$URL" ] && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log" >&2
    die "fleet serve did not start"
}

stop_daemon() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$PID/status"; }

# ms URL: the time of one GET in ms (curl's own measure: no process start counted).
ms() {
    curl -sf -o "$WORK/body" -w '%{time_total}' "$1" | awk '{printf "%.1f", $1 * 1000}'
}

# stats FILE: "median max" of the numbers in FILE.
stats() {
    sort -n "$1" | awk '{v[NR]=$1} END {printf "%.1f %.1f", v[int((NR+1)/2)], v[NR]}'
}

check_sites() {
    python3 - "$WORK/body" "$SITES" <<'PY' || die "the dashboard's answer is wrong"
import json, sys
j = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
assert len(j["sites"]) == n, f'{len(j["sites"])} sites, not {n}'
assert j["counts"]["total"] == n
states = [s["state"] for s in j["sites"]]
rank = {"failed": 0, "stale": 1, "pending": 2, "ok": 3}
assert [rank[s] for s in states] == sorted(rank[s] for s in states), "not worst first"
PY
}

# ---------------------------------------------------------------- runs
cold=()
peak=0
reads=()
for run in 1 2 3; do
    start_daemon "$run"
    c=$(ms "$URL/api/fleet") || die "GET /api/fleet failed (run $run)"
    check_sites
    cold+=("$c")
    reads+=("$(grep -oE 'read [0-9]+ site\(s\) in .*' "$WORK/serve-$run.log" | head -1)")
    if [ "$run" = 1 ]; then
        for route in api/fleet metrics ""; do
            f="$WORK/warm-${route//\//-}.txt"
            : >"$f"
            for _ in $(seq 1 "$WARM_N"); do ms "$URL/$route" >>"$f" || die "GET /$route failed"; echo >>"$f"; done
        done
        # Nothing of the warm views read the bucket again.
        n=$(grep -c 'read [0-9]* site' "$WORK/serve-1.log" || true)
        [ "$n" = 1 ] || die "the warm views read the bucket $n times"
    fi
    h=$(hwm_kib)
    [ "$h" -gt "$peak" ] && peak=$h
    stop_daemon
done

read -r api_med api_max <<<"$(stats "$WORK/warm-api-fleet.txt")"
read -r met_med met_max <<<"$(stats "$WORK/warm-metrics.txt")"
read -r page_med page_max <<<"$(stats "$WORK/warm-.txt")"
cold_max=$(printf '%s\n' "${cold[@]}" | sort -n | tail -1)
warm_max=$(printf '%s\n' "$api_max" "$met_max" "$page_max" | sort -n | tail -1)

verdict() { # value goal -> ok / MISSED
    if awk -v v="$1" -v g="$2" 'BEGIN {exit !(v < g)}'; then echo ok; else echo MISSED; fi
}
v_cold=$(verdict "$cold_max" "$GOAL_COLD_MS")
v_warm=$(verdict "$warm_max" "$GOAL_WARM_MS")
v_rss=$(verdict "$peak" "$GOAL_RSS_KIB")
missed=0
case "$v_cold $v_warm $v_rss" in *MISSED*) missed=1 ;; esac
objects=$((SITES * (ARCHIVES + 1)))

{
    echo "## fleet serve: $SITES sites x $ARCHIVES archives ($objects objects), SeaweedFS on loopback"
    echo
    echo "Machine: $(nproc) CPU(s), $(uname -m), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)"
    echo
    echo "| measure | result | goal | |"
    echo "|---|---|---|---|"
    echo "| cold GET /api/fleet (3 fresh daemons) | ${cold[0]} / ${cold[1]} / ${cold[2]} ms | < $GOAL_COLD_MS ms | $v_cold |"
    echo "| warm GET /api/fleet, $WARM_N requests | median $api_med ms, max $api_max ms | < $GOAL_WARM_MS ms | |"
    echo "| warm GET /metrics, $WARM_N requests | median $met_med ms, max $met_max ms | < $GOAL_WARM_MS ms | |"
    echo "| warm GET /, $WARM_N requests | median $page_med ms, max $page_max ms | < $GOAL_WARM_MS ms | $v_warm |"
    echo "| peak RSS (VmHWM) | $((peak / 1024)).$(((peak % 1024) * 10 / 1024)) MiB | < 32 MiB | $v_rss |"
    echo
    echo "The daemon's own account of each cold read:"
    echo
    for r in "${reads[@]}"; do echo "- $r"; done
} | tee "$RESULTS"

if [ "$missed" = 1 ] && [ -n "${BENCH_STRICT:-}" ]; then
    die "a goal was missed"
fi
