# Syscall rows that needed care (tests/programs/syscall_rows.c): outputs the
# kernel writes even when failing (capget, waitid), output sizes that depend
# on the call's data (SIOCGIFCONF, FIEMAP, semctl GETALL), state rec sets in
# every tracee that the program must not see or undo (PR_GET_TSC,
# PR_SET_TSC, PR_GET_SECCOMP, sched_setaffinity), limits that decide where a
# program faults (RLIMIT_STACK), perf counters and their unmappable ring
# buffers, the vsyscall page, 32-bit int 0x80 syscalls, and clone with new
# namespaces. Recorded output must be what the program sees natively, and
# the replay must match it byte for byte.
# shellcheck source=lib.bash
source "$TESTLIB"

check_rows() {
  need_program syscall_rows
  expect_native_differs "$PROGRAMS/syscall_rows"
  # New user namespaces are refused in a chroot and where the admin turned
  # them off: the recording must then show the same refusal as a native run.
  local newuser='^clone\(CLONE_NEWUSER\): ok, child exit 77$'
  unshare --user true 2>/dev/null ||
    newuser='^clone\(CLONE_NEWUSER\): (Operation not permitted|Invalid argument), child exit 0$'
  record_replay rows --status 0 \
    --expect-out '^capget\(version 0, NULL\) = 0, version now 0x2008052' \
    --expect-out '^capget\(bad version\) = -1 errno 22, version now 0x2008052' \
    --expect-out '^waitid\(no such child\) = -1 errno 10, si_signo 0 si_pid 0$' \
    --expect-out '^SIOCGIFCONF: [1-9][0-9]* bytes, first interface lo$' \
    --expect-out '^semaphores: [0-9]+ [0-9]+ [0-9]+$' \
    --expect-out '^task clock [0-9]+ ns; ring buffer No such device$' \
    --expect-out '^PR_GET_TSC: 1, PR_GET_SECCOMP: 0$' \
    --expect-out '^child: PR_GET_TSC 2, rdtsc faulted$' \
    --expect-out '^rdtsc after PR_TSC_ENABLE: [0-9]+$' \
    --expect-out '^stack overflow: signal 11 after [0-9]+ calls, within the 256 KiB limit$' \
    --expect-out '^sched_setaffinity\(all\) = 0, \(none\) = -1 errno 22$' \
    --expect-out '^int 0x80: write [0-9]+, getpid matches, open -38, set_thread_area 0 entry [0-9]+$' \
    --expect-out "$newuser" \
    -- "$PROGRAMS/syscall_rows"
  # The int 0x80 write went through rec as a 32-bit call and shows in replay.
  grep -q '^int 0x80 write [0-9]*$' rows.replay.out || fail "the int 0x80 write is missing on replay"
  "$REC" dump rows.rec | grep -q 'write(1, .*\[int 0x80\]' || fail "rec dump does not mark the int 0x80 write"
}

t rows check_rows
finish
