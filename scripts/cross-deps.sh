#!/usr/bin/env bash
# Installs what `make cross` needs, idempotently (a second run takes a second or two):
#  * the toolchain's own rust-src: scripts/cross-build.sh compiles the standard library
#    for each target (-Zbuild-std). The two 32-bit ARM targets have no prebuilt std that
#    rustup can download here, and for all four a std built with the release profile
#    (opt-level z, LTO with our code) is what keeps the binaries under 2 MiB now that
#    rustls/ring are in (x86_64: 2.21 MB with rustup's prebuilt std, 1.9 MB rebuilt);
#  * zig (PyPI `ziglang`) and cargo-zigbuild (PyPI, a prebuilt wheel), in a venv in
#    .xtools/ (ignored by git): zig supplies musl, the crt objects and libunwind for the
#    static link, and is the C compiler of ring's C and assembly for every target.
# Nothing is downloaded outside crates.io, PyPI and rustup's components.
set -euo pipefail
cd "$(dirname "$0")/.."

XTOOLS=${XTOOLS:-.xtools}
# Pinned so that a fresh CI machine gets what was tested (with Rust 1.95: all four
# binaries pass scripts/test-cross.sh on their CPU under qemu). Both are prebuilt
# wheels: nothing is compiled.
ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.15.2}
CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}

log() { printf 'cross-deps: %s\n' "$*" >&2; }

command -v rustup >/dev/null || { log "rustup not found: install Rust with rustup first"; exit 1; }

if [ ! -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
    rustup component add rust-src >&2
    installed=1
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
    installed=1
fi
[ -z "${installed:-}" ] || log "ready"
