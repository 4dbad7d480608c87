# Parallel recording (REC_PARALLEL=on, docs/parallel.md): processes that
# share no memory execute at the same time while recorded, and run beside
# each other's events on replay where they did when recorded ("Parallel
# replay"). Each check records with -v (whose last lines count the tasks
# started beside others), replays with parallel replay on and off, and
# compares output and status byte for byte; the hazards (a shared counter,
# a signal to a running process, wait4 reaping) each have one.
# shellcheck source=lib.bash
source "$TESTLIB"

# parallel_record_replay NAME MIN_BESIDE CMD...: MIN_BESIDE is the least
# number of tasks the recording must have started beside others (0: the
# parallel path must not be taken at all; -: any number). RECORD_OPTIONS: more options for
# `rec record`; MIN_AHEAD and MAX_AHEAD: bounds on the number of runs the
# replay starts ahead of their turn (rec replay -v).
RECORD_OPTIONS=()
MIN_AHEAD=0
MAX_AHEAD=1000000
parallel_record_replay() {
  local name=$1 least=$2
  shift 2
  REC_PARALLEL=on timeout -k 5 "$REC_TIMEOUT" "$REC" record -v ${RECORD_OPTIONS[@]+"${RECORD_OPTIONS[@]}"} \
    -o "$T/$name.rec" -- "$@" \
    </dev/null >"$T/$name.rec.out" 2>"$T/$name.rec.err"
  local recorded=$?
  ((recorded == 0)) || { show "record stderr" "$T/$name.rec.err"; fail "recording exited $recorded"; }
  local line beside
  line=$(grep '^rec: parallel: ' "$T/$name.rec.err") || fail "no parallel summary in rec -v's output"
  beside=$(sed -E 's/^rec: parallel: ([0-9]+) tasks started beside others.*/\1/' <<<"$line")
  note "$line"
  if [[ $least == - ]]; then
    :
  elif ((least == 0)); then
    ((beside == 0)) || fail "$beside tasks ran beside others, none may: $line"
  else
    ((beside >= least)) || fail "only $beside tasks ran beside others (at least $least expected)"
  fi
  timeout -k 5 "$REC_TIMEOUT" "$REC" replay "$T/$name.rec" </dev/null >"$T/$name.replay.out" \
    2>"$T/$name.replay.err"
  local replayed=$?
  ((replayed == 0)) || { show "replay stderr" "$T/$name.replay.err"; fail "replay exited $replayed"; }
  cmp -s "$T/$name.rec.out" "$T/$name.replay.out" ||
    fail "replay's stdout differs: $(diff "$T/$name.rec.out" "$T/$name.replay.out" | head -5)"
  [[ ! -s $T/$name.replay.err ]] || fail "replay wrote to stderr: $(head -3 "$T/$name.replay.err")"
  REC_REPLAY_PARALLEL=off timeout -k 5 "$REC_TIMEOUT" "$REC" replay "$T/$name.rec" </dev/null \
    >"$T/$name.serial.out" 2>"$T/$name.serial.err" ||
    { show "serial replay stderr" "$T/$name.serial.err"; fail "serial replay failed"; }
  cmp -s "$T/$name.rec.out" "$T/$name.serial.out" ||
    fail "serial replay's stdout differs: $(diff "$T/$name.rec.out" "$T/$name.serial.out" | head -5)"
  local ahead
  ahead=$(timeout -k 5 "$REC_TIMEOUT" "$REC" replay -v "$T/$name.rec" </dev/null 2>&1 >/dev/null |
    sed -nE 's/^rec: ([0-9]+) run\(s\) started ahead of their turn.*/\1/p')
  [[ -n $ahead ]] || fail "no parallel replay summary in rec replay -v's output"
  note "replay: $ahead runs started ahead of their turn"
  ((ahead >= MIN_AHEAD)) || fail "only $ahead runs started ahead on replay ($MIN_AHEAD expected)"
  ((ahead <= MAX_AHEAD)) || fail "$ahead runs started ahead on replay (at most $MAX_AHEAD expected)"
}

