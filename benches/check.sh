#!/usr/bin/env bash
# Times `flowc check` on generated programs of 1,000 and 10,000 lines.
# Usage: benches/check.sh            (builds flowc in release first)
# Prints one line per size: lines, median and min wall time of RUNS runs.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-15}
cargo build --release -q --bin flowc
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for lines in 1000 10000; do
  python3 benches/gen_program.py "$lines" > "$tmp/p$lines.flow"
  ./target/release/flowc check "$tmp/p$lines.flow"   # must be valid
  times=()
  for _ in $(seq "$RUNS"); do
    start=$(date +%s%N)
    ./target/release/flowc check "$tmp/p$lines.flow"
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000 )))
  done
  sorted=($(printf '%s\n' "${times[@]}" | sort -n))
  median=${sorted[$(( RUNS / 2 ))]}
  printf 'flowc check  %6s lines  median %7.1f ms  min %7.1f ms  (%s runs)\n' \
    "$(wc -l < "$tmp/p$lines.flow")" "$(echo "$median/1000" | bc -l)" "$(echo "${sorted[0]}/1000" | bc -l)" "$RUNS"
done
