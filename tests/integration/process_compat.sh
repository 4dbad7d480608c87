# Issue 11, process-level compatibility: thread groups ended by one thread
# while the others are blocked, spinning or newborn, or by an exec; robust
# mutexes whose owner dies; ids in pid namespaces; clone flags; the order of
# writes from several processes and threads to one file.
# shellcheck source=lib.bash
source "$TESTLIB"

# The kernel reports the deaths of a group's threads in any order; each
# recording must replay without waiting for a death only a later event
# causes. Several rounds, since the order varies from run to run. An exec
# also ends the other threads first.
check_group_exit() {
  need_program group_exit
  expect_native_differs "$PROGRAMS/group_exit" worker
  local mode i
  for mode in worker main exec; do
    for i in 1 2 3; do
      local status=0
      [[ $mode == main ]] && status=3
      REC_TIMEOUT=20 record_replay "$mode$i" --status $status --expect-out "^pid [0-9]+ random [0-9]+: " \
        -- "$PROGRAMS/group_exit" "$mode"
    done
  done
}

# Writes that complete without waiting take effect in the order the trace
# records them: replay prints the lines of five writers in the same order.
check_write_order() {
  need_program write_order
  expect_native_differs "$PROGRAMS/write_order"
  local i
  for i in 1 2; do
    record_replay "order$i" --status 0 --expect-out '^child 2 pid [0-9]+ line 149$' -- "$PROGRAMS/write_order"
  done
}

# A robust mutex's owner dies holding it (a thread exits, a child is
# killed): the kernel marks it owner-dead by the owner's real id, which
# replay supplies for the recorded one.
check_robust_mutex() {
  need_program robust_mutex
  expect_native_differs "$PROGRAMS/robust_mutex"
  record_replay robust --status 0 --expect-out '^after a thread died holding it: EOWNERDEAD$' \
    --expect-out '^after child [0-9]+ was killed holding it: EOWNERDEAD$' -- "$PROGRAMS/robust_mutex"
}

# Inside a pid namespace a thread's id (which glibc stores and
# pthread_join waits on) is not the global one; a thread with a file table
# of its own closes stdout only there.
check_namespaces() {
  need_program namespaces
  expect_native_differs "$PROGRAMS/namespaces"
  record_replay namespaces --status 0 --expect-out '^stdout still open after a thread' \
    --expect-out '^(child exited 5|no pid namespace here)$' -- "$PROGRAMS/namespaces"
  grep -q '^no pid namespace' namespaces.rec.out && note "no pid namespace here: ids not checked"
  return 0
}

# ppoll/pselect with a temporary mask that blocks SIGCHLD: the child's
# signal is delivered after the call times out, and replay must not wait
# for it inside the call.
check_masked_wait() {
  need_program masked_wait
  expect_native_differs "$PROGRAMS/masked_wait"
  REC_TIMEOUT=20 record_replay masked --status 0 \
    --expect-out '^pselect returned 0; SIGCHLD from ([0-9]+) \(child \1\) handled after it$' -- "$PROGRAMS/masked_wait"
}

# CLONE_UNTRACED (the child must still be recorded) and CLONE_PIDFD with
# CLONE_VFORK (the pidfd the kernel stored in the parent).
check_clone_flags() {
  need_program clone_flags
  expect_native_differs "$PROGRAMS/clone_flags"
  record_replay clone_flags --status 0 --expect-out '^untraced child [0-9]+ sent [0-9]+ and exited 0$' \
    --expect-out '^vfork child [0-9]+ exited 77; pidfd [0-9]+ is the next fd after the pipe: yes$' \
    -- "$PROGRAMS/clone_flags"
}

# A program that leaves a daemon running: the recording ends when the
# program exits (the daemon would sleep for a minute) and the daemon is
# killed with it, not left behind.
check_daemon() {
  need_program daemon
  expect_native_differs "$PROGRAMS/daemon" 0
  REC_TIMEOUT=20 record_replay daemon --status 0 --expect-out '^parent [0-9]+: intermediate exited 0, daemon started, exiting$' \
    -- "$PROGRAMS/daemon" 60
  local pid
  pid=$(sed -n 's/^daemon pid \([0-9]*\) .*/\1/p' daemon.rec.out)
  [[ -n $pid ]] || fail "the daemon printed no pid"
  # Killed, it may stay a zombie a moment until init reaps it.
  local state
  state=$(sed -n 's/^[0-9]* (daemon) \(.\).*/\1/p' "/proc/$pid/stat" 2>/dev/null)
  if [[ -n $state && $state != Z && $state != X ]]; then
    kill -KILL "$pid"
    fail "the daemon $pid still runs after its recording ended"
  fi
  return 0
}

