#!/usr/bin/env bash
# Durable webhook intake: how many `202 Accepted` per second the runtime
# answers with 64 concurrent clients (wrk, keep-alive), each 202 sent only
# after the event is committed to the store. Drives the release build of
# runtime/examples/orders_relay.rs (`POST /events`: JSON body, a dedupe key
# per request, one journaled step per run), with its worker pool running the
# accepted events meanwhile. Prints one line per store:
#
#   sqlite-full    the default: SQLite, synchronous=FULL (survives power loss)
#   sqlite-normal  --durability normal (survives a process crash)
#   memory         --store memory (nothing durable; for comparison)
#
# Usage: benches/intake.sh   (env: DURATION=10s CONNECTIONS=64 THREADS=1
#                             RUST_LOG=info STORES="sqlite-full sqlite-normal memory")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
STORES=${STORES:-"sqlite-full sqlite-normal memory"}
export RUST_LOG=${RUST_LOG:-info}

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: installing wrk"
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi

cargo build --release --quiet -p flow_runtime --example orders_relay
BIN=$ROOT/target/release/examples/orders_relay

WORK=$(mktemp -d)
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION -s benches/intake.lua (after a 2 s warm-up), RUST_LOG=$RUST_LOG"

run() { # label, then serve arguments
  local label=$1; shift
  local dir; dir=$(mktemp -d -p "$WORK")
  (cd "$dir" && SINK_URL=http://127.0.0.1:9 SINK_TOKEN=bench-token-1234 \
     exec "$BIN" serve --addr 127.0.0.1:0 "$@" >out.txt 2>log.txt) &
  PID=$!
  local url=""
  for _ in $(seq 1 200); do # readiness: at most 10 s
    url=$(sed -n 's/^listening on //p' "$dir/out.txt" 2>/dev/null || true)
    [ -n "$url" ] && break
    sleep 0.05
  done
  if [ -z "$url" ]; then echo "bench: $label did not start"; cat "$dir/log.txt"; exit 1; fi
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s benches/intake.lua "$url" >/dev/null
  local result
  result=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s benches/intake.lua "$url" | grep '^RESULT' | sed 's/^RESULT //')
  kill -TERM "$PID"
  wait "$PID" || true
  PID=""
  local size=""
  if [ -f "$dir/orders_relay.db" ]; then
    size=" db=$(du -sh "$dir" | cut -f1)"
  fi
  printf '%-14s %s%s\n' "$label" "$result" "$size"
}

for store in $STORES; do
  case $store in
    sqlite-full) run sqlite-full --durability full ;;
    sqlite-normal) run sqlite-normal --durability normal ;;
    memory) run memory --store memory ;;
    *) echo "bench: unknown store $store"; exit 2 ;;
  esac
done
