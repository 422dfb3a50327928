#!/usr/bin/env bash
# make test-systemd-boot: the unit under a real systemd, with its whole sandbox applied.
# systemd-analyze only reads the unit; this boots this machine's own systemd as PID 1 of
# a systemd-nspawn container (Debian's systemd-container; the container's /usr is this
# machine's, read-only; its /etc a copy, with a user pi; the host's network, so the API
# is reached from here) and checks, with the unit file installed unchanged:
#  - a missing BACKUP_DIR is made by ExecStartPre (pi, 0700);
#  - `systemctl start` returns once the daemon sent READY=1 (Type=notify), and /healthz
#    answers; with WatchdogSec=4s (a drop-in) it stays up: its WATCHDOG=1 pings arrive;
#  - a backup through the API works inside the sandbox: archive owned by pi, 0600, and
#    system-info.txt holds the uptime and the services' states (systemctl is-active over
#    D-Bus, through PrivateUsers, the seccomp filter and RestrictAddressFamilies);
#  - a restore through the API writes configuration.json and .env back; site.conf, in
#    read-only /etc, is a per-file failure;
#  - in the daemon's mount namespace only BACKUP_DIR, webapp/, sync-agent/ and videos/
#    are writable; NEOPRO_DIR itself, /etc/neopro and /usr are not; no capabilities, NoNewPrivs, seccomp;
#  - the unit's system-call filters bind the installed build: the daemon's binary is of
#    systemd's own architecture, and tests/systemd/sandbox-probe.c, built with zig for that
#    architecture, run as pi under the unit's sandbox properties (systemctl show), is
#    refused sched_setaffinity (@resources) and an AF_NETLINK socket, which it gets
#    without them; the same probe built for the machine's other ABI (i386 on x86_64) is
#    killed by SystemCallArchitectures=native, and without that line only partly
#    filtered (docs/deploy.md: why the installer follows systemd's architecture);
#  - a crash (SIGKILL) is restarted (Restart=on-failure), a stop is clean (exit 0).
# Needs root and systemd-nspawn; without them it says SKIP (and fails when CI=true).
# Needs zig (scripts/cross-deps.sh, run by make cross) for the probe.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

