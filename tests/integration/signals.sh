# Issue 3: signals. Synchronous faults with and without handlers, self-sent
# signals, SIGPIPE, EINTR / SA_RESTART, interval timers and POSIX timers all
# reproduce: same output and same status (128+N when signal N kills it).
# shellcheck source=lib.bash
source "$TESTLIB"

# mode -> expected status
declare -A STATUS=(
  [segv-handler]=0 [segv-crash]=139 [fpe]=0 [fpe-crash]=136 [ill]=0 [trap]=0 [bus]=0
  [abort]=134 [raise-usr1]=0 [sigpipe]=141 [sigpipe-ign]=0
  [alarm-eintr]=0 [alarm-restart]=0 [itimer]=0 [posix-timer]=0 [kill-self]=0
)
# mode -> a line the recorded output must contain
declare -A EXPECT=(
  [segv-handler]='^caught signal 11 code 1 addr 0x10 ' [segv-crash]='^about to crash'
  [fpe]='^caught signal 8 code 1 ' [fpe-crash]='^about to divide'
  [ill]='^caught signal 4 ' [trap]='^caught signal 5 ' [bus]='^caught signal 7 '
  [abort]='^about to abort' [raise-usr1]='^handled 1 signo 10 code -6 pid_matches 1'
  [sigpipe]='^writing to a broken pipe' [sigpipe-ign]='^write returned -1 errno 32 '
  [alarm-eintr]='^read returned -1 errno 4 char - handled 1 '
  [alarm-restart]='^read returned 1 errno 0 char R handled 1 '
  [itimer]='^itimer handled [1-9][0-9]* ' [posix-timer]='^posix timer handled 5 '
  [kill-self]='^handled 1 signo 12 si_code 0 '
)
MODES=(segv-handler segv-crash fpe fpe-crash ill trap bus abort raise-usr1 sigpipe sigpipe-ign
       alarm-eintr alarm-restart itimer posix-timer kill-self)

check_mode() {
  local mode=$1
  need_program signals
  expect_native_differs "$PROGRAMS/signals" "$mode"
  record_replay "$mode" --status "${STATUS[$mode]}" --expect-out "${EXPECT[$mode]}" \
    -- "$PROGRAMS/signals" "$mode"
}

# Recording several times: asynchronous signals land at different points, each
# replay must follow its own recording.
check_itimer_repeat() {
  local i
  for i in 1 2 3; do
    record_replay "itimer$i" --status 0 -- "$PROGRAMS/signals" itimer
  done
}

# Asynchronous signal from outside. `target` is "program" (SIGINT sent to the
# recorded program only, as another process would) or "group" (SIGINT sent to
# the whole process group of rec and the program, as Ctrl-C in a terminal).
# The program dies as it would natively (130), the trace is complete and
# replays to the same end.
check_sigint() {
  local target=$1
  need_program signals
  # alarm-eintr blocks for 1 s in read; interrupt it earlier from outside.
  # A background job of a non-interactive shell ignores SIGINT; start rec in
  # a new session with default dispositions, as a terminal would.
  python3 -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(s, signal.SIG_DFL)
os.setsid()
os.execvp(sys.argv[1], sys.argv[1:])' timeout 60 "$REC" record -o sigint.rec -- "$PROGRAMS/signals" alarm-eintr \
    </dev/null >sigint.rec.out 2>sigint.rec.err &
  local leader=$! i child=""
  for ((i = 0; i < 250; i++)); do  # bounded: 5 s
    # Only in this test's session: the .nobuffer run of this script may be
    # running the same program at the same time.
    child=$(pgrep -s "$leader" -f "^$PROGRAMS/signals alarm-eintr" 2>/dev/null | head -n1)
    [[ -n $child && -s sigint.rec.out ]] && break
    sleep 0.02
  done
  if [[ -z $child || ! -s sigint.rec.out ]]; then
    kill -KILL -- "-$leader" 2>/dev/null
    wait "$leader"
    fail "the recorded program did not start (stderr: $(head -c 300 sigint.rec.err))"
  fi
  if [[ $target == group ]]; then kill -INT -- "-$leader"; else kill -INT "$child"; fi
  wait "$leader"
  echo $? >sigint.rec.status
  [[ $(<sigint.rec.status) == 130 ]] ||
    fail "record exited $(<sigint.rec.status), expected 130 (killed by SIGINT); stderr: $(head -c 300 sigint.rec.err)"
  replay_compare sigint
}

# The recorded program inherits rec's caller's signal dispositions and mask
# unchanged: rec must not leave SIGPIPE/SIGINT ignored or signals blocked in
# the program. (Compared with a native run of the same command.)
check_dispositions() {
  local cmd=(grep -E '^(SigIgn|SigBlk)' /proc/self/status)
  "${cmd[@]}" >native.out 2>&1
  record disp --status 0 -- "${cmd[@]}"
  cmp -s native.out disp.rec.out ||
    { diff native.out disp.rec.out | sed 's/^/  | /'; fail "signal dispositions under rec record differ from native"; }
  replay_compare disp
}

