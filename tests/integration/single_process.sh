# Issue 3: single-process programs record and replay byte for byte: time,
# randomness, ids, addresses, files, stdin, argv/env/cwd, exit status.
# shellcheck source=lib.bash
source "$TESTLIB"

check_time_random() {
  need_program time_random
  expect_native_differs "$PROGRAMS/time_random"
  record_replay time_random --status 0 --expect-out '^rdtscp [0-9]+' --expect-out '^at_random [0-9a-f]{32}$' \
    -- "$PROGRAMS/time_random"
}

# The time shim (tracee/time_shim.h): clock reads through the vDSO are
# recorded without a stop and handed back on replay, in every situation the
# program puts them in (a fork's child, a signal handler interrupting them, a
# second thread); with REC_TIME_SHIM=off they are syscalls, as before.
check_time_shim() {
  need_program vdso_time
  expect_native_differs "$PROGRAMS/vdso_time"
  record_replay shim --status 0 --expect-out '^vdso present$' --expect-out '^ticks ([5-9]|[1-9][0-9]+) after' \
    --expect-out '^child 700 reads' --expect-out '^getcpu 0 cpu [0-9]+ node [0-9]+$' -- "$PROGRAMS/vdso_time"
  "$REC" dump shim.rec >dump.out || fail "rec dump failed"
  # The main thread's 3000 reads and the child's 700 at least.
  (($(grep -c 'vdso, no stop' dump.out) >= 3700)) || fail "fewer than 3700 clock reads answered by the shim"
  (($(grep -c 'time shim on' dump.out) == 2)) || fail "the shim was not turned on once per process"
  expect_status 0 "$REC" info shim.rec
  grep -q "^vdso: *rec's time shim" "$T/last.out" || fail "rec info does not name the time shim"
  record_replay noshim --record-env REC_TIME_SHIM=off --status 0 --expect-out '^vdso absent$' \
    -- "$PROGRAMS/vdso_time"
  "$REC" dump noshim.rec >dump2.out || fail "rec dump failed"
  if grep -q 'vdso, no stop' dump2.out; then fail "REC_TIME_SHIM=off still used the shim"; fi
}

