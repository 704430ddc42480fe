#!/usr/bin/env bash
# Scaling out: durable intake and completion rates of the release build of
# runtime/examples/orders_relay.rs (`POST /events`: JSON body, a dedupe key
# per request, one journaled step per run) on
#
#   sqlite   one process on its SQLite file (the default store)
#   pg1      one replica on PostgreSQL (--store postgres://…)
#   pg3      three replicas on one PostgreSQL schema, the load split evenly
#
# Intake: wrk with CONNECTIONS clients in all (split across the replicas)
# for DURATION after a 2 s warm-up; each 202 is sent after the event is
# committed. Completion: runs finished per second, from the first run
# stored to the last one finished (the workers run while intake goes on,
# then drain the backlog). Prints one line per setup.
#
# Usage: benches/replicas.sh   (env: DURATION=10s CONNECTIONS=64 WORKERS=4
#   STORES="sqlite pg1 pg3" FLOW_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-4}
STORES=${STORES:-"sqlite pg1 pg3"}
PG_URL=${FLOW_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export RUST_LOG=${RUST_LOG:-warn}

for tool in wrk psql python3; do
  if ! command -v $tool >/dev/null 2>&1; then
    echo "bench: $tool is needed"; exit 2
  fi
done

cargo build --release --quiet -p flow_runtime --example orders_relay
BIN=$ROOT/target/release/examples/orders_relay

WORK=$(mktemp -d)
PIDS=()
SCHEMA=""
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "$SCHEMA" ]; then psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r), $(psql -At "$PG_URL" -c 'SHOW server_version' 2>/dev/null | sed 's/^/PostgreSQL /')"
echo "load: wrk -c$CONNECTIONS in all -d$DURATION -s benches/intake.lua (after a 2 s warm-up); --workers $WORKERS per replica; RUST_LOG=$RUST_LOG"

URL=""
start() { # dir, then serve arguments; sets URL
  local dir=$1; shift
  (cd "$dir" && SINK_URL=http://127.0.0.1:9 SINK_TOKEN=bench-token-1234 \
     exec "$BIN" serve --addr 127.0.0.1:0 --workers "$WORKERS" "$@" >out.txt 2>log.txt) &
  PIDS+=($!)
  local url=""
  for _ in $(seq 1 200); do # readiness: at most 10 s
    url=$(sed -n 's/^listening on //p' "$dir/out.txt" 2>/dev/null || true)
    [ -n "$url" ] && break
    sleep 0.05
  done
  if [ -z "$url" ]; then echo "bench: a replica did not start" >&2; cat "$dir/log.txt" >&2; exit 1; fi
  URL=$url
}

# Open runs left, and the completion figures, from the store itself.
pending_sql="SELECT count(*) FROM executions WHERE status IN ('queued', 'running')"
pending() { # kind, where
  if [ "$1" = sqlite ]; then
    python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"$pending_sql\").fetchone()[0])" "$2"
  else
    psql -At "$PG_URL" -c "SET search_path = $2; $pending_sql" | tail -1
  fi
}
completion() { # kind, where → "runs=N seconds=S rate=R"
  if [ "$1" = sqlite ]; then
    python3 - "$2" <<'EOF'
import sqlite3, sys
n, first, last = sqlite3.connect(sys.argv[1]).execute(
    "SELECT count(*), min(created_at), max(finished_at) FROM executions WHERE status = 'succeeded'").fetchone()
s = (last - first) / 1e6
print(f"runs={n} seconds={s:.2f} rate={n / s:.0f}/s")
EOF
  else
    psql -At -F ' ' "$PG_URL" -c "SET search_path = $2; SELECT count(*), extract(epoch FROM max(finished_at) - min(created_at)) FROM executions WHERE status = 'succeeded'" \
      | tail -1 | awk '{ printf "runs=%d seconds=%.2f rate=%.0f/s\n", $1, $2, $1 / $2 }'
  fi
}

run() { # label, replicas, kind
  local label=$1 n=$2 kind=$3
  local where args=()
  if [ "$kind" = sqlite ]; then
    local dir; dir=$(mktemp -d -p "$WORK")
    where=$dir/orders_relay.db
    args=(--store "sqlite://$where")
  else
    SCHEMA=bench_$RANDOM$RANDOM
    where=$SCHEMA
    args=(--store "$PG_URL" --store-schema "$SCHEMA" ${POOL:+--store-pool $POOL})
  fi
  local urls=()
  for _ in $(seq 1 "$n"); do
    local d; d=$(mktemp -d -p "$WORK")
    start "$d" "${args[@]}"
    urls+=("$URL")
  done
  local per=$((CONNECTIONS / n))
  for u in "${urls[@]}"; do
    wrk -t1 -c"$per" -d2s -s benches/intake.lua "$u" -- "w$RANDOM-" >/dev/null &
  done
  wait_wrk
  local outs=()
  for i in "${!urls[@]}"; do
    outs+=("$WORK/wrk-$label-$i.txt")
    wrk -t1 -c"$per" -d"$DURATION" -s benches/intake.lua "${urls[$i]}" -- "r$i-" >"${outs[$i]}" &
  done
  wait_wrk
  local intake
  intake=$(cat "${outs[@]}" | grep '^RESULT' | awk '
    { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] += kv[2]; if (kv[1] == "p99_ms" && kv[2] > p99) p99 = kv[2] } }
    END { printf "intake=%.0f/s requests=%d p99_ms<=%.1f non2xx=%d errors=%d", v["rps"], v["requests"], p99, v["non2xx"], v["errors"] }')
  # Drain: wait (bounded) until every accepted run has finished.
  for _ in $(seq 1 600); do
    [ "$(pending "$kind" "$where")" = 0 ] && break
    sleep 0.2
  done
  local done_; done_=$(completion "$kind" "$where")
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  if [ "$kind" = pg ]; then
    psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1
    SCHEMA=""
  fi
  printf '%-7s %s  completion: %s\n' "$label" "$intake" "$done_"
}

wait_wrk() {
  for j in $(jobs -p); do
    case " ${PIDS[*]} " in *" $j "*) ;; *) wait "$j" ;; esac
  done
}

for store in $STORES; do
  case $store in
    sqlite) run sqlite 1 sqlite ;;
    pg1) run pg1 1 pg ;;
    pg3) run pg3 3 pg ;;
    *) echo "bench: unknown setup $store"; exit 2 ;;
  esac
done
