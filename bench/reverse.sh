#!/usr/bin/env bash
# Times reverse execution in `rec replay -d` (real gdb, batch mode) on a
# recording of bench/reverse_target.c (~5 s of mixed syscalls and
# computation), and reports the checkpoints' memory. Prints a Markdown table.
#
# Usage: bench/reverse.sh [--runs N] [--rounds R]
#   REC=path/to/rec (default: build/rec next to this script's repository)
# See bench/README.md ("Reverse execution").
set -u

RUNS=3
ROUNDS=100
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "reverse.sh: unknown argument $1" >&2; usage >&2; exit 64 ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "reverse.sh: --runs needs a positive number" >&2; exit 64; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "reverse.sh: --rounds needs a positive number" >&2; exit 64; }

HERE=$(cd "$(dirname "$0")" && pwd)
REC=${REC:-$HERE/../build/rec}
[[ -x $REC ]] || { echo "reverse.sh: rec not found at $REC (build it, or set REC=...)" >&2; exit 66; }
REC=$(readlink -f "$REC")
command -v gdb >/dev/null || { echo "reverse.sh: gdb is not installed" >&2; exit 69; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rec-bench-reverse.XXXXXX")
trap 'rm -rf -- "$TMP"' EXIT
log() { printf '%s\n' "$*" >&2; }

cc -O1 -g -o "$TMP/reverse_target" "$HERE/reverse_target.c" || { log "reverse.sh: cannot compile"; exit 1; }
ADD_LINE=$(grep -n 'BENCH:add' "$HERE/reverse_target.c" | cut -d: -f1)

start=$(date +%s.%N)
"$TMP/reverse_target" "$ROUNDS" >/dev/null
native=$(echo "$(date +%s.%N) - $start" | bc)
log "native run: ${native} s"
"$REC" record -o "$TMP/t.rec" "$TMP/reverse_target" "$ROUNDS" >/dev/null 2>"$TMP/record.err" ||
  { cat "$TMP/record.err" >&2; log "reverse.sh: recording failed"; exit 1; }
start=$(date +%s.%N)
"$REC" replay "$TMP/t.rec" >/dev/null 2>&1
replay=$(echo "$(date +%s.%N) - $start" | bc)
log "plain replay: ${replay} s"

# The session: gdb times each command itself (python's clock around it).
cat >"$TMP/session.gdb" <<GDB
set pagination off
set confirm off
python import time
define timed
  python _t0 = time.time()
  \$arg1
  python print("BENCH \$arg0 %.3f" % (time.time() - _t0))
end
break report
timed forward_to_end continue
break round_done
timed reverse_continue_breakpoint reverse-continue
print round
delete
watch total
timed reverse_continue_watchpoint reverse-continue
delete
timed reverse_next_1 reverse-next
timed reverse_next_2 reverse-next
timed reverse_next_3 reverse-next
timed reverse_step_1 reverse-step
timed reverse_step_2 reverse-step
timed reverse_stepi reverse-stepi
info line *\$pc
break round_done
timed continue_forward continue
timed reverse_finish reverse-finish
monitor stats
GDB

declare -A VALUES
for ((run = 1; run <= RUNS; run++)); do
  log "session $run/$RUNS"
  load=$(cut -d' ' -f1 /proc/loadavg)
  timeout 600 "$REC" replay -d "$TMP/t.rec" --gdb-arg=-batch --gdb-arg=-nx \
    --gdb-arg=-x --gdb-arg="$TMP/session.gdb" </dev/null >"$TMP/session.$run.out" 2>&1
  grep -q '^BENCH reverse_finish' "$TMP/session.$run.out" ||
    { tail -30 "$TMP/session.$run.out" >&2; log "reverse.sh: the session failed"; exit 1; }
  grep -q "^Hardware watchpoint [0-9]*: total" "$TMP/session.$run.out" ||
    { log "reverse.sh: no watchpoint"; exit 1; }
  grep -qE "^Old value = [0-9]+" "$TMP/session.$run.out" ||
    { tail -30 "$TMP/session.$run.out" >&2; log "reverse.sh: the watchpoint did not trigger backwards"; exit 1; }
  grep -qE "reverse_target.c:$ADD_LINE\$" "$TMP/session.$run.out" ||
    { log "reverse.sh: reverse-continue did not stop at the write to total (line $ADD_LINE)"; exit 1; }
  while read -r _ name seconds; do
    VALUES[$name]+="$seconds "
  done < <(grep '^BENCH ' "$TMP/session.$run.out")
  VALUES[load]+="$load "
  stats=$(grep -E 'automatic checkpoint' "$TMP/session.$run.out" | tail -1)
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "rec reverse-execution benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs"
echo "workload: reverse_target $ROUNDS rounds; native ${native} s, plain replay ${replay} s; median of $RUNS session(s); load average $(echo "${VALUES[load]}" | median)"
echo
echo "| operation | median | target |"
echo "|---|---|---|"
for name in forward_to_end reverse_continue_breakpoint reverse_continue_watchpoint reverse_next_1 \
  reverse_next_2 reverse_next_3 reverse_step_1 reverse_step_2 reverse_stepi continue_forward reverse_finish; do
  target=""
  case $name in
    reverse_continue_*) target="< 2 s" ;;
    reverse_step_* | reverse_next_*) target="< 0.5 s" ;;
  esac
  echo "| ${name//_/ } | $(echo "${VALUES[$name]:-}" | median) s | $target |"
done
echo
echo "checkpoints at the end (last session): ${stats:-n/a}"
