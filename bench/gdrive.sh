#!/bin/bash
# The Google Drive benchmark of `make bench` (README, Google Drive; docs/format.md,
# Google Drive):
#
# A site with INCLUDE_VIDEOS and VIDEO_MIB MiB of incompressible video (default 100)
# makes an archive of about that size. `neopro-backup gdrive login` connects it to a
# local fake Google (tests/gdrive/fake_google.py: the device flow, approved through the
# fake's /_test/approve), then `neopro-backup run` backs up and sends the archive to
# Drive by resumable upload in 2 MiB chunks. Against the same fake, in the same run,
# curl sends the same bytes in ONE PUT to a resumable session of its own (token from
# the fake's device flow, POST /upload/drive/v3/files?uploadType=resumable, then
# PUT with Content-Range bytes 0-N/TOTAL): the floor of any upload to that server.
#
#   upload wall: the product's `gdrive: sent … (SIZE, N.N s)` log line (and the
#                whole `run`: backup + upload) against curl's PUT     (ratio reported)
#   peak RSS of the `run` process (%M of /usr/bin/time = VmHWM), which
#   includes the backup that precedes the upload: an upper bound of
#   the upload's                                                      goal <= 8 MiB
#   the same `run` with Drive not configured (context: what the backup alone takes)
#
# Best of REPS (default 5) for the times, the highest peak RSS; interleaved. Each
# upload is checked byte for byte (the fake's SHA-256 against the archive's). Prints
# the table and writes target/bench/gdrive-results.md. A missed goal is reported (exit
# 0; BENCH_STRICT=1 makes it exit 1); a real error exits non-zero.
#
# BIN: the binary measured (`make bench` passes the static musl build,
# target/cross/x86_64-unknown-linux-musl/release/neopro-backup, which ships).
# Needs: curl, python3 (3.11: the fake), sha256sum, /usr/bin/time.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${BIN:-$ROOT/target/cross/x86_64-unknown-linux-musl/release/neopro-backup}"
WORK="$ROOT/target/bench/gdrive"
RESULTS="$ROOT/target/bench/gdrive-results.md"
VIDEO_MIB="${VIDEO_MIB:-100}"
REPS="${REPS:-5}"
GOAL_RSS_KIB=$((8 * 1024))
CLIENT_ID=bench-client.apps.googleusercontent.com
CLIENT_SECRET=bench-secret
SCOPE=https://www.googleapis.com/auth/drive.file

say() { printf '[bench/gdrive] %s\n' "$*" >&2; }
die() { printf '[bench/gdrive] ERROR: %s\n' "$*" >&2; exit 1; }
for tool in curl python3 sha256sum /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -x "$BIN" ] || die "$BIN is missing: make bench (or scripts/cross-build.sh x86_64-unknown-linux-musl) first"

