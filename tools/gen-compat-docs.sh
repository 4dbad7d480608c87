#!/usr/bin/env bash
# Regenerates docs/syscalls.md, the syscall compatibility list, from the
# syscall table compiled into a built rec. Run after changing
# tracee/syscall_table.cc; tests/integration/syscall_docs_current.sh fails
# while the checked-in copy is stale.
#
# usage: tools/gen-compat-docs.sh [path/to/rec]   (default: build/rec)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rec="${1:-${REC:-$root/build/rec}}"
if [[ ! -x "$rec" ]]; then
  echo "gen-compat-docs: no rec binary at $rec (build it first, or pass its path)" >&2
  exit 1
fi

out="$root/docs/syscalls.md"
tmp="$(mktemp "$out.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$rec" syscalls --markdown >"$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out"
