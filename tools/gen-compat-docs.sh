#!/usr/bin/env bash
# Regenerates the syscall compatibility docs from the syscall table compiled
# into a built rec: docs/syscalls.md (everything) and the summary between the
# syscalls:begin/end markers in README.md. Run after changing
# tracee/syscall_table.cc; tests/integration/syscall_docs_current.sh fails
# while either is stale.
#
# usage: tools/gen-compat-docs.sh [path/to/rec]   (default: build/rec)
#        tools/gen-compat-docs.sh --print-readme REC README   (used by the test)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# README.md with its generated section replaced by the table's summary and
# refused list (everything of the markdown before "## All syscalls").
readme_with_summary() {
  local rec="$1" readme="$2" summary
  summary="$("$rec" syscalls --markdown | awk '/^## Summary/{on=1} /^## All syscalls/{on=0} on' |
    sed 's/^## /#### /')"
  awk -v summary="$summary" '
    /^<!-- syscalls:begin/ { print; print summary; skip=1; next }
    /^<!-- syscalls:end/ { skip=0 }
    !skip' "$readme"
}

if [[ "${1:-}" == "--print-readme" ]]; then
  readme_with_summary "$2" "$3"
  exit 0
fi

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
readme_with_summary "$rec" "$root/README.md" >"$root/README.md.tmp"
mv "$root/README.md.tmp" "$root/README.md"
trap - EXIT
echo "wrote $out and the summary in README.md"
