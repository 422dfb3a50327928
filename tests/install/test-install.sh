#!/usr/bin/env bash
# make test-install: scripts/setup-auto-backup.sh against fake Pis.
# A fake Pi is a temp folder (NEOPRO_ROOT) reached through fakebin/ssh and fakebin/scp,
# which run commands locally with remote-bin/ first in PATH: uname -m says what kernel
# the Pi runs, dpkg --print-architecture and getconf LONG_BIT what userland (or fail as
# when absent), /lib/systemd/systemd under the root is the first bytes of an ELF header
# of that userland (read with the real od), sudo is passwordless, chown is logged (there
# is no user pi here), systemctl keeps unit states in files and, for the main Pi, really
# starts the installed binary's `serve` and waits for /healthz. The "builds" in DIST are
# copies of the host binary with the triple appended (an ELF still runs with bytes after
# it), so the test can see which one was installed on which Pi.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
REPO=$PWD
HERE=$REPO/tests/install
BIN=${BIN:-$REPO/target/release/neopro-backup}
[ -x "$BIN" ] || { echo "test-install: $BIN is missing: make build"; exit 1; }

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok   $*"; }
ko() { fail=$((fail + 1)); echo "  FAIL $*"; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else ko "$what"; return 1; fi; }

W=$(mktemp -d /tmp/neopro-test-install.XXXXXX)
cleanup() {
    for p in "$W"/*/state/units/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
    [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

TRIPLES="arm-unknown-linux-musleabihf armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl x86_64-unknown-linux-musl"
DISTDIR=$W/dist
for t in $TRIPLES; do
    mkdir -p "$DISTDIR/$t/release"
    { cat "$BIN"; printf '\nNEOPRO-TRIPLE=%s\n' "$t"; } >"$DISTDIR/$t/release/neopro-backup"
    chmod 755 "$DISTDIR/$t/release/neopro-backup"
done
triple_of() { tail -c 200 "$1" 2>/dev/null | sed -n 's/^NEOPRO-TRIPLE=//p'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# fake_systemd ARCH: /lib/systemd/systemd of the current fake Pi, the first 20 bytes of an
# ELF file of that architecture (class, byte order, e_machine); "-": none.
fake_systemd() {
    local hdr
    rm -f "$ROOT/lib/systemd/systemd"
    case $1 in
        armhf) hdr='\001\001\001\000\000\000\000\000\000\000\000\000\002\000\050\000' ;; # 32-bit, EM_ARM
        arm64) hdr='\002\001\001\000\000\000\000\000\000\000\000\000\002\000\267\000' ;; # 64-bit, EM_AARCH64
        amd64) hdr='\002\001\001\000\000\000\000\000\000\000\000\000\003\000\076\000' ;; # 64-bit, EM_X86_64
        i386) hdr='\001\001\001\000\000\000\000\000\000\000\000\000\003\000\003\000' ;;  # 32-bit, EM_386
        -) return 0 ;;
    esac
    mkdir -p "$ROOT/lib/systemd"
    printf "\177ELF$hdr" >"$ROOT/lib/systemd/systemd"
    head -c 64 /dev/zero >>"$ROOT/lib/systemd/systemd"
}
# new_pi NAME MACHINE MODEL CPU_ARCH USERLAND: a fresh fake Pi (kernel MACHINE, userland
# USERLAND = armhf, arm64, amd64 or i386: dpkg, LONG_BIT and systemd's binary agree); sets
# PI (its folder) and ROOT. The files machine, dpkg, longbit of PI can be changed after.
new_pi() {
    PI=$W/$1 ROOT=$W/$1/root
    mkdir -p "$ROOT/proc" "$ROOT/home/pi/neopro/webapp" "$ROOT/home/pi/neopro/sync-agent" \
        "$ROOT/home/pi/neopro/videos" "$ROOT/etc/neopro" "$PI/state"
    printf 'processor\t: 0\nmodel name\t: %s\nBogoMIPS\t: 697.95\nCPU architecture: %s\n' "$3" "$4" >"$ROOT/proc/cpuinfo"
    [ -n "$3" ] || sed -i '/^model name/d' "$ROOT/proc/cpuinfo" # an arm64 kernel has no model name
    echo '{"club":"test"}' >"$ROOT/home/pi/neopro/webapp/configuration.json"
    echo 'TOKEN=x' >"$ROOT/home/pi/neopro/sync-agent/.env"
    echo 'SITE=test' >"$ROOT/etc/neopro/site.conf"
    echo "$2" >"$PI/machine"
    echo "$5" >"$PI/dpkg"
    case $5 in armhf | i386) echo 32 ;; *) echo 64 ;; esac >"$PI/longbit"
    fake_systemd "$5"
}
# setup ARGS...: runs the install script on the current fake Pi; output in $PI/out.
setup() {
    env SSH="$HERE/fakebin/ssh" SCP="$HERE/fakebin/scp" DIST="$DISTDIR" NEOPRO_ROOT="$ROOT" \
        FAKE_HOST="${FAKE_HOST:-pi@neopro-test}" FAKE_STATE="$PI/state" FAKE_MACHINE="$(cat "$PI/machine")" \
        FAKE_DPKG_ARCH="$(cat "$PI/dpkg")" FAKE_LONG_BIT="$(cat "$PI/longbit")" SETTLE_SECS="${SETTLE_SECS:-1}" \
        NEOPRO_DIR="$ROOT/home/pi/neopro" BACKUP_DIR="$ROOT/home/pi/neopro-backups" \
        SITE_CONF="$ROOT/etc/neopro/site.conf" SERVICES=nginx NEOPRO_CATCHUP_DELAY=3600 \
        LISTEN="127.0.0.1:${PORT:-1}" \
        bash "$REPO/scripts/setup-auto-backup.sh" "$@" </dev/null >"$PI/out" 2>&1
    echo $? >"$PI/rc"
}
rc() { cat "$PI/rc"; }
out_has() { grep -q -- "$1" "$PI/out"; }
state() { [ -f "$PI/state/units/$1" ]; }
show_out() { sed 's/^/       | /' "$PI/out"; }

echo "== a fresh Pi Zero (armv6l): install, daemon started for real"
new_pi zero armv6l "ARMv6-compatible processor rev 7 (v6l)" 7 armhf
PORT=$(free_port)
tmp_before=$(ls -d /tmp/neopro-setup.* 2>/dev/null | sort)
FAKE_START_DAEMON=1 setup neopro-test --no-test-backup
export FAKE_START_DAEMON=0
check "exit 0" test "$(rc)" = 0 || show_out
check "Pi Zero gets the ARMv6 build (not fooled by 'CPU architecture: 7')" out_has "-> arm-unknown-linux-musleabihf"
check "installed binary is the armv6 build" test "$(triple_of "$ROOT/usr/local/bin/neopro-backup")" = arm-unknown-linux-musleabihf
check "binary mode 755" test "$(stat -c %a "$ROOT/usr/local/bin/neopro-backup")" = 755
check "unit installed as is" cmp systemd/neopro-backup.service "$ROOT/etc/systemd/system/neopro-backup.service"
check "config installed from the template" cmp config/backup.conf.example "$ROOT/etc/neopro/backup.conf"
check "config mode 0640 root:pi" bash -c "[ \$(stat -c %a '$ROOT/etc/neopro/backup.conf') = 640 ] && grep -q 'chown root:pi $ROOT/etc/neopro/backup.conf' '$PI/state/log'"
check "template beside it" cmp config/backup.conf.example "$ROOT/etc/neopro/backup.conf.example"
check "README where the unit's Documentation= points" cmp README.md "$ROOT/usr/local/share/doc/neopro-backup/README.md"
check "backups folder made, 0700, given to pi" bash -c "[ \$(stat -c %a '$ROOT/home/pi/neopro-backups') = 700 ] && grep -q 'chown -R pi:pi $ROOT/home/pi/neopro-backups' '$PI/state/log'"
check "no drop-in for the default folders" test ! -e "$ROOT/etc/systemd/system/neopro-backup.service.d/paths.conf"
check "daemon-reload, enabled" bash -c "grep -q 'systemctl daemon-reload' '$PI/state/log' && [ -f '$PI/state/units/neopro-backup.service.enabled' ]"
check "daemon active and answering /healthz" bash -c "[ -f '$PI/state/units/neopro-backup.service.active' ] && [ \"\$(curl -s http://127.0.0.1:$PORT/healthz)\" = ok ]"
check "the root work went through sudo -n" grep -q '^sudo: sh -s' "$PI/state/log"
check "status shown" out_has "Active: active"
check "no temp folder left on the Pi" test "$(ls -d /tmp/neopro-setup.* 2>/dev/null | sort)" = "$tmp_before"

echo "== the same Pi again: idempotent, nothing restarted, the user's config kept"
echo 'RETENTION_DAYS=14' >>"$ROOT/etc/neopro/backup.conf"
cp "$ROOT/etc/neopro/backup.conf" "$W/conf.before"
restarts_before=$(grep -c 'systemctl restart' "$PI/state/log")
setup neopro-test --no-test-backup
check "exit 0" test "$(rc)" = 0 || show_out
check "says the binary, unit and config are kept" bash -c "grep -q 'kept: /usr/local/bin/neopro-backup' '$PI/out' && grep -q 'kept: /etc/systemd/system/neopro-backup.service' '$PI/out' && grep -q 'kept: /etc/neopro/backup.conf' '$PI/out'"
check "config not overwritten" cmp "$W/conf.before" "$ROOT/etc/neopro/backup.conf"
check "not restarted" test "$(grep -c 'systemctl restart' "$PI/state/log")" = "$restarts_before"

echo "== a test backup, as pi"
setup neopro-test --test-backup
check "exit 0" test "$(rc)" = 0 || show_out
check "an archive is in the backups folder" bash -c "ls '$ROOT'/home/pi/neopro-backups/backup-*.tar.gz"
check "run as pi (sudo -u pi or directly)" out_has "Backup created"

echo "== BACKUP_DIR moved in backup.conf: a drop-in lets the unit write there"
echo 'BACKUP_DIR="/srv/neopro backups"' >>"$ROOT/etc/neopro/backup.conf"
setup neopro-test --no-test-backup
check "exit 0" test "$(rc)" = 0 || show_out
check "drop-in with ReadWritePaths=-/srv/neopro backups" grep -qx 'ReadWritePaths=-/srv/neopro backups' "$ROOT/etc/systemd/system/neopro-backup.service.d/paths.conf"
check "that folder made, 0700" test "$(stat -c %a "$ROOT/srv/neopro backups" 2>/dev/null)" = 700
check "restarted for it" out_has "starting: neopro-backup.service"
sed -i '/^BACKUP_DIR=/d' "$ROOT/etc/neopro/backup.conf"
setup neopro-test --no-test-backup
check "drop-in removed when the key goes" test ! -e "$ROOT/etc/systemd/system/neopro-backup.service.d/paths.conf"

echo "== an upgrade: a new build replaces the old, the daemon restarts"
printf '\n# rebuilt\n' >>"$DISTDIR/arm-unknown-linux-musleabihf/release/neopro-backup"
setup neopro-test --no-test-backup
check "exit 0" test "$(rc)" = 0 || show_out
check "new binary installed" cmp "$DISTDIR/arm-unknown-linux-musleabihf/release/neopro-backup" "$ROOT/usr/local/bin/neopro-backup"
check "restarted" out_has "starting: neopro-backup.service"

echo "== a build that does not run on the Pi: refused, the installed one untouched"
cp "$ROOT/usr/local/bin/neopro-backup" "$W/bin.before"
mv "$DISTDIR/arm-unknown-linux-musleabihf/release/neopro-backup" "$W/good-arm"
printf '#!/bin/sh\necho "Illegal instruction" >&2\nexit 132\n' >"$DISTDIR/arm-unknown-linux-musleabihf/release/neopro-backup"
setup neopro-test --no-test-backup
check "exit 1" test "$(rc)" = 1
check "says it does not run there" out_has "does not run on this Pi"
check "installed binary unchanged, no .new left" bash -c "cmp '$W/bin.before' '$ROOT/usr/local/bin/neopro-backup' && [ ! -e '$ROOT/usr/local/bin/neopro-backup.new' ]"
mv -f "$W/good-arm" "$DISTDIR/arm-unknown-linux-musleabihf/release/neopro-backup"

echo "== uninstall: daemon gone, backups and config stay"
setup neopro-test --uninstall
check "exit 0" test "$(rc)" = 0 || show_out
check "stopped and disabled" bash -c "[ ! -f '$PI/state/units/neopro-backup.service.active' ] && [ ! -f '$PI/state/units/neopro-backup.service.enabled' ]"
check "daemon process gone" bash -c "! curl -s -m 1 http://127.0.0.1:$PORT/healthz"
check "unit, binary and doc removed" bash -c "[ ! -e '$ROOT/etc/systemd/system/neopro-backup.service' ] && [ ! -e '$ROOT/usr/local/bin/neopro-backup' ] && [ ! -e '$ROOT/usr/local/share/doc/neopro-backup' ]"
check "backups kept" bash -c "ls '$ROOT'/home/pi/neopro-backups/backup-*.tar.gz"
check "config kept" test -f "$ROOT/etc/neopro/backup.conf"
setup neopro-test --uninstall
check "uninstall twice: exit 0" test "$(rc)" = 0

echo "== the old script system: timer stopped and removed, script replaced by a call to the binary"
new_pi old armv7l "ARMv7 Processor rev 4 (v7l)" 7 armhf
mkdir -p "$ROOT/etc/systemd/system/timers.target.wants" "$ROOT/home/pi/neopro/scripts" "$ROOT/var/spool/cron/crontabs" "$ROOT/home/pi/neopro-backups"
printf '[Unit]\nDescription=Neopro backup\n[Service]\nType=oneshot\nExecStart=/bin/bash /home/pi/neopro/scripts/auto-backup.sh\n' >"$ROOT/etc/systemd/system/neopro-backup.service"
printf '[Timer]\nOnCalendar=daily\nOnCalendar=03:00\nPersistent=true\n[Install]\nWantedBy=timers.target\n' >"$ROOT/etc/systemd/system/neopro-backup.timer"
ln -s ../neopro-backup.timer "$ROOT/etc/systemd/system/timers.target.wants/neopro-backup.timer"
printf '#!/bin/bash\n# the old auto-backup.sh\necho old\n' >"$ROOT/home/pi/neopro/scripts/auto-backup.sh"
chmod 755 "$ROOT/home/pi/neopro/scripts/auto-backup.sh"
printf '0 4 * * * /home/pi/neopro/scripts/auto-backup.sh\n' >"$ROOT/var/spool/cron/crontabs/root"
touch "$ROOT/home/pi/neopro-backups/backup-20241218-030000.tar.gz"
mkdir -p "$PI/state/units"
touch "$PI/state/units/neopro-backup.timer.enabled" "$PI/state/units/neopro-backup.timer.active"
setup neopro-test --no-test-backup
check "exit 0" test "$(rc)" = 0 || show_out
check "Pi 3 in 32-bit gets the armv7 build" test "$(triple_of "$ROOT/usr/local/bin/neopro-backup")" = armv7-unknown-linux-musleabihf
check "timer stopped and disabled" bash -c "[ ! -f '$PI/state/units/neopro-backup.timer.active' ] && [ ! -f '$PI/state/units/neopro-backup.timer.enabled' ]"
check "timer unit and its link removed" bash -c "[ ! -e '$ROOT/etc/systemd/system/neopro-backup.timer' ] && [ ! -L '$ROOT/etc/systemd/system/timers.target.wants/neopro-backup.timer' ]"
check "the old oneshot unit replaced by the daemon's" cmp systemd/neopro-backup.service "$ROOT/etc/systemd/system/neopro-backup.service"
check "auto-backup.sh now calls 'neopro-backup run', original kept" bash -c "grep -q '/usr/local/bin/neopro-backup run' '$ROOT/home/pi/neopro/scripts/auto-backup.sh' && grep -q 'echo old' '$ROOT/home/pi/neopro/scripts/auto-backup.sh.orig'"
check "the shim is valid sh" sh -n "$ROOT/home/pi/neopro/scripts/auto-backup.sh"
check "warns about the cron line" out_has "crontabs/root still calls auto-backup.sh"
check "old root-owned backups given to pi" grep -q "chown -R pi:pi $ROOT/home/pi/neopro-backups" "$PI/state/log"
check "old backup kept" test -f "$ROOT/home/pi/neopro-backups/backup-20241218-030000.tar.gz"
check "daemon enabled and active" bash -c "[ -f '$PI/state/units/neopro-backup.service.enabled' ] && [ -f '$PI/state/units/neopro-backup.service.active' ]"
setup neopro-test --no-test-backup
check "second run leaves the shim alone (no .orig of the shim)" grep -q 'echo old' "$ROOT/home/pi/neopro/scripts/auto-backup.sh.orig"
setup neopro-test --uninstall
check "uninstall puts the original script back" bash -c "grep -q 'echo old' '$ROOT/home/pi/neopro/scripts/auto-backup.sh' && [ ! -e '$ROOT/home/pi/neopro/scripts/auto-backup.sh.orig' ]"

echo "== which build for which Pi: the architecture systemd runs as, then the CPU"
# The kernel (uname -m) is not the OS: Raspberry Pi OS 32-bit boots a 64-bit kernel on a
# Pi 4 or 5, and a 64-bit build there would run outside the unit's system-call filters.
# label | uname -m | model name | CPU architecture | dpkg (- none) | LONG_BIT (- none) |
# systemd's ELF (- none) | expected triple | what the script must say it went by
n=0
while IFS='|' read -r label machine model arch dpkg longbit elf want from; do
    [ -n "$label" ] || continue
    n=$((n + 1))
    new_pi "arch-$n" "$machine" "$model" "$arch" "$elf"
    echo "$dpkg" | sed 's/^-$/none/' >"$PI/dpkg"
    echo "$longbit" | sed 's/^-$/none/' >"$PI/longbit"
    setup neopro-test --no-test-backup
    got=$(triple_of "$ROOT/usr/local/bin/neopro-backup")
    if [ "$(rc)" = 0 ] && [ "$got" = "$want" ] && out_has "($from): .*-> $want"; then
        ok "$label: $want ($from)"
    else
        ko "$label: got '${got:-nothing}' (exit $(rc)), want $want ($from)"; show_out
    fi
done <<'EOF'
Pi Zero/1|armv6l|ARMv6-compatible processor rev 7 (v6l)|7|armhf|32|armhf|arm-unknown-linux-musleabihf|systemd's binary
Pi Zero, armv7l kernel|armv7l|ARMv6-compatible processor rev 7 (v6l)|7|armhf|32|armhf|arm-unknown-linux-musleabihf|systemd's binary
Pi 2, 32-bit OS|armv7l|ARMv7 Processor rev 5 (v7l)|7|armhf|32|armhf|armv7-unknown-linux-musleabihf|systemd's binary
Pi 3, 32-bit OS|armv7l|ARMv7 Processor rev 4 (v7l)|7|armhf|32|armhf|armv7-unknown-linux-musleabihf|systemd's binary
Pi 3, 32-bit OS, armv8l|armv8l|ARMv8 Processor rev 4 (v8l)|8|armhf|32|armhf|armv7-unknown-linux-musleabihf|systemd's binary
Pi 4, 32-bit OS (64-bit kernel)|aarch64||8|armhf|32|armhf|armv7-unknown-linux-musleabihf|systemd's binary
Pi 5, 32-bit OS (64-bit kernel)|aarch64||8|armhf|32|armhf|armv7-unknown-linux-musleabihf|systemd's binary
Pi 4, 32-bit OS, no systemd binary found: dpkg|aarch64||8|armhf|32|-|armv7-unknown-linux-musleabihf|dpkg: armhf
Pi 5, 32-bit OS, no dpkg: systemd's ELF|aarch64||8|-|32|armhf|armv7-unknown-linux-musleabihf|systemd's binary
Pi 4, 32-bit OS, only getconf|aarch64||8|-|32|-|armv7-unknown-linux-musleabihf|getconf LONG_BIT: 32
Pi 3, nothing but a 32-bit kernel|armv7l|ARMv7 Processor rev 4 (v7l)|7|-|-|-|armv7-unknown-linux-musleabihf|a 32-bit kernel runs only a 32-bit OS
Pi 4/5, 64-bit OS|aarch64||8|arm64|64|arm64|aarch64-unknown-linux-musl|systemd's binary
Pi 4/5, 64-bit OS, no systemd binary found: dpkg|aarch64||8|arm64|64|-|aarch64-unknown-linux-musl|dpkg: arm64
Pi 4/5, 64-bit OS, only getconf|aarch64||8|-|64|-|aarch64-unknown-linux-musl|getconf LONG_BIT: 64
dpkg says arm64, systemd is 32-bit: systemd wins|aarch64||8|arm64|64|armhf|armv7-unknown-linux-musleabihf|systemd's binary
x86_64 VM|x86_64|Intel(R) Xeon(R)||amd64|64|amd64|x86_64-unknown-linux-musl|systemd's binary
EOF
check "the disagreement is pointed out" grep -q "dpkg on pi@neopro-test says arm64 but systemd itself is 32-bit ARM" "$W/arch-15/out"

echo "== after the start, the daemon must stay active"
# How many times the last install asked is-active after its restart.
checks_after_restart() { tac "$PI/state/log" | sed '/systemctl restart neopro-backup/q' | grep -c 'systemctl is-active neopro-backup.service'; }
new_pi settle armv7l "ARMv7 Processor rev 4 (v7l)" 7 armhf
SETTLE_SECS=3 setup neopro-test --no-test-backup
check "stays active: exit 0" test "$(rc)" = 0 || show_out
check "stays active: says so" out_has "active: neopro-backup.service (still running 3s after the start)"
check "stays active: asked is-active 3 times after the restart (once a second)" test "$(checks_after_restart)" = 3
printf '\n# rebuilt\n' >>"$DISTDIR/armv7-unknown-linux-musleabihf/release/neopro-backup"
FAKE_ACTIVE_FOR=1 SETTLE_SECS=5 setup neopro-test --no-test-backup
check "dies after the start: exit 1" test "$(rc)" = 1 || show_out
check "dies after the start: says it did not stay active, and in which state" out_has "started but did not stay active: activating 2s later"
check "dies after the start: shows its journal and says where to look" bash -c "grep -q 'journal of the fake Pi' '$PI/out' && grep -q 'journalctl -u neopro-backup -n 50' '$PI/out' && grep -q 'does not stay running' '$PI/out'"
check "dies after the start: stops watching at once (2 checks, not 5)" test "$(checks_after_restart)" = 2
check "dies after the start: the new binary and the unit are in place (systemd keeps retrying)" cmp "$DISTDIR/armv7-unknown-linux-musleabihf/release/neopro-backup" "$ROOT/usr/local/bin/neopro-backup"
new_pi settle-real armv7l "ARMv7 Processor rev 4 (v7l)" 7 armhf
PORT=$(free_port)
# A daemon that really starts, answers /healthz, then is gone: is-active follows its process.
(
    until [ -f "$PI/state/units/neopro-backup.service.pid" ] && curl -sf -m 1 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.1; done
    kill "$(cat "$PI/state/units/neopro-backup.service.pid")"
) &
killer=$!
FAKE_START_DAEMON=1 SETTLE_SECS=5 setup neopro-test --no-test-backup
wait "$killer"
check "real daemon gone after READY: exit 1, not active" bash -c "[ \$(cat '$PI/rc') = 1 ] && grep -q 'did not stay active' '$PI/out'"
PORT=1

echo "== clear errors"
new_pi err armv7l "ARMv7 Processor rev 4 (v7l)" 7 armhf
FAKE_HOST=pi@somewhere-else setup neopro-test --no-test-backup
check "unreachable host: exit 1" test "$(rc)" = 1
check "unreachable host: says ssh failed and what to check" bash -c "grep -q 'cannot run commands on pi@neopro-test over ssh' '$PI/out' && grep -q 'Connection refused' '$PI/out' && grep -q 'ssh-copy-id' '$PI/out'"
check "unreachable host: nothing installed" test ! -e "$ROOT/usr/local/bin/neopro-backup"
echo mips >"$PI/machine"
echo mips >"$PI/dpkg"
rm -f "$ROOT/lib/systemd/systemd"
setup neopro-test --no-test-backup
check "unknown architecture: exit 1, names it" bash -c "[ \$(cat '$PI/rc') = 1 ] && grep -q \"unknown architecture 'mips'\" '$PI/out'"
check "unknown architecture: nothing installed" test ! -e "$ROOT/usr/local/bin/neopro-backup"
new_pi err64 aarch64 "" 8 arm64
mv "$DISTDIR/aarch64-unknown-linux-musl" "$W/aarch64.away"
setup neopro-test --no-test-backup
check "missing build: exit 1, says make cross" bash -c "[ \$(cat '$PI/rc') = 1 ] && grep -q \"run 'make cross' first\" '$PI/out'"
mv "$W/aarch64.away" "$DISTDIR/aarch64-unknown-linux-musl"
new_pi err-i386 x86_64 "Intel(R) Xeon(R)" "" i386
setup neopro-test --no-test-backup
check "32-bit x86 OS on a 64-bit kernel: exit 1, no build for it" bash -c "[ \$(cat '$PI/rc') = 1 ] && grep -q 'runs a 32-bit x86 OS' '$PI/out'"
check "32-bit x86 OS: nothing installed" test ! -e "$ROOT/usr/local/bin/neopro-backup"
new_pi err-unknown aarch64 "" 8 -
echo none >"$PI/dpkg"
echo none >"$PI/longbit"
setup neopro-test --no-test-backup
check "64-bit kernel, OS unknown (no systemd binary, dpkg, getconf): exit 1, refuses to guess" bash -c "[ \$(cat '$PI/rc') = 1 ] && grep -q 'cannot tell whether the OS of pi@neopro-test is 32- or 64-bit' '$PI/out'"
check "OS unknown: nothing installed" test ! -e "$ROOT/usr/local/bin/neopro-backup"
SETTLE_SECS=soon setup neopro-test --no-test-backup
check "SETTLE_SECS not a number: exit 1, says so" bash -c "[ \$(cat '$PI/rc') = 1 ] && grep -q 'SETTLE_SECS must be a number' '$PI/out'"
FAKE_SUDO=password setup neopro-test --no-test-backup
check "no passwordless sudo: exit 1, says so" bash -c "[ \$(cat '$PI/rc') = 1 ] && grep -q 'passwordless sudo' '$PI/out'"
setup
check "no HOST: usage, exit 2" bash -c "[ \$(cat '$PI/rc') = 2 ] && grep -q 'Usage\\|setup-auto-backup.sh' '$PI/out'"
setup neopro-test --bogus
check "unknown option: exit 1, names it" bash -c "[ \$(cat '$PI/rc') = 1 ] && grep -q 'unknown option --bogus' '$PI/out'"


echo "== a dead SD card: a fresh card, --config and --recover (the bucket: SeaweedFS)"
if [ -z "${NEOPRO_TEST_S3:-}" ] || [ -z "${NEOPRO_TEST_FILER:-}" ]; then
    # make test-install starts SeaweedFS (mk/cross.mk); a bare run of this script has none.
    if [ "${CI:-}" = true ]; then ko "--recover: no SeaweedFS (NEOPRO_TEST_S3, NEOPRO_TEST_FILER): run make test-install"
    else echo "  SKIP --recover: no SeaweedFS (run make test-install, which starts it)"; fi
else
    S3PREFIX="install-$$-$(date +%s)"
    python3 -c 'import sys,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"x", method="PUT")).read()' \
        "$NEOPRO_TEST_FILER/buckets/neopro-test/$S3PREFIX/.keep" >/dev/null
    # The club's backup.conf, kept on the laptop: its keys must never show.
    CLUBCONF=$W/club-backup.conf
    cat >"$CLUBCONF" <<CONF
S3_ENDPOINT=$NEOPRO_TEST_S3
S3_BUCKET=neopro-test
S3_ACCESS_KEY=NEOPROTESTKEY
S3_SECRET_KEY=neopro-test-secret-0123456789
S3_PREFIX=$S3PREFIX
SITE_ID=club-install
VIDEOS_OFFSITE=true
CONF
    # The club's Pi before the card died: its files, a video, one night in the bucket.
    new_pi alive aarch64 "" 8 arm64
    head -c 200000 /dev/urandom >"$ROOT/home/pi/neopro/videos/sponsor.mp4"
    echo '{"club":"the real one"}' >"$ROOT/home/pi/neopro/webapp/configuration.json"
    OLDROOT=$ROOT
    env NEOPRO_DIR="$ROOT/home/pi/neopro" BACKUP_DIR="$ROOT/home/pi/neopro-backups" SITE_CONF="$ROOT/etc/neopro/site.conf" \
        "$BIN" --config "$CLUBCONF" run >"$W/alive.out" 2>&1
    check "the club's night reached the bucket" grep -q 'offsite: 1 copy(ies) sent' "$W/alive.out" || sed 's/^/       | /' "$W/alive.out"
    # The new card: nothing of the club's.
    new_pi reborn aarch64 "" 8 arm64
    rm -rf "$ROOT/home/pi/neopro/webapp" "$ROOT/home/pi/neopro/sync-agent" "$ROOT/etc/neopro/site.conf"
    PORT=$(free_port)
    age-keygen -o "$W/club.key" >/dev/null 2>&1
    tmp_before=$(ls -d /tmp/neopro-setup.* 2>/dev/null | sort)
    setup neopro-test --config "$CLUBCONF" --recover club-install --identity "$W/club.key" --no-test-backup
    check "--recover: exit 0" test "$(rc)" = 0 || show_out
    check "--recover: says everything came back" out_has "recovered: everything came back"
    check "--config: installed byte for byte" cmp "$CLUBCONF" "$ROOT/etc/neopro/backup.conf"
    check "--config: 0600" test "$(stat -c %a "$ROOT/etc/neopro/backup.conf")" = 600
    check "--config: its secret never shown" bash -c "! grep -q 'neopro-test-secret' '$PI/out' '$PI/state/log'"
    check "--identity: its key never shown" bash -c "! grep -q AGE-SECRET-KEY '$PI/out' '$PI/state/log'"
    check "--recover: configuration.json back" cmp "$OLDROOT/home/pi/neopro/webapp/configuration.json" "$ROOT/home/pi/neopro/webapp/configuration.json"
    check "--recover: .env back, 0600" bash -c "cmp '$OLDROOT/home/pi/neopro/sync-agent/.env' '$ROOT/home/pi/neopro/sync-agent/.env' && [ \$(stat -c %a '$ROOT/home/pi/neopro/sync-agent/.env') = 600 ]"
    check "--recover: site.conf back" cmp "$OLDROOT/etc/neopro/site.conf" "$ROOT/etc/neopro/site.conf"
    check "--recover: the video back" cmp "$OLDROOT/home/pi/neopro/videos/sponsor.mp4" "$ROOT/home/pi/neopro/videos/sponsor.mp4"
    check "--recover: before the daemon starts" bash -c "grep -n 'recovering the site' '$PI/out' | head -1 | cut -d: -f1 | { read a; b=\$(grep -n 'starting: neopro-backup.service' '$PI/out' | head -1 | cut -d: -f1); [ -n \"\$a\" ] && [ -n \"\$b\" ] && [ \"\$a\" -lt \"\$b\" ]; }"
    check "--recover: no temp folder left on the Pi (the identity with it)" test "$(ls -d /tmp/neopro-setup.* 2>/dev/null | sort)" = "$tmp_before"
    # A site the bucket does not hold: the install stands, the script fails and says what to do.
    setup neopro-test --config "$CLUBCONF" --recover no-such-site --no-test-backup
    check "--recover of an unknown site: exit 1" test "$(rc)" = 1
    check "--recover of an unknown site: names the sites found" out_has "its sites: club-install"
    check "--recover of an unknown site: says how to try again" out_has "neopro-backup recover"
    check "--recover of an unknown site: the daemon is still enabled" state neopro-backup.service.enabled
    setup neopro-test --identity "$W/club.key" --no-test-backup
    check "--identity without --recover: exit 1" bash -c "[ \$(cat '$PI/rc') = 1 ] && grep -q 'goes with --recover' '$PI/out'"
fi

echo "test-install: $pass passed, $fail failed"
[ "$fail" = 0 ]