BIN=${BIN:-target/cross/x86_64-unknown-linux-musl/release/neopro-backup}
ZIG=("${XTOOLS:-.xtools}/venv/bin/python" -m ziglang)
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok   $*"; }
ko() { fail=$((fail + 1)); echo "  FAIL $*"; }
check() { local what=$1; shift; if "$@" >"$C/check.out" 2>&1; then ok "$what"; else ko "$what"; sed 's/^/       | /' "$C/check.out" | head -15; return 1; fi; }
skip() {
    echo "test-systemd-boot: SKIP: $*"
    if [ "${CI:-}" = true ]; then echo "test-systemd-boot: 0 passed, 1 failed"; exit 1; fi
    exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root"
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn is missing (apt-get install systemd-container)"
[ -x "$BIN" ] || { echo "test-systemd-boot: $BIN is missing: make cross (or set BIN)"; exit 1; }

C=$(mktemp -d /tmp/neopro-test-boot.XXXXXX)
NSPAWN_PID=
cleanup() {
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null # nspawn powers the container off
        for _ in $(seq 50); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null
    fi
    [ -n "${KEEP:-}" ] || rm -rf "$C"
}
trap cleanup EXIT

# --- the container's tree -------------------------------------------------------------
RT=$C/root
mkdir -p "$RT"/{usr,etc,var,tmp,home,proc,sys,dev,run,root} "$C/usrlocal/bin"
for l in bin lib lib64 sbin; do [ -L /$l ] && ln -s "$(readlink /$l)" "$RT/$l"; done
cp -a /etc/. "$RT/etc/" 2>/dev/null
cp --remove-destination /usr/lib/os-release "$RT/etc/os-release"
rm -f "$RT/etc/machine-id"
# pi: a uid free on this machine, so that ownership checks mean something.
PI_UID=4242
while getent passwd $PI_UID >/dev/null || getent group $PI_UID >/dev/null; do PI_UID=$((PI_UID + 1)); done
sed -i '/^pi:/d' "$RT/etc/passwd" "$RT/etc/group" "$RT/etc/shadow" 2>/dev/null
echo "pi:x:$PI_UID:$PI_UID:pi:/home/pi:/bin/sh" >>"$RT/etc/passwd"
echo "pi:x:$PI_UID:" >>"$RT/etc/group"
N=$RT/home/pi/neopro
mkdir -p "$N/webapp" "$N/sync-agent" "$N/videos/pubs" "$RT/etc/neopro"
echo '{"club":"boot test"}' >"$N/webapp/configuration.json"
echo 'SYNC_TOKEN=secret' >"$N/sync-agent/.env"
head -c 1000 /dev/urandom >"$N/videos/pubs/clip.mp4"
chown -R $PI_UID:$PI_UID "$RT/home/pi"
chmod 0755 "$RT/home/pi"
echo 'SITE_ID=boot-test' >"$RT/etc/neopro/site.conf"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The installed config: a free port here, and services that exist in the container.
{ cat config/backup.conf.example
  echo "LISTEN=127.0.0.1:$PORT"
  echo 'SERVICES="dbus systemd-journald no-such-unit"'; } >"$RT/etc/neopro/backup.conf"
chmod 0640 "$RT/etc/neopro/backup.conf"
chown 0:$PI_UID "$RT/etc/neopro/backup.conf"
# The unit, unchanged, and only what the container needs: no other service of this
# machine's /etc is started (we boot into basic.target).
cp systemd/neopro-backup.service "$RT/etc/systemd/system/neopro-backup.service"
mkdir -p "$RT/etc/systemd/system/neopro-backup.service.d"
printf '[Service]\nWatchdogSec=4s\nRestartSec=1s\n' >"$RT/etc/systemd/system/neopro-backup.service.d/test.conf"
cp "$BIN" "$C/usrlocal/bin/neopro-backup"

# --- the probes of the sandbox (sandbox-probe.c): the installed build's ABI, the other one
# The e_machine of an ELF file (little-endian: every build here), in hex.
elf_machine() { od -An -tx1 -j18 -N2 "$1" 2>/dev/null | awk '{ print $2 $1 }'; }
case $(elf_machine "$BIN") in
    003e) NATIVE=x86_64-linux-musl FOREIGN=x86-linux-musl FOREIGN_NAME="i386" ;;
    00b7) NATIVE=aarch64-linux-musl FOREIGN=arm-linux-musleabihf FOREIGN_NAME="32-bit ARM" ;;
    0028) NATIVE=arm-linux-musleabihf FOREIGN= FOREIGN_NAME= ;;
    *) echo "test-systemd-boot: $BIN: unknown ELF machine '$(elf_machine "$BIN")'"; exit 1 ;;
esac
probe_built=0
if "${ZIG[@]}" version >/dev/null 2>&1; then
    probe_built=1
    for t in "native:$NATIVE" "foreign:$FOREIGN"; do
        [ -n "${t#*:}" ] || continue
        timeout 900 "${ZIG[@]}" cc -target "${t#*:}" -static -Os -s -o "$C/usrlocal/bin/neopro-probe-${t%%:*}" \
            tests/systemd/sandbox-probe.c >"$C/zig-${t%%:*}.log" 2>&1 || { probe_built=0; cat "$C/zig-${t%%:*}.log"; }
    done
fi

# --- boot -------------------------------------------------------------------------------
echo "== booting systemd in a container ($(systemd --version | head -n 1))"
systemd-nspawn -D "$RT" --bind-ro=/usr --bind="$C/usrlocal:/usr/local" --register=no --keep-unit \
    --console=read-only -b -- --unit=basic.target >"$C/boot.log" 2>&1 &
