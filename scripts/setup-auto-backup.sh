#!/usr/bin/env bash
# Installs, upgrades or removes neopro-backup on a Neopro Pi, from a PC with this repo.
#
#   scripts/setup-auto-backup.sh [OPTIONS] HOST            install or upgrade
#   scripts/setup-auto-backup.sh [OPTIONS] HOST --uninstall
#   scripts/setup-auto-backup.sh HOST --config FILE --recover [SITE] [--identity FILE]
#                                              a freshly flashed card back to the club's Pi
#
# HOST is what you give ssh: `neopro.local`, `pi@192.168.1.20`, a Host of ~/.ssh/config.
# Without `user@`, the user is pi. The user needs passwordless sudo (the Pi OS default
# for pi) or to be root.
#
# Install/upgrade, idempotent (run it again to upgrade; nothing changes when nothing is new):
#  1. detects over ssh the architecture systemd runs as (its ELF header, else `dpkg
#     --print-architecture`, else `getconf LONG_BIT`) and the CPU (uname -m and
#     /proc/cpuinfo), and picks the static binary of `make cross`: a 32-bit OS gets a
#     32-bit build even on a 64-bit kernel (Pi 4/5), the ARMv6 one on a Pi Zero/1;
#  2. installs it as /usr/local/bin/neopro-backup, after checking that it runs there;
#  3. stops the old system if present — the neopro-backup.timer is disabled and removed,
#     and auto-backup.sh is replaced by a two-line script that calls `neopro-backup run`
#     (the old admin server and any cron line keep working, and only one program ever
#     backs up); the original is kept as auto-backup.sh.orig — and gives the backups
#     folder to pi (the old service wrote as root, the daemon runs as pi);
#  4. installs the systemd unit, and /etc/neopro/backup.conf from the commented template
#     only when there is none (yours is never overwritten);
#  5. enables and (re)starts the daemon, checks that it stays active for a few seconds
#     (says so, with its journal, when it does not), shows its status and offers a
#     test backup.
# With --config FILE, FILE (the site's backup.conf, kept off the Pi) is installed as
# /etc/neopro/backup.conf, 0600 and owned by pi, replacing the one there (kept as
# backup.conf.old); it is never shown. With --recover, `neopro-backup recover` runs on
# the Pi right after the install and before the daemon starts: the site's newest backup
# in the bucket that verifies is fetched and restored, with its videos (SITE: the site's
# folder in the bucket, default its SITE_ID; --identity: the age key of an encrypted
# site, copied to a 0600 temp file on the Pi, used once and removed whatever happens).
# The daemon is started either way; the script fails when the recovery did not bring
# everything back (then run it again, or `neopro-backup recover` on the Pi).
# --uninstall stops and removes the daemon, its unit and the binary, puts the original
# auto-backup.sh back, and leaves the backups and /etc/neopro/backup.conf in place.
#
# Options:
#   --test-backup / --no-test-backup   make (or not) a test backup without asking
#                                      (without either, asks when run from a terminal)
#   --config FILE                      install FILE as /etc/neopro/backup.conf
#   --recover [SITE]                   recover the site from the bucket (HOST first
#                                      when SITE is given)
#   --identity FILE                    the site's age identity, for --recover
#   -h, --help
# Environment (defaults in brackets):
#   SSH   [ssh -o ConnectTimeout=10]   the command that runs a shell command on HOST
#   SCP   [scp -q -o ConnectTimeout=10] the command that copies files to HOST:DIR/
#   DIST  [<repo>/target/cross]        where <triple>/release/neopro-backup are (make cross)
#   SETTLE_SECS  [5]                   how long the daemon must stay active after a start
#   NEOPRO_ROOT  []                    a prefix for every path on HOST (the install tests
#                                      use a temp folder; also useful on a mounted image)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SSH=${SSH:-ssh -o ConnectTimeout=10}
SCP=${SCP:-scp -q -o ConnectTimeout=10}
DIST=${DIST:-$REPO/target/cross}
R=${NEOPRO_ROOT:-}
SETTLE_SECS=${SETTLE_SECS:-5}
PI_USER=pi

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup-auto-backup: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; } # quote for sh

