#!/usr/bin/env bash
# Instructions per relay request, counted by callgrind (repeatable on a
# busy machine, unlike wall-clock rates): the relay serves 1,000 and then,
# in a second process, 4,000 canonical requests over 4 keep-alive
# connections; (total(4000) - total(1000)) / 3000 is the cost of one
# request, start-up and shutdown excluded. docs/performance.md has the
# figures.
#
#   benches/instructions.sh RELAY [RELAY2 ...]   # binaries built by `flowc build benches/relay.flow`
#   EXTRA="--store memory" RUST_LOG=warn benches/instructions.sh RELAY   # the tuned configuration
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sink_port=${SINK_PORT:-19100}
port=${PORT:-19002}
python3 "$here/sink.py" "$sink_port" &
sink=$!
trap 'kill $sink 2>/dev/null' EXIT
work=$(mktemp -d)

total() { # relay requests -> instructions of the whole process
  local relay=$1 n=$2
  local out="$work/cg.$n"
  (cd "$work" && SINK_URL="http://127.0.0.1:$sink_port/ingest" valgrind --tool=callgrind \
     --callgrind-out-file="$out" "$relay" serve ${EXTRA:-} --addr "127.0.0.1:$port" \
     >"$work/log.$n" 2>&1) &
  local pid=$!
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$port/_flow/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  python3 "$here/relay_load.py" "http://127.0.0.1:$port/inventory" "$n" 4
  pkill -TERM -f "callgrind-out-file=$out" || true
  wait "$pid" || true
  rm -f "$work"/*.db*
  grep -m1 '^summary:' "$out" | awk '{print $2}'
}

for relay in "$@"; do
  small=$(total "$relay" 1000)
  large=$(total "$relay" 4000)
  echo "$relay: $(( (large - small) / 3000 )) instructions per request (${EXTRA:-defaults}${RUST_LOG:+, RUST_LOG=$RUST_LOG})"
done
