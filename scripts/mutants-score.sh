#!/usr/bin/env bash
# The score of a cargo-mutants run (make mutants): caught (timeouts count as caught)
# over viable, the missed ones listed; fails below MIN percent.
# usage: mutants-score.sh MUTANTS_OUT_DIR MIN
set -euo pipefail
out=$1 min=$2
cd "$out"
caught=$(cat caught.txt timeout.txt | wc -l)
missed=$(wc -l < missed.txt)
echo "mutants ($out): $caught of $((caught + missed)) viable caught; missed:"
cat missed.txt
test $((caught * 100)) -ge $(( (caught + missed) * min ))