host="" uninstall=0 test_backup=ask config_file="" recover=0 recover_site="" identity_file=""
while [ $# -gt 0 ]; do
    case $1 in
        --uninstall) uninstall=1 ;;
        --test-backup) test_backup=yes ;;
        --no-test-backup) test_backup=no ;;
        --config)
            [ $# -ge 2 ] || die "--config needs a FILE (the site's backup.conf)"
            config_file=$2; shift ;;
        --identity)
            [ $# -ge 2 ] || die "--identity needs a FILE (the site's age identity)"
            identity_file=$2; shift ;;
        --recover)
            recover=1
            # A SITE after --recover once HOST is known (else the word is HOST).
            if [ $# -ge 2 ] && [ -n "$host" ] && [ "${2#-}" = "$2" ]; then
                recover_site=$2; shift
            fi ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$host" ] || die "one HOST only (got '$host' and '$1')"; host=$1 ;;
    esac
    shift
done
[ -n "$host" ] || { usage >&2; exit 2; }
if [ -n "$config_file" ]; then
    [ -f "$config_file" ] && [ -r "$config_file" ] || die "--config $config_file: not a readable file"
fi
if [ -n "$identity_file" ]; then
    [ "$recover" = 1 ] || die "--identity goes with --recover (the age key of an encrypted site)"
    [ -f "$identity_file" ] && [ -r "$identity_file" ] || die "--identity $identity_file: not a readable file"
fi
if [ -n "$recover_site" ]; then
    printf '%s' "$recover_site" | grep -Eq '^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$' \
        || die "--recover $recover_site: a site is a SITE_ID (letters, digits, '.', '_', '-')"
fi
if [ "$uninstall" = 1 ] && { [ -n "$config_file" ] || [ "$recover" = 1 ]; }; then
    die "--config and --recover are options of the install, not of --uninstall"
fi
case $SETTLE_SECS in '' | *[!0-9]*) die "SETTLE_SECS must be a number of seconds (got '$SETTLE_SECS')" ;; esac
case $host in *@*) ;; *) host="$PI_USER@$host" ;; esac

# Runs a shell command on the Pi. stdin goes along (scripts are sent as `sh -s`).
remote() { $SSH "$host" "$1"; }
# Runs stdin as a root shell script on the Pi.
remote_root() {
    remote 'if [ "$(id -u)" = 0 ]; then sh -s; else sudo -n sh -s; fi'
}

