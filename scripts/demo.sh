#!/usr/bin/env bash
# A demo on a throwaway Pi-like tree under target/demo: one backup from the CLI, its
# verification by neopro-backup and by GNU tar + sha256sum, then the daemon answering the
# admin panel's API calls. Nothing outside target/demo is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/neopro-backup}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

D=$PWD/target/demo
rm -rf "$D"
mkdir -p "$D/neopro/webapp" "$D/neopro/sync-agent" "$D/neopro/videos/match" "$D/neopro/videos/sponsors" "$D/etc"
cat >"$D/neopro/webapp/configuration.json" <<'EOF'
{"name": "FC Démo", "videos": ["match/intro.mp4", "sponsors/boulangerie.MP4"], "volume": 80}
EOF
printf 'API_URL=https://sync.example\nAPI_KEY=demo-secret-key-0123456789\n' >"$D/neopro/sync-agent/.env"
chmod 600 "$D/neopro/sync-agent/.env"
printf 'SITE_ID=fc-demo\nSITE_NAME="FC Démo"\n' >"$D/etc/site.conf"
for f in match/intro.mp4 match/but.mkv sponsors/boulangerie.MP4 sponsors/garage.mov pause.avi; do
  head -c $((RANDOM * 8)) /dev/urandom >"$D/neopro/videos/$f"
done
touch "$D/neopro/videos/match/intro.jpg" "$D/neopro/videos/notes.txt"   # not videos: left out

export NEOPRO_DIR=$D/neopro BACKUP_DIR=$D/backups SITE_CONF=$D/etc/site.conf
export LISTEN=127.0.0.1:0 NEOPRO_CATCHUP_DELAY=3600
unset API_TOKEN INCLUDE_VIDEOS RETENTION_DAYS BACKUP_TIME SERVICES

# Bold headings on a terminal only (and not with NO_COLOR): a log or a pipe gets plain text.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
# A word as the shell reads it back: as is when it is plain, else in single quotes.
quote() {
    case $1 in
    '' | *[!A-Za-z0-9_./:=@%+,-]*) printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
    esac
}

step "neopro-backup run"
"$BIN" run
step "neopro-backup list"
"$BIN" list
A=$(ls "$BACKUP_DIR" | grep -E '^backup-[0-9]{8}-[0-9]{6}\.tar\.gz$' | tail -1)
step "neopro-backup verify $A"
"$BIN" verify "$A"
step "GNU tar reads it (mode $(stat -c %a "$BACKUP_DIR/$A"): it holds the API key)"
tar -tzvf "$BACKUP_DIR/$A"
step "sha256sum -c inside the extracted folder"
X=$(mktemp -d "$D/extract.XXXX")
tar -xzf "$BACKUP_DIR/$A" -C "$X"
(cd "$X/${A%.tar.gz}" && sha256sum -c MANIFEST.sha256)
step "videos-inventory.txt"
cat "$X/${A%.tar.gz}/videos-inventory.txt"
step "neopro-backup check"
"$BIN" check

step "neopro-backup serve (the daemon), answering the admin panel's calls"
LOG=$D/serve.log
"$BIN" serve 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q 'serving on' "$LOG" && break; sleep 0.1; done
URL=$(grep -o 'http://[0-9.:]*' "$LOG" | head -1)
echo "daemon pid $PID on $URL"
show() { # prints the command line, paste-able, then runs it
    printf '$ curl'
    for a in "$@"; do printf ' %s' "$(quote "$a")"; done
    echo
    curl -fsS "$@"
    echo
}
show "$URL/healthz"
show -X POST "$URL/api/backups/create"
show "$URL/api/backups"
show "$URL/api/backups/auto-status"
show -X POST -H 'Content-Type: application/json' -d '{"enable":false}' "$URL/api/backups/auto-toggle"
show -X POST "$URL/api/backups/verify/$A"
echo "\$ curl $URL/api/backups/download/..%2F..%2Fetc%2Fpasswd"
curl -sS "$URL/api/backups/download/..%2F..%2Fetc%2Fpasswd"; echo
echo "\$ curl $URL/metrics | grep -v '^#'"
curl -fsS "$URL/metrics" | grep -v '^#'
kill -TERM $PID
wait $PID && echo "daemon stopped cleanly (exit 0)"
trap - EXIT
step "demo tree left in $D; to see the web page: NEOPRO_DIR=$NEOPRO_DIR BACKUP_DIR=$BACKUP_DIR SITE_CONF=$SITE_CONF LISTEN=127.0.0.1:8081 $BIN serve, then open http://127.0.0.1:8081/"
