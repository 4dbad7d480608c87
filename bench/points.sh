#!/usr/bin/env bash
# What replay pays to reach points in user code (signals and preemptions
# that arrived in loops), per point, for short and long loops. Prints a
# Markdown table: medians of RUNS record/replay pairs of each program.
#
# Usage: bench/points.sh [RUNS]   (default 3)
#   REC=path/to/rec, PROGRAMS=dir of built test programs (defaults: build/...)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REC=${REC:-$HERE/../build/rec}
PROGRAMS=${PROGRAMS:-$HERE/../build/tests/programs}
RUNS=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# name|loop|command
programs=(
  "jmp-self|2-byte jmp . (debug register, copied loop)|$PROGRAMS/exact_points jmp-self"
  "dec-jnz|4-byte dec/jnz, 2^32 rounds (debug register, copied loop)|$PROGRAMS/exact_points dec-jnz"
  "global-round|inner dec/jnz in an outer loop counting in a global|$PROGRAMS/exact_points global-round"
  "red-zone|dec/jnz after a call each round (debug register hit per round)|$PROGRAMS/exact_points red-zone"
  "alarm_busy|counter++ in memory, 25 SIGALRMs (jump patch)|$PROGRAMS/alarm_busy"
  "spin_flag|a thread spinning on a flag (preemption)|$PROGRAMS/spin_flag"
  "racy_counter|4 threads adding to a global, 10^8 rounds each (preemptions)|$PROGRAMS/racy_counter"
  "probe-round|a probe loop writing nothing, in an outer loop counting on the heap|$PROGRAMS/exact_points probe-round"
  "xmm-round|a subroutine in a loop counting in xmm0 only|$PROGRAMS/exact_points xmm-round"
  "select-spin|2 threads, rounds of 3000 instructions, beside a main in select()|$PROGRAMS/exact_points select-spin"
)
echo "| program | loop | points | record ms | replay ms | replay ms per point |"
echo "|---|---|---:|---:|---:|---:|"
for p in "${programs[@]}"; do
  IFS='|' read -r name loop command <<<"$p"
  read -r -a cmd <<<"$command"
  recs=() reps=() points=0
  for _ in $(seq "$RUNS"); do
    s=$(date +%s%N)
    "$REC" record -o "$work/t.rec" "${cmd[@]}" >/dev/null 2>&1
    recs+=("$(ms "$s")")
    points=$("$REC" dump "$work/t.rec" | grep -c -E 'in user code|preempted at')
    s=$(date +%s%N)
    "$REC" replay "$work/t.rec" >/dev/null 2>&1
    reps+=("$(ms "$s")")
  done
  rec_ms=$(printf '%s\n' "${recs[@]}" | median)
  rep_ms=$(printf '%s\n' "${reps[@]}" | median)
  per=$([[ $points -gt 0 ]] && echo $((rep_ms / points)) || echo -)
  echo "| $name | $loop | $points | $rec_ms | $rep_ms | $per |"
done
