# Issue 11, tracees that use ptrace (docs/ptrace-emulation.md): rec is the
# kernel's tracer of every task, so it plays the tracer's part between two
# recorded processes. A tiny debugger (TRACEME, ATTACH, SEIZE) reads and
# changes its tracee, passes signals on and sees its exit; replay
# reproduces the tracer's answers and the tracee's changed memory.
# shellcheck source=lib.bash
source "$TESTLIB"

check_debugger() {
  need_program ptrace_debugger
  expect_native_differs "$PROGRAMS/ptrace_debugger"
  local i
  for i in 1 2; do
    REC_TIMEOUT=20 record_replay "debugger$i" --status 0 \
      --expect-out '^parent: stopped by SIGSTOP, registers agree: 1$' \
      --expect-out '^parent: secret was 1234, poked ([0-9]+), reads \1$' \
      --expect-out '^child: secret [0-9]+, handler ran 1$' \
      --expect-out '^parent: exit stop, status [0-9]+$' \
      --expect-out '^child: read [0-9]+ after the attach$' \
      --expect-out '^parent: attached child exited with 3$' \
      --expect-out '^parent: seized child stopped by PTRACE_INTERRUPT$' \
      --expect-out '^parent: seized child killed$' \
      -- "$PROGRAMS/ptrace_debugger"
  done
  # The poked value reached the child: it printed it and exited with it.
  local poked secret
  poked=$(sed -n 's/^parent: secret was 1234, poked \([0-9]*\),.*/\1/p' debugger1.rec.out)
  secret=$(sed -n 's/^child: secret \([0-9]*\),.*/\1/p' debugger1.rec.out)
  [[ -n $poked && $poked == "$secret" ]] || fail "the child saw $secret, the parent poked $poked"
  grep -q "^parent: child exited with $((poked & 63))\$" debugger1.rec.out ||
    fail "the child's exit status is not the poked value's low bits"
}

# A tracer that blocks SIGCHLD still wakes for its tracee's stop; a traced
# grandchild's death is collected by the tracer, which is not its parent,
# and then reaches the parent as SIGCHLD. Both recordings hung before.
check_wakeups() {
  need_program ptrace_wakeups
  expect_native_differs "$PROGRAMS/ptrace_wakeups"
  local i
  for i in 1 2; do
    REC_TIMEOUT=20 record_replay "wakeups$i" --status 0 \
      --expect-out '^blocked: woken by the SIGUSR2 stop, child.s value [0-9]+$' \
      --expect-out '^grandchild: traced, value ([0-9]+)$' \
      --expect-out '^grandchild: its death collected by the tracer$' \
      --expect-out '^grandchild: the child stopped with its SIGCHLD$' \
      -- "$PROGRAMS/ptrace_wakeups"
    # The child's exit status is the value the tracer read in the grandchild.
    grep -Eq '^grandchild: child exited with ([0-9]+) \(value % 64 = \1\)$' "wakeups$i.rec.out" ||
      fail "the child's exit status is not the grandchild's value"
  done
}

# PTRACE_ARCH_PRCTL: the tracer moves the tracee's gs base onto a word it
# poked; the tracee reads the word through %gs, in replay too. SETFPREGS
# changes the tracee's rounding mode, which its division shows (replay
# diverges if the tracee's FP state is not set alike), and POKEUSER of debug
# registers sets a watchpoint that stops the tracee at its store.
check_regs() {
  need_program ptrace_regs
  expect_native_differs "$PROGRAMS/ptrace_regs"
  local i
  for i in 1 2; do
    REC_TIMEOUT=20 record_replay "regs$i" --status 0 \
      --expect-out '^parent: gs base was 0, now at the poked word [0-9]+$' \
      --expect-out '^parent: watchpoint hit \(DR6 & 0xf = 1\), the child stored [0-9]+$' \
      -- "$PROGRAMS/ptrace_regs"
    local mode
    mode=$(sed -n "s/^parent: set the child's rounding to \(.*\)$/\1/p" "regs$i.rec.out")
    [[ -n $mode ]] && grep -q "^child: rounding $mode, 1/3 = " "regs$i.rec.out" ||
      fail "the child did not compute with the rounding mode its tracer set ($mode)"
    local poked seen
    poked=$(sed -n 's/^parent: gs base was 0, now at the poked word \([0-9]*\)$/\1/p' "regs$i.rec.out")
    seen=$(sed -n 's/^child: %gs:0 holds \([0-9]*\)$/\1/p' "regs$i.rec.out")
    [[ -n $poked && $poked == "$seen" ]] || fail "the child read $seen through %gs, the parent poked $poked"
    grep -Eq '^parent: child exited with ([0-9]+) \(value % 64 = \1\)$' "regs$i.rec.out" ||
      fail "the child's exit status is not the poked value's low bits"
  done
}

# Job control and vfork under a tracer: attaching to (or seizing) a child
# that stopped itself reports the stop at once; PTRACE_EVENT_VFORK_DONE
# comes when the vfork child has exited, and the SIGCHLD of its death after.
check_stops() {
  need_program ptrace_stops
  expect_native_differs "$PROGRAMS/ptrace_stops"
  local i
  for i in 1 2; do
    REC_TIMEOUT=20 record_replay "stops$i" --status 0 \
      --expect-out '^attach: stopped child traced at once, value [0-9]+$' \
      --expect-out "^attach: then the attach's SIGSTOP$" \
      --expect-out '^seize: stopped child traced at once, value [0-9]+$' \
      --expect-out '^seize: child killed$' \
      --expect-out '^vforkdone: vfork event, the new child stopped$' \
      --expect-out '^vforkdone: PTRACE_EVENT_VFORK_DONE, message is the new child: yes$' \
      --expect-out '^vforkdone: the vfork child exited with [0-9]+, the child stopped with its SIGCHLD, then exited with 7$' \
      -- "$PROGRAMS/ptrace_stops"
    # The attached child ran on with the value its tracer read, and exited with it.
    local seen
    seen=$(sed -n 's/^attach: stopped child traced at once, value \([0-9]*\)$/\1/p' "stops$i.rec.out")
    grep -q "^attach: child ran on with $seen\$" "stops$i.rec.out" ||
      fail "the attached child did not run on with the value its tracer read ($seen)"
    grep -Eq '^attach: child exited with ([0-9]+) \(value % 64 = \1\)$' "stops$i.rec.out" ||
      fail "the attached child's exit status is not its value's low bits"
  done
}

t debugger check_debugger
t wakeups check_wakeups
t regs check_regs
t stops check_stops
finish