# Reads that find the pipe empty made traced: each round the two processes
# stop and start again beside each other.
check_pingpong() {
  need_program parallel
  expect_native_differs "$PROGRAMS/parallel" pingpong
  REC_SYSBUF_BLOCK_STREAMS=off parallel_record_replay pingpong 10 "$PROGRAMS/parallel" pingpong
  grep -Eq '^pingpong final [0-9a-f]{16} child status 0$' "$T/pingpong.rec.out" ||
    fail "unexpected output: $(cat "$T/pingpong.rec.out")"
}

# The same with the reads blocking inside the syscall buffer
# (docs/syscall-buffer.md "Blocking in the buffer"): the two run beside each
# other from the start, with few stops.
check_pingpong_in_buffer() {
  need_program parallel
  REC_SYSBUF_BLOCK_STREAMS=on parallel_record_replay pingpong_in_buffer 1 "$PROGRAMS/parallel" pingpong
  grep -Eq '^pingpong final [0-9a-f]{16} child status 0$' "$T/pingpong_in_buffer.rec.out" ||
    fail "unexpected output: $(cat "$T/pingpong_in_buffer.rec.out")"
}

check_tree() {
  need_program parallel
  expect_native_differs "$PROGRAMS/parallel" tree
  parallel_record_replay tree 2 "$PROGRAMS/parallel" tree
  [[ $(grep -c 'matches 1$' "$T/tree.rec.out") == 4 ]] || fail "wait4 statuses: $(cat "$T/tree.rec.out")"
  grep -q '^tree no more children: 1$' "$T/tree.rec.out" || fail "a child was not reaped"
}

check_signal_to_running() {
  need_program parallel
  expect_native_differs "$PROGRAMS/parallel" signal
  parallel_record_replay signal 1 "$PROGRAMS/parallel" signal
  grep -Eq '^signal child stopped after [0-9]+ rounds' "$T/signal.rec.out" ||
    fail "unexpected output: $(cat "$T/signal.rec.out")"
}

# Parent and child share a counter: they never run at once, neither when
# recorded nor on replay, and replay prints the total the recording saw.
check_shared_counter() {
  need_program parallel
  expect_native_differs "$PROGRAMS/parallel" shared
  MAX_AHEAD=0 parallel_record_replay shared 0 "$PROGRAMS/parallel" shared
  grep -Eq '^shared each [0-9]+ total [0-9]+ of [0-9]+$' "$T/shared.rec.out" ||
    fail "unexpected output: $(cat "$T/shared.rec.out")"
}

# Two processes writing lines to the same stdout: replay shows them in the
# order the recording wrote them.
check_output_order() {
  local script='for i in 1 2 3 4 5 6 7 8; do (od -An -N4 -tu4 /dev/urandom; echo "a$i") & (echo "b$i"; od -An -N2 -tu2 /dev/urandom) & done; wait'
  expect_native_differs sh -c "$script"
  parallel_record_replay output_order 1 sh -c "$script"
}

