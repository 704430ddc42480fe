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
FLOW_NAME=flowc \
FLOW_CMD="env SINK_URL=http://127.0.0.1:9100/ingest RUST_LOG=warn $OUT/relay serve --store memory --addr 127.0.0.1:{port}" \
PEERS=${PEERS:-axum-baseline node-red} \
  "$BENCH/run.sh"

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
echo "results: $(ls -t "$BENCH"/results-*.txt | head -1)"
