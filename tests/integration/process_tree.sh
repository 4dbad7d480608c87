# Issue 4: process trees. fork/vfork/posix_spawn/execve, pipes, wait4,
# signals between processes, shared memory, and real multi-process workloads
# (shell pipelines, python subprocess, tar, xargs -P2, make -j2, gcc). Replay
# reproduces combined output and status and creates no files; `rec ps` lists
# the processes.
# shellcheck source=lib.bash
source "$TESTLIB"

check_pipes_fork() {
  need_program pipes_fork
  expect_native_differs "$PROGRAMS/pipes_fork"
  record_replay pipes_fork --status 0 --expect-out '^child pid [0-9]+ ppid [0-9]+ got 262144 bytes' \
    --expect-out '^parent pid .* exited ([0-9]+) expected \1 ' -- "$PROGRAMS/pipes_fork"
}

check_fork_tree() {
  need_program fork_tree
  expect_native_differs "$PROGRAMS/fork_tree"
  record_replay fork_tree --status 0 --expect-out '^crashed: pid [0-9]+ killed by signal 11$' \
    --expect-out '^killed: pid [0-9]+ killed by signal 15$' --expect-out '^waitid: pid [0-9]+ code 1 status 11$' \
    --expect-out '^exec-chain 0 ' --expect-out '^orphan pid [0-9]+ reparented yes' \
    --expect-out '^child got SIGUSR1 from ([0-9]+) \(parent \1\)$' --expect-out '^no more children: yes$' \
    -- "$PROGRAMS/fork_tree"
}

check_shared_mem() {
  need_program shared_mem
  expect_native_differs "$PROGRAMS/shared_mem"
  record_replay shared_mem --status 0 --expect-out '^anon round 4 .* ok 1 ' \
    --expect-out '^memfd round 4 .* ok 1 ' -- "$PROGRAMS/shared_mem"
  grep -q ' ok 0 ' shared_mem.rec.out && fail "a shared-memory answer was wrong while recording"
  return 0
}

check_sh_pipeline() {
  local script='for i in 1 2 3; do od -An -N4 -tu4 /dev/urandom; done | sort'
  expect_native_differs sh -c "$script"
  record_replay sh_pipeline --status 0 --expect-out '^ +[0-9]+$' -- sh -c "$script"
}

# Subshells, stderr from several processes, and a pipeline whose last
# command fails.
check_sh_status() {
  local script='date +%N >&2; (echo sub $$; exit 4); echo "sub exited $?"; head -c 8 /dev/urandom | od -An -tx1 | sh -c "cat; exit 7"'
  expect_native_differs sh -c "$script"
  record_replay sh_status --status 7 --expect-out '^sub exited 4$' -- sh -c "$script"
}

check_python_subprocess() {
  local py=/usr/bin/python3  # the system interpreter, not a pyenv shim
  [[ -x $py ]] || py=$(command -v python3)
  local code='import subprocess, os, time
out = subprocess.run(["od", "-An", "-N8", "-tx1", "/dev/urandom"], capture_output=True, text=True).stdout
r = subprocess.run(["sh", "-c", "echo child $$; exit 5"])
print("parent", os.getpid(), "got", out.strip(), "child status", r.returncode, time.time())'
  expect_native_differs "$py" -c "$code"
  record_replay python_subprocess --status 0 --expect-out '^parent [0-9]+ got [0-9a-f ]+ child status 5 ' -- "$py" -c "$code"
}

make_random_dir() {  # make_random_dir DIR: a few files of random bytes
  mkdir -p "$1/sub"
  local i
  for i in 1 2 3 4 5; do head -c $((1000 + RANDOM % 5000)) /dev/urandom >"$1/file$i"; done
  head -c 3000 /dev/urandom >"$1/sub/deep"
}

# tar czf runs gzip as a child; the directory is deleted before replay.
check_tar() {
  make_random_dir data
  record tar --status 0 --expect-out '^ [0-9a-f]{2}( [0-9a-f]{2})*$' --expect-out 'data/sub/deep$' \
    -- sh -c 'tar czf - data | od -An -tx1 | tail -n 3; tar czf - data | tar tvzf - | sort'
  rm -rf data
  replay_compare tar
}

check_xargs() {
  make_random_dir data
  record xargs --status 0 --expect-out '^[0-9a-f]{32} ' -- sh -c 'ls data/file* | xargs -P2 -n1 md5sum | sort'
  rm -rf data
  replay_compare xargs
}

