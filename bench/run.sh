#!/usr/bin/env bash
# Measures, in one run, the median wall time of native, `strace -f -o
# /dev/null`, `rec record` and `rec replay` on a set of workloads, and prints
# a Markdown table with the medians, the ratios and the trace sizes.
#
# Usage: bench/run.sh [--runs N] [--cell-budget SECONDS] [--only NAME[,NAME]]
#   REC=path/to/rec (default: build/rec next to this script's repository)
# See bench/README.md.
set -u

RUNS=5
CELL_BUDGET=30      # seconds per (workload, mode) cell before fewer runs are taken
DEADLINE=540        # after this many seconds every remaining cell runs once
TIMEOUT=180         # seconds allowed for a single invocation
ONLY=""

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --cell-budget) CELL_BUDGET=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 64 ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --runs needs a positive number" >&2; exit 64; }

HERE=$(cd "$(dirname "$0")" && pwd)
REC=${REC:-$HERE/../build/rec}
if [[ ! -x $REC ]]; then
  echo "run.sh: rec not found at $REC (build it, or set REC=...)" >&2
  exit 66
fi
REC=$(readlink -f "$REC")
# The system interpreter: a pyenv/asdf shim on PATH would add a shell script.
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=$(command -v python3 || echo python3)
HAVE_STRACE=0
command -v strace >/dev/null 2>&1 && HAVE_STRACE=1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rec-bench.XXXXXX")
trap 'rm -rf -- "$TMP"' EXIT
log() { printf '%s\n' "$*" >&2; }

# --- workload preparation ---------------------------------------------------
cc -O2 -o "$TMP/cpu_bound" "$HERE/cpu_bound.c" || { log "run.sh: cannot compile cpu_bound.c"; exit 1; }
cc -O2 -pthread -o "$TMP/threads" "$HERE/threads.c" || { log "run.sh: cannot compile threads.c"; exit 1; }
cc -O2 -o "$TMP/read_loop" "$HERE/read_loop.c" || { log "run.sh: cannot compile read_loop.c"; exit 1; }
cc -O2 -o "$TMP/pipe_pingpong" "$HERE/pipe_pingpong.c" || { log "run.sh: cannot compile pipe_pingpong.c"; exit 1; }
mkdir -p "$TMP/proj"
for i in 1 2 3 4 5 6 7 8; do
  printf 'int f%d(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * %d; return s; }\n' "$i" "$i" >"$TMP/proj/f$i.c"
done
printf 'int main(void) { return 0; }\n' >"$TMP/proj/main.c"
printf 'OBJS = main.o f1.o f2.o f3.o f4.o f5.o f6.o f7.o f8.o\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n%%.o: %%.c\n\t$(CC) -O1 -c -o $@ $<\n' >"$TMP/proj/Makefile"

WORKLOADS=(dd read4k pipe find ls_lR cpu_bound threads python_start true_x100 make_j2)
declare -A DESC=(
  [dd]='dd bs=4k of 50 MB, /dev/zero to /dev/null'
  [read4k]='read() loop, 4 KiB blocks of a 100 MB file'
  [pipe]='pipe ping-pong, 2 processes, 20000 rounds of 8 bytes'
  [find]='find /usr -type f'
  [ls_lR]='ls -lR /usr/lib'
  [cpu_bound]='cpu_bound (~1 s of arithmetic)'
  [threads]='thread pool: 4 threads, 400 items under a mutex'
  [python_start]='python3 -c pass'
  [true_x100]='100 x /bin/true from a sh loop'
  [make_j2]='make -j2 of 9 C files'
)
set_cmd() {  # set_cmd NAME: sets the array CMD
  case $1 in
    dd) CMD=(dd if=/dev/zero of=/dev/null bs=4k count=12800) ;;
    read4k)
      [[ -f $TMP/big ]] || head -c 100000000 /dev/urandom >"$TMP/big"
      CMD=("$TMP/read_loop" "$TMP/big") ;;
    pipe) CMD=("$TMP/pipe_pingpong" 20000) ;;
    find) CMD=(find /usr -type f) ;;
    ls_lR) CMD=(ls -lR /usr/lib) ;;
    cpu_bound) CMD=("$TMP/cpu_bound") ;;
    threads) CMD=("$TMP/threads") ;;
    python_start) CMD=("$PYTHON" -c pass) ;;
    true_x100) CMD=(sh -c 'i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done') ;;
    make_j2) CMD=(make -s -B -j2 -C "$TMP/proj") ;;
  esac
}
if [[ -n $ONLY ]]; then
  IFS=, read -r -a WORKLOADS <<<"$ONLY"
  for w in "${WORKLOADS[@]}"; do
    [[ -n ${DESC[$w]:-} ]] || { log "run.sh: unknown workload $w (known: ${!DESC[*]})"; exit 64; }
  done
fi

