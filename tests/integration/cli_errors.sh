# Issue 3: bad input. rec's own errors use its documented exit codes (64 usage,
# 65 bad trace, 66 trace missing, 67 cut short, 74 trace not writable, 126 not
# executable, 127 not found), print one clear line on stderr, and never crash
# (status < 128).
# shellcheck source=lib.bash
source "$TESTLIB"

check_not_found() {
  expect_status 127 "$REC" record -o nf.rec -- ./no-such-program-here
  expect_one_line_stderr
  expect_status 127 "$REC" record -o nf2.rec -- no-such-command-in-path-xyz
  expect_one_line_stderr
  grep -q 'no-such-command-in-path-xyz' "$T/last.err" || fail "the message does not name the program"
}

check_not_executable() {
  printf 'not a program\n' >plain.txt
  chmod 644 plain.txt
  expect_status 126 "$REC" record -o ne.rec -- ./plain.txt
  expect_one_line_stderr
  mkdir adir
  expect_status 126 "$REC" record -o ne2.rec -- ./adir
  expect_one_line_stderr
}

check_trace_missing() {
  expect_status 66 "$REC" replay ./missing.rec
  expect_one_line_stderr
  grep -q 'missing.rec' "$T/last.err" || fail "the message does not name the trace"
  expect_status 66 "$REC" info ./missing.rec
  expect_status 66 "$REC" dump ./missing.rec
  expect_status 66 "$REC" ps ./missing.rec
}

check_garbage_trace() {
  head -c 100000 /dev/urandom >garbage.rec
  expect_status 65 "$REC" replay garbage.rec
  expect_one_line_stderr
  : >empty.rec
  expect_status 65 "$REC" replay empty.rec
  expect_one_line_stderr
  printf 'hello\n' >text.rec
  expect_status 65 "$REC" info text.rec
  expect_status 65 "$REC" dump garbage.rec
}

# A trace cut in the middle: replay either replays up to the cut and says so
# (one line on stderr, some status < 128 other than a crash), or refuses with
# 65. Never a crash or a hang.
check_truncated_trace() {
  # Make a trace with enough content: a program with many syscalls.
  record big --status 0 -- od -An -tx1 -N200000 /dev/urandom
  # Precondition: the whole trace replays (else the cuts prove nothing).
  replay_compare big
  local size
  size=$(stat -c %s big.rec)
  local cut
  for cut in $((size / 2)) $((size - 1)) 100 20; do
    head -c "$cut" big.rec >cut.rec
    timeout -k 5 60 "$REC" replay cut.rec </dev/null >cut.out 2>cut.err
    local st=$?
    ((st == 124 || st == 137)) && fail "replay of a trace cut at $cut/$size bytes hung"
    ((st >= 128)) && { show stderr cut.err; fail "replay of a trace cut at $cut/$size bytes crashed (status $st)"; }
    [[ -s cut.err ]] || fail "replay of a trace cut at $cut/$size bytes (status $st) printed nothing on stderr"
    if ((st == 65)); then  # refused: exactly one line, rec's own
      [[ $(grep -c . cut.err) == 1 ]] ||
        { show stderr cut.err; fail "replay of a trace cut at $cut/$size bytes: exit 65 but not one line on stderr"; }
    else  # replayed up to the cut: the last stderr line says so
      tail -n 1 cut.err | grep -Eqi 'trunc|incomplete|cut|end of (the )?trace|premature' ||
        { show stderr cut.err; fail "replay of a trace cut at $cut/$size bytes exited $st, and the last stderr line does not say the trace is truncated"; }
    fi
    note "cut at $cut/$size: status $st: $(tail -n 1 cut.err)"
    # Other readers must not crash either.
    local cmd
    for cmd in info dump ps; do
      timeout -k 5 60 "$REC" "$cmd" cut.rec </dev/null >/dev/null 2>cmd.err
      st=$?
      ((st < 128)) || fail "rec $cmd on a trace cut at $cut/$size crashed or hung (status $st)"
    done
  done
}

# One flipped byte in the middle: a checksum error (65), a divergence (75)
# or a clean replay are acceptable; a crash or a hang is not.
check_corrupted_trace() {
  record small --status 0 -- cat /etc/passwd
  local size
  size=$(stat -c %s small.rec)
  cp small.rec bad.rec
  printf '\xff' | dd of=bad.rec bs=1 seek=$((size / 2)) conv=notrunc status=none
  timeout -k 5 60 "$REC" replay bad.rec </dev/null >bad.out 2>bad.err
  local st=$?
  ((st < 128)) || fail "replay of a corrupted trace crashed or hung (status $st)"
  note "one corrupted byte: status $st: $(tail -n 1 bad.err)"
}

# A trace of format version 1 (each buffered syscall an event of its own,
# before the batches of format 2): refused with one line saying so.
check_old_format() {
  record old --status 0 -- cat /etc/passwd
  printf '\x01' | dd of=old.rec bs=1 seek=8 conv=notrunc status=none
  local cmd
  for cmd in replay dump info; do
    expect_status 65 "$REC" "$cmd" old.rec
    expect_one_line_stderr
    grep -q 'trace format version 1, this rec reads version 2 (recorded by an older rec' "$T/last.err" ||
      { show stderr "$T/last.err"; fail "rec $cmd does not say the trace is of an older format"; }
  done
}

check_usage() {
  expect_status 64 "$REC" record
  expect_status 64 "$REC"
  expect_status 64 "$REC" no-such-subcommand
  expect_status 64 "$REC" record --no-such-option -- /bin/true
  expect_status 64 "$REC" dump
}

