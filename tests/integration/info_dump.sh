# Issue 3: trace inspection. `rec info` shows the program, argv and whether
# the trace is complete; `rec dump` lists the syscalls decoded (an openat with
# its path); `rec dump --json` prints one JSON object per line.
# shellcheck source=lib.bash
source "$TESTLIB"

make_trace() {
  printf 'marker contents %s\n' "$RANDOM" >input-file-xyz.txt
  # head, not cat: cat uses copy_file_range, and this test wants read/write.
  # A cache of its own: with head's sites known from an earlier recording
  # (recorder/site_cache.h) its openat would go through the syscall buffer,
  # whose entries do not keep the path, and this test wants the traced call.
  record t --record-env "REC_CACHE_DIR=$T/cache" --status 0 -- head -n 3 "$T/input-file-xyz.txt"
}

check_info() {
  make_trace
  expect_status 0 "$REC" info t.rec
  local f=$T/last.out
  grep -q 'head' "$f" || fail "rec info does not show the program"
  grep -q 'input-file-xyz.txt' "$f" || fail "rec info does not show argv"
  grep -Eqi 'complete' "$f" || fail "rec info does not say whether the trace is complete"
  grep -Eqi 'incomplete|truncated|cut short|not complete|complete: *(no|false)' "$f" &&
    fail "rec info calls a cleanly finished trace incomplete"
  grep -q -- "$(uname -r)" "$f" || note "rec info does not show the kernel release (optional)"
  # A truncated trace is reported as incomplete (or refused with 65).
  head -c $(($(stat -c %s t.rec) / 2)) t.rec >half.rec
  timeout 60 "$REC" info half.rec </dev/null >half.out 2>half.err
  local st=$?
  if ((st == 0)); then
    grep -Eqi 'incomplete|truncated|cut short|not complete|complete: *(no|false)' half.out ||
      { show "rec info half.rec" half.out; fail "rec info of a half trace does not say it is incomplete"; }
  else
    ((st == 65)) || fail "rec info of a half trace exited $st (expected 0 saying incomplete, or 65)"
  fi
}

check_dump() {
  make_trace
  expect_status 0 "$REC" dump t.rec
  local f=$T/last.out
  grep -E 'openat' "$f" | grep -q 'input-file-xyz.txt' ||
    { show dump "$f"; fail "rec dump has no openat line with the file's path"; }
  grep -Eq '\bread\b' "$f" || fail "rec dump shows no read"
  grep -Eq '\bwrite\b' "$f" || fail "rec dump shows no write"
  grep -Eqi 'exit' "$f" || fail "rec dump does not show the exit"
}

check_dump_json() {
  make_trace
  expect_status 0 "$REC" dump --json t.rec
  local f=$T/last.out
  [[ -s $f ]] || fail "rec dump --json printed nothing"
  grep -q 'input-file-xyz.txt' "$f" || fail "rec dump --json does not show the opened path"
  grep -q '"name":"openat"' "$f" || fail "rec dump --json does not name the syscalls"
  # Each line is one object (JSON Lines), not one pretty-printed document.
  python3 - "$f" <<'PY' || fail "rec dump --json lines are not all JSON objects"
import json, sys
for i, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    if line.strip():
        try:
            assert isinstance(json.loads(line), dict)
        except Exception as e:
            sys.exit(f"line {i}: {e!r}: {line[:200]}")
PY
}

t info check_info
t dump check_dump
t dump_json check_dump_json
finish
