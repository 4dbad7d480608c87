# Issue 5: threads, preemption and asynchronous signals at exact points,
# without hardware performance counters.
# shellcheck source=lib.bash
source "$TESTLIB"

check_threads() {
  need_program threads
  expect_native_differs "$PROGRAMS/threads"
  record_replay threads --status 0 --expect-out '^consumed sum [0-9]+ racy counter' -- "$PROGRAMS/threads"
}

check_thread_life() {
  need_program thread_life
  expect_native_differs "$PROGRAMS/thread_life"
  record_replay life --status 3 --expect-out '^signal handled by a thread: yes' -- "$PROGRAMS/thread_life"
}

check_python_threads() {
  record_replay pythreads --status 0 --expect-out '^\[' -- python3 -c '
import threading, random, os
out = []
def work(i):
    out.append((i, random.random(), threading.get_native_id()))
ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sorted(out), os.getpid())'
}

# A spin-wait on an atomic flag set by another thread: needs preemption in
# the middle of user code to terminate under record, and again under replay.
check_spin_flag() {
  need_program spin_flag
  record_replay spin --status 0 --expect-out '^spun [0-9]+ times' -- "$PROGRAMS/spin_flag"
}

# Plain increments from four threads: the lost updates depend on where the
# threads were preempted. Every replay matches its own recording.
check_racy_counter_stress() {
  need_program racy_counter
  local i totals="" preempted=0
  for i in 1 2 3 4 5 6; do
    record_replay "racy$i" --status 0 --expect-out '^counter [0-9]+ of 400000000' -- "$PROGRAMS/racy_counter"
    totals+="$(cat "racy$i.rec.out") | "
    "$REC" dump "racy$i.rec" | grep -q "preempted at" && preempted=$((preempted + 1))
  done
  note "totals: $totals"
  [ "$preempted" -gt 0 ] || fail "no recording had a preemption point in user code"
  note "$preempted of 6 recordings were preempted in user code"
}

# A SIGALRM handler samples a counter every 20 ms while the main code
# busy-loops without syscalls: each signal must land at the same instruction
# on replay, and the replay must take seconds, not minutes.
check_alarm_busy_loop() {
  need_program alarm_busy
  expect_native_differs "$PROGRAMS/alarm_busy"
  local start end
  record alarm --status 0 --expect-out '^sample 24: [0-9]+' -- "$PROGRAMS/alarm_busy"
  start=$(date +%s)
  replay_compare alarm
  end=$(date +%s)
  "$REC" dump alarm.rec | grep -q "SIGALRM delivered in user code" || fail "no signal delivered in user code"
  [ $((end - start)) -le 60 ] || fail "replay took $((end - start)) s"
  note "replay took $((end - start)) s"
}

# Signals that land in the middle of REP STOS/MOVS (one instruction, many
# iterations): the recorder lets the instruction finish before the point,
# since replay can only stop before an instruction's first iteration.
check_rep_string() {
  need_program rep_string
  expect_native_differs "$PROGRAMS/rep_string"
  record_replay rep --status 0 --expect-out '^sample 19: [0-9]+' -- "$PROGRAMS/rep_string"
  "$REC" dump rep.rec | grep -q "SIGALRM delivered in user code" || fail "no signal delivered in user code"
}

# execve from a thread that is not the main one: the other threads end and
# the exec'ing thread takes over the process id, in record and in replay.
check_exec_from_thread() {
  need_program thread_exec
  expect_native_differs "$PROGRAMS/thread_exec"
  record_replay texec --status 7 --expect-out '^after exec: pid [0-9]+ random' -- "$PROGRAMS/thread_exec"
}

check_pi_mutex() {
  need_program pi_mutex
  expect_native_differs "$PROGRAMS/pi_mutex"
  record_replay pi --status 0 --expect-out '^total [0-9]+ order [abc]+' -- "$PROGRAMS/pi_mutex"
}

# Memory digests with threads: a thread that blocks (pthread_join) while
# others run has its digest checked where replay reaches its entry (the
# SyscallEnter event), not when its syscall returns, after the others wrote
# their results: that used to be a false divergence in every threaded
# program recorded with --check-memory.
check_memory_digests_with_threads() {
  local prog
  for prog in threads racy_counter pi_mutex; do
    need_program "$prog"
    "$REC" record --check-memory -o "$T/digest-$prog.rec" "$PROGRAMS/$prog" \
      >"$T/digest-$prog.out" 2>"$T/digest-$prog.err" || fail "$prog: record failed: $(cat "$T/digest-$prog.err")"
    "$REC" dump "$T/digest-$prog.rec" | grep -q "entered, blocked" ||
      note "$prog: no syscall entry was announced in this recording"
    "$REC" replay --check "$T/digest-$prog.rec" >"$T/digest-$prog.replay" 2>"$T/digest-$prog.replay.err" ||
      fail "$prog: replay --check failed: $(cat "$T/digest-$prog.replay.err")"
    cmp -s "$T/digest-$prog.out" "$T/digest-$prog.replay" || fail "$prog: replay --check printed something else"
  done
}

# A preemption interrupt dropped by the kernel (the thread entered a traced
# syscall as it came, REC_TEST_DROP_INTERRUPT provokes that) must not leave
# the recorder waiting for it: the thread then spins on a flag only another
# thread sets, and only a preemption ends the spin. rec sends the interrupt
# again after a timeslice without its stop (Scheduler::maybePreempt).
check_preempt_after_syscalls() {
  need_program preempt_after_syscalls
  expect_native_differs "$PROGRAMS/preempt_after_syscalls" 20000
  local i n resent=0
  for i in 1 2 3 4; do
    REC_TEST_DROP_INTERRUPT=1 timeout -k 5 60 "$REC" record -v -o "$T/pas$i.rec" -- \
      "$PROGRAMS/preempt_after_syscalls" 20000 >"$T/pas$i.out" 2>"$T/pas$i.err" ||
      fail "record $i failed or hung (status $?): $(tail -n 3 "$T/pas$i.err")"
    grep -Eq '^done after 20000 calls, spins [0-9]+ [0-9]+$' "$T/pas$i.out" ||
      fail "record $i printed: $(cat "$T/pas$i.out")"
    n=$(sed -n 's/.*(\([0-9]*\) interrupts sent again).*/\1/p' "$T/pas$i.err")
    [[ -n $n ]] || fail "record $i: rec -v did not count its interrupts"
    resent=$((resent + n))
    timeout -k 5 120 "$REC" replay "$T/pas$i.rec" >"$T/pas$i.replay" 2>"$T/pas$i.replay.err" ||
      fail "replay $i failed: $(tail -n 3 "$T/pas$i.replay.err")"
    cmp -s "$T/pas$i.out" "$T/pas$i.replay" || fail "replay $i printed something else"
  done
  # Without the second interrupt every one of these recordings hung.
  ((resent > 0)) || fail "no interrupt was dropped and sent again: the check tested nothing"
  note "interrupts sent again after a drop: $resent in 4 recordings"
}

t threads check_threads
t preempt_after_syscalls check_preempt_after_syscalls
t memory_digests_with_threads check_memory_digests_with_threads
t pi_mutex check_pi_mutex
t thread_life check_thread_life
t python_threads check_python_threads
t exec_from_thread check_exec_from_thread
t spin_flag check_spin_flag
t racy_counter_stress check_racy_counter_stress
t alarm_busy_loop check_alarm_busy_loop
t rep_string check_rep_string
finish
