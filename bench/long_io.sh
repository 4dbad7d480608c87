#!/usr/bin/env bash
# Records and replays a program that moves GB gigabytes (default 10) through
# read() and write() (dd from /dev/zero to /dev/null, 1 MiB blocks), and prints
# rec's wall time, peak RSS and the trace size. rec's memory must not grow
# with the amount of I/O (issue 11: "recording 10 GB of I/O keeps rec's memory
# bounded"): each syscall's data goes to a zstd chunk that is written out
# when full, and replay reads the trace one chunk at a time.
#
# SOURCE=/dev/urandom moves incompressible data instead (the trace then
# holds every byte).
#
# usage: bench/long_io.sh [GB...]     (default: 1 10)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rec="${REC:-$root/build/rec}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(1 10)

echo "| GB moved from ${SOURCE:-/dev/zero} | step | wall s, max RSS KB | trace size |"
echo "|---|---|---|---|"
for gb in "${sizes[@]}"; do
  blocks=$((gb * 1024))
  /usr/bin/time -f '%e s, %M KB' -o "$work/time" \
    "$rec" record -o "$work/io.rec" dd if="${SOURCE:-/dev/zero}" of=/dev/null bs=1M count="$blocks" 2>/dev/null
  size=$(du -h "$work/io.rec" | cut -f1)
  echo "| $gb | record | $(cat "$work/time") | $size |"
  /usr/bin/time -f '%e s, %M KB' -o "$work/time" "$rec" replay "$work/io.rec" 2>/dev/null
  echo "| $gb | replay | $(cat "$work/time") | |"
  rm -f "$work/io.rec"
done
