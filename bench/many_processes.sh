#!/usr/bin/env bash
# Records and replays a shell loop of N short processes (default 1000 and
# 5000) under `ulimit -n 256`, then `make -j2` of 500 objects, and prints the
# wall time and peak memory of `rec record` and `rec replay` and the most fds
# rec held open. rec's fds and memory must stay flat and its time grow
# linearly with N (issue 11). MAKE_OBJECTS=0 skips the make row.
#
# usage: bench/many_processes.sh [N...]        (default: 1000 5000)
#        REC=/path/to/rec bench/many_processes.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rec="${REC:-$root/build/rec}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(1000 5000)

# run LABEL CMD...: wall seconds, max RSS and peak fd count of CMD.
run() {
  local label=$1
  shift
  "$@" >/dev/null 2>"$work/err" &
  local pid=$! peak=0 n
  local start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    # CMD is `time rec ...`: count rec's fds, not time's.
    n=$( (for child in $(pgrep -P "$pid"); do ls "/proc/$child/fd"; done) 2>/dev/null | wc -l) || n=0
    if ((n > peak)); then peak=$n; fi
    sleep 0.2
  done
  wait "$pid" || { echo "$label failed: $(tail -n1 "$work/err")" >&2; return 1; }
  printf '%s | %s | %s\n' "$label" "$(tail -n1 "$work/err")" "$peak"
}

ulimit -n 256
echo "| N | step | wall s, max RSS KB | peak fds |"
echo "|---|---|---|---|"
for n in "${counts[@]}"; do
  loop="for i in \$(seq $n); do /bin/true; done"
  run "| $n | record" /usr/bin/time -f '%e s, %M KB' "$rec" record -o "$work/t$n.rec" bash -c "$loop"
  run "| $n | replay" /usr/bin/time -f '%e s, %M KB' "$rec" replay "$work/t$n.rec"
done

# make -j2 of many objects: a process tree of cc1/as/collect2 per object.
objects=${MAKE_OBJECTS:-500}
if ((objects > 0)); then
  mkdir -p "$work/make"
  for i in $(seq "$objects"); do
    printf 'int f%d(int x) { return x * %d; }\n' "$i" "$i" >"$work/make/f$i.c"
  done
  {
    printf 'OBJS := $(patsubst %%.c,%%.o,$(wildcard f*.c))\n'
    printf 'all: $(OBJS)\n\n%%.o: %%.c\n\t$(CC) -O0 -c $< -o $@\n'
  } >"$work/make/Makefile"
  mk="make -s -C $work/make -j2"
  run "| make -j2, $objects objects | record" /usr/bin/time -f '%e s, %M KB' \
    "$rec" record -o "$work/make.rec" bash -c "rm -f $work/make/*.o; $mk"
  run "| make -j2, $objects objects | replay" /usr/bin/time -f '%e s, %M KB' \
    "$rec" replay "$work/make.rec"
  rm -f "$work/make/"*.o
  start=$SECONDS
  make -s -C "$work/make" -j2 >/dev/null
  echo "| make -j2, $objects objects | native | $((SECONDS - start)) s | |"
fi

