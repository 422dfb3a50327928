#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) for a bounded time each and
# fails on the first crash, panic or failed property. `make test` runs it (make fuzz).
#
#   scripts/fuzz.sh                   every target, FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh http_head         one target
#   FUZZ_SECONDS=600 FUZZ_SEED=0 scripts/fuzz.sh  a longer hunt, a new random seed
#
# `make test` runs with a fixed seed (FUZZ_SEED, default 1): a gate that lands or not
# should not depend on the luck of the draw. Hunts use FUZZ_SEED=0 (libFuzzer picks one,
# and prints it in the log as "Seed:"); what they find becomes a seed in fuzz/corpus/.
#
# Targets: http_head (src/http/head.rs), http_response (src/http/response.rs),
# config_file (src/config/), archive_reader
# (src/backup/archive.rs), json (src/json.rs and nanoserde behind it). Seeds: fuzz/corpus/<target>/ (committed, read only here),
# with the tokens of fuzz/dict/<target>.dict;
# what libFuzzer finds goes to fuzz/target/corpus/<target>/ (not committed) and is
# replayed by the next run. A crash leaves its input in fuzz/artifacts/<target>/:
# replay it with `scripts/fuzz.sh <target> fuzz/artifacts/<target>/crash-…`.
#
# cargo-fuzz (pinned) is installed into .xtools/cargo-fuzz on first use. Without a
# sanitizer, cargo-fuzz's rustc flags (SanitizerCoverage) are all stable: the stable
# toolchain builds the targets, in their own workspace and target dir (fuzz/target), so
# the normal build is never invalidated. libfuzzer-sys compiles libFuzzer with the C++
# compiler (g++).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
XTOOLS=${XTOOLS:-.xtools}
ROOT=$XTOOLS/cargo-fuzz
FUZZ=$ROOT/bin/cargo-fuzz
SECONDS_EACH=${FUZZ_SECONDS:-20}
SEED=${FUZZ_SEED:-1}
TARGETS=(http_head http_response config_file archive_reader json)

if [ "$("$FUZZ" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    printf 'fuzz: installing cargo-fuzz %s into %s\n' "$CARGO_FUZZ_VERSION" "$ROOT" >&2
    cargo install --quiet --locked --root "$ROOT" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

# cargo-fuzz is run as `cargo fuzz`: cargo finds it on the PATH.
export PATH=$PWD/$ROOT/bin:$PATH
# No sanitizer: the code under test has no `unsafe`; what we look for is panics and
# failed properties, and without ASan the build is quicker and runs about 3x more inputs.
OPTS=(--sanitizer none --debug-assertions --fuzz-dir fuzz)

if [ $# -eq 2 ]; then
    # Replay one input (a crash artifact, a corpus file).
    exec cargo fuzz run "${OPTS[@]}" "$1" "$2"
fi
if [ $# -eq 1 ]; then
    TARGETS=("$1")
fi

cargo fuzz build "${OPTS[@]}"
failed=()
for t in "${TARGETS[@]}"; do
    seeds=fuzz/corpus/$t
    work=fuzz/target/corpus/$t
    log=fuzz/target/$t.log
    [ -d "$seeds" ] || { echo "fuzz: no seed corpus $seeds" >&2; exit 1; }
    mkdir -p "$work" "fuzz/artifacts/$t"
    printf 'fuzz: %s for %ss, seed %s (%s seeds)\n' "$t" "$SECONDS_EACH" "$SEED" "$(find "$seeds" -type f | wc -l)" >&2
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
    # New inputs go to the first corpus dir ($work); the committed seeds stay as they are.
    if cargo fuzz run "${OPTS[@]}" "$t" "$work" "$seeds" -- "${dict[@]}" \
        -max_total_time="$SECONDS_EACH" -seed="$SEED" -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
        grep -E '^(Done|stat::peak_rss_mb)' "$log" >&2 || true
    else
        # The panic message or libFuzzer's verdict, and where the input is.
        grep -E -A2 'panicked at|ERROR: libFuzzer|ALARM|out-of-memory' "$log" | head -n 20 >&2 || tail -n 20 "$log" >&2
        grep -E 'Test unit written|^Reproduce|cargo fuzz run' "$log" | head -n 3 >&2 || true
        echo "fuzz: $t FAILED (log: $log; replay: scripts/fuzz.sh $t fuzz/artifacts/$t/<file>)" >&2
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: ok (${TARGETS[*]})" >&2
