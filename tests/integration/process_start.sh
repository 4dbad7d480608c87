# Per-process costs of recording (docs/syscall-buffer.md "Per-process
# start-up calls"): what every process start asks and never blocks on goes
# through the syscall buffer, with the same answers in replay; and the same
# program recorded with the buffer off stops at every such call.
# shellcheck source=lib.bash
source "$TESTLIB"

# The names whose calls tests/programs/sysbuf_ids makes from glibc's wrappers.
# (getpid, getppid, gettid and getrandom stay traced: docs/syscall-buffer.md)
IDS_CALLS=(getuid getgid geteuid getegid getpgrp getpgid getsid stat lstat getrusage uname times)

check_ids() {
  need_program sysbuf_ids
  expect_native_differs "$PROGRAMS/sysbuf_ids" 20
  local mode
  for mode in on off; do
    record_replay "ids_$mode" --status 0 --record-env "REC_SYSCALL_BUFFER=$mode" \
      --expect-out '^main [0-9a-f]{16}$' --expect-out '^thread 2 [0-9a-f]{16}$' \
      --expect-out '^child [0-9a-f]{16} ppid ok 1$' --expect-out '^child exit 0$' \
      -- "$PROGRAMS/sysbuf_ids" 20
    "$REC" dump "$T/ids_$mode.rec" >"$T/ids_$mode.dump" || fail "rec dump failed"
  done
  # The answers are the program's, whichever way rec took them: both
  # recordings ran the same rounds (the hashes differ by pids and nonce).
  [[ $(grep -c '^#' "$T/ids_off.dump") -gt 0 ]] || fail "empty dump"
  local name n traced
  for name in "${IDS_CALLS[@]}"; do
    # 20 rounds in main, 2 threads and a child: 80 calls of each (stat
    # 160); the first at each site stops and patches it.
    n=$(grep -Ec "\] $name\(.*\[syscall buffer, no stop\]" "$T/ids_on.dump")
    ((n >= 70)) || fail "only $n $name calls went through the buffer"
    n=$(grep -Ec "\] $name\(.*\[syscall buffer, no stop\]" "$T/ids_off.dump")
    ((n == 0)) || fail "$n buffered $name calls with REC_SYSCALL_BUFFER=off"
    traced=$(grep -Ec "\] $name\(" "$T/ids_off.dump")
    ((traced >= 80)) || fail "only $traced $name calls in the recording without the buffer"
  done
  # A failed stat's errno comes back through the buffer.
  grep -Eq '\] stat\(.*= -1 ENOENT .*\[syscall buffer, no stop\]' "$T/ids_on.dump" ||
    fail "no failed stat went through the buffer"
  return 0
}

t ids check_ids
finish
