#!/bin/bash
# The fleet dashboard's benchmark: `neopro-backup fleet serve` over a bucket of
# SITES sites x ARCHIVES archives (default 10,000 x 30: 310,000 objects with the
# statuses, and the fleet's index) in SeaweedFS on this machine (issue 23).
#
#   cold read: first GET /api/fleet of a fresh daemon, 3 runs        goal < 60 s each
#   quiet refresh: a read of the bucket when nothing changed          (time, requests)
#   refresh with 1 % changed: a night of every 100th site (a new
#     archive and status, in its folder and in the index)           goal < 3 s, <= 400 requests
#   warm: GET /api/fleet, /metrics and / from the cache, 50 each      goal < 100 ms (max)
#   peak RSS of the daemon over all of it (VmHWM)                     goal < 64 MiB
#
# The bucket: NEOPRO_TEST_S3 and NEOPRO_TEST_FILER when set (a SeaweedFS already
# running), else scripts/seaweedfs.sh starts one (and stops it at the end). The objects
# are written once by bench/lib/genfleet.py under the prefix bench-fleet-SITESxARCHIVES/
# (kept for the next run: the generator skips a prefix it already filled), then the
# index (`genfleet.py index`); each run adds one night to 1 % of the sites.
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
SITES="${SITES:-10000}"
ARCHIVES="${ARCHIVES:-30}"
WARM_N=50
GOAL_COLD_MS=60000
GOAL_REFRESH_MS=3000
GOAL_REFRESH_REQUESTS=400
GOAL_WARM_MS=100
GOAL_RSS_KIB=$((64 * 1024))
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
python3 bench/lib/genfleet.py index "$NEOPRO_TEST_FILER" "$BUCKET" "$PREFIX" "$SITES" ||
    die "cannot write the fleet's index"
say "bucket ready in $(($(date +%s) - t0)) s"
: >"$WORK/empty.conf"

# start_daemon: a fresh `fleet serve` on a port the system picks; sets PID and URL.
start_daemon() {
    local log="$WORK/serve-$1.log" i
    : >"$log"
    env -i PATH=/usr/bin:/bin TZ=UTC S3_ENDPOINT="$NEOPRO_TEST_S3" S3_BUCKET="$BUCKET" \
        S3_ACCESS_KEY="$ACCESS_KEY" S3_SECRET_KEY="$SECRET_KEY" S3_PREFIX="$PREFIX" \
        NEOPRO_FLEET_CACHE_SECS="${2:-3600}" \
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

# reads LOG: the daemon's "read N site(s) in T ms: R request(s) (L listing, G GET, …)"
# lines, one per read of the bucket.
reads_of() { grep -oE 'read [0-9]+ site\(s\) in [0-9]+ ms: [0-9]+ request\(s\) \([0-9]+ listing, [0-9]+ GET, [0-9]+ not modified\)' "$1" || true; }

# wait_reads LOG N: until the daemon logged N reads (60 s at most).
wait_reads() {
    local i
    for i in $(seq 1 600); do
        [ "$(reads_of "$1" | wc -l)" -ge "$2" ] && return 0
        sleep 0.1
    done
    die "the daemon did not log read $2 ($1)"
}

# field LINE N: the Nth number of a read line (1 sites, 2 ms, 3 requests, 4 listings, 5 GET).
field() { echo "$1" | grep -oE '[0-9]+' | sed -n "${2}p"; }

# ---------------------------------------------------------------- runs
cold=()
peak=0
reads=()
for run in 1 2 3; do
    if [ "$run" = 1 ]; then start_daemon "$run" 1; else start_daemon "$run"; fi
    c=$(ms "$URL/api/fleet") || die "GET /api/fleet failed (run $run)"
    check_sites
    cold+=("$c")
    reads+=("$(reads_of "$WORK/serve-$run.log" | head -1)")
    if [ "$run" = 1 ]; then
        # A refresh when nothing changed: a view asked after the period starts one.
        sleep 1.2
        ms "$URL/api/fleet" >/dev/null
        wait_reads "$WORK/serve-1.log" 2
        quiet=$(reads_of "$WORK/serve-1.log" | sed -n 2p)
        # One night of 1 % of the sites, then a refresh.
        changed=$(python3 bench/lib/genfleet.py change "$NEOPRO_TEST_FILER" "$BUCKET" "$PREFIX" "$SITES" 100) ||
            die "cannot change 1 % of the sites"
        read -r n_changed night <<<"$changed"
        sleep 1.2
        ms "$URL/api/fleet" >/dev/null
        wait_reads "$WORK/serve-1.log" 3
        busy=$(reads_of "$WORK/serve-1.log" | sed -n 3p)
        ms "$URL/api/fleet" >/dev/null
        seen=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(sum(1 for s in j["sites"] if s.get("newest_archive")==sys.argv[2]))' "$WORK/body" "$night")
        [ "$seen" = "$n_changed" ] || die "after the refresh, $seen site(s) show $night, not $n_changed"
    fi
    if [ "$run" = 2 ]; then
        for route in api/fleet metrics ""; do
            f="$WORK/warm-${route//\//-}.txt"
            : >"$f"
            for _ in $(seq 1 "$WARM_N"); do ms "$URL/$route" >>"$f" || die "GET /$route failed"; echo >>"$f"; done
        done
        # Nothing of the warm views read the bucket again.
        n=$(reads_of "$WORK/serve-2.log" | wc -l)
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
busy_ms=$(field "$busy" 2)
busy_req=$(field "$busy" 3)
v_busy=$(verdict "$busy_ms" "$GOAL_REFRESH_MS")
v_busy_req=$(verdict "$busy_req" "$((GOAL_REFRESH_REQUESTS + 1))")
missed=0
case "$v_cold $v_warm $v_rss $v_busy $v_busy_req" in *MISSED*) missed=1 ;; esac
objects=$((SITES * (ARCHIVES + 1)))

