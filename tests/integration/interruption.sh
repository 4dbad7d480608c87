# Issue 2: nothing the user recorded is lost when rec itself is interrupted.
# A recorder killed with SIGKILL leaves a trace readable up to its last
# complete chunk, which `rec info` reports as cut short and `rec replay`
# replays up to the cut (exit 67); SIGTERM ends the program and completes
# the trace. Issue 3: a replay that diverges stops with a readable report.
# shellcheck source=lib.bash
source "$TESTLIB"

# Starts `rec record` of the ticker in the background; waits until it has
# printed a few ticks.
start_ticker() {
  "$REC" record -o ticker.rec -- "$PROGRAMS/ticker" 500 >rec.out 2>rec.err &
  REC_PID=$!
  for _ in $(seq 100); do
    [ "$(wc -l <rec.out)" -ge 10 ] && return 0
    sleep 0.05
  done
  fail "the recording printed no ticks"
}

check_sigkill() {
  start_ticker
  sleep 0.6  # more than one chunk-sealing period
  kill -KILL "$REC_PID"
  wait "$REC_PID" 2>/dev/null
  "$REC" info ticker.rec >info.out 2>info.err || fail "rec info failed on a cut-short trace: $(cat info.err)"
  grep -qi "cut short" info.out || { show "info" info.out; fail "rec info does not say the trace was cut short"; }
  timeout 60 "$REC" replay ticker.rec >replay.out 2>replay.err
  local status=$?
  [ "$status" -eq 67 ] || { show "replay stderr" replay.err; fail "replay of a cut-short trace exited $status, expected 67"; }
  grep -q "cut short" replay.err || fail "replay does not say the trace was cut short"
  [ "$(wc -l <replay.err)" -eq 1 ] || { show "replay stderr" replay.err; fail "more than one line on stderr"; }
  local n
  n=$(wc -l <replay.out)
  [ "$n" -ge 5 ] || fail "replay printed only $n ticks"
  # What replay printed is exactly the start of what the recording printed.
  head -n "$n" rec.out | cmp -s - replay.out || { show "replay" replay.out; fail "replayed ticks differ from the recording's"; }
}

check_sigterm() {
  start_ticker
  kill -TERM "$REC_PID"
  wait "$REC_PID"
  local status=$?
  [ "$status" -eq 143 ] || fail "rec record exited $status after SIGTERM, expected 143"
  "$REC" info ticker.rec >info.out 2>&1 || fail "rec info failed"
  grep -q "complete" info.out || { show "info" info.out; fail "the trace of an interrupted recording is not complete"; }
  timeout 60 "$REC" replay ticker.rec >replay.out 2>replay.err
  status=$?
  # The program was killed by SIGKILL when rec stopped: replay ends the same way.
  [ "$status" -eq 137 ] || { show "replay stderr" replay.err; fail "replay exited $status, expected 137"; }
  cmp -s rec.out replay.out || fail "replay output differs from the recording's"
}

check_divergence() {
  grep -qw rdrand /proc/cpuinfo || fail "this CPU has no RDRAND to provoke a divergence with"
  expect_native_differs "$PROGRAMS/rdrand_branch"
  "$REC" record -o div.rec -- "$PROGRAMS/rdrand_branch" >rec.out 2>rec.err || fail "recording failed"
  timeout 60 "$REC" replay div.rec >replay.out 2>replay.err
  local status=$?
  [ "$status" -eq 75 ] || { show "replay stderr" replay.err; fail "replay exited $status, expected 75 (divergence)"; }
  [ "$(wc -l <replay.err)" -eq 1 ] || { show "replay stderr" replay.err; fail "the report is not one line"; }
  # RDRAND's value is in a register by the first syscall after it: replay
  # notices there, by another syscall or, when that one is the same, by the
  # register that differs.
  local what="expected get(ppid|tid)\(\), but the program made get(ppid|tid)\(\)"
  what+="|expected get(ppid|tid)\(\) with every register as recorded, but the program arrived with [a-z0-9]+ = 0x[0-9a-f]+ \(recorded 0x[0-9a-f]+\)"
  grep -Eq "diverged at event #[0-9]+ \(task [0-9]+\): ($what) at 0x[0-9a-f]+ \(.*\+0x[0-9a-f]+ in .*; the last event that matched was #[0-9]+ " replay.err ||
    { show "replay stderr" replay.err; fail "the report does not name the event, the syscalls or register, the code and the last event that matched"; }
}

t sigkill check_sigkill
t sigterm check_sigterm
t divergence check_divergence
finish