# A trapped rdtsc is a SIGSEGV the kernel forces: with SIGSEGV blocked it
# unblocks it and resets the handler. The program finds its mask and handler
# as it left them, in the recording and the replay: after an rdtsc in main,
# and across exec (where the dynamic loader reads the TSC before main).
check_forced_fault() {
  need_program forced_fault
  expect_native_differs "$PROGRAMS/forced_fault"
  record_replay forced --status 0 \
    --expect-out '^rdtsc with SIGSEGV blocked: SIGSEGV blocked 1, SIGUSR1 blocked 0, handler ours$' \
    --expect-out '^unblocked: SIGSEGV blocked 0, SIGUSR1 blocked 0, handler ours$' \
    --expect-out '^faults handled: 1$' \
    --expect-out '^before exec: SIGSEGV blocked 1, SIGUSR1 blocked 1, handler default$' \
    --expect-out '^after exec: SIGSEGV blocked 1, SIGUSR1 blocked 1, handler default$' \
    --expect-out '^tsc after exec [0-9]+$' \
    -- "$PROGRAMS/forced_fault"
}

# A SIGCHLD that arrives during a file mmap, which replay carries out with
# syscalls of its own, stops the task at that mmap's exit in the replay too
# (an ignored signal given to a task at a signal stop would vanish unseen).
check_mmap_sigchld() {
  need_program mmap_sigchld
  expect_native_differs "$PROGRAMS/mmap_sigchld"
  record_replay mmapchld --status 0 --expect-out '^[0-9]+ maps in all$' \
    -- "$PROGRAMS/mmap_sigchld"
}

# rt_sigprocmask through the syscall buffer: a signal pending at an unblock
# runs its handler before the call returns (such calls are made traced), and
# a trapped rdtsc while a buffered call blocks SIGSEGV leaves the mask and
# the handler as the program set them (rec takes both from the buffer).
check_sigmask_buffered() {
  need_program sigmask_buffered
  expect_native_differs "$PROGRAMS/sigmask_buffered"
  local opts=() i
  for i in 0 1 2 3; do
    opts+=(--expect-out "^round $i pid [0-9]+: handled before unblock $i, after $((i + 1))\$")
  done
  record_replay sigmask --status 0 "${opts[@]}" \
    --expect-out '^after rdtsc, SIGSEGV blocked: SIGSEGV blocked 1, handler ours$' \
    --expect-out '^unblocked: SIGSEGV blocked 0, handler ours$' \
    -- "$PROGRAMS/sigmask_buffered"
  local rounds trapped buffered
  rounds=$(grep -c '^after rdtsc, SIGSEGV blocked: SIGSEGV blocked 1, handler ours$' "$T/sigmask.rec.out")
  ((rounds == 4)) || fail "$rounds of 4 rounds found SIGSEGV blocked and the handler after rdtsc"
  "$REC" dump "$T/sigmask.rec" >"$T/sigmask.dump" || fail "rec dump failed"
  trapped=$(grep -Ec '\] rdtsc = [0-9a-fx]+$' "$T/sigmask.dump")
  ((trapped >= 4)) || fail "only $trapped rdtsc traps (the run-time code's 4 should trap)"
  buffered=$(grep -Ec 'rt_sigprocmask\(0, .*\[syscall buffer, no stop\]' "$T/sigmask.dump")
  if [[ ${REC_SYSCALL_BUFFER:-on} != off ]]; then
    ((buffered >= 4)) || fail "only $buffered SIG_BLOCK calls buffered"
  else
    ((buffered == 0)) || fail "$buffered rt_sigprocmask calls buffered with REC_SYSCALL_BUFFER=off"
  fi
}

# A second signal delivered inside the first's handler, with the main
# thread interrupted in a read: each handler prints its frame's XSAVE header
# and a hash of the whole image, unwritten parts included. The recorder keeps
# each handler's frame as the kernel wrote it and replay writes it back
# (tracee/signals.h HandlerFrame): on AVX-512 machines the unwritten parts
# and the header differ between runs, and between recording and replay.
check_nested_frames() {
  need_program nested_signals
  expect_native_differs "$PROGRAMS/nested_signals"
  record_replay nested --status 0 \
    --expect-out '^SIGUSR1: frame xstate_bv 0x[0-9a-f]+, [0-9]+ bytes, hash [0-9a-f]{16}$' \
    --expect-out '^SIGUSR2: frame xstate_bv 0x[0-9a-f]+, [0-9]+ bytes, hash [0-9a-f]{16}$' \
    -- "$PROGRAMS/nested_signals"
  local lines frames
  lines=$(grep -c ': frame xstate_bv' "$T/nested.rec.out")
  ((lines == 6)) || fail "$lines handler lines, expected 6 (3 rounds of 2 signals)"
  "$REC" dump "$T/nested.rec" >"$T/nested.dump" || fail "rec dump failed"
  frames=$(grep -Ec -- '--- SIGUSR[12] .*\[handler frame of [0-9]+ bytes at 0x[0-9a-f]+\]$' \
    "$T/nested.dump")
  ((frames == 6)) || fail "$frames handler frames kept in the trace, expected 6"
}

t dispositions check_dispositions
t nested_frames check_nested_frames
t sigmask_buffered check_sigmask_buffered
t mmap_sigchld check_mmap_sigchld
t forced_fault check_forced_fault
for mode in "${MODES[@]}"; do
  t "$mode" check_mode "$mode"
done
t itimer_repeat check_itimer_repeat
t sigint_to_program check_sigint program
t sigint_ctrl_c check_sigint group
finish
