#!/bin/bash
# The binary's growth from a base commit (issue 20: the whole Google Drive feature may
# add at most 60 KB to the static armv6 binary; 60,000 bytes, the strict reading). It
# measures the binary as shipped: Drive's own code costs about 100 KB, and the room was
# made by keeping the web pages gzip-compressed (build.rs, about -51 KB; README, Speed
# and footprint).
#
#   bench/size.sh [BASE]        BASE default 59c2191, the last commit before the Drive
#                               code (it already parses the GDRIVE_ keys of the config)
#
# Builds BASE in a git worktree of its own (target/bench/size-base, removed at the end;
# KEEP_BASE=1 keeps it, and its build, for the next time) and this tree, both with
# scripts/cross-build.sh (static musl, release profile: opt-level z, LTO, stripped) for
# TARGETS (default: arm-unknown-linux-musleabihf, the Pi Zero's, and
# x86_64-unknown-linux-musl, the lab's), then prints the sizes in bytes and writes
# target/bench/size-results.md. Not part of `make bench`: two full cross builds per
# target, about 5 min each on 2 cores (CARGO_BUILD_JOBS is honoured).
# Run scripts/cross-deps.sh (`make cross-deps`) first. A missed goal is reported (exit 0;
# BENCH_STRICT=1 makes it exit 1); a failed build exits non-zero.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BASE="${1:-59c2191}"
TARGETS="${TARGETS:-arm-unknown-linux-musleabihf x86_64-unknown-linux-musl}"
GOAL_TARGET=arm-unknown-linux-musleabihf
GOAL_BYTES=60000
BASE_WT="$ROOT/target/bench/size-base"
RESULTS="$ROOT/target/bench/size-results.md"

say() { printf '[bench/size] %s\n' "$*" >&2; }
die() { printf '[bench/size] ERROR: %s\n' "$*" >&2; exit 1; }
base_rev=$(git rev-parse --verify --short "$BASE^{commit}") || die "unknown commit $BASE"
head_rev=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock build.rs | grep -q . && echo " + uncommitted changes" || true)
[ -d "$ROOT/.xtools" ] || die ".xtools is missing: make cross-deps first"

mkdir -p "$(dirname "$RESULTS")"
cleanup() {
    if [ "${KEEP_BASE:-0}" != 1 ] && [ -d "$BASE_WT" ]; then
        git worktree remove --force "$BASE_WT" >/dev/null 2>&1 || true
        rm -rf "$BASE_WT"
        git worktree prune
    fi
}
trap cleanup EXIT

if [ -d "$BASE_WT" ]; then
    git -C "$BASE_WT" checkout -q --detach "$base_rev"
else
    git worktree add -q --detach "$BASE_WT" "$base_rev"
fi
# scripts/cross-build.sh finds zig and cargo-zigbuild in .xtools/ of the tree it builds.
[ -e "$BASE_WT/.xtools" ] || ln -s "$ROOT/.xtools" "$BASE_WT/.xtools"
# Both sides are built by this tree's scripts/cross-build.sh, so with the same flags: the
# base's own script predates -Zlocation-detail=none -Cpanic=immediate-abort, and a base
# built without them would hide about 170 KB of panic text in the growth.
cp "$ROOT/scripts/cross-build.sh" "$BASE_WT/scripts/cross-build.sh"

# shellcheck disable=SC2086 # TARGETS is a list
{
    say "building $base_rev (base) for $TARGETS"
    (cd "$BASE_WT" && bash scripts/cross-build.sh $TARGETS && git checkout -q -- scripts/cross-build.sh) >/dev/null
    say "building $head_rev$dirty for $TARGETS"
    bash scripts/cross-build.sh $TARGETS >/dev/null
}

{
    echo "# Static binary sizes: $base_rev (before Google Drive) and $head_rev$dirty"
    echo
    echo "| target | $base_rev (bytes) | $head_rev (bytes) | growth (bytes) | goal | met |"
    echo "|---|---|---|---|---|---|"
    for t in $TARGETS; do
        b=$(stat -c %s "$BASE_WT/target/cross/$t/release/neopro-backup")
        h=$(stat -c %s "$ROOT/target/cross/$t/release/neopro-backup")
        g=$((h - b))
        goal="" met=""
        if [ "$t" = "$GOAL_TARGET" ]; then
            goal="<= +$GOAL_BYTES"
            if [ "$g" -le "$GOAL_BYTES" ]; then met=yes; else met=NO; fi
        fi
        echo "| $t | $b | $h | $(printf '%+d' "$g") | $goal | $met |"
    done
} | tee "$RESULTS"
if grep -q '| NO |$' "$RESULTS"; then
    say "a goal was missed"
    [ "${BENCH_STRICT:-0}" = 1 ] && exit 1
fi
exit 0
