#!/usr/bin/env bash
# The relay benchmark against peers (issue 7): builds benches/relay.flow
# with flowc and runs the shared harness (shared/bench/run.sh) with it
# beside the hand-written axum service and Node-RED, in one run; then the
# compiler's own figures: binary size, `flowc build` warm and cold (empty
# cache) times, `flowc check` on 1,000- and 10,000-line programs.
#
#   benches/peers.sh                 # defaults of the harness (15 s, 64 connections)
#   DURATION=30s benches/peers.sh    # any knob of shared/bench/run.sh
#   COLD=0 benches/peers.sh          # skip the cold build (minutes)
#   ROUNDS=5 benches/peers.sh        # five rounds, medians of the ratios
#   TUNED=1 benches/peers.sh         # the relay tuned (--store memory, RUST_LOG=warn), labelled flowc-tuned
#
# The relay runs as a user runs it: `relay serve` with no flags and no
# environment but its config (SINK_URL): SQLite store, log level info.
#
# Needs ../shared/bench beside the checkout (copied to a temp dir first:
# ../shared may be read-only). Installs wrk and jq with apt and Node-RED
# with npm when missing (the harness does). Only 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
[[ -d $SHARED ]] || { echo "peers.sh: no harness at $SHARED (set SHARED_BENCH)" >&2; exit 2; }

cargo build --release -q --bin flowc
export FLOWC_CACHE_DIR=${FLOWC_CACHE_DIR:-$ROOT/target/flowc-cache}
OUT=$(mktemp -d)
./target/release/flowc build benches/relay.flow -o "$OUT"
start=$(date +%s%N)
./target/release/flowc build benches/relay.flow -o "$OUT" 2>/dev/null
warm_ms=$(( ($(date +%s%N) - start) / 1000000 ))

BENCH=${BENCH_DIR:-/tmp/flow-bench}
# Copied over an earlier copy, whose builds (target/, node_modules/) the
# harness then reuses.
mkdir -p "$BENCH"; cp -r "$SHARED"/. "$BENCH"/; chmod -R u+w "$BENCH"
# ROUNDS=N runs the harness N times: on a shared machine one round can be
# off by a third; the medians of the per-round ratios are the figures.
rounds=${ROUNDS:-1}
results=()
sink="SINK_URL=http://127.0.0.1:9100/ingest"
if [[ ${TUNED:-0} == 1 ]]; then
  name=flowc-tuned
  cmd="env $sink RUST_LOG=warn $OUT/relay serve --store memory --addr 127.0.0.1:{port}"
else
  name=flowc
  cmd="env $sink $OUT/relay serve --addr 127.0.0.1:{port}"
fi
for ((round = 1; round <= rounds; round++)); do
  FLOW_NAME=$name \
  FLOW_CMD="$cmd" \
  PEERS=${PEERS:-axum-baseline node-red} \
  SKIP_BUILD=$(( round > 1 )) \
    "$BENCH/run.sh"
  results+=("$(ls -t "$BENCH"/results-*.txt | head -1)")
done

# Per round: flowc's req/s and p99 against axum's (columns 2 and 4 of the
# harness's table), then the medians.
ratios() {
  awk -v name="$name" 'function ms(x) { return x ~ /us$/ ? x / 1000 : x ~ /ms$/ ? x + 0 : x ~ /s$/ ? x * 1000 : x + 0 }
       $1 == "axum-baseline" { a = $2; ap = ms($4) }
       $1 == name            { f = $2; fp = ms($4) }
       END { if (a && f) printf "%.2f %.2f\n", f / a, fp / ap }' "$1"
}
echo
echo "$name against axum-baseline, per round (throughput ratio, p99 ratio):"
for r in "${results[@]}"; do echo "  $(ratios "$r")  ($(basename "$r"))"; done
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
all=$(for r in "${results[@]}"; do ratios "$r"; done)
if [[ -n $all ]]; then
  echo "median throughput ratio: $(cut -d' ' -f1 <<<"$all" | median) (target >= 0.9)"
  echo "median p99 ratio:        $(cut -d' ' -f2 <<<"$all" | median) (target <= 1.2)"
fi

# The compiler's own figures. A cold build compiles the runtime from an
# empty cache (minutes); COLD=0 skips it.
cold=skipped
if [[ ${COLD:-1} != 0 ]]; then
  cold_cache=$(mktemp -d)
  start=$(date +%s%N)
  FLOWC_CACHE_DIR=$cold_cache ./target/release/flowc build benches/relay.flow -o "$(mktemp -d)" 2>/dev/null
  cold="$(( ($(date +%s%N) - start) / 1000000 )) ms"
  rm -rf "$cold_cache"
fi

echo
echo "flowc build, warm (relay.flow unchanged): ${warm_ms} ms"
echo "flowc build, cold (empty cache):          ${cold}"
echo "relay binary: $(du -h "$OUT/relay" | cut -f1) ($(stat -c %s "$OUT/relay") bytes)"
RUNS=${CHECK_RUNS:-5} benches/check.sh
echo "results: ${results[*]}"
