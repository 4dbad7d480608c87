#!/usr/bin/env bash
# Records and replays the racy and busy-loop programs of tests/programs many
# times under a background CPU load and counts the replays whose output or
# status differs from their recording's (issue 10: there must be none).
# Prints a Markdown table; exits 1 when any pair mismatched.
#
# Usage: bench/stress.sh [PAIRS]   (default 200 record/replay pairs in all)
#   REC=path/to/rec, PROGRAMS=dir of built test programs (defaults: build/...)
#   LOAD=N background busy processes (default 1)
#   ONLY=name,name: only these workloads (names as in the table)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REC=${REC:-$HERE/../build/rec}
PROGRAMS=${PROGRAMS:-$HERE/../build/tests/programs}
PAIRS=${1:-200}
LOAD=${LOAD:-1}
work=$(mktemp -d)
loaders=()
cleanup() {
  for p in "${loaders[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq "$LOAD"); do
  (while :; do :; done) &
  loaders+=($!)
done

# name|command: each runs its own pairs in turn.
workloads=(
  "alarm_busy|$PROGRAMS/alarm_busy"
  "racy_counter|$PROGRAMS/racy_counter"
  "spin_flag|$PROGRAMS/spin_flag"
  "global-round|$PROGRAMS/exact_points global-round"
  "dec-jnz|$PROGRAMS/exact_points dec-jnz"
  "jmp-self|$PROGRAMS/exact_points jmp-self"
  "pause-spin|$PROGRAMS/exact_points pause-spin"
  "red-zone|$PROGRAMS/exact_points red-zone"
  "syscall-spin|$PROGRAMS/exact_points syscall-spin"
  "probe-round|$PROGRAMS/exact_points probe-round"
  "xmm-round|$PROGRAMS/exact_points xmm-round"
  "select-spin|$PROGRAMS/exact_points select-spin"
  "alarm-fast|$PROGRAMS/alarm_busy 200"
)
if [[ -n ${ONLY:-} ]]; then
  kept=()
  for w in "${workloads[@]}"; do [[ ,$ONLY, == *,"${w%%|*}",* ]] && kept+=("$w"); done
  workloads=("${kept[@]}")
fi
declare -A runs mismatches seconds
total_mismatches=0
for i in $(seq 0 $((PAIRS - 1))); do
  w=${workloads[$((i % ${#workloads[@]}))]}
  name=${w%%|*}
  read -r -a cmd <<<"${w#*|}"
  start=$(date +%s%N)
  timeout 120 "$REC" record -o "$work/t.rec" "${cmd[@]}" >"$work/rec.out" 2>"$work/rec.err"
  rs=$?
  timeout 300 "$REC" replay "$work/t.rec" >"$work/rep.out" 2>"$work/rep.err"
  ps=$?
  end=$(date +%s%N)
  runs[$name]=$((${runs[$name]:-0} + 1))
  seconds[$name]=$((${seconds[$name]:-0} + (end - start) / 1000000))
  if [[ $rs != "$ps" ]] || ! cmp -s "$work/rec.out" "$work/rep.out"; then
    mismatches[$name]=$((${mismatches[$name]:-0} + 1))
    total_mismatches=$((total_mismatches + 1))
    echo "mismatch in $name (record $rs, replay $ps): $(tail -n 1 "$work/rep.err")" >&2
    cp "$work/t.rec" "$work/../stress-mismatch-$name-$i.rec" 2>/dev/null
  fi
done

echo "rec stress, $(date -u '+%Y-%m-%d %H:%M UTC'), $PAIRS pairs, $LOAD background busy loop(s)"
echo
echo "| workload | pairs | mismatches | mean ms per pair |"
echo "|---|---|---|---|"
for w in "${workloads[@]}"; do
  name=${w%%|*}
  n=${runs[$name]:-0}
  [[ $n -gt 0 ]] || continue
  echo "| $name | $n | ${mismatches[$name]:-0} | $((${seconds[$name]} / n)) |"
done
echo
echo "Total mismatches: $total_mismatches"
[[ $total_mismatches -eq 0 ]]
