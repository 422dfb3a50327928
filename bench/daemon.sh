#!/bin/bash
# The daemon-hardening benchmark: availability for a normal client while another one
# hogs the connections, and /healthz while every handler is busy, for the binary before
# the hardening and for this one, in the same run, on loopback.
#
#   A. one address holds 400 slowloris + 1,000 idle keep-alive connections; a second
#      address probes GET /api/backups every 100 ms     goal >= 99 % answered, p99 < 1 s
#   B. 20 concurrent POST /api/backups/verify of a large archive (VERIFY_MB, default
#      286 MB, incompressible); GET /healthz probed every 500 ms until they end
#                                                        goal: every probe, max < 1 s
#
# The attacker and the probes are bench/lib/fairness.py (the attacker from 127.0.0.1,
# the probes from 127.0.0.2: Linux routes all of 127/8 to lo). A probe is a fresh
# connection; it counts as answered when a 200 comes within 5 s (A) or 120 s (B).
#
#   BIN          the binary after (default target/release/neopro-backup, built here)
#   BEFORE_BIN   the binary before; without it, BEFORE_REF (default df73498, the last
#                commit before the hardening) is exported with `git archive` into
#                target/bench/before-src and built there (its own target dir)
#   DURATION     seconds of probing in A (default 30); VERIFY_MB (default 286)
#
# Prints a table and writes target/bench/daemon-results.md. A missed goal is reported
# (exit 0; BENCH_STRICT=1 makes it exit 1); a real error exits non-zero.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${BIN:-$ROOT/target/release/neopro-backup}"
WORK="$ROOT/target/bench/daemon"
RESULTS="$ROOT/target/bench/daemon-results.md"
DURATION="${DURATION:-30}"
VERIFY_MB="${VERIFY_MB:-286}"
BEFORE_REF="${BEFORE_REF:-df73498}"
FAIR="$ROOT/bench/lib/fairness.py"
ATTACKER_IP=127.0.0.1
PROBE_IP=127.0.0.2

say() { printf '[bench/daemon] %s\n' "$*" >&2; }
die() { printf '[bench/daemon] ERROR: %s\n' "$*" >&2; exit 1; }

for t in python3 curl awk git; do
    command -v "$t" >/dev/null || die "$t is needed"
done
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 4096 ] || die "ulimit -n is $(ulimit -n): 4096 or more needed"

# ---------------------------------------------------------------- binaries
if command -v cargo >/dev/null && [ "$BIN" = "$ROOT/target/release/neopro-backup" ]; then
    cargo build --release --locked >&2 || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "no binary at $BIN"
if [ -z "${BEFORE_BIN:-}" ]; then
    src="$ROOT/target/bench/before-src"
    if [ ! -x "$src/target/release/neopro-backup" ] || [ "$(cat "$src/.ref" 2>/dev/null)" != "$BEFORE_REF" ]; then
        say "building the binary before the hardening ($BEFORE_REF) in ${src#"$ROOT"/}"
        rm -rf "$src"
        mkdir -p "$src"
        git -C "$ROOT" archive "$BEFORE_REF" | tar -x -C "$src" || die "git archive $BEFORE_REF failed"
        (cd "$src" && cargo build --release --locked >&2) || die "building $BEFORE_REF failed"
        echo "$BEFORE_REF" >"$src/.ref"
    fi
    BEFORE_BIN="$src/target/release/neopro-backup"
fi
[ -x "$BEFORE_BIN" ] || die "no binary at $BEFORE_BIN"

# ---------------------------------------------------------------- data
rm -rf "$WORK"
mkdir -p "$WORK/neopro/webapp" "$WORK/neopro/sync-agent" "$WORK/neopro/videos" "$WORK/etc" "$WORK/small"
echo '{}' >"$WORK/neopro/webapp/configuration.json"
echo 'A=1' >"$WORK/neopro/sync-agent/.env"
echo 'SITE_NAME=bench' >"$WORK/etc/site.conf"
: >"$WORK/etc/backup.conf"
echo '{"enabled":false}' >"$WORK/small/auto-backup.json"
# A: seven small archives (sparse: only listed).
for i in 1 2 3 4 5 6 7; do
    truncate -s 1200000 "$WORK/small/backup-2025010$i-030000.tar.gz"