{
    echo "## fleet serve: $SITES sites x $ARCHIVES archives ($objects objects), SeaweedFS on loopback"
    echo
    echo "Machine: $(nproc) CPU(s), $(uname -m), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)"
    echo
    echo "| measure | result | goal | |"
    echo "|---|---|---|---|"
    echo "| cold GET /api/fleet (3 fresh daemons) | ${cold[0]} / ${cold[1]} / ${cold[2]} ms | < $GOAL_COLD_MS ms | $v_cold |"
    echo "| refresh, nothing changed | $(field "$quiet" 2) ms, $(field "$quiet" 3) requests ($(field "$quiet" 4) listing, $(field "$quiet" 5) GET) | | |"
    echo "| refresh, $n_changed sites changed (1 %) | $busy_ms ms, $busy_req requests ($(field "$busy" 4) listing, $(field "$busy" 5) GET) | < $GOAL_REFRESH_MS ms, <= $GOAL_REFRESH_REQUESTS | $v_busy $v_busy_req |"
    echo "| warm GET /api/fleet, $WARM_N requests | median $api_med ms, max $api_max ms | < $GOAL_WARM_MS ms | |"
    echo "| warm GET /metrics, $WARM_N requests | median $met_med ms, max $met_max ms | < $GOAL_WARM_MS ms | |"
    echo "| warm GET /, $WARM_N requests | median $page_med ms, max $page_max ms | < $GOAL_WARM_MS ms | $v_warm |"
    echo "| peak RSS (VmHWM) | $((peak / 1024)).$(((peak % 1024) * 10 / 1024)) MiB | < 64 MiB | $v_rss |"
    echo
    echo "The daemon's own account of each cold read, then of the two refreshes:"
    echo
    for r in "${reads[@]}" "$quiet" "$busy"; do echo "- $r"; done
} | tee "$RESULTS"

if [ "$missed" = 1 ] && [ -n "${BENCH_STRICT:-}" ]; then
    die "a goal was missed"
fi