# A CPU per process (docs/parallel.md "CPU placement"): children that exec
# spread over the CPUs, each process reads its APIC ids with CPUID (which
# cannot be trapped) and keeps them in memory; --check-memory replay must
# run each on its recorded CPU. REC_CPUS=all here (the default; the onecpu
# variant runs the other checks with REC_CPUS=1, where all of them share the
# header's CPU).
check_cpu_placement() {
  need_program cpu_tree
  expect_native_differs "$PROGRAMS/cpu_tree" tree 4
  local cpus expected
  cpus=$(nproc)
  expected=$((cpus < 2 ? cpus : 2))
  RECORD_OPTIONS=(--check-memory)
  # Placement at exec alone: a move while running (cpu_moves) may come at a
  # leaf's getrandom, between its two CPUID reads, when the loaded machine
  # made its start-up look like 2 ms of computing.
  REC_CPU_MOVES=off REC_CPUS=all parallel_record_replay cpu_tree 1 "$PROGRAMS/cpu_tree" tree 4
  [[ $(grep -c '^leaf [0-9] pid ' "$T/cpu_tree.rec.out") == 4 ]] ||
    fail "unexpected output: $(cat "$T/cpu_tree.rec.out")"
  grep -q '^root reaped, 0 failed$' "$T/cpu_tree.rec.out" || fail "a child failed"
  ! grep -q MOVED "$T/cpu_tree.rec.out" || fail "a process changed CPUs: $(grep MOVED "$T/cpu_tree.rec.out")"
  "$REC" dump "$T/cpu_tree.rec" >"$T/cpu_tree.dump" || fail "rec dump failed"
  local used seen
  used=$(grep -o 'execve(.*\[cpu [0-9]*\]' "$T/cpu_tree.dump" | grep -o 'cpu [0-9]*' | sort -u | wc -l)
  seen=$(grep -o ' apic [0-9]* ' "$T/cpu_tree.rec.out" | sort -u | wc -l)
  note "$used CPUs in the trace's execs, $seen APIC ids seen"
  [[ $(grep -c 'execve(.*\[cpu [0-9]*\]' "$T/cpu_tree.dump") == 5 ]] ||
    fail "not every exec names its CPU: $(grep -c 'execve(' "$T/cpu_tree.dump") execs"
  ((used == expected)) || fail "$used CPUs used, $expected expected"
  ((seen == expected)) || fail "$seen APIC ids seen, $expected expected"
}

# REC_CPUS=1: every exec names the header's CPU.
check_cpu_placement_one() {
  need_program cpu_tree
  RECORD_OPTIONS=(--check-memory)
  REC_CPUS=1 parallel_record_replay cpu_tree 1 "$PROGRAMS/cpu_tree" tree 4
  "$REC" dump "$T/cpu_tree.rec" >"$T/cpu_tree.dump" || fail "rec dump failed"
  [[ $(grep -o 'execve(.*\[cpu [0-9]*\]' "$T/cpu_tree.dump" | grep -o 'cpu [0-9]*' | sort -u | wc -l) == 1 ]] ||
    fail "execs on more than one CPU: $(grep -o 'execve(.*' "$T/cpu_tree.dump")"
  [[ $(grep -o ' apic [0-9]* ' "$T/cpu_tree.rec.out" | sort -u | wc -l) == 1 ]] ||
    fail "more than one APIC id seen: $(cat "$T/cpu_tree.rec.out")"
}

# Two forked processes that compute on their parent's CPU, with a buffered
# pread every few ms: rec moves one to the free CPU at a syscall, records
# the move, and replay moves it at the same event; each keeps every round's
# APIC id in memory, which --check-memory compares at each event.
check_cpu_moves() {
  need_program cpu_tree
  (($(nproc) >= 2)) || { note "one CPU: nothing to move to"; return 0; }
  expect_native_differs "$PROGRAMS/cpu_tree" pair 2
  RECORD_OPTIONS=(--check-memory)
  MIN_AHEAD=1 REC_CPUS=all parallel_record_replay cpu_moves 1 "$PROGRAMS/cpu_tree" pair 2
  grep -q '^pairs reaped, 0 failed$' "$T/cpu_moves.rec.out" || fail "a child failed"
  grep -Eq 'moved to a free CPU' "$T/cpu_moves.rec.err" || fail "no move count in rec -v's output"
  "$REC" dump "$T/cpu_moves.rec" >"$T/cpu_moves.dump" || fail "rec dump failed"
  local moves
  moves=$(grep -c '\[process moved to cpu [0-9]*\]' "$T/cpu_moves.dump")
  note "$moves moves; $(grep -o 'changes [0-9]*' "$T/cpu_moves.rec.out" | tr '\n' ' ')"
  ((moves >= 1)) || fail "no process moved: $(grep 'moved to a free' "$T/cpu_moves.rec.err")"
  grep -Eq 'changes [1-9]' "$T/cpu_moves.rec.out" ||
    fail "no process saw its APIC id change: $(cat "$T/cpu_moves.rec.out")"
  "$REC" replay --check "$T/cpu_moves.rec" </dev/null >"$T/cpu_moves.check.out" 2>&1 ||
    fail "replay --check failed: $(tail -3 "$T/cpu_moves.check.out")"
}

