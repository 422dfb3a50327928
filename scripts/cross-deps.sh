#!/usr/bin/env bash
# Installs what `make cross` needs, idempotently (a second run takes a second or two).
#
# Two ways to get a static musl binary, per target:
#  * the target's prebuilt standard library from rustup (`rustup target add`), linked
#    with rust-lld and the musl crt/libc that rustup ships beside it. This works here for
#    x86_64 and aarch64, and on any machine with plain internet access for all four.
#  * where rustup cannot download that standard library (here: the two 32-bit ARM musl
#    targets), the std is rebuilt from the toolchain's own rust-src with -Zbuild-std
#    (the stable toolchain, with RUSTC_BOOTSTRAP=1: no nightly to download), and zig,
#    through cargo-zigbuild, supplies musl, the crt objects and libunwind for the link.
#    Both come as prebuilt wheels from PyPI, into a venv in .xtools/ (ignored by git).
#
# Which way each target takes is decided by scripts/cross-build.sh at build time, by
# looking for the target's std; this script only installs what that needs.
set -euo pipefail
cd "$(dirname "$0")/.."

XTOOLS=${XTOOLS:-.xtools}
# Pinned so that a fresh CI machine gets what was tested (with Rust 1.95: both ARM
# binaries run under qemu on their CPU, see scripts/test-cross.sh). Both are prebuilt
# wheels: nothing is compiled.
ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.15.2}
CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}

NATIVE_TARGETS="x86_64-unknown-linux-musl aarch64-unknown-linux-musl"
ARM32_TARGETS="arm-unknown-linux-musleabihf armv7-unknown-linux-musleabihf"

log() { printf 'cross-deps: %s\n' "$*" >&2; }

have_std() { # the target's prebuilt std is installed in the active toolchain
    [ -n "$(ls "$(rustc --print sysroot)/lib/rustlib/$1/lib/"libstd-*.rlib 2>/dev/null)" ]
}

command -v rustup >/dev/null || { log "rustup not found: install Rust with rustup first"; exit 1; }

for t in $NATIVE_TARGETS; do
    have_std "$t" || rustup target add "$t" >&2
done

# zig is needed for every target anyway: it is the C compiler of ring's C and assembly.
need_zig=1
for t in $ARM32_TARGETS; do
    have_std "$t" && continue
    # Cheap on a machine that can download it; expected to fail here (404).
    if rustup target add "$t" >/dev/null 2>&1; then
        log "$t: prebuilt std installed"
    else
        log "$t: no prebuilt std from rustup; will rebuild std from rust-src with zig"
        need_zig=1
    fi
done

if [ "$need_zig" = 1 ]; then
    if [ ! -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
        rustup component add rust-src >&2
    fi
    if ! "$XTOOLS/venv/bin/python" -c 'import ziglang' 2>/dev/null \
        || [ "$("$XTOOLS/venv/bin/cargo-zigbuild" --version 2>/dev/null | awk '{print $2}')" != "$CARGO_ZIGBUILD_VERSION" ] \
        || [ "$(cat "$XTOOLS/venv/.ziglang-version" 2>/dev/null)" != "$ZIGLANG_VERSION" ]; then
        log "installing ziglang==$ZIGLANG_VERSION and cargo-zigbuild==$CARGO_ZIGBUILD_VERSION into $XTOOLS/venv"
        mkdir -p "$XTOOLS"
        [ -x "$XTOOLS/venv/bin/pip" ] || python3 -m venv "$XTOOLS/venv"
        "$XTOOLS/venv/bin/pip" install -q --disable-pip-version-check \
            "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" >&2
        echo "$ZIGLANG_VERSION" >"$XTOOLS/venv/.ziglang-version"
    fi
fi
log "ready"