NSPAWN_PID=$!
INIT=
for _ in $(seq 100); do
    INIT=$(pgrep -P "$NSPAWN_PID" -x systemd 2>/dev/null | head -n 1)
    [ -n "$INIT" ] && break
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.2
done
[ -n "$INIT" ] || { echo "test-systemd-boot: the container did not start:"; tail -n 20 "$C/boot.log"; skip "systemd-nspawn cannot boot here"; }
in_ct() { nsenter -t "$INIT" -m -u -i -n -p -- "$@"; }
for _ in $(seq 150); do
    st=$(in_ct systemctl is-system-running 2>/dev/null)
    case $st in running | degraded) break ;; esac
    sleep 0.2
done
check "container booted (state: ${st:-?})" test -n "$st"
prop() { in_ct systemctl show -P "$1" neopro-backup.service; }

# --- start ------------------------------------------------------------------------------
check "BACKUP_DIR absent before start" test ! -e "$RT/home/pi/neopro-backups"
check "systemctl start returns after READY=1" in_ct timeout 60 systemctl start neopro-backup.service
check "active (running)" test "$(prop ActiveState)/$(prop SubState)" = active/running
check "ExecStartPre made BACKUP_DIR: pi, 0700" test "$(stat -c '%u %a' "$RT/home/pi/neopro-backups")" = "$PI_UID 700"
check "GET /healthz answers ok" test "$(curl -s -m 5 "http://127.0.0.1:$PORT/healthz")" = ok
# MainPID is a PID of the container's namespace: find the same process here.
CT_MAIN=$(prop MainPID) MAIN=
for p in $(pgrep -x neopro-backup); do
    [ "$(readlink /proc/$p/ns/pid)" = "$(readlink /proc/$INIT/ns/pid)" ] || continue
    [ "$(awk '/^NSpid:/ { print $NF }' /proc/$p/status)" = "$CT_MAIN" ] && MAIN=$p
done
check "the daemon's process found (container PID $CT_MAIN, here ${MAIN:-?})" test -n "$MAIN"
check "runs as pi" test "$(stat -c %u /proc/$MAIN)" = "$PI_UID"
check "no capabilities, NoNewPrivs, seccomp filter" bash -c "grep -q '^CapEff:[[:space:]]*0000000000000000' /proc/$MAIN/status && grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$MAIN/status && grep -q '^Seccomp:[[:space:]]*2' /proc/$MAIN/status"

# --- the system-call filters bind the installed build -----------------------------------
# "Seccomp: 2" says a filter is loaded, not that it applies: systemd builds
# SystemCallFilter= and RestrictAddressFamilies= for the ABIs it knows (its own, and on a
# 64-bit systemd the machine's 32-bit one), and a process of an ABI it does not know (a
# 64-bit build under the 32-bit systemd of Raspberry Pi OS 32-bit on a Pi 4/5) is not
# filtered at all. So: the daemon's binary must be of systemd's own architecture, and a
# probe of that architecture under the unit's properties, as systemd loaded them, must be
# refused what the unit denies.
check "the daemon's binary is systemd's own architecture (ELF machine $(elf_machine /proc/$MAIN/exe) = $(elf_machine /proc/$INIT/exe))" \
    test "$(elf_machine /proc/$MAIN/exe)" = "$(elf_machine /proc/$INIT/exe)"
SANDBOX="User Group PrivateUsers NoNewPrivileges SystemCallFilter SystemCallArchitectures SystemCallErrorNumber
  RestrictAddressFamilies RestrictNamespaces RestrictRealtime RestrictSUIDSGID LockPersonality MemoryDenyWriteExecute"