done
# B: one real archive holding an incompressible video of VERIFY_MB MB.
say "making a ${VERIFY_MB} MB archive for the verify load"
head -c "$((VERIFY_MB * 1024 * 1024))" /dev/urandom >"$WORK/neopro/videos/match.mp4"
mkdir -p "$WORK/big"
echo '{"enabled":false}' >"$WORK/big/auto-backup.json"
env -i NEOPRO_DIR="$WORK/neopro" BACKUP_DIR="$WORK/big" SITE_CONF="$WORK/etc/site.conf" \
    INCLUDE_VIDEOS=true TZ=UTC "$BIN" --config "$WORK/etc/backup.conf" run >/dev/null 2>&1 ||
    die "cannot make the big archive"
rm -f "$WORK/neopro/videos/match.mp4"
BIG=$(ls "$WORK/big" | grep -E '^backup-[0-9]{8}-[0-9]{6}\.tar\.gz$' | head -1)
[ -n "$BIG" ] || die "no archive made"
say "archive: $BIG, $(stat -c %s "$WORK/big/$BIG") bytes"

# ---------------------------------------------------------------- server
PID=""
URL=""
ATTACK=""
cleanup() {
    [ -n "$ATTACK" ] && kill "$ATTACK" 2>/dev/null || true
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# start_server BIN DIR: sets PID and URL (http://127.0.0.1:PORT).
start_server() {
    local log="$WORK/server.log"
    : >"$log"
    env -i NEOPRO_DIR="$WORK/neopro" BACKUP_DIR="$2" SITE_CONF="$WORK/etc/site.conf" \
        LISTEN=127.0.0.1:0 NEOPRO_CATCHUP_DELAY=3600 TZ=UTC \
        "$1" --config "$WORK/etc/backup.conf" serve >"$log" 2>&1 &
    PID=$!
    local i
    for i in $(seq 1 200); do
        URL=$(grep -oE 'serving on http://127\.0\.0\.1:[0-9]+' "$log" | head -1 | grep -oE 'http://.*' || true)
        [ -n "$URL" ] && break
        kill -0 "$PID" 2>/dev/null || die "the server exited: $(cat "$log")"
        sleep 0.05
    done
    [ -n "$URL" ] || die "the server did not start: $(cat "$log")"
    curl -fsS "$URL/healthz" >/dev/null || die "GET /healthz failed"
}

stop_server() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}