# RDTSC/RDTSCP without a stop (docs/syscall-buffer.md "RDTSC without a
# stop"): sites that can take a jump are patched as their file is mapped and
# ask the time shim, which logs the value; replay hands the logged values
# back, without a stop either. A forked child's first read traps and maps it
# a log of its own; threads (the shim is off there) trap as before. Every task's values only go up; with
# --check-memory replay compares memory at every event (the entry writes the
# program's stack below its red zone). With the syscall buffer off every
# rdtsc traps.
check_rdtsc_log() {
  need_program rdtsc_loop
  expect_native_differs "$PROGRAMS/rdtsc_loop" 300
  local mode re='^(main|child|thread 1|thread 2|after) first [0-9]+ odd [0-9]+ digest [0-9a-f]{16} backwards 0$'
  # (the machine's own way, PR_SET_TSC where it traps; and UD2 patching)
  for mode in probe patch; do
    record_replay "rdtsc_$mode" --record-env "REC_RDTSC=$mode" --replay-env "REC_RDTSC=$mode" --status 0 \
      --expect-out '^main first [0-9]+ odd [0-9]+ digest [0-9a-f]{16} backwards 0$' \
      --expect-out '^child first .* backwards 0$' --expect-out '^thread 2 first .* backwards 0$' \
      --expect-out '^after first .* backwards 0$' --expect-out '^child status 0$' \
      --expect-out '^flags kept 100/100$' \
      -- "$PROGRAMS/rdtsc_loop" 3000
    (($(grep -Ec "$re" "rdtsc_$mode.rec.out") == 5)) || fail "rdtsc_loop ($mode) printed something else"
    "$REC" dump "rdtsc_$mode.rec" >dump.out || fail "rec dump failed"
    local logged trapped
    logged=$(grep -Ec '\brdtscp? = .*time shim, no stop\]' dump.out)
    trapped=$(grep -Ec '\brdtscp? = ' dump.out)
    trapped=$((trapped - logged))
    if [[ ${REC_SYSCALL_BUFFER:-on} != off ]]; then
      # main's 3000 reads, the flags check's 100 and ld.so's, the child's
      # after its first (which maps it a log); the threads' and after (the
      # process has had threads) trap: 3 x 3000
      ((logged >= 6100 && logged < 6200)) || fail "$logged rdtsc reads answered by the shim, not ~6100"
      ((trapped >= 9000 && trapped < 9100)) || fail "$trapped rdtsc reads trapped, not ~9000"
      grep -Eq '\] rdtscp? = .*\[time shim on\]' dump.out || fail "the child's first rdtsc did not map its log"
      grep -Eq '^#0 .*execve\(.*sites patched ahead\] \[time shim on\]' dump.out ||
        fail "the exec did not patch rdtsc sites ahead"
    else
      ((logged == 0)) || fail "$logged rdtsc reads answered by the shim with REC_SYSCALL_BUFFER=off"
      ((trapped >= 15000)) || fail "only $trapped rdtsc reads trapped"
    fi
  done
  # Memory digests at every event, compared by replay --check.
  "$REC" record --check-memory -o "$T/rdtsc_digests.rec" "$PROGRAMS/rdtsc_loop" 500 \
    >"$T/rdtsc_digests.out" 2>"$T/rdtsc_digests.err" || fail "record --check-memory failed: $(tail -n 1 "$T/rdtsc_digests.err")"
  "$REC" replay --check "$T/rdtsc_digests.rec" >"$T/rdtsc_digests.replay" 2>"$T/rdtsc_digests.replay.err" ||
    fail "replay --check failed: $(tail -n 1 "$T/rdtsc_digests.replay.err")"
  cmp -s "$T/rdtsc_digests.out" "$T/rdtsc_digests.replay" || fail "replay --check printed something else"
}

# Where RDTSC does not trap (some hypervisors; REC_RDTSC=patch pretends so),
# rec patches the instructions to UD2: the counter values and the branches
# taken on them replay, decoy bytes inside other instructions stay intact,
# and the trace replays the same whether or not the replaying machine traps.
check_rdtsc_patched() {
  need_program rdtsc_sites
  expect_native_differs "$PROGRAMS/rdtsc_sites"
  record_replay patched --record-env REC_RDTSC=patch --replay-env REC_RDTSC=patch --status 0 \
    --expect-out '^decoys 0x310f 0xf9010f$' --expect-out '^elapsed [1-9]' -- "$PROGRAMS/rdtsc_sites"
  replay_compare patched
  expect_status 0 "$REC" info patched.rec
  grep -q '^rdtsc: *patched' "$T/last.out" || fail "rec info does not say RDTSC was patched"
  "$REC" dump patched.rec >dump.out || fail "rec dump failed"
  (($(grep -Ec '\brdtscp? = ' dump.out) >= 101)) || fail "fewer than 101 rdtsc events in the trace"
  # Recorded where RDTSC traps (when this machine does), replayed patched.
  record_replay trapped --replay-env REC_RDTSC=patch --status 0 -- "$PROGRAMS/rdtsc_sites"
}

# The blob cache: a second recording takes the interpreter and its libraries
# from rec's cache instead of compressing them again, and its trace is still
# self-contained; damaged cache entries are ignored, not copied into traces.
check_blob_cache() {
  local py='import random, time; print(random.random(), time.time())'
  local env="REC_CACHE_DIR=$T/cache"
  record_replay cold --record-env "$env" --status 0 -- python3 -c "$py"
  local entries
  entries=$(find "$T/cache" -type f -path '*blobs*' | wc -l)
  ((entries >= 3)) || fail "the blob cache holds $entries entries after a recording, expected the interpreter and libraries"
  record_replay warm --record-env "$env" --status 0 -- python3 -c "$py"
  cmp -s cold.rec.out warm.rec.out && fail "two recordings printed the same random number"
  # Replays from the trace alone, without the cache.
  mv "$T/cache" "$T/cache.moved"
  replay_compare warm
  mv "$T/cache.moved" "$T/cache"
  local f
  for f in $(find "$T/cache" -type f -path '*blobs*'); do
    printf 'garbage' | dd of="$f" bs=1 seek=100 conv=notrunc status=none
  done
  record_replay damaged --record-env "$env" --status 0 -- python3 -c "$py"
  expect_status 0 "$REC" info damaged.rec
  grep -q '^status: *complete' "$T/last.out" || fail "rec info after damaged cache entries: $(head -n2 "$T/last.out")"
}

