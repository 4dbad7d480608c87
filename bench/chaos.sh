#!/usr/bin/env bash
# How many runs it takes to catch tests/programs/race.c (a lost update whose
# window holds one syscall) natively, under plain `rec record
# --until-failure`, and under `--chaos`. Prints a Markdown table.
#
# Usage: bench/chaos.sh [TRIALS]   (default 10 chaos trials)
#   REC=path/to/rec, RACE=path/to/race (defaults: build/rec, build/tests/programs/race)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REC=${REC:-$HERE/../build/rec}
RACE=${RACE:-$HERE/../build/tests/programs/race}
TRIALS=${1:-10}
NATIVE_RUNS=500
PLAIN_RUNS=200
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

native_failures=0
for _ in $(seq "$NATIVE_RUNS"); do "$RACE" >/dev/null 2>&1 || native_failures=$((native_failures + 1)); done

runs_to_catch() {  # prints the number of runs, or "none in N"
  local max=$1
  shift
  "$REC" record --until-failure --max-runs "$max" -o "$work/t.rec" "$@" -- "$RACE" >/dev/null 2>"$work/err"
  local n
  n=$(sed -n 's/^rec: \([0-9]*\) runs\{0,1\}, 1 failure.*/\1/p' "$work/err")
  rm -f "$work/t.rec"
  echo "${n:-none in $max}"
}

plain=$(runs_to_catch "$PLAIN_RUNS")
chaos=()
for _ in $(seq "$TRIALS"); do chaos+=("$(runs_to_catch 200 --chaos)"); done
sorted=$(printf '%s\n' "${chaos[@]}" | grep -E '^[0-9]+$' | sort -n)
count=$(printf '%s\n' "$sorted" | grep -c .)
median=$(printf '%s\n' "$sorted" | sed -n "$(((count + 1) / 2))p")

echo "| mode | result |"
echo "|---|---|"
echo "| native | $native_failures failures in $NATIVE_RUNS runs |"
echo "| rec record --until-failure | caught after: $plain |"
echo "| rec record --until-failure --chaos | median $median runs to catch over $TRIALS trials (each: ${chaos[*]}) |"
