#!/usr/bin/env bash
# Builds static musl release binaries of neopro-backup for the Pis (and x86_64):
#   target/<triple>/release/neopro-backup
# Usage: scripts/cross-build.sh [TRIPLE...]   (default: the four below)
# Run scripts/cross-deps.sh (`make cross-deps`) first. Prints the build time and the
# size of each binary, and keeps them in target/cross-build-times.tsv.
#
# Per target: where the toolchain has the target's prebuilt std (rustup target add), a
# plain `cargo build`, linked by rust-lld with the musl crt and libc that rustup ships.
# Otherwise (the 32-bit ARM targets on this kind of machine), `cargo zigbuild` with
# -Zbuild-std: std is compiled from rust-src for exactly that CPU (the armv6 target
# really is ARMv6 + VFPv2, so a Pi Zero runs it), and zig provides musl, crt and
# libunwind (-Clink-self-contained=no keeps rustc from looking for its own copies).
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept -Zbuild-std: no nightly download.
set -euo pipefail
cd "$(dirname "$0")/.."

XTOOLS=${XTOOLS:-.xtools}
CARGO=${CARGO:-cargo}
ALL="arm-unknown-linux-musleabihf armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl x86_64-unknown-linux-musl"
[ $# -gt 0 ] || set -- $ALL

have_std() {
    [ -n "$(ls "$(rustc --print sysroot)/lib/rustlib/$1/lib/"libstd-*.rlib 2>/dev/null)" ]
}
envname() { echo "$1" | tr 'a-z-' 'A-Z_'; }

mkdir -p target
times=target/cross-build-times.tsv
: >"$times.new"
for t in "$@"; do
    case " $ALL " in *" $t "*) ;; *) echo "cross-build: unknown target $t (known: $ALL)" >&2; exit 2 ;; esac
    E=$(envname "$t")
    start=$(date +%s)
    if have_std "$t" && [ -x "$XTOOLS/venv/bin/cargo-zigbuild" ]; then
        # ring (rustls' crypto, for the offsite copies over HTTPS) has C and assembly:
        # zig compiles them for the target and links.
        echo "cross-build: $t: prebuilt std, C parts compiled and linked by zig" >&2
        env PATH="$PWD/$XTOOLS/venv/bin:$PATH" \
            "CARGO_TARGET_${E}_RUSTFLAGS=-Ctarget-feature=+crt-static" \
            "$XTOOLS/venv/bin/cargo-zigbuild" zigbuild --release --locked --target "$t"
    elif have_std "$t"; then
        echo "cross-build: $t: prebuilt std, linked with rust-lld (needs a C compiler for the target: cc-rs)" >&2
        env "CARGO_TARGET_${E}_LINKER=rust-lld" \
            "CARGO_TARGET_${E}_RUSTFLAGS=-Ctarget-feature=+crt-static" \
            "$CARGO" build --release --locked --target "$t"
    else
        if [ ! -x "$XTOOLS/venv/bin/cargo-zigbuild" ]; then
            echo "cross-build: $t has no prebuilt std and $XTOOLS/venv/bin/cargo-zigbuild is missing: run 'make cross-deps'" >&2
            exit 1
        fi
        echo "cross-build: $t: std rebuilt from rust-src (-Zbuild-std), linked by zig" >&2
        # zig is found as `python3 -m ziglang` from the venv.
        env PATH="$PWD/$XTOOLS/venv/bin:$PATH" RUSTC_BOOTSTRAP=1 \
            "CARGO_TARGET_${E}_RUSTFLAGS=-Clink-self-contained=no -Ctarget-feature=+crt-static" \
            "$XTOOLS/venv/bin/cargo-zigbuild" zigbuild --release --locked --target "$t" \
            -Zbuild-std=std,panic_abort
    fi
    secs=$(($(date +%s) - start))
    bin=target/$t/release/neopro-backup
    size=$(stat -c %s "$bin")
    printf '%s\t%s\t%s\n' "$t" "$secs" "$size" >>"$times.new"
    echo "cross-build: $t: ${secs}s, $size bytes" >&2
done
mv "$times.new" "$times"
echo "target	build_seconds	size_bytes"
cat "$times"