# unit_props NAME...: PROPS=(-p NAME=VALUE ...), the unit's values (the empty ones left out).
unit_props() {
    local a=() l p
    for p in "$@"; do a+=(-p "$p"); done
    PROPS=()
    : >"$C/props"
    while IFS= read -r l; do
        [ -n "${l#*=}" ] || continue
        PROPS+=(-p "$l")
        echo "$l" >>"$C/props"
    done < <(in_ct systemctl show "${a[@]}" neopro-backup.service)
}
# run_probe NAME PROBE SYSTEMD-RUN-ARGS...: /usr/local/bin/PROBE as a transient service;
# its output in $C/NAME.out, systemd-run's report ("Main processes terminated with: ...")
# in $C/NAME.err.
probe_n=0
run_probe() {
    local name=$1 exe=$2
    shift 2
    probe_n=$((probe_n + 1))
    in_ct timeout 60 systemd-run --wait --pipe --unit="neopro-probe-$probe_n" "$@" "/usr/local/bin/$exe" \
        >"$C/$name.out" 2>"$C/$name.err" </dev/null
    cat "$C/$name.out" "$C/$name.err" >"$C/$name.all"
}
# probe_says NAME LINE...: each LINE is in what the run NAME printed (shown when not).
probe_says() {
    local f=$C/$1.all l
    shift
    for l in "$@"; do grep -qx "$l" "$f" || { cat "$f"; return 1; }; done
}
if [ "$probe_built" = 1 ]; then
    check "the probe is a process of the installed build (ELF machine $(elf_machine "$BIN"), static)" \
        test "$(elf_machine "$C/usrlocal/bin/neopro-probe-native")" = "$(elf_machine "$BIN")"
    run_probe control neopro-probe-native -p User=pi
    check "without the sandbox, pi may call sched_setaffinity and open an AF_NETLINK socket" \
        probe_says control sched_setaffinity=ok socket_af_netlink=ok
    unit_props $SANDBOX
    check "the unit's filters are read (SystemCallFilter, SystemCallArchitectures=native, RestrictAddressFamilies)" \
        bash -c "grep -q '^SystemCallFilter=.' '$C/props' && grep -qx 'SystemCallArchitectures=native' '$C/props' && grep -q '^RestrictAddressFamilies=.' '$C/props'"
    run_probe native neopro-probe-native "${PROPS[@]}"
    check "under the unit's properties the probe runs and is refused sched_setaffinity (EPERM: SystemCallFilter=~@resources)" \
        probe_says native 'sched_setaffinity=Operation not permitted'
    check "... and an AF_NETLINK socket (EAFNOSUPPORT: RestrictAddressFamilies=)" \
        probe_says native 'socket_af_netlink=Address family not supported by protocol'
    if [ -n "$FOREIGN" ]; then
        run_probe foreign neopro-probe-foreign "${PROPS[@]}"
        check "the probe built for $FOREIGN_NAME, under the same properties: killed at its first call (SystemCallArchitectures=native)" \
            bash -c "grep -q 'code=killed/status=SYS' '$C/foreign.err' && [ ! -s '$C/foreign.out' ] || { cat '$C/foreign.all'; exit 1; }"
        unit_props ${SANDBOX/SystemCallArchitectures/}
        run_probe foreign-any neopro-probe-foreign "${PROPS[@]}"
        check "without SystemCallArchitectures=native the $FOREIGN_NAME probe runs, and SystemCallFilter still binds it (this systemd knows that ABI)" \
            probe_says foreign-any 'sched_setaffinity=Operation not permitted'
        echo "  note without SystemCallArchitectures=native, the $FOREIGN_NAME probe's AF_NETLINK socket: $(sed -n 's/^socket_af_netlink=//p' "$C/foreign-any.out")"
    fi
else
    ko "the probe of the sandbox could not be built: zig is missing or failed (bash scripts/cross-deps.sh)"
fi

# --- what the sandbox lets it write (as root, in the daemon's mount namespace) --------
wr() { nsenter -t "$MAIN" -m -- sh -c "touch '$1/.w' && rm -f '$1/.w'" 2>/dev/null; }
writable() { if wr "$1"; then ok "writable: $1 $2"; else ko "writable: $1 $2"; fi; }
readonly_() { if wr "$1"; then ko "read-only: $1"; else ok "read-only: $1"; fi; }
writable /home/pi/neopro-backups "(BACKUP_DIR)"
writable /home/pi/neopro/webapp "(restore)"
writable /home/pi/neopro/sync-agent "(restore)"
writable /home/pi/neopro/videos "(restore --videos)"
readonly_ /home/pi/neopro
readonly_ /home/pi
readonly_ /etc/neopro
readonly_ /usr/local/bin
readonly_ /var

