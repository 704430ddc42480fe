#!/usr/bin/env bash
# Times `flowc build` from an empty cache: the quickstart (HTTP, files and
# schedules only) and benches/everything.flow (SQL, SFTP, SMTP and every
# broker), then warm rebuilds of each (unchanged, and after an edit).
#
# Usage: benches/cold_build.sh                 (3 rounds; builds flowc, debug)
#        ROUNDS=1 benches/cold_build.sh
#        PROGRAMS=quickstart benches/cold_build.sh
#        MIXED=1 benches/cold_build.sh         (also: two feature sets in one
#                                               cache do not rebuild each other)
#        FLOWC=/path/to/flowc KEEP=1 ...       (a given flowc; keep the caches)
#
# Each cold build gets a fresh FLOWC_CACHE_DIR (and so a fresh cargo target
# folder); the registry's sources must already be downloaded (nothing here
# measures the network). CARGO_INCREMENTAL and RUSTFLAGS are unset, as on a
# newcomer's machine. Prints one line per build: wall time, CPU time
# (user + system, of cargo and every compiler it ran: far less sensitive to
# other load than the wall time), peak RSS of the largest process, and the
# 1-minute load average before the build (on a 2-core machine, anything
# above ~0.5 means the wall time is inflated by other jobs), then the
# median wall time of each kind of build over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
PROGRAMS=${PROGRAMS:-"quickstart everything"}
if [[ -z "${FLOWC:-}" ]]; then
  cargo build -q --bin flowc
  FLOWC=$PWD/target/debug/flowc
fi
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
work=$(mktemp -d)
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$work"' EXIT; else echo "caches kept in $work"; fi

source_of() {
  case "$1" in
    quickstart) echo examples/quickstart.flow ;;
    everything) echo benches/everything.flow ;;
    *) echo "unknown program $1" >&2; exit 2 ;;
  esac
}

declare -A results
# build LABEL CACHE FILE: one timed `flowc build`; appends the wall time to
# results[LABEL].
build() {
  local label=$1 cache=$2 file=$3 load
  load=$(cut -d' ' -f1 /proc/loadavg)
  env -u CARGO_INCREMENTAL -u RUSTFLAGS -u CARGO_TARGET_DIR FLOWC_CACHE_DIR="$cache" \
    /usr/bin/time -o "$work/time" -f '%e %U %S %M' \
    "$FLOWC" build "$file" -o "$work/bin" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
  read -r wall user sys rss <"$work/time"
  printf '%-24s wall %7.1f s  cpu %7.1f s  peak rss %5d MB  load %s\n' \
    "$label" "$wall" "$(echo "$user + $sys" | bc)" "$((rss / 1024))" "$load"
  results[$label]+="$wall "
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round ($(nproc) cores)"
  for program in $PROGRAMS; do
    # A copy, so that the edit below changes nothing in the repository.
    file="$work/$program.flow"
    cp "$(source_of "$program")" "$file"
    cache="$work/cache-$program-$round"
    build "$program cold" "$cache" "$file"
    build "$program warm" "$cache" "$file"
    # An edit (a flow's doc comment changes the generated code).
    sed -i "0,/^flow /s//\/\/\/ Edited $(date +%s%N).\nflow /" "$file"
    build "$program edited" "$cache" "$file"
  done
  if [[ -n "${MIXED:-}" && "$PROGRAMS" == *quickstart* && "$PROGRAMS" == *everything* ]]; then
    # The quickstart's (featureless) runtime in the everything cache, then
    # the everything build again: it must still be warm.
    build "quickstart in shared" "$work/cache-everything-$round" "$work/quickstart.flow"
    build "everything after" "$work/cache-everything-$round" "$work/everything.flow"
  fi
  [[ -n "${KEEP:-}" ]] || rm -rf "$work"/cache-*-"$round"
done

echo "== median wall time over $ROUNDS round(s)"
for label in "${!results[@]}"; do
  median=$(printf '%s\n' ${results[$label]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-24s %7.1f s\n' "$label" "$median"
done | sort