# --- measurement --------------------------------------------------------------
START=$EPOCHREALTIME
elapsed() { awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", b - a }'; }

# run_once MODE NAME: runs one invocation, prints its wall time in seconds;
# returns the command's status.
run_once() {
  local mode=$1 name=$2 t0 t1 st
  local -a pre=()
  case $mode in
    native) ;;
    strace) pre=(strace -f -o /dev/null) ;;
    record) pre=("$REC" record -o "$TMP/$name.rec" --) ;;
  esac
  t0=$EPOCHREALTIME
  if [[ $mode == replay ]]; then
    timeout -k 5 "$TIMEOUT" "$REC" replay "$TMP/$name.rec" </dev/null >/dev/null 2>"$TMP/last.err"
  else
    (cd "$TMP" && exec timeout -k 5 "$TIMEOUT" ${pre[@]+"${pre[@]}"} "${CMD[@]}") </dev/null >/dev/null 2>"$TMP/last.err"
  fi
  st=$?
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
  return $st
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A MED NRUNS NOTE SIZE NATIVE_STATUS TIMES CELL DONE
MODES=(native strace record replay)
# The modes take turns, one run each per round, so that a machine that gets
# slower or faster during the measurement shifts all of them alike and the
# ratios stay fair (these VMs drift by tens of percent within a minute).
for name in "${WORKLOADS[@]}"; do
  set_cmd "$name"
  for mode in "${MODES[@]}"; do TIMES[$name,$mode]="" CELL[$name,$mode]=0 DONE[$name,$mode]=0; done
  [[ $HAVE_STRACE == 0 ]] && NOTE[$name,strace]="n/a" DONE[$name,strace]=1
  for ((r = 0; r < RUNS; r++)); do
    for mode in "${MODES[@]}"; do
      ((DONE[$name,$mode])) && continue
      if [[ $mode == replay && -n ${NOTE[$name,record]:-} ]]; then
        NOTE[$name,$mode]="no trace" DONE[$name,$mode]=1
        continue
      fi
      t=$(run_once "$mode" "$name")
      st=$?
      if [[ $mode == native && $r == 0 ]]; then NATIVE_STATUS[$name]=$st; fi
      if ((st == 124 || st == 137)); then NOTE[$name,$mode]="timeout" DONE[$name,$mode]=1; continue; fi
      if [[ $st != "${NATIVE_STATUS[$name]}" ]]; then
        NOTE[$name,$mode]="exit $st" DONE[$name,$mode]=1
        log "  $name/$mode: exit status $st (native ${NATIVE_STATUS[$name]}): $(tail -n 1 "$TMP/last.err")"
        continue
      fi
      TIMES[$name,$mode]+="$t "
      CELL[$name,$mode]=$(awk -v a="${CELL[$name,$mode]}" -v b="$t" 'BEGIN { print a + b }')
      if [[ $mode == record && -f $TMP/$name.rec ]]; then SIZE[$name]=$(stat -c %s "$TMP/$name.rec"); fi
      # Fewer runs when a cell would take too long, or past the deadline (see README).
      awk -v c="${CELL[$name,$mode]}" -v t="$t" -v b="$CELL_BUDGET" 'BEGIN { exit !(c + t > b) }' &&
        DONE[$name,$mode]=1
      (($(elapsed) > DEADLINE)) && DONE[$name,$mode]=1
    done
  done
  for mode in "${MODES[@]}"; do
    read -r -a times <<<"${TIMES[$name,$mode]}"
    if ((${#times[@]})); then
      MED[$name,$mode]=$(printf '%s\n' "${times[@]}" | median)
      NRUNS[$name,$mode]=${#times[@]}
    fi
    log "$(printf '%-13s %-7s %s run(s), median %ss%s  [%ss elapsed]' "$name" "$mode" "${#times[@]}" \
      "${MED[$name,$mode]:--}" "${NOTE[$name,$mode]:+ (${NOTE[$name,$mode]})}" "$(elapsed)")"
  done
done

# --- report -----------------------------------------------------------------------
cell() {  # cell NAME MODE: "0.123 s" (+ run count when fewer than asked)
  local m=${MED[$1,$2]:-}
  if [[ -z $m ]]; then printf '%s' "${NOTE[$1,$2]:-–}"; return; fi
  printf '%s s' "$(awk -v m="$m" 'BEGIN { printf (m < 10 ? "%.3f" : "%.1f"), m }')"
  [[ ${NRUNS[$1,$2]} != "$RUNS" ]] && printf ' (%s run%s)' "${NRUNS[$1,$2]}" "$([[ ${NRUNS[$1,$2]} == 1 ]] || echo s)"
  [[ -n ${NOTE[$1,$2]:-} ]] && printf ' (%s)' "${NOTE[$1,$2]}"
  return 0
}
ratio() {  # ratio NAME MODE_A MODE_B: A/B
  local a=${MED[$1,$2]:-} b=${MED[$1,$3]:-}
  [[ -z $a || -z $b ]] && { printf '–'; return; }
  awk -v a="$a" -v b="$b" 'BEGIN { if (b <= 0) print "–"; else { r = a / b; printf (r < 10 ? "%.2fx" : "%.0fx"), r } }'
}
size() {
  local s=${SIZE[$1]:-}
  [[ -z $s ]] && { printf '–'; return; }
  awk -v s="$s" 'BEGIN { if (s < 1024) printf "%d B", s; else if (s < 1048576) printf "%.1f KiB", s / 1024; else printf "%.1f MiB", s / 1048576 }'
}

echo "rec benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
REC_VERSION=$("$REC" --version 2>/dev/null | head -n1)
echo "rec: $REC (${REC_VERSION:-version unknown}); median of up to $RUNS runs; strace: $([[ $HAVE_STRACE == 1 ]] && strace -V | head -n1 || echo 'not installed, column skipped')"
echo
echo "| workload | native | strace -f | rec record | rec replay | strace/native | record/native | replay/native | record/strace | trace size |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for name in "${WORKLOADS[@]}"; do
  echo "| ${DESC[$name]} | $(cell "$name" native) | $(cell "$name" strace) | $(cell "$name" record) | $(cell "$name" replay) | $(ratio "$name" strace native) | $(ratio "$name" record native) | $(ratio "$name" replay native) | $(ratio "$name" record strace) | $(size "$name") |"
done
echo
echo "Total benchmark time: $(elapsed) s."
