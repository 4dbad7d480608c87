#!/bin/bash
# Quick start, step 1: install dependencies, build rec, then record a demo
# program that prints the time and random bytes and replay it: the replay
# re-executes the program and prints exactly what the recording printed.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh >/dev/null
demo=build/tests/programs/demo
trace=$(mktemp -d)/demo.trace
echo "== a native run (different every time):"
"$demo"
echo "== rec record -o $trace $demo"
build/rec record -o "$trace" "$demo" | tee "$trace.recorded"
echo "== rec replay $trace"
build/rec replay "$trace" | tee "$trace.replayed"
if cmp -s "$trace.recorded" "$trace.replayed"; then
  echo "== replay printed exactly what the recording printed"
else
  echo "== replay differs from the recording!" >&2
  exit 1
fi