# Replay maps a recorded file from disk when the blob cache vouches that it
# is unchanged, and unpacks it from the trace otherwise: a binary changed in
# place (same inode) after recording must not be what replay runs.
check_unchanged_files_on_disk() {
  need_program time_random
  need_program exit_code
  cp "$PROGRAMS/time_random" prog
  sleep 2.2  # the cache keeps only files whose inode settled (tracee/blob_cache.h)
  local env="REC_CACHE_DIR=$T/cache"
  record_replay ondisk --record-env "$env" --replay-env "$env" --status 0 -- "$T/prog"
  cat "$PROGRAMS/exit_code" >prog  # same inode, other contents
  replay_compare ondisk --replay-env "$env"
}

# Replaying twice must give the same output twice (no state leaks between
# replays) and a trace copied elsewhere replays the same.
check_replay_twice_and_copy() {
  need_program time_random
  record_replay twice --status 0 -- "$PROGRAMS/time_random"
  replay_compare twice
  mkdir -p copy && cp twice.rec copy/moved.rec && rm twice.rec
  (cd copy && timeout 60 "$REC" replay moved.rec </dev/null >../moved.out 2>../moved.err)
  local st=$?
  [[ $st == 0 ]] || fail "replay of a copied trace exited $st: $(head -c 300 moved.err)"
  cmp -s twice.rec.out moved.out || fail "replay of a copied trace printed different output"
}

check_addresses() {
  need_program addresses
  expect_native_differs "$PROGRAMS/addresses"
  record_replay addresses --status 0 --expect-out '^malloc_large 0x' -- "$PROGRAMS/addresses"
}

# files: replay must create, write and delete nothing: the program makes its
# temp dir in $TMPDIR, which must stay empty after replay (and after record).
check_files() {
  need_program files
  expect_native_differs "$PROGRAMS/files"
  record files --status 0 --expect-out '^removed yes' --expect-out '^tempfile data-' -- "$PROGRAMS/files"
  expect_empty_dir "$TMPDIR" "after recording (the program deletes its files)"
  # Watch for any file appearing during replay (created then deleted).
  local marker="$T/marker"
  touch "$marker"
  replay_compare files
  expect_empty_dir "$TMPDIR" "after replay: replay created files"
  local touched
  touched=$(find "$T/tmp" -mindepth 1 -newer "$marker" 2>/dev/null)
  [[ -z $touched ]] || fail "replay touched $touched"
  # The directory itself was not modified by replay (mtime unchanged).
  # Also counts rec's own scratch files: replay must leave $TMPDIR alone.
  [[ "$T/tmp" -nt "$marker" ]] &&
    fail "replay created and deleted entries in \$TMPDIR=$T/tmp (its mtime changed; the program's files or rec's own scratch files)"
  return 0
}

check_stdin_echo() {
  need_program stdin_echo
  head -c 100000 /dev/urandom >input.bin
  expect_native_differs sh -c "'$PROGRAMS/stdin_echo' <input.bin"
  record stdin --stdin input.bin --status 0 --expect-out '^length 100000 ' -- "$PROGRAMS/stdin_echo"
  rm -f input.bin  # replay must not need it
  replay_compare stdin
}

