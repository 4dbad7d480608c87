# Per-process costs of recording (docs/syscall-buffer.md "Per-process
# start-up calls"): what every process start asks and never blocks on goes
# through the syscall buffer, with the same answers in replay; and the same
# program recorded with the buffer off stops at every such call.
# shellcheck source=lib.bash
source "$TESTLIB"

# The names whose calls tests/programs/sysbuf_ids makes from glibc's wrappers.
# (getppid, gettid and getrandom stay traced: docs/syscall-buffer.md)
IDS_CALLS=(getpid getuid getgid geteuid getegid getpgrp getpgid getsid stat lstat getrusage uname times)

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
  # Pipe ends closed without a stop: 20 rounds of two in main (the first
  # close at each site stops).
  n=$(grep -Ec '\] close\([0-9]+\) = 0 \[syscall buffer, no stop\]' "$T/ids_on.dump")
  ((n >= 35)) || fail "only $n pipe closes went through the buffer"
  grep -q '^pipes [0-9a-f]\{16\}$' "$T/ids_on.rec.out" || fail "no pipes line"
  # A failed stat's errno comes back through the buffer.
  grep -Eq '\] stat\(.*= -1 ENOENT .*\[syscall buffer, no stop\]' "$T/ids_on.dump" ||
    fail "no failed stat went through the buffer"
  return 0
}

# execve of a path that does not exist fails in the buffer without a stop
# (gcc's PATH search for cc1, as and collect2), directly and in execvp's and
# posix_spawnp's searches from a fork's child and a vfork-like one, each
# ending in a real exec; EACCES (the file is there) stays traced.
check_exec_missing() {
  need_program exec_missing
  expect_native_differs "$PROGRAMS/exec_missing" 20
  local mode n
  for mode in on off; do
    record_replay "exec_$mode" --status 0 --record-env "REC_SYSCALL_BUFFER=$mode" \
      --expect-out '^direct: 40 ENOENT, 20 ENOTDIR, 0 other; a file that is no program: Permission denied$' \
      --expect-out '^posix_spawnp child 2: exit 0$' --expect-out '^execvp child 2: exit 0$' \
      -- "$PROGRAMS/exec_missing" 20
    "$REC" dump "$T/exec_$mode.rec" >"$T/exec_$mode.dump" || fail "rec dump failed"
  done
  n=$(grep -c '^child [0-9a-f]\{16\}$' "$T/exec_on.rec.out")
  ((n == 6)) || fail "$n children printed their nonce, expected 6"
  # 60 direct failures and 4 per PATH search (6 searches); the first call
  # at each site, and a fork's child's first syscall, stop.
  n=$(grep -Ec '\] execve\(.*= -1 (ENOENT|ENOTDIR) .*\[syscall buffer, no stop\]' "$T/exec_on.dump")
  ((n >= 75)) || fail "only $n failed execve calls went through the buffer"
  grep -Eq '\] execve\("/etc/passwd", .*= -1 EACCES \(Permission denied\)$' "$T/exec_on.dump" ||
    fail "the EACCES execve is not a traced call"
  grep -Eq '\] execve\(.*EACCES.*no stop' "$T/exec_on.dump" && fail "the EACCES execve was buffered"
  n=$(grep -c 'syscall buffer, no stop' "$T/exec_off.dump")
  ((n == 0)) || fail "$n buffered calls with REC_SYSCALL_BUFFER=off"
  return 0
}

t ids check_ids
t exec_missing check_exec_missing
finish