check_help() {
  local sub
  expect_status 0 "$REC" --help
  grep -q 'record' "$T/last.out" || fail "rec --help does not mention record"
  for sub in record replay dump info ps syscalls; do
    expect_status 0 "$REC" "$sub" --help
    [[ -s $T/last.out ]] || fail "rec $sub --help printed nothing on stdout"
  done
}

check_version() {
  expect_status 0 "$REC" --version
  [[ -s $T/last.out ]] || fail "rec --version printed nothing"
}

check_syscalls() {
  expect_status 0 "$REC" syscalls
  local f=$T/last.out
  local name
  for name in read write openat clock_gettime getrandom execve mmap io_uring_setup; do
    grep -qw "$name" "$f" || fail "rec syscalls does not list $name"
  done
  [[ $(wc -l <"$f") -ge 300 ]] || fail "rec syscalls lists only $(wc -l <"$f") lines (the kernel defines > 330 syscalls)"
}

# record prints nothing of its own on stdout.
check_record_stdout_clean() {
  record quiet --status 0 -- /bin/true
  [[ -s quiet.rec.out ]] && fail "rec record printed on stdout: $(head -c 200 quiet.rec.out)"
  return 0
}

# Default trace location: `rec replay` without an argument replays the latest
# recording. Only checked if record without -o succeeds.
check_default_trace() {
  local home=$T/home
  mkdir -p "$home"
  HOME=$home XDG_DATA_HOME=$home/.local/share \
    timeout 60 "$REC" record -- /bin/echo default-trace >d.out 2>d.err
  local st=$?
  [[ $st == 0 ]] || fail "rec record without -o exited $st: $(head -c 300 d.err)"
  HOME=$home XDG_DATA_HOME=$home/.local/share timeout 60 "$REC" replay </dev/null >r.out 2>r.err
  st=$?
  [[ $st == 0 ]] || fail "rec replay without a trace exited $st: $(head -c 300 r.err)"
  cmp -s d.out r.out || fail "rec replay (latest trace) printed '$(head -c 100 r.out)'"
  # Each recording gets a name of its own past the highest in use (echo-0
  # above; a gap left by a deleted trace is not reused, nothing overwritten).
  local dir=$home/.local/share/rec
  [[ -f $dir/echo-0 ]] || fail "the first default trace is not echo-0: $(ls "$dir")"
  : >"$dir/echo-7"
  HOME=$home timeout 60 "$REC" record -- /bin/echo again >/dev/null 2>&1 || fail "second record failed"
  [[ -s $dir/echo-8 && ! -s $dir/echo-7 && ! -e $dir/echo-1 ]] ||
    fail "the next default trace is not echo-8: $(ls "$dir")"
}

# The trace cannot be written: 74 (the README's "trace could not be
# written"), not 70 (a bug in rec), with one line naming the path.
check_unwritable_trace() {
  expect_status 74 "$REC" record -o "$T/no-such-dir/x.rec" -- /bin/true
  expect_one_line_stderr
  grep -q 'no-such-dir/x.rec' "$T/last.err" || fail "the message does not name the trace"
  printf 'x\n' >afile
  expect_status 74 "$REC" record -o afile/x.rec -- /bin/true
  expect_one_line_stderr
  # Created, but every write fails (ENOSPC).
  expect_status 74 "$REC" record -o /dev/full -- /bin/true
  expect_one_line_stderr
  REC_TRACE_DIR=$T/afile/traces expect_status 74 "$REC" record -- /bin/true
  expect_one_line_stderr
  expect_status 74 "$REC" record --until-failure --max-runs 1 -o "$T/no-such-dir/y.rec" -- /bin/false
}

# A trace holds the environment and file contents: only its owner reads it,
# wherever it is written, also when an older readable trace is overwritten.
check_trace_mode() {
  record private --status 0 -- /bin/true
  [[ $(stat -c %a private.rec) == 600 ]] || fail "-o trace has mode $(stat -c %a private.rec)"
  : >old.rec
  chmod 644 old.rec
  expect_status 0 "$REC" record -o old.rec -- /bin/true
  [[ $(stat -c %a old.rec) == 600 ]] || fail "an overwritten trace kept mode $(stat -c %a old.rec)"
  mkdir traces
  REC_TRACE_DIR=$T/traces expect_status 0 "$REC" record -- /bin/true
  local f
  for f in traces/true-*; do
    [[ $(stat -c %a "$f") == 600 ]] || fail "default-location trace $f has mode $(stat -c %a "$f")"
  done
}

# rec's start-up probe of RDTSC trapping kills a child with SIGSEGV: it must
# leave no core file behind, even where the user allows core dumps.
check_no_probe_core() {
  local pattern
  pattern=$(cat /proc/sys/kernel/core_pattern)
  mkdir run
  (cd run && ulimit -c unlimited && "$REC" record -o ../c.rec -- /bin/true) >/dev/null 2>&1 ||
    fail "rec record /bin/true failed"
  if [[ $pattern == /* || $pattern == '|'* ]]; then
    note "core_pattern is '$pattern': cores do not land in the working directory here"
    return 0
  fi
  expect_empty_dir run "after recording /bin/true with ulimit -c unlimited"
}

t not_found check_not_found
t not_executable check_not_executable
t trace_missing check_trace_missing
t garbage_trace check_garbage_trace
t truncated_trace check_truncated_trace
t corrupted_trace check_corrupted_trace
t usage check_usage
t help check_help
t version check_version
t old_format check_old_format
t syscalls check_syscalls
t record_stdout_clean check_record_stdout_clean
t default_trace check_default_trace
t unwritable_trace check_unwritable_trace
t trace_mode check_trace_mode
t no_probe_core check_no_probe_core
finish