# stdin from a pipe instead of a file (reads return partial chunks).
check_stdin_pipe() {
  need_program stdin_echo
  head -c 300000 /dev/urandom >input.bin
  cat input.bin | timeout 60 "$REC" record -o pipe.rec -- "$PROGRAMS/stdin_echo" >pipe.rec.out 2>pipe.rec.err
  echo "${PIPESTATUS[1]}" >pipe.rec.status
  grep -q '^length 300000 ' pipe.rec.out || fail "recorded output wrong: $(cat pipe.rec.out pipe.rec.err)"
  replay_compare pipe
}

# argv, env and cwd come from the trace, not from the replaying shell.
check_env_args() {
  need_program env_args
  expect_native_differs "$PROGRAMS/env_args"
  mkdir -p rundir
  cd rundir || fail "cd"
  record env_args --status 0 --record-env FOO=recorded --record-env REC_TEST_VAR='a b  c' \
    --expect-out '^env FOO=recorded$' --expect-out "^cwd $(pwd -P)\$" \
    -- "$PROGRAMS/env_args" one 'two words' '' "$(printf 'tab\there')" --flag
  cd "$T" || fail "cd"
  rm -rf rundir  # the recorded cwd no longer exists
  replay_compare env_args --replay-cwd / --replay-env-clear --replay-env FOO=other --replay-env HOME=/nowhere
}

# The exit status (random, 0..49) is reproduced; try a few recordings so that
# a non-zero status is seen.
check_exit_code() {
  need_program exit_code
  expect_native_differs "$PROGRAMS/exit_code"
  local i nonzero=0
  for i in 1 2 3; do
    record_replay "exit$i" --expect-out '^exit status [0-9]+' -- "$PROGRAMS/exit_code"
    [[ $(<"exit$i.rec.status") != 0 ]] && nonzero=1
    grep -q "^exit status $(<"exit$i.rec.status") " "exit$i.rec.out" ||
      fail "recorded status $(<"exit$i.rec.status") does not match the program's output"
  done
  ((nonzero)) || note "all three recordings exited 0 (1 in 125000 chance)"
  return 0
}

# The program's binary is gone or changed at replay: replay uses the copy
# stored in the trace.
check_binary_replaced() {
  need_program time_random
  cp "$PROGRAMS/time_random" ./prog
  record gone --status 0 -- ./prog
  cp "$PROGRAMS/addresses" ./prog  # a different program at the same path
  replay_compare gone
  rm -f ./prog
  replay_compare gone
}

# Terminal ioctls: stty -a reads the terminal settings of its stdin (a pty
# made by script(1) while recording). Replay runs with stdin /dev/null, so a
# replay that really asked the kernel would get ENOTTY. The pty turns "\n"
# into "\r\n" on the way out; replay writes the program's own bytes.
check_tty() {
  command -v script >/dev/null || fail "script(1) (util-linux) is not installed"
  script -qec "timeout 60 '$REC' record -o '$T/tty.rec' -- stty -a" /dev/null </dev/null >tty.raw 2>&1
  local st=$?
  [[ $st == 0 ]] || fail "recording stty -a on a pty exited $st: $(head -c 300 tty.raw)"
  [[ -s tty.rec ]] || fail "no trace written"
  tr -d '\r' <tty.raw >tty.rec.out
  grep -q '^speed ' tty.rec.out || fail "unexpected stty output: $(head -c 200 tty.rec.out)"
  : >tty.rec.err
  echo 0 >tty.rec.status
  replay_compare tty
}

t time_random check_time_random
t rdtsc_log check_rdtsc_log
t time_shim check_time_shim
t rdtsc_patched check_rdtsc_patched
t blob_cache check_blob_cache
t unchanged_files_on_disk check_unchanged_files_on_disk
t replay_twice_and_copy check_replay_twice_and_copy
t addresses check_addresses
t files check_files
t stdin_echo check_stdin_echo
t stdin_pipe check_stdin_pipe
t env_args check_env_args
t exit_code check_exit_code
t binary_replaced check_binary_replaced
t tty check_tty
finish
