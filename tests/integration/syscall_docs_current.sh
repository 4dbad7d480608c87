#!/usr/bin/env bash
# docs/syscalls.md must be exactly what the built rec generates from its
# syscall table; otherwise the compatibility docs lie.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${REC:?REC must point at the rec binary}"

fresh="$(mktemp)"
trap 'rm -f "$fresh"' EXIT
"$REC" syscalls --markdown >"$fresh"

if ! diff -u "$root/docs/syscalls.md" "$fresh"; then
  echo "docs/syscalls.md is stale: the syscall table changed." >&2
  echo "Regenerate it with tools/gen-compat-docs.sh and commit the result." >&2
  exit 1
fi
echo "docs/syscalls.md is current"