# --- 1. reach the Pi, learn what it is --------------------------------------------------
say "Connecting to $host"
probe_err=$(mktemp)
trap 'rm -f "$probe_err"' EXIT
# One round trip: KEY=value lines about the Pi. init_elf: the first 20 bytes, in hex, of
# systemd's own binary: its ELF class and machine say which architecture systemd runs as.
probe_cmd="echo machine=\$(uname -m)
echo model=\$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' $(q "$R/proc/cpuinfo") 2>/dev/null | head -n 1)
echo cpu_arch=\$(sed -n 's/^CPU architecture[[:space:]]*:[[:space:]]*//p' $(q "$R/proc/cpuinfo") 2>/dev/null | head -n 1)
echo dpkg_arch=\$(dpkg --print-architecture 2>/dev/null)
echo long_bit=\$(getconf LONG_BIT 2>/dev/null)
for f in $(q "$R/lib/systemd/systemd") $(q "$R/usr/lib/systemd/systemd") $(q "$R/sbin/init"); do
    if [ -f \"\$f\" ]; then echo init_elf=\$(od -An -tx1 -N20 \"\$f\" 2>/dev/null | tr -d ' \\n'); break; fi
done
echo pi_uid=\$(id -u $PI_USER 2>/dev/null || echo none)
if [ \"\$(id -u)\" = 0 ] || sudo -n true 2>/dev/null; then echo sudo=ok; else echo sudo=no; fi
echo systemctl=\$(command -v systemctl || echo none)"
if ! probe=$(remote "$probe_cmd" </dev/null 2>"$probe_err"); then
    die "cannot run commands on $host over ssh: $(tail -n 3 "$probe_err" | tr '\n' ' ')
  Check the name or address, that the Pi is on the network, and that \`ssh $host\` works
  from this PC without a password (ssh-copy-id $host)."
fi
probe_get() { printf '%s\n' "$probe" | sed -n "s/^$1=//p" | head -n 1; }
machine=$(probe_get machine) model=$(probe_get model) cpu_arch=$(probe_get cpu_arch)
[ -n "$machine" ] || die "$host did not answer 'uname -m' (got: $(printf '%s' "$probe" | head -c 200))"
[ "$(probe_get sudo)" = ok ] || die "the user of $host needs passwordless sudo (or log in as root): 'sudo -n true' failed there"
[ "$(probe_get systemctl)" != none ] || die "$host has no systemctl: neopro-backup needs a systemd system (Raspberry Pi OS)"

# The architecture of an ELF file from its first 20 bytes in hex (class, byte order, machine).
elf_arch() {
    local h=$1 m
    [ "${h:0:8}" = 7f454c46 ] || return 0
    if [ "${h:10:2}" = 01 ]; then m=${h:38:2}${h:36:2}; else m=${h:36:4}; fi
    case ${h:8:2}:$m in
        01:0028) echo arm32 ;;
        02:00b7) echo arm64 ;;
        02:003e) echo amd64 ;;
        01:0003) echo i386 ;;
        *) echo "ELF class ${h:8:2} machine 0x$m" ;;
    esac
}
arch_name() {
    case $1 in
        arm32) echo "32-bit ARM" ;; arm64) echo "64-bit ARM (arm64)" ;;
        amd64) echo "x86_64 (amd64)" ;; i386) echo "32-bit x86 (i386)" ;; *) echo "$1" ;;
    esac
}

if [ "$uninstall" = 0 ]; then
    # Which build: the one of the architecture systemd runs as. systemd builds a unit's
    # system-call filters (SystemCallFilter=, RestrictAddressFamilies=,
    # SystemCallArchitectures=) for the ABIs it knows: a 32-bit systemd knows no 64-bit
    # one, and a 64-bit process escapes its filters entirely (docs/deploy.md, 3). The
    # Raspberry Pi OS 32-bit boots a 64-bit kernel on a Pi 4 or 5 (uname -m says
    # aarch64): the kernel's architecture is not the one to follow. systemd's own binary
    # says it; dpkg and getconf LONG_BIT (the size of a long in the userland) when it
    # cannot be read.
    dpkg_arch=$(probe_get dpkg_arch) long_bit=$(probe_get long_bit)
    sys_arch=$(elf_arch "$(probe_get init_elf)")
    case $dpkg_arch in armhf | armel | arm) pkg_arch=arm32 ;; *) pkg_arch=$dpkg_arch ;; esac
    userland="" from=""
    if [ -n "$sys_arch" ]; then
        userland=$sys_arch from="systemd's binary"
        if [ -n "$pkg_arch" ] && [ "$pkg_arch" != "$sys_arch" ]; then
            say "note: dpkg on $host says $dpkg_arch but systemd itself is $(arch_name "$sys_arch"): going by systemd (it builds the unit's filters)"
        fi
    elif [ -n "$pkg_arch" ]; then
        userland=$pkg_arch from="dpkg: $dpkg_arch"
    elif [ "$long_bit" = 32 ] || [ "$long_bit" = 64 ]; then
        from="getconf LONG_BIT: $long_bit"
        case $machine:$long_bit in
            aarch64:32 | arm64:32 | arm*:32) userland=arm32 ;;
            aarch64:64 | arm64:64) userland=arm64 ;;
            x86_64:64 | amd64:64) userland=amd64 ;;
            x86_64:32 | i?86:32) userland=i386 ;;
        esac
    fi
    if [ -z "$userland" ]; then
        case $machine in
            aarch64 | arm64 | x86_64 | amd64) die "cannot tell whether the OS of $host is 32- or 64-bit (no systemd binary in /lib/systemd, no dpkg, no getconf): the build must match it, or the unit's sandbox does not apply" ;;
            arm*) userland=arm32 from="a 32-bit kernel runs only a 32-bit OS" ;;
            *) userland=$machine from="uname -m" ;;
        esac
    fi
    # The ARMv6 case. A Pi Zero/Zero W/1 (ARM1176) must get the armv6 build: the armv7
    # one dies there with SIGILL. Its kernel says armv6l, and /proc/cpuinfo says
    # "ARMv6-compatible processor ... (v6l)" but also "CPU architecture: 7" (the ARM1176
    # uses the v7 CPUID scheme), so that line alone would pick the wrong build. A 64-bit
    # Pi on a 32-bit kernel says armv7l (or armv8l), on a 64-bit kernel aarch64: the
    # armv7 build. A 32-bit ARM that says nothing clear gets the armv6 build, which runs
    # on every 32-bit Pi.
    case $userland in
        arm32)
            if [ "${machine#armv6}" != "$machine" ] || echo "$model" | grep -Eqi 'armv6|\(v6l\)'; then
                triple=arm-unknown-linux-musleabihf what="ARMv6 (Pi Zero/1)"
            elif [ "$machine" = aarch64 ] || [ "$machine" = arm64 ]; then
                triple=armv7-unknown-linux-musleabihf what="32-bit OS on a 64-bit kernel (Pi 3/4/5): the 32-bit ARMv7 build, as systemd is 32-bit"
            elif [ "${machine#armv7}" != "$machine" ] || [ "${machine#armv8}" != "$machine" ] \
                || echo "$model" | grep -Eqi 'armv[78]|\(v[78]l\)'; then
                triple=armv7-unknown-linux-musleabihf what="32-bit ARMv7 (Pi 2/3/4 on a 32-bit kernel)"
            else
                triple=arm-unknown-linux-musleabihf what="32-bit ARM, version unclear: the ARMv6 build runs on all"
            fi ;;
        arm64)
            case $machine in aarch64 | arm64) ;; *) die "$host says its OS is 64-bit ARM but its kernel is $machine" ;; esac
            triple=aarch64-unknown-linux-musl what="64-bit OS (Pi 3/4/5)" ;;
        amd64)
            case $machine in x86_64 | amd64) ;; *) die "$host says its OS is x86_64 but its kernel is $machine" ;; esac
            triple=x86_64-unknown-linux-musl what="x86_64" ;;
        i386) die "$host runs a 32-bit x86 OS ($from): there is no build for it (x86_64 only)" ;;
        *) die "unknown architecture '${userland:-$machine}' on $host (kernel: $machine, model: ${model:-?}, CPU architecture: ${cpu_arch:-?}, dpkg: ${dpkg_arch:-none}): supported are the 32-bit ARM OS (armhf), the 64-bit ARM OS (arm64) and x86_64" ;;
    esac
    say "$host: kernel $machine${model:+ ($model)}, OS $(arch_name "$userland") ($from): $what -> $triple"
    bin=$DIST/$triple/release/neopro-backup
    [ -f "$bin" ] || die "$bin is missing: run 'make cross' first (or set DIST)"
    [ "$(probe_get pi_uid)" != none ] || die "$host has no user '$PI_USER': the Neopro files and the daemon belong to $PI_USER"
fi

# --- the script that runs as root on the Pi ---------------------------------------------
# Shared by install and uninstall: where things are (all under R, the prefix for tests).
remote_header() {
    cat <<EOF
set -eu
R=$(q "$R")
U=$PI_USER
T=$(q "${1:-}")
SETTLE=$SETTLE_SECS
EOF
    cat <<'EOF'
BIN=$R/usr/local/bin/neopro-backup
UNITDIR=$R/etc/systemd/system
UNIT=$UNITDIR/neopro-backup.service
DROPIN=$UNITDIR/neopro-backup.service.d/paths.conf
CONF=$R/etc/neopro/backup.conf
OLD_SCRIPT=$R/home/pi/neopro/scripts/auto-backup.sh
SHIM_MARK='# neopro-backup: this script now calls the neopro-backup binary'
# A key of backup.conf, without quotes, or empty.
conf_key() {
    [ -r "$CONF" ] || return 0
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$CONF" | tail -n 1 \
        | sed "s/^\"\(.*\)\"[[:space:]]*$/\1/; s/^'\(.*\)'[[:space:]]*$/\1/; s/[[:space:]]*$//"
}
EOF
}

if [ "$uninstall" = 1 ]; then
    say "Removing neopro-backup from $host (backups and /etc/neopro/backup.conf stay)"
    { remote_header; cat <<'EOF'
if systemctl is-enabled --quiet neopro-backup.service 2>/dev/null || systemctl is-active --quiet neopro-backup.service 2>/dev/null; then
    systemctl disable --now neopro-backup.service >/dev/null 2>&1 || true
    echo "stopped and disabled: neopro-backup.service"
fi
for f in "$UNIT" "$DROPIN" "$BIN"; do
    if [ -e "$f" ]; then rm -f "$f"; echo "removed: ${f#$R}"; fi
done
rmdir "$UNITDIR/neopro-backup.service.d" 2>/dev/null || true
rm -rf "$R/usr/local/share/doc/neopro-backup"
systemctl daemon-reload
systemctl reset-failed neopro-backup.service >/dev/null 2>&1 || true
if [ -f "$OLD_SCRIPT.orig" ] && grep -qF "$SHIM_MARK" "$OLD_SCRIPT" 2>/dev/null; then
    mv -f "$OLD_SCRIPT.orig" "$OLD_SCRIPT"
    echo "restored: ${OLD_SCRIPT#$R} (the old script; its timer stays off)"
fi
BD=$(conf_key BACKUP_DIR); BD=${BD:-/home/pi/neopro-backups}
echo "kept: $BD (your backups) and ${CONF#$R}"
EOF
    } | remote_root || die "the removal failed on $host (see above)"
    say "Done: neopro-backup is no longer installed on $host"
    exit 0
fi

# --- 2. copy the files ------------------------------------------------------------------
rtmp=$(remote 'mktemp -d /tmp/neopro-setup.XXXXXX' </dev/null) || die "cannot create a temporary folder on $host"
# Secrets (the prepared backup.conf, the age identity) go through a private local
# folder under fixed names, then into the Pi's private temp folder (mktemp -d: 0700),
# removed on exit whatever happens.
ltmp=$(mktemp -d)
cleanup_remote() { remote "rm -rf $(q "$rtmp")" </dev/null >/dev/null 2>&1 || true; }
trap 'cleanup_remote; rm -rf "$ltmp"; rm -f "$probe_err"' EXIT
extra=""
if [ -n "$config_file" ]; then
    (umask 077 && cp "$config_file" "$ltmp/prepared-backup.conf") || die "cannot read --config $config_file"
    extra="$extra $ltmp/prepared-backup.conf"
fi
if [ -n "$identity_file" ]; then
    (umask 077 && cp "$identity_file" "$ltmp/recover-identity") || die "cannot read --identity $identity_file"
    extra="$extra $ltmp/recover-identity"
fi
say "Copying the binary, the unit and the config template${config_file:+, and your backup.conf}${identity_file:+ and the age identity}"
# shellcheck disable=SC2086 # $extra: temp paths without spaces (mktemp)
$SCP "$bin" "$REPO/systemd/neopro-backup.service" "$REPO/config/backup.conf.example" "$REPO/README.md" $extra "$host:$rtmp/" \
    || die "copying to $host:$rtmp failed"
rm -rf "$ltmp"

# --- 3-5. install as root ---------------------------------------------------------------
say "Installing on $host"
{ remote_header "$rtmp"; printf 'RECOVER=%s\nRECOVER_SITE=%s\n' "$recover" "$(q "$recover_site")"; cat <<'EOF'
changed=0
# The binary: installed beside the old one, checked to run on this CPU, then renamed
# over it (a running daemon keeps its old copy until it restarts).
mkdir -p "$R/usr/local/bin"
if [ -f "$BIN" ] && cmp -s "$T/neopro-backup" "$BIN"; then
    echo "kept: /usr/local/bin/neopro-backup ($("$BIN" --version 2>/dev/null), unchanged)"
else
    cp "$T/neopro-backup" "$BIN.new"
    chmod 0755 "$BIN.new"
    if ! v=$("$BIN.new" --version 2>&1); then
        rm -f "$BIN.new"
        echo "ERROR: the binary does not run on this Pi ($v): wrong architecture? Nothing was changed." >&2
        exit 3
    fi
    mv -f "$BIN.new" "$BIN"
    echo "installed: /usr/local/bin/neopro-backup ($v)"
    changed=1
fi

# The old system: a timer (two OnCalendar lines: it backed up twice a day) and a script.
if [ -e "$UNITDIR/neopro-backup.timer" ] || systemctl is-enabled --quiet neopro-backup.timer 2>/dev/null \
    || systemctl is-active --quiet neopro-backup.timer 2>/dev/null; then
    systemctl disable --now neopro-backup.timer >/dev/null 2>&1 || true
    rm -f "$UNITDIR/neopro-backup.timer" "$UNITDIR/timers.target.wants/neopro-backup.timer"
    echo "old system: neopro-backup.timer stopped, disabled and removed"
    changed=1
fi
if [ -f "$UNIT" ] && grep -q '^ExecStart=.*auto-backup\.sh' "$UNIT"; then
    systemctl stop neopro-backup.service >/dev/null 2>&1 || true
    echo "old system: the script's neopro-backup.service is replaced by the daemon's"
fi
if [ -f "$OLD_SCRIPT" ] && ! grep -qF "$SHIM_MARK" "$OLD_SCRIPT"; then
    cp -p "$OLD_SCRIPT" "$OLD_SCRIPT.orig"
    cat >"$OLD_SCRIPT.new" <<SHIM
#!/bin/sh
$SHIM_MARK (the original is auto-backup.sh.orig).
if [ "\$(id -u)" = 0 ]; then exec runuser -u $U -- /usr/local/bin/neopro-backup run "\$@"; fi
exec /usr/local/bin/neopro-backup run "\$@"
SHIM
    chmod 0755 "$OLD_SCRIPT.new"
    mv -f "$OLD_SCRIPT.new" "$OLD_SCRIPT"
    echo "old system: ${OLD_SCRIPT#$R} now runs 'neopro-backup run' (original kept as auto-backup.sh.orig)"
fi
for f in "$R/etc/crontab" "$R"/etc/cron.d/* "$R"/var/spool/cron/crontabs/*; do
    [ -f "$f" ] || continue
    if grep -v '^[[:space:]]*#' "$f" | grep -q 'auto-backup\.sh'; then
        echo "warning: ${f#$R} still calls auto-backup.sh (it now runs neopro-backup run): the daemon already backs up daily, remove that line (sudo crontab -e, or edit the file)"
    fi
done

# The README, where the unit's Documentation= points.
DOC=$R/usr/local/share/doc/neopro-backup
mkdir -p "$DOC"
cmp -s "$T/README.md" "$DOC/README.md" || { cp "$T/README.md" "$DOC/README.md"; chmod 0644 "$DOC/README.md"; }

# The config: the template always beside it, the file itself only when there is none.
mkdir -p "$R/etc/neopro"
cp "$T/backup.conf.example" "$R/etc/neopro/backup.conf.example"
chmod 0644 "$R/etc/neopro/backup.conf.example"
if [ -f "$T/prepared-backup.conf" ]; then
    # The site's own backup.conf (--config): 0600, the daemon's user reads it.
    chmod 0600 "$T/prepared-backup.conf"
    if [ -f "$CONF" ] && cmp -s "$T/prepared-backup.conf" "$CONF"; then
        echo "kept: /etc/neopro/backup.conf (the same as --config)"
    else
        if [ -f "$CONF" ]; then
            cp -p "$CONF" "$CONF.old"
            chmod 0600 "$CONF.old"
            echo "kept: the previous /etc/neopro/backup.conf as backup.conf.old"
        fi
        cp "$T/prepared-backup.conf" "$CONF.new"
        chown "$U:$U" "$CONF.new"
        chmod 0600 "$CONF.new"
        mv -f "$CONF.new" "$CONF"
        echo "installed: /etc/neopro/backup.conf (from --config, 0600)"
        changed=1
    fi
    rm -f "$T/prepared-backup.conf"
elif [ -e "$CONF" ]; then
    echo "kept: /etc/neopro/backup.conf (yours)"
else
    cp "$T/backup.conf.example" "$CONF.new"
    chown "root:$U" "$CONF.new"
    chmod 0640 "$CONF.new"
    mv -f "$CONF.new" "$CONF"
    echo "installed: /etc/neopro/backup.conf (commented template: defaults apply)"
    changed=1
fi

# The unit, and a drop-in when backup.conf moves the folders it may write.
mkdir -p "$UNITDIR"
if [ -f "$UNIT" ] && cmp -s "$T/neopro-backup.service" "$UNIT"; then
    echo "kept: /etc/systemd/system/neopro-backup.service (unchanged)"
else
    cp "$T/neopro-backup.service" "$UNIT.new"
    chmod 0644 "$UNIT.new"
    mv -f "$UNIT.new" "$UNIT"
    echo "installed: /etc/systemd/system/neopro-backup.service"
    changed=1
fi
BD=$(conf_key BACKUP_DIR)
ND=$(conf_key NEOPRO_DIR)
want=""
if [ -n "$BD" ] && [ "$BD" != /home/pi/neopro-backups ]; then want="$want -$BD"; fi
if [ -n "$ND" ] && [ "$ND" != /home/pi/neopro ]; then want="$want -$ND/webapp -$ND/sync-agent"; fi
if [ -n "$want" ]; then
    mkdir -p "${DROPIN%/*}"
    printf '# Written by setup-auto-backup.sh from /etc/neopro/backup.conf: the folders it names.\n[Service]\nReadWritePaths=%s\n' "${want# }" >"$DROPIN.new"
    if cmp -s "$DROPIN.new" "$DROPIN"; then rm -f "$DROPIN.new"; else
        mv -f "$DROPIN.new" "$DROPIN"; echo "installed: ${DROPIN#$R} (ReadWritePaths=${want# })"; changed=1
    fi
elif [ -e "$DROPIN" ]; then
    rm -f "$DROPIN"; rmdir "${DROPIN%/*}" 2>/dev/null || true
    echo "removed: ${DROPIN#$R} (default folders again)"; changed=1
fi

# The backups folder must exist (the unit can only write into an existing one), belong
# to pi (the old service wrote as root) and stay private (archives hold secrets).
D=${BD:-/home/pi/neopro-backups}
mkdir -p "$R$D"
chown -R "$U:$U" "$R$D"
chmod 0700 "$R$D"

# --recover: before the daemon starts (its catch-up backup would find a blank Pi), as
# the daemon's user. The identity is used once and removed, whatever happens.
recovered=0
if [ "$RECOVER" = 1 ]; then
    systemctl stop neopro-backup.service >/dev/null 2>&1 || true
    set -- recover
    [ -z "$RECOVER_SITE" ] || set -- "$@" --site "$RECOVER_SITE"
    if [ -f "$T/recover-identity" ]; then
        chmod 0600 "$T/recover-identity"
        chown "$U:$U" "$T" "$T/recover-identity"
        set -- "$@" --identity "$T/recover-identity"
    fi
    echo "recovering the site from the bucket (neopro-backup $*)"
    rc=0
    if [ "$(id -un)" = "$U" ]; then "$BIN" --config "$CONF" "$@" || rc=$?
    else runuser -u "$U" -- "$BIN" --config "$CONF" "$@" || rc=$?; fi
    rm -f "$T/recover-identity"
    if [ "$rc" = 0 ]; then recovered=1; echo "recovered: everything came back"
    else echo "ERROR: the recovery did not bring everything back (exit $rc, see above)" >&2; fi
    changed=1
fi

systemctl daemon-reload
systemctl enable --quiet neopro-backup.service
if [ "$changed" = 1 ] || ! systemctl is-active --quiet neopro-backup.service; then
    echo "starting: neopro-backup.service"
    if ! systemctl restart neopro-backup.service; then
        echo "ERROR: neopro-backup.service did not start:" >&2
        journalctl -u neopro-backup.service -n 20 --no-pager >&2 2>/dev/null || true
        exit 4
    fi
    # Type=notify: the restart returned once the daemon said READY=1. One that dies just
    # after (and is restarted every RestartSec= by Restart=on-failure) would pass that:
    # it must still be active a few seconds later.
    i=0 state=active
    while [ "$i" -lt "$SETTLE" ]; do
        sleep 1
        i=$((i + 1))
        state=$(systemctl is-active neopro-backup.service 2>/dev/null) || break
    done
    if [ "$state" != active ]; then
        echo "ERROR: neopro-backup.service started but did not stay active: ${state:-unknown} ${i}s later. Its last journal lines:" >&2
        journalctl -u neopro-backup.service -n 20 --no-pager >&2 2>/dev/null || true
        exit 5
    fi
    echo "active: neopro-backup.service (still running ${SETTLE}s after the start)"
else
    echo "running: neopro-backup.service (nothing new, not restarted)"
fi
if [ "$RECOVER" = 1 ] && [ "$recovered" != 1 ]; then exit 6; fi
EOF
} | remote_root || {
    rc=$?
    [ "$rc" != 6 ] || die "neopro-backup is installed and running on $host, but the recovery did not bring everything back (see above).
  Its offsite copies stay held while this Pi has no history of its own in the site (docs/format.md, Recovery).
  Run this command again, or on the Pi: sudo -u pi neopro-backup recover [--site SITE] [--identity FILE]"
    [ "$rc" = 5 ] || die "the installation failed on $host (see above)"
    die "neopro-backup is installed on $host but its service does not stay running (see the journal lines above).
  On the Pi: journalctl -u neopro-backup -n 50 --no-pager   and   systemctl status neopro-backup
  (systemd keeps restarting it every 10 s; fix the cause, e.g. /etc/neopro/backup.conf, then run this again)."
}

# --- show it ----------------------------------------------------------------------------
say "Status on $host"
remote "systemctl --no-pager --lines=5 status neopro-backup.service 2>&1 | head -n 12; $(q "$R/usr/local/bin/neopro-backup") status 2>&1 | head -n 6" </dev/null || true

if [ "$test_backup" = ask ]; then
    test_backup=no
    if [ -t 0 ] && [ -t 1 ]; then
        printf 'Make a test backup now? [y/N] '
        read -r answer || answer=
        case $answer in [yYoO]*) test_backup=yes ;; esac
    fi
fi
if [ "$test_backup" = yes ]; then
    say "Test backup on $host"
    # As pi, so that its files belong to the daemon's user.
    remote "if [ \"\$(id -u)\" = 0 ] || [ \"\$(id -un)\" != $PI_USER ]; then sudo -n -u $PI_USER $(q "$R/usr/local/bin/neopro-backup") run; else $(q "$R/usr/local/bin/neopro-backup") run; fi" </dev/null \
        || die "the test backup failed (see above; the log is in the backups folder, backup.log)"
fi

say "Done. On $host: the API is http://127.0.0.1:8081 (from this PC: ssh -L 8081:127.0.0.1:8081 $host),"
say "logs: journalctl -u neopro-backup; settings: /etc/neopro/backup.conf; a backup now: neopro-backup run"