make_project() {  # make_project DIR: a small C project with a Makefile
  mkdir -p "$1"
  local i
  for i in 1 2 3 4; do
    printf 'int f%d(void) { return %d; }\n' "$i" "$((RANDOM % 1000))" >"$1/f$i.c"
  done
  cat >"$1/main.c" <<'C'
#include <stdio.h>
#include <time.h>
int f1(void); int f2(void); int f3(void); int f4(void);
int main(void) { printf("sum %d time %ld\n", f1() + f2() + f3() + f4(), (long)time(NULL)); return 0; }
C
  printf 'OBJS = main.o f1.o f2.o f3.o f4.o\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n%%.o: %%.c\n\t$(CC) -O1 -c -o $@ $<\nclean:\n\trm -f prog $(OBJS)\n' >"$1/Makefile"
}

# make -j2 builds the project and runs it; replay creates no object file.
check_make() {
  make_project proj
  record make --status 0 --expect-out '^sum [0-9]+ time ' -- sh -c 'make -s -j2 -C proj >/dev/null && ./proj/prog'
  make -s -C proj clean >/dev/null
  local before
  before=$(ls -A proj | sort | tr '\n' ' ')
  replay_compare make
  [[ $(ls -A proj | sort | tr '\n' ' ') == "$before" ]] ||
    fail "replay left files behind in proj: $(ls -A proj | tr '\n' ' ')"
  return 0
}

# gcc: driver, cc1, as, collect2, ld. A recorded `gcc -o out` leaves no `out`
# behind on replay, nor temp files.
check_gcc() {
  cat >hello.c <<'C'
#include <stdio.h>
int main(void) { puts("hello"); return 0; }
C
  record gcc --status 0 -- gcc -O1 -o out hello.c
  [[ -x out ]] || fail "gcc did not produce out while recording"
  rm -f out
  replay_compare gcc
  [[ -e out ]] && fail "replay of gcc created the output file 'out'"
  expect_empty_dir "$TMPDIR" "(gcc temp files left by replay)"
}

# A compile error: status 1 and diagnostics on stderr reproduce.
check_gcc_error() {
  printf 'int main(void) { return undefined_thing; }\n' >bad.c
  record_replay gcc_error --status 1 -- gcc -c -o bad.o bad.c
  grep -q 'undefined_thing' gcc_error.rec.err || fail "no diagnostic recorded"
  [[ -e bad.o ]] && fail "bad.o exists"
  return 0
}

# A script run directly: the kernel execs its interpreter. Replay runs the
# interpreter stored in the trace even after the script changed on disk.
check_script_exec() {
  cat >script.sh <<'SH'
#!/bin/sh
echo "script pid $$ random $(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
exec date +%N
SH
  chmod +x script.sh
  expect_native_differs ./script.sh
  record script --status 0 --expect-out '^script pid [0-9]+ random [0-9]+' -- ./script.sh
  printf '#!/bin/sh\necho changed\n' >script.sh
  replay_compare script
}

# rec ps lists every process: pid, parent, command line, exit status, events.
check_ps() {
  need_program fork_tree
  record ps --status 0 -- "$PROGRAMS/fork_tree"
  expect_status 0 "$REC" ps ps.rec
  local f=$T/last.out
  local root
  root=$(sed -n 's/^root pid \([0-9]*\) .*/\1/p' ps.rec.out)
  [[ -n $root ]] || fail "no root pid in the recorded output"
  grep -qw "$root" "$f" || { show "rec ps" "$f"; fail "rec ps does not list the root pid $root"; }
  local pid
  for pid in $(sed -n 's/^\(fork\|vfork\|posix_spawn\|killed\|crashed\|signalled\|zombie\): pid \([0-9]*\) .*/\2/p' ps.rec.out); do
    grep -qw "$pid" "$f" || { show "rec ps" "$f"; fail "rec ps does not list child pid $pid"; }
  done
  grep -q 'spawned' "$f" || fail "rec ps does not show the posix_spawn'd command line"
  grep -q 'exec-chain' "$f" || fail "rec ps does not show the exec'd command line"
  local lines
  lines=$(grep -c . "$f")
  ((lines >= 10)) || { show "rec ps" "$f"; fail "rec ps lists $lines lines, expected at least 10 processes"; }
  # Deaths by signal are visible: SIGTERM (killed) and SIGSEGV (crashed).
  grep -Eqi 'SIGSEGV|signal 11|sig(nal)? *11|\b139\b' "$f" || fail "rec ps does not show the crashed child's signal"
  grep -Eqi 'SIGTERM|signal 15|sig(nal)? *15|\b143\b' "$f" || fail "rec ps does not show the killed child's signal"
}

t pipes_fork check_pipes_fork
t fork_tree check_fork_tree
t shared_mem check_shared_mem
t sh_pipeline check_sh_pipeline
t sh_status check_sh_status
t python_subprocess check_python_subprocess
t tar check_tar
t xargs check_xargs
t make check_make
t gcc check_gcc
t gcc_error check_gcc_error
t script_exec check_script_exec
t ps check_ps
finish
