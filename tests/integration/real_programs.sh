# Issue 3 (and issue 4 for the ones that start processes): real programs.
# Each is recorded and replayed; stdout, stderr and status must match.
# shellcheck source=lib.bash
source "$TESTLIB"

check_date() {
  expect_native_differs date +%s.%N
  record_replay date --status 0 --expect-out '^[0-9]+\.[0-9]{9}$' -- date +%s.%N
}

check_date_plain() {
  record_replay date_plain --status 0 -- date
}

check_ls() {
  # ls -l --time-style=full-iso shows atimes/mtimes that change; /usr/bin is
  # large enough to exercise getdents and many statx calls.
  record_replay ls --status 0 --expect-out '^total ' -- ls -l --time-style=full-iso /usr/bin
}

# ls of a directory whose contents are random and then change before replay.
check_ls_changing() {
  mkdir d
  local i
  for i in $(seq 20); do head -c $((RANDOM % 1000)) /dev/urandom >"d/f$RANDOM$i"; done
  expect_native_differs sh -c 'ls -li --full-time d; touch d/*'
  record ls2 --status 0 --expect-out '^total ' -- ls -lai --full-time d
  rm -rf d
  replay_compare ls2
}

check_cat() {
  head -c 4096 /dev/urandom | od -An -tx1 >random.txt
  record cat --status 0 --expect-out '^ [0-9a-f]{2} ' -- cat random.txt
  rm -f random.txt
  replay_compare cat
}

check_sort() {
  local i
  for ((i = 0; i < 500; i++)); do echo "$RANDOM $RANDOM"; done >lines.txt
  record sort --status 0 --expect-out '^[0-9]+ [0-9]+$' -- sort -n lines.txt
  rm -f lines.txt
  replay_compare sort
}

check_od() {
  expect_native_differs od -An -tx1 -N32 /dev/urandom
  record_replay od --status 0 --expect-out '^ [0-9a-f]{2}( [0-9a-f]{2}){15}$' -- od -An -tx1 -N32 /dev/urandom
}

check_python() {
  local py=/usr/bin/python3  # the system interpreter, not a pyenv shim
  [[ -x $py ]] || py=$(command -v python3) || fail "python3 not found"
  local code='import random,time,os; print(random.random(), time.time(), os.getpid())'
  expect_native_differs "$py" -c "$code"
  record_replay python --status 0 --expect-out '^0\.[0-9]+ [0-9]+\.[0-9]+ [0-9]+$' -- "$py" -c "$code"
}

check_perl() {
  local code='print rand(), " ", time, " ", $$, "\n"'
  expect_native_differs perl -e "$code"
  record_replay perl --status 0 --expect-out '^0?\.?[0-9e-]+ [0-9]+ [0-9]+$' -- perl -e "$code"
}

# Issue 4: sh runs `date` as a child process.
check_sh() {
  expect_native_differs sh -c 'echo $$; date +%N'
  record_replay sh --status 0 --expect-out '^[0-9]{9}$' -- sh -c 'echo $$; date +%N'
}

# A shell script with a non-zero exit and stderr output.
check_sh_status() {
  record_replay sh_status --status 3 -- sh -c 'echo out $$; echo err $RANDOM >&2; exit 3'
}

t date check_date
t date_plain check_date_plain
t ls check_ls
t ls_changing check_ls_changing
t cat check_cat
t sort check_sort
t od check_od
t python check_python
t perl check_perl
t sh check_sh
t sh_status check_sh_status
finish