# scenario_a BIN -> "probes answered p50 p99 max"
scenario_a() {
    start_server "$1" "$WORK/small"
    local addr=${URL#http://}
    python3 "$FAIR" attack "$addr" "$ATTACKER_IP" 400 1000 &
    ATTACK=$!
    sleep 5 # the attacker opens its connections and settles
    kill -0 "$ATTACK" 2>/dev/null || die "the attacker exited"
    local r
    r=$(python3 "$FAIR" probe "$addr" "$PROBE_IP" /api/backups "$DURATION" 100 5)
    kill "$ATTACK" 2>/dev/null || true
    wait "$ATTACK" 2>/dev/null || true
    ATTACK=""
    stop_server
    echo "$r"
}

# scenario_b BIN -> "probes answered p50 p99 max verify_ok"
scenario_b() {
    start_server "$1" "$WORK/big"
    local addr=${URL#http://} stop="$WORK/verifies-done" i pids=() ok=0
    rm -f "$stop" "$WORK"/verify-*.out
    for i in $(seq 1 20); do
        curl -sS -m 900 -X POST -o "$WORK/verify-$i.out" -w '%{http_code}' \
            "$URL/api/backups/verify/$BIG" >"$WORK/verify-$i.code" 2>/dev/null &
        pids+=($!)
    done
    # (a subshell cannot `wait` for its parent's children: it polls them)
    (for i in "${pids[@]}"; do while kill -0 "$i" 2>/dev/null; do sleep 0.2; done; done; touch "$stop") &
    local waiter=$! r
    sleep 0.5 # the verifies have started
    r=$(python3 "$FAIR" probe "$addr" "$PROBE_IP" /healthz 900 500 120 "$stop")
    for i in "${pids[@]}"; do wait "$i" 2>/dev/null || true; done
    wait "$waiter" 2>/dev/null || true
    for i in $(seq 1 20); do
        [ "$(cat "$WORK/verify-$i.code")" = 200 ] && grep -q '"ok":true' "$WORK/verify-$i.out" && ok=$((ok + 1))
    done
    stop_server
    echo "$r $ok"
}

say "machine: $(nproc) CPU(s), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); load $(cut -d' ' -f1 /proc/loadavg)"
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
declare -A R
for kind in before after; do
    bin=$BIN
    [ "$kind" = before ] && bin=$BEFORE_BIN
    say "A, $kind: 400 slowloris + 1,000 idle from $ATTACKER_IP, probes from $PROBE_IP for ${DURATION} s"
    R[a,$kind]=$(scenario_a "$bin")
    say "  probes answered p50_ms p99_ms max_ms: ${R[a,$kind]}"
done
for kind in before after; do
    bin=$BIN
    [ "$kind" = before ] && bin=$BEFORE_BIN
    say "B, $kind: 20 verifies of $BIG, /healthz probed every 500 ms"
    R[b,$kind]=$(scenario_b "$bin")
    say "  probes answered(<120 s) p50_ms p99_ms max_ms verifies_ok: ${R[b,$kind]}"
done

# ---------------------------------------------------------------- table
f() { awk -v i="$3" '{ print $i }' <<<"${R[$1,$2]}"; }
pct() { awk -v a="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f %%", 100 * a / n; else print "—" }'; }
secs() { awk -v m="$1" 'BEGIN { if (m >= 1000) printf "%.1f s", m / 1000; else if (m >= 10) printf "%.0f ms", m; else printf "%.1f ms", m }'; }
FAILED=0
verdict() { if [ "$1" = 1 ]; then echo PASS; else FAILED=1; echo FAIL; fi; }
a_ok=$(awk -v a="$(f a after 2)" -v n="$(f a after 1)" -v p="$(f a after 4)" 'BEGIN { print (n > 0 && a / n >= 0.99 && p < 1000) ? 1 : 0 }')
b_ok=$(awk -v a="$(f b after 2)" -v n="$(f b after 1)" -v m="$(f b after 5)" -v v="$(f b after 6)" 'BEGIN { print (n > 0 && a == n && m < 1000 && v == 20) ? 1 : 0 }')
{
    echo "## Daemon hardening: fair connections and the health lane (bench/daemon.sh)"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPU(s): $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); Linux $(uname -r)."
    echo "before: ${BEFORE_BIN#"$ROOT"/} ($BEFORE_REF); after: ${BIN#"$ROOT"/}. Loopback; the attacker, the probes and"
    echo "the server share the CPUs; load average $LOAD_BEFORE before the run, $(cut -d' ' -f1 /proc/loadavg) after."
    echo
    echo "| scenario | before | after | goal | result |"
    echo "|---|---|---|---|---|"
    echo "| A. GET /api/backups from a 2nd address, one address holding 400 slowloris + 1,000 idle: answered (200 within 5 s) | $(f a before 2) of $(f a before 1) ($(pct "$(f a before 2)" "$(f a before 1)")) | $(f a after 2) of $(f a after 1) ($(pct "$(f a after 2)" "$(f a after 1)")) | ≥ 99 % | $(verdict "$a_ok") |"
    echo "| A. latency p50 / p99 / max (unanswered = 5 s) | $(secs "$(f a before 3)") / $(secs "$(f a before 4)") / $(secs "$(f a before 5)") | $(secs "$(f a after 3)") / $(secs "$(f a after 4)") / $(secs "$(f a after 5)") | p99 < 1 s | |"
    echo "| B. GET /healthz during 20 verifies of a ${VERIFY_MB} MB archive: probes answered | $(f b before 2) of $(f b before 1) | $(f b after 2) of $(f b after 1) | all | $(verdict "$b_ok") |"
    echo "| B. /healthz latency p50 / p99 / max | $(secs "$(f b before 3)") / $(secs "$(f b before 4)") / $(secs "$(f b before 5)") | $(secs "$(f b after 3)") / $(secs "$(f b after 4)") / $(secs "$(f b after 5)") | max < 1 s | |"
    echo "| B. verifies answered ok | $(f b before 6) of 20 | $(f b after 6) of 20 | 20 | |"
} | tee "$RESULTS"
say "written to ${RESULTS#"$ROOT"/}"

if [ "$FAILED" = 1 ]; then
    say "some goals were missed"
    [ "${BENCH_STRICT:-0}" = 1 ] && exit 1
fi
exit 0
