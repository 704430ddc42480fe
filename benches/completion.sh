#!/usr/bin/env bash
# Durable webhooks end to end: how fast runs are *completed*, not only
# accepted. benches/completion.flow (one HTTP step per event) serves with
# its defaults (`serve`, SQLite store, no flags); wrk posts events for
# DURATION with 64 connections; the script then waits until the sink has
# received one call per accepted event and prints
#
#   intake      accepted events per second during the load
#   completion  accepted events / seconds from the start of the load to
#               the last step done
#   backlog     events accepted but not yet done when the load stopped
#
#   benches/completion.sh                 # defaults
#   EXTRA="--workers 4" benches/completion.sh   # any serve flags, labelled
#   STORE=postgres benches/completion.sh  # a fresh PostgreSQL schema
#   REPLICAS=3 STORE=postgres benches/completion.sh
#   BIN=/tmp/old/completion benches/completion.sh   # a binary built before
#                               (with STORE=postgres: built `--with postgres`)
#   RATE=5000 DURATION=60s benches/completion.sh     # sustained, not a burst
#
# Needs wrk (installed with apt when missing) and builds the shared sink
# (../shared/bench/sink) once. Only 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
REPLICAS=${REPLICAS:-1}
STORE=${STORE:-sqlite}
SINK_PORT=${SINK_PORT:-19200}
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
SINK_SRC=${SINK_SRC:-$ROOT/../shared/bench/sink}
SINK_DIR=${SINK_DIR:-/tmp/flow-bench-sink}
if [[ ! -x $SINK_DIR/target/release/bench-sink ]]; then
  mkdir -p "$SINK_DIR" && cp -r "$SINK_SRC"/. "$SINK_DIR"/ && chmod -R u+w "$SINK_DIR"
  (cd "$SINK_DIR" && cargo build --release -q)
fi
"$SINK_DIR/target/release/bench-sink" "$SINK_PORT" 2>/dev/null &
pids+=($!)

# BIN=path/to/completion measures a binary built before (another commit's).
if [[ -z ${BIN:-} ]]; then
  cargo build --release -q --bin flowc
  export FLOWC_CACHE_DIR=${FLOWC_CACHE_DIR:-$ROOT/target/flowc-cache}
  # `--store postgres://` needs the runtime's `postgres` feature.
  with=()
  [[ $STORE == postgres ]] && with=(--with postgres)
  ./target/release/flowc build "${with[@]}" benches/completion.flow -o "$WORK/bin" >/dev/null
  BIN=$WORK/bin/completion
fi

store_args=()
if [[ $STORE == postgres ]]; then
  url=${FLOW_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  store_args=(--store "$url" --store-schema "bench_completion_$$")
fi
urls=()
for ((i = 0; i < REPLICAS; i++)); do
  dir=$WORK/r$i; mkdir -p "$dir"
  (cd "$dir" && SINK_URL=http://127.0.0.1:$SINK_PORT/ingest exec "$BIN" serve --addr 127.0.0.1:0 \
     "${store_args[@]}" ${EXTRA:-} >out.txt 2>log.txt) &
  pids+=($!)
  for _ in $(seq 200); do
    url=$(sed -n 's/^listening on //p' "$dir/out.txt" 2>/dev/null || true)
    [[ -n $url ]] && break; sleep 0.05
  done
  [[ -n $url ]] || { echo "replica $i did not start"; cat "$dir/log.txt"; exit 1; }
  urls+=("$url")
done

# One POST script for all replicas: wrk spreads its connections over them
# by connecting to the first; with replicas, each gets its own wrk.
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"id":"e-1","kind":"order.created","amount":42}'
done = function(summary, latency, requests)
  local accepted = summary.requests - summary.errors.status - summary.errors.connect
    - summary.errors.read - summary.errors.write - summary.errors.timeout
  io.write(string.format("ACCEPTED %d %.3f\n", accepted, summary.duration / 1e6))
end
LUA
# RATE=N: each connection waits between requests so that all of them
# offer a little more than N events/s (the wait is rounded down to whole
# milliseconds, less the time a request takes).
if [[ -n ${RATE:-} ]]; then
  echo "delay = function() return $(( CONNECTIONS * 1000 / RATE - 1 )) end" >>"$WORK/post.lua"
fi
count() { curl -fs "http://127.0.0.1:$SINK_PORT/count"; }
# Events accepted so far (202 answers, from every replica's metrics).
accepted_so_far() {
  for u in "${urls[@]}"; do curl -fs "$u/_flow/metrics"; done |
    awk '/^flow_http_requests_total/ && /status="202"/ { n += $2 } END { print n + 0 }'
}
before=$(count)
start=$(date +%s.%N)
# Every 10 s of the load: accepted, completed and the difference (the
# backlog), which under a sustainable RATE stays about level.
(
  for ((t = 10; ; t += 10)); do
    sleep 10
    a=$(accepted_so_far); c=$(( $(count) - before ))
    printf '  at %3ds: accepted %8d  completed %8d  backlog %7d\n' "$t" "$a" "$c" $(( a - c ))
  done
) &
sampler=$!
pids+=($sampler)
per=$(( CONNECTIONS / REPLICAS ))
outs=(); loads=()
for u in "${urls[@]}"; do
  out=$(mktemp -p "$WORK"); outs+=("$out")
  wrk -t1 -c"$per" -d"$DURATION" -s "$WORK/post.lua" "$u/events" >"$out" &
  loads+=($!)
done
wait "${loads[@]}"
kill "$sampler" 2>/dev/null || true
accepted=$(cat "${outs[@]}" | awk '/^ACCEPTED/ { n += $2 } END { print n }')
load_s=$(cat "${outs[@]}" | awk '/^ACCEPTED/ { if ($3 > s) s = $3 } END { print s }')
backlog=$(( accepted - ($(count) - before) ))
# Wait (bounded: 10 minutes) until every accepted event reached the sink.
for _ in $(seq 6000); do
  (( $(count) - before >= accepted )) && break
  sleep 0.1
done
done_at=$(date +%s.%N)
completed=$(( $(count) - before ))
awk -v a="$accepted" -v c="$completed" -v ls="$load_s" -v s="$start" -v d="$done_at" -v b="$backlog" \
    -v label="${STORE}${REPLICAS:+ x$REPLICAS}${RATE:+ at $RATE/s}${EXTRA:+ $EXTRA}" 'BEGIN {
  printf "%-28s intake %8.0f/s  completion %8.0f/s  backlog at end of load %d  (accepted %d, completed %d)\n",
    label, a / ls, c / (d - s), b, a, c }'
