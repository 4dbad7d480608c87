#!/usr/bin/env bash
# Buffered calls that can block, both ways (docs/syscall-buffer.md
# "Blocking"): records each workload under REC_SYSBUF_BLOCKING=nowait, auto
# and desched, the modes taking turns run by run, and prints a Markdown
# table of the median record wall times, the ptrace stops rec waited for
# (wait4 calls, from one `strace -c` run of rec itself per cell, when strace
# is there) and the events that stopped (`rec dump` lines not marked
# `[syscall buffer, no stop]`).
#
# Usage: bench/blocking.sh [--runs N]
#   REC=path/to/rec (default: build/rec next to this script's repository)
# The desched event needs perf_event_paranoid <= 1 or CAP_PERFMON (root):
# without it `auto` and `desched` record as `nowait` does.
set -u

RUNS=7
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "blocking.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "blocking.sh: --runs needs a positive number" >&2; exit 64; }

HERE=$(cd "$(dirname "$0")" && pwd)
REC=${REC:-$HERE/../build/rec}
[[ -x $REC ]] || { echo "blocking.sh: rec not found at $REC (build it, or set REC=...)" >&2; exit 66; }
REC=$(readlink -f "$REC")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rec-blocking.XXXXXX")
trap 'rm -rf -- "$TMP"' EXIT

cc -O2 -o "$TMP/pipe_pingpong" "$HERE/pipe_pingpong.c" || exit 1
cc -O2 -pthread -o "$TMP/threads" "$HERE/threads.c" || exit 1
cc -O2 -pthread -o "$TMP/sysbuf_futex" "$HERE/../tests/programs/sysbuf_futex.c" || exit 1

WORKLOADS=(pipe threads futex)
declare -A CMD=(
  [pipe]="$TMP/pipe_pingpong 20000"
  [threads]="$TMP/threads"
  [futex]="$TMP/sysbuf_futex 2000"
)
MODES=(nowait auto desched)

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A TIMES STOPS TRACED
for name in "${WORKLOADS[@]}"; do
  for ((i = 0; i < RUNS; i++)); do
    for mode in "${MODES[@]}"; do
      t0=$(date +%s.%N)
      # shellcheck disable=SC2086
      REC_SYSBUF_BLOCKING=$mode "$REC" record -o "$TMP/$name.$mode.rec" -- ${CMD[$name]} >/dev/null 2>&1 ||
        { echo "blocking.sh: $name under $mode failed" >&2; exit 1; }
      t1=$(date +%s.%N)
      TIMES[$name,$mode]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }') "
    done
  done
  for mode in "${MODES[@]}"; do
    TRACED[$name,$mode]=$("$REC" dump "$TMP/$name.$mode.rec" | grep -E '^#[0-9]+ ' | grep -vc 'syscall buffer, no stop')
    STOPS[$name,$mode]=-
    if command -v strace >/dev/null 2>&1; then
      # shellcheck disable=SC2086
      REC_SYSBUF_BLOCKING=$mode strace -c -o "$TMP/strace.out" "$REC" record -o "$TMP/s.rec" -- ${CMD[$name]} >/dev/null 2>&1
      STOPS[$name,$mode]=$(awk '$NF == "wait4" { print $4 }' "$TMP/strace.out")
    fi
  done
done

echo "REC_SYSBUF_BLOCKING both ways, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs, perf_event_paranoid $(cat /proc/sys/kernel/perf_event_paranoid), uid $(id -u), $RUNS runs"
echo
printf '| workload | %s |\n' "$(printf '%s record (s) / stops / traced events | ' "${MODES[@]}" | sed 's/ | $//')"
printf '|---|%s\n' "$(printf -- '---|%.0s' "${MODES[@]}")"
for name in "${WORKLOADS[@]}"; do
  row="| $name |"
  for mode in "${MODES[@]}"; do
    # shellcheck disable=SC2086
    med=$(printf '%s\n' ${TIMES[$name,$mode]} | median)
    row+=" $med / ${STOPS[$name,$mode]} / ${TRACED[$name,$mode]} |"
  done
  echo "$row"
done