# --- a backup inside the sandbox -------------------------------------------------------
check "POST /api/backups/create succeeds" bash -c "curl -sf -m 60 -X POST http://127.0.0.1:$PORT/api/backups/create | grep -q '\"success\":true'"
A=$(ls "$RT"/home/pi/neopro-backups/backup-*.tar.gz 2>/dev/null | head -n 1)
check "archive owned by pi, 0600" test "$(stat -c '%u %a' "$A" 2>/dev/null)" = "$PI_UID 600"
check "archive verifies" "$BIN" --config /dev/null verify "$A"
tar -xzOf "$A" --wildcards '*/system-info.txt' >"$C/sysinfo.txt" 2>/dev/null
check "system-info.txt: uptime and disk use read" bash -c "grep -q '^uptime: [0-9]' '$C/sysinfo.txt' && grep -q '^disk.*[0-9]' '$C/sysinfo.txt'"
check "system-info.txt: service states from systemctl (dbus active, unknown unit inactive)" bash -c "grep -Eq '[[:space:]]dbus:? active$' '$C/sysinfo.txt' && grep -Eq '[[:space:]]systemd-journald:? active$' '$C/sysinfo.txt' && grep -Eq '[[:space:]]no-such-unit:? inactive$' '$C/sysinfo.txt'"
check "configuration.json read through the sandbox" bash -c "tar -tzf '$A' | grep -q configuration.json"

# --- a restore from the API: the two app files come back, site.conf cannot (read-only)
cp "$N/webapp/configuration.json" "$C/conf.orig"
cp "$N/sync-agent/.env" "$C/env.orig"
echo '{"club":"changed"}' >"$N/webapp/configuration.json"
echo 'SYNC_TOKEN=changed' >"$N/sync-agent/.env"
echo 'SITE_ID=changed' >"$RT/etc/neopro/site.conf"
curl -s -m 60 -X POST -H 'Content-Type: application/json' -d '{"dryRun":false}' \
    "http://127.0.0.1:$PORT/api/backups/restore/$(basename "$A")" >"$C/restore.json"
check "restore: configuration.json and sync-agent .env written back by the daemon" bash -c "cmp '$C/conf.orig' '$N/webapp/configuration.json' && cmp '$C/env.orig' '$N/sync-agent/.env'"
check "restore: site.conf refused (read-only /etc), reported" bash -c "grep -q 'SITE_ID=changed' '$RT/etc/neopro/site.conf' && grep -qF '\"failed\":[\"site.conf\"]' '$C/restore.json'"
check "restore: a safety backup was made first" test "$(ls "$RT"/home/pi/neopro-backups/backup-*.tar.gz | wc -l)" -ge 2
echo 'SITE_ID=boot-test' >"$RT/etc/neopro/site.conf"

# --- watchdog, crash, stop ------------------------------------------------------------
sleep 10
check "WatchdogSec=4s: still up after 10 s, never restarted" test "$(prop ActiveState)/$(prop NRestarts)" = active/0
in_ct systemctl kill -s SIGKILL neopro-backup.service
for _ in $(seq 50); do [ "$(prop NRestarts)" = 1 ] && [ "$(prop ActiveState)" = active ] && break; sleep 0.2; done
check "killed: restarted by Restart=on-failure" test "$(prop ActiveState)/$(prop NRestarts)" = active/1
check "and answers again" bash -c "for i in \$(seq 50); do [ \"\$(curl -s -m 2 http://127.0.0.1:$PORT/healthz)\" = ok ] && exit 0; sleep 0.2; done; exit 1"
check "systemctl stop: clean exit" bash -c "nsenter -t $INIT -m -u -i -n -p -- systemctl stop neopro-backup.service && [ \"\$(nsenter -t $INIT -m -u -i -n -p -- systemctl show -P Result neopro-backup.service)\" = success ]"
if [ "$fail" != 0 ]; then
    echo "       journal of the unit:"
    in_ct journalctl -u neopro-backup.service --no-pager -n 30 | sed 's/^/       | /'
fi

echo "test-systemd-boot: $pass passed, $fail failed"
[ "$fail" = 0 ]