# A program's own seccomp filters: ERRNO, TRAP (a SIGSYS handler emulates
# the call) and KILL_PROCESS act the same in the recording and the replay;
# strict mode works; PR_GET_SECCOMP does not see rec's own filter; TSYNC
# puts a filter on the process's other threads. Calls rec refuses whatever
# their arguments (rseq, clone3) fail with ENOSYS from rec's filter, with
# no stop (no event in the trace), and the program's own filter's ERRNO
# comes first.
check_seccomp_user() {
  need_program seccomp_user
  expect_native_differs "$PROGRAMS/seccomp_user"
  record_replay seccomp --status 0 \
    --expect-out '^NULL filter: -1 Bad address; mode now 0$' \
    --expect-out '^strict child 0 writes \(21 bytes\); then exited 0$' \
    --expect-out '^strict child 1 writes \(21 bytes\); then killed by a signal$' \
    --expect-out '^TSYNC filter: 0; mode now 2$' \
    --expect-out '^TSYNC thread: mode 2, getppid -1 errno 78$' \
    --expect-out '^child with the filter: killed by signal 31$' \
    --expect-out '^filter installed: 0; mode now 2$' \
    --expect-out '^getppid: -1 errno 77$' \
    --expect-out '^getpriority: 4242; SIGSYS 1 times, syscall 140 data 9 rax 140$' \
    --expect-out '^after the filter: pid [0-9]+ nonce [0-9]+$' \
    --expect-out '^rseq: -1 errno 38$' \
    --expect-out '^clone3: -1 errno 38$' \
    --expect-out '^rseq under the filter: -1 errno 79$' \
    -- "$PROGRAMS/seccomp_user"
  "$REC" dump "$T/seccomp.rec" >"$T/seccomp.dump" || fail "rec dump failed"
  grep -Eq '\] (rseq|clone3)\(' "$T/seccomp.dump" &&
    fail "rseq or clone3 stopped: rec's filter should answer them"
  return 0
}

# Processes that have lived cost rec nothing: 150 short processes record and
# replay under a limit of 64 open files (rec used to keep two fds for each
# process that ever lived, and ran out after about 30).
check_many_processes() {
  expect_native_differs bash -c 'echo $RANDOM'
  (
    ulimit -n 64
    record_replay many --status 0 --expect-out '^150 processes, then [0-9]+$' \
      -- bash -c 'for i in $(seq 150); do /bin/true; done; echo "150 processes, then $RANDOM"'
  ) || exit 1
}

# Job control: a child stopped by SIGSTOP stays stopped under rec, its
# parent's WUNTRACED wait sees it, SIGCONT resumes it where it stopped (its
# handler runs before anything else), in the recording and the replay. A
# pidfd_getfd copy of the child's stdout is output too. With a second thread
# blocked in a read, SIGCONT may go to either thread.
check_job_control() {
  need_program job_control
  expect_native_differs "$PROGRAMS/job_control"
  local mode i
  for mode in one threads; do
    for i in 1 2; do
      REC_TIMEOUT=20 record_replay "job$mode$i" --status 0 \
        --expect-out '^parent: child stopped by SIGSTOP$' \
        --expect-out '^parent: still stopped after 50 ms$' \
        --expect-out '^child: resumed, handler ran 1$' \
        --expect-out '^parent: (via the child.s stdout, code [0-9]+|pidfd_getfd unsupported here)$' \
        -- "$PROGRAMS/job_control" "$mode"
      grep -Eq '^parent: child exited with ([0-9]+) \(expected \1\)$' "job$mode$i.rec.out" ||
        fail "the child's exit status is not the one it chose"
      # A stopped thread reads nothing before SIGCONT, whatever was written.
      if [[ $mode == threads ]]; then
        grep -Eq '^child thread: read [0-9]+ bytes$' "job$mode$i.rec.out" &&
          [[ $(grep -n '' "job$mode$i.rec.out" | grep -E 'child thread: read|still stopped' | head -1) == *still* ]] ||
          fail "the blocked thread of the stopped child read before SIGCONT (or not at all)"
      fi
    done
  done
}

t group_exit check_group_exit
t job_control check_job_control
t many_processes check_many_processes
t seccomp_user check_seccomp_user
t daemon check_daemon
t clone_flags check_clone_flags
t masked_wait check_masked_wait
t namespaces check_namespaces
t robust_mutex check_robust_mutex
t write_order check_write_order
finish
