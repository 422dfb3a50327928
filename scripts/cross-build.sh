#!/usr/bin/env bash
# Builds static musl release binaries of neopro-backup for the Pis (and x86_64):
#   target/cross/<triple>/release/neopro-backup
# in a target directory of their own (CROSS_DIR, default target/cross): RUSTC_BOOTSTRAP=1
# below is part of every crate's fingerprint, so sharing target/ with the plain
# `cargo build --release` would make each build recompile what the other built.
# Usage: scripts/cross-build.sh [TRIPLE...]   (default: the four below)
# Run scripts/cross-deps.sh (`make cross-deps`) first. Prints the build time and the
# size of each binary, and keeps them in target/cross/build-times.tsv.
#
# One way for every target: `cargo zigbuild` with -Zbuild-std. The standard library is
# compiled from rust-src for exactly that CPU (the armv6 build really is ARMv6 + VFPv2,
# so a Pi Zero runs it) with the release profile and the std's `optimize_for_size`
# feature; zig compiles ring's C and assembly for the target and links against its own
# musl, crt and libunwind (-Clink-self-contained=no keeps rustc from looking for its
# copies). RUSTC_BOOTSTRAP=1 lets the stable toolchain accept -Z flags: no nightly.
#
# Size (the Pi builds must stay under 2 MiB, scripts/test-cross.sh): panics carry no
# file:line (-Zlocation-detail=none) and abort at once without formatting their message
# (-Cpanic=immediate-abort): together about 170 KB on aarch64. A panic is a bug (every
# input is bounded and checked, docs/format.md); the release build aborted on it before
# as now, only its one line on stderr is gone (systemd still logs the SIGABRT and the
# core). The native build (`cargo build --release`, tests, benchmarks) keeps both.
set -euo pipefail
cd "$(dirname "$0")/.."

XTOOLS=${XTOOLS:-.xtools}
CROSS_DIR=${CROSS_DIR:-target/cross}
ALL="arm-unknown-linux-musleabihf armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl x86_64-unknown-linux-musl"
[ $# -gt 0 ] || set -- $ALL

envname() { echo "$1" | tr 'a-z-' 'A-Z_'; }

if [ ! -x "$XTOOLS/venv/bin/cargo-zigbuild" ] || [ ! -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
    echo "cross-build: zig/cargo-zigbuild or rust-src missing: run 'make cross-deps'" >&2
    exit 1
fi

mkdir -p "$CROSS_DIR"
times=$CROSS_DIR/build-times.tsv
: >"$times.new"
for t in "$@"; do
    case " $ALL " in *" $t "*) ;; *) echo "cross-build: unknown target $t (known: $ALL)" >&2; exit 2 ;; esac
    E=$(envname "$t")
    start=$(date +%s)
    echo "cross-build: $t: std from rust-src (-Zbuild-std), C and link by zig" >&2
    # zig is found as `python3 -m ziglang` from the venv.
    env PATH="$PWD/$XTOOLS/venv/bin:$PATH" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$CROSS_DIR" \
        "CARGO_TARGET_${E}_RUSTFLAGS=-Clink-self-contained=no -Ctarget-feature=+crt-static -Zlocation-detail=none -Zunstable-options -Cpanic=immediate-abort ${CROSS_EXTRA_RUSTFLAGS:-}" \
        "$XTOOLS/venv/bin/cargo-zigbuild" zigbuild --release --locked --target "$t" \
        -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size
    secs=$(($(date +%s) - start))
    bin=$CROSS_DIR/$t/release/neopro-backup
    size=$(stat -c %s "$bin")
    printf '%s\t%s\t%s\n' "$t" "$secs" "$size" >>"$times.new"
    echo "cross-build: $t: ${secs}s, $size bytes" >&2
done
mv "$times.new" "$times"
echo "target	build_seconds	size_bytes"
cat "$times"