rm -rf "$WORK"
mkdir -p "$WORK" "$(dirname "$RESULTS")"
login_pid=
cleanup() {
    [ -z "$login_pid" ] || kill "$login_pid" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- the fake Google: its stdin is this script's pipe, so it goes when the script does --
coproc FAKE { exec python3 "$ROOT/tests/gdrive/fake_google.py" --port 0 --exit-on-eof 2>"$WORK/fake.err"; }
read -r -t 30 line <&"${FAKE[0]}" || die "the fake Google did not start: $(cat "$WORK/fake.err")"
URL=${line##* }
case "$URL" in http://127.0.0.1:*) ;; *) die "unexpected first line of the fake: $line" ;; esac
say "fake Google at $URL"
ctl() { curl -sSf -X POST -H 'Content-Type: application/json' -d "$2" "$URL/_test/$1" >/dev/null; }
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# Polls every second rather than Google's 5 (login waits for the approval below).
ctl config '{"interval":1}'

# --- the site ---------------------------------------------------------------------------
SRC="$WORK/site"
mkdir -p "$SRC/neopro/webapp" "$SRC/neopro/sync-agent" "$SRC/neopro/videos/club" "$SRC/etc"
printf '{"club":"bench"}\n' >"$SRC/neopro/webapp/configuration.json"
printf 'TOKEN=bench\n' >"$SRC/neopro/sync-agent/.env"
printf 'SITE_ID=bench\n' >"$SRC/etc/site.conf"
say "generating $VIDEO_MIB MiB of video"
head -c $((VIDEO_MIB * 1024 * 1024)) /dev/urandom >"$SRC/neopro/videos/club/match.mp4"
site=(env -i PATH=/usr/bin:/bin TZ=UTC SITE_ID=bench INCLUDE_VIDEOS=true RETENTION_DAYS=1
      NEOPRO_DIR="$SRC/neopro" SITE_CONF="$SRC/etc/site.conf")
drive=(GDRIVE_CLIENT_ID=$CLIENT_ID GDRIVE_CLIENT_SECRET=$CLIENT_SECRET
       NEOPRO_GDRIVE_API_URL="$URL" NEOPRO_GOOGLE_OAUTH_URL="$URL")

# --- the product's login: the code from its output, approved through the fake -----------
# BACKUP_DIR made first: `gdrive login` does not create it (it fails at the very end,
# after the approval, when the folder is missing).
mkdir -m 700 "$SRC/bk"
"${site[@]}" "${drive[@]}" BACKUP_DIR="$SRC/bk" "$BIN" --config /dev/null gdrive login \
    >"$WORK/login.out" 2>&1 &
login_pid=$!
code=
for _ in $(seq 1 300); do   # its first lines, within 30 s
    code=$(awk '/enter the code:/ {f = 1; next} f && NF {print $1; exit}' "$WORK/login.out")
    [ -n "$code" ] && break
    kill -0 "$login_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$code" ] || { cat "$WORK/login.out" >&2; die "gdrive login printed no code"; }
ctl approve "{\"user_code\":\"$code\"}"
wait "$login_pid" || { cat "$WORK/login.out" >&2; die "gdrive login did not exit 0"; }
login_pid=
grep -q '^Connected' "$WORK/login.out" || { cat "$WORK/login.out" >&2; die "gdrive login: no 'Connected'"; }
say "logged in (code $code)"

# --- curl's token: the same device flow, by hand ------------------------------------------
dc=$(curl -sSf -d "client_id=$CLIENT_ID" --data-urlencode "scope=$SCOPE" "$URL/device/code")
ctl approve "{\"user_code\":\"$(json user_code <<<"$dc")\"}"
TOKEN=$(curl -sSf -d "client_id=$CLIENT_ID" -d "client_secret=$CLIENT_SECRET" \
    -d "device_code=$(json device_code <<<"$dc")" \
    --data-urlencode 'grant_type=urn:ietf:params:oauth:grant-type:device_code' "$URL/token" \
    | json access_token)

# The SHA-256 the fake computed for the newest file of that name.
fake_sha() {
    curl -sSf "$URL/_test/files" | python3 -c '
import json, sys
fs = [f for f in json.load(sys.stdin) if f["name"] == sys.argv[1] and not f["trashed"]]
print(fs[-1]["sha256"] if fs else "none")' "$1"
}

# The product's chunks of an upload of SIZE bytes among the fake's requests from the
# FROM-th on (curl's token left out): "COUNT LARGEST" (bytes).
chunks_seen() {
    curl -sSf "$URL/_test/requests" | python3 -c '
import json, re, sys
frm, size, curl = int(sys.argv[1]), sys.argv[2], sys.argv[3]
n = big = 0
for r in json.load(sys.stdin)[frm:]:
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\S+)", r["headers"].get("content-range", ""))
    if r["method"] == "PUT" and r.get("token") != curl and m and m.group(3) == size:
        n += 1
        big = max(big, int(m.group(2)) - int(m.group(1)) + 1)
print(n, big)' "$1" "$2" "$TOKEN"
}
requests_so_far() { curl -sSf "$URL/_test/requests" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

# --- one product run, one curl upload -----------------------------------------------------
product_once() {   # prints: upload-seconds run-wall peak-KiB archive-path
    local from
    from=$(requests_so_far)
    /usr/bin/time -f '%e %M' -o "$WORK/time" "${site[@]}" "${drive[@]}" BACKUP_DIR="$SRC/bk" \
        "$BIN" --config /dev/null run >"$WORK/run.out" 2>&1 \
        || { tail -20 "$WORK/run.out" >&2; die "run failed"; }
    local sent name secs
    sent=$(grep 'gdrive: sent backup-' "$WORK/run.out" | tail -n 1)
    [ -n "$sent" ] || { tail -20 "$WORK/run.out" >&2; die "run: no 'gdrive: sent' line"; }
    name=$(sed -E 's/.*gdrive: sent (backup-[0-9-]+\.tar\.gz) .*/\1/' <<<"$sent")
    secs=$(sed -E 's/.*, ([0-9.]+) s\)$/\1/' <<<"$sent")
    [ -f "$SRC/bk/$name" ] || die "run: $name is not in BACKUP_DIR"
    [ "$(fake_sha "$name")" = "$(sha256sum "$SRC/bk/$name" | cut -d' ' -f1)" ] \
        || die "the fake holds another content for $name"
    local size n big want
    size=$(stat -c %s "$SRC/bk/$name")
    read -r n big < <(chunks_seen "$from" "$size")
    want=$(( (size + 2097151) / 2097152 ))
    [ "$n" = "$want" ] && [ "$big" = 2097152 ] \
        || die "run: $n chunk(s) of at most $big bytes for $size bytes (expected $want of 2 MiB)"
    read -r wall rss <"$WORK/time"
    echo "$secs $wall $rss $SRC/bk/$name"
}
curl_once() {   # prints: seconds of the PUT
    local f=$1 size loc t name
    size=$(stat -c %s "$f")
    name="curl-$RANDOM-${f##*/}"
    loc=$(curl -sSf -D - -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json; charset=UTF-8' \
        -H 'X-Upload-Content-Type: application/octet-stream' -H "X-Upload-Content-Length: $size" \
        -d "{\"name\":\"$name\",\"parents\":[\"root\"]}" \
        "$URL/upload/drive/v3/files?uploadType=resumable&fields=id,size,md5Checksum" \
        | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    [ -n "$loc" ] || die "curl: no session URL"
    # Expect: off, as our client sends none (curl would wait for a 100 Continue).
    t=$(curl -sSf -o "$WORK/curl.json" -w '%{time_total}' -X PUT -H 'Expect:' \
        -H "Authorization: Bearer $TOKEN" -H "Content-Range: bytes 0-$((size - 1))/$size" \
        -H 'Content-Type: application/octet-stream' --data-binary "@$f" "$loc") \
        || die "curl: the PUT failed"
    [ "$(fake_sha "$name")" = "$(sha256sum "$f" | cut -d' ' -f1)" ] \
        || die "the fake holds another content for curl's $name"
    printf '%.2f\n' "$t"
}
plain_once() {   # the same backup with Drive not configured: peak KiB
    /usr/bin/time -f '%e %M' -o "$WORK/time" "${site[@]}" BACKUP_DIR="$WORK/plain" \
        "$BIN" --config /dev/null run >"$WORK/plain.out" 2>&1 \
        || { tail -20 "$WORK/plain.out" >&2; die "run without Drive failed"; }
    cut -d' ' -f2 "$WORK/time"
}

best_u=999999 best_w=999999 best_c=999999 best_rss=0 plain_rss=0 size=0
for rep in $(seq 1 "$REPS"); do
    product_once >"$WORK/product"
    read -r u w rss arch <"$WORK/product"
    c=$(curl_once "$arch")
    p=$(plain_once)
    size=$(stat -c %s "$arch")
    say "rep $rep: upload ${u}s (run ${w}s, ${rss} KiB peak), curl ${c}s; without Drive ${p} KiB peak"
    best_u=$(python3 -c "print(min($best_u, $u))")
    best_w=$(python3 -c "print(min($best_w, $w))")
    best_c=$(python3 -c "print(min($best_c, $c))")
    [ "$rss" -gt "$best_rss" ] && best_rss=$rss
    [ "$p" -gt "$plain_rss" ] && plain_rss=$p
done
chunks=$(( (size + 2 * 1024 * 1024 - 1) / (2 * 1024 * 1024) ))
ratio=$(python3 -c "print(f'{$best_u / max($best_c, 0.001):.2f}')")
ratio_w=$(python3 -c "print(f'{$best_w / max($best_c, 0.001):.2f}')")
mib=$(python3 -c "print(f'{$size / 1048576:.1f}')")
mb_s=$(python3 -c "print(f'{$size / 1048576 / max($best_u, 0.001):.0f}')")
mb_c=$(python3 -c "print(f'{$size / 1048576 / max($best_c, 0.001):.0f}')")
load=$(cut -d' ' -f1-3 /proc/loadavg)
ok_rss=$([ "$best_rss" -le "$GOAL_RSS_KIB" ] && echo yes || echo NO)
{
    echo "# Google Drive upload to the local fake ($mib MiB archive, $chunks chunks of 2 MiB; best of $REPS; load $load)"
    echo
    echo "Binary: \`${BIN#"$ROOT"/}\`"
    echo
    echo "| | wall (s) | MiB/s | peak RSS (KiB) | goal | met |"
    echo "|---|---|---|---|---|---|"
    echo "| neopro-backup run: the upload (its log line) | $best_u | $mb_s | | | |"
    echo "| neopro-backup run: backup + upload | $best_w | | $best_rss (highest of the runs) | <= 8 MiB | $ok_rss |"
    echo "| the same run, Drive not configured | | | $plain_rss | | |"
    echo "| curl, one PUT of the same bytes | $best_c | $mb_c | - | | |"
    echo "| ratio upload / curl | $ratio | | | reported | |"
    echo "| ratio whole run / curl | $ratio_w | | | reported | |"
    echo
    echo "The upload's time is the log line's, to 0.1 s. The fake is Python on loopback: the"
    echo "ratio is the cost of $chunks round trips against one PUT, not Google's speed."
} | tee "$RESULTS"
if [ "$ok_rss" != yes ]; then
    say "a goal was missed"
    [ "${BENCH_STRICT:-0}" = 1 ] && exit 1
fi
exit 0
