#!/usr/bin/env bash
# docs/syscalls.md and the compatibility summary in README.md must be exactly
# what the built rec generates from its syscall table; otherwise the docs lie.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${REC:?REC must point at the rec binary}"

fresh="$(mktemp)"
trap 'rm -f "$fresh"' EXIT
stale=0
"$REC" syscalls --markdown >"$fresh"
if ! diff -u "$root/docs/syscalls.md" "$fresh"; then
  echo "FAIL docs/syscalls.md is stale: the syscall table changed." >&2
  stale=1
fi
bash "$root/tools/gen-compat-docs.sh" --print-readme "$REC" "$root/README.md" >"$fresh"
if ! diff -u "$root/README.md" "$fresh"; then
  echo "FAIL the compatibility summary in README.md is stale." >&2
  stale=1
fi
if [[ $stale -ne 0 ]]; then
  echo "Regenerate with tools/gen-compat-docs.sh and commit the result." >&2
  exit 1
fi
echo "PASS docs/syscalls.md and README.md are current"