# A watched file mapped again and again beside a process that rewrites it
# (those mmaps need not wait to be alone; the pwrites do): each mapping's
# contents, summed in memory, replay as recorded.
check_remap_watched() {
  need_program parallel
  expect_native_differs "$PROGRAMS/parallel" remap
  RECORD_OPTIONS=(--check-memory)
  parallel_record_replay remap 1 "$PROGRAMS/parallel" remap
  grep -Eq '^remap final [0-9a-f]{16}, 0 failed$' "$T/remap.rec.out" ||
    fail "unexpected output: $(cat "$T/remap.rec.out")"
  "$REC" replay --check "$T/remap.rec" </dev/null >"$T/remap.check.out" 2>&1 ||
    fail "replay --check failed: $(tail -3 "$T/remap.check.out")"
}

# A pool of worker processes fed through pipes by threads of the parent,
# with semaphores in shared memory made before the workers fork: the
# processes share memory (and the parent has threads), so replay starts no
# run ahead of its turn. (Before the recorder said which tasks' memory is
# their own, a worker ran ahead while a parent thread's code, which the
# recording ran before the worker's run, replayed beside it: --check found
# the semaphore's page changed.) Replayed with --check. The interpreter's
# switch interval is long: with its default 5 ms, threads waiting for the
# GIL with timeouts make recordings under load that replay to a divergence
# (exit 75), with or without parallel replay (README known limits).
check_python_pool() {
  command -v python3 >/dev/null || fail "python3 is needed"
  cat >pool.py <<'PY'
import multiprocessing, os, random
def work(n):
    s = 0
    for i in range(5000 + n):
        s = (s * 31 + i) % 1000003
    return s ^ os.getpid()
if __name__ == "__main__":
    import sys
    sys.setswitchinterval(10)
    with multiprocessing.Pool(2) as p:
        print(sum(p.map(work, range(8))), random.random())
PY
  # (the interpreter itself: a wrapper such as pyenv's shim runs processes
  # of its own before it, which may well run ahead)
  local python
  python=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 does not run"
  RECORD_OPTIONS=(--check-memory)
  MAX_AHEAD=0 parallel_record_replay python_pool - "$python" pool.py
  "$REC" replay --check "$T/python_pool.rec" </dev/null >"$T/python_pool.check.out" 2>&1 ||
    fail "replay --check failed: $(tail -3 "$T/python_pool.check.out")"
}

check_make_j2() {
  command -v make >/dev/null && command -v cc >/dev/null || fail "make and cc are needed"
  mkdir -p src
  for i in 1 2 3 4; do
    printf 'int f%d(int x) { int s = 0; for (int i = 0; i < x; ++i) s += i * %d; return s; }\n' "$i" "$i" >"src/f$i.c"
  done
  printf 'all: f1.o f2.o f3.o f4.o\n%%.o: src/%%.c\n\tcc -O1 -c -o $@ $<\n' >Makefile
  MIN_AHEAD=1 parallel_record_replay make_j2 1 make -j2 -s
}

t pingpong check_pingpong
t pingpong_in_buffer check_pingpong_in_buffer
t tree check_tree
t signal_to_running check_signal_to_running
t shared_counter check_shared_counter
t output_order check_output_order
t make_j2 check_make_j2
t python_pool check_python_pool
t cpu_placement check_cpu_placement
t cpu_placement_one check_cpu_placement_one
t cpu_moves check_cpu_moves
t remap_watched check_remap_watched
finish
