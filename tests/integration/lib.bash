# Helpers for rec's record-then-replay integration tests.
#
# Each tests/integration/*.sh sources this file (`source "$TESTLIB"`); ctest
# sets REC (the rec binary), PROGRAMS (the built tests/programs) and WORK (a
# scratch directory). A script runs one check per `t NAME FUNCTION [ARGS]`:
# the function runs in a subshell inside a fresh directory $T (with
# TMPDIR=$T/tmp), calls `fail "why"` (which ends it) or returns normally, and
# `t` prints "PASS NAME" or "FAIL NAME: why". `finish` prints a summary and
# exits non-zero when any check failed.
#
# Checks:
#   record_replay NAME [OPTIONS] -- CMD [ARGS...]
#       records CMD into $T/NAME.rec, replays it, and fails with a diff unless
#       stdout bytes, stderr bytes and exit status are identical. OPTIONS:
#         --stdin FILE           stdin of the recording (default /dev/null;
#                                replay always gets /dev/null)
#         --status N             the recorded status must be N
#         --expect-out REGEX     recorded stdout must have a line matching
#                                REGEX (guards against an empty recording)
#         --record-env K=V       extra environment for the recording
#         --replay-cwd DIR       replay from DIR
#         --replay-env-clear     replay under `env -i` ...
#         --replay-env K=V       ... plus these variables
#         --between CMD          shell command run between record and replay
#       Outputs stay in $T/NAME.{rec,replay}.{out,err,status}.
#   record NAME [OPTIONS] -- CMD ...   and   replay_compare NAME [OPTIONS]
#       the two halves of record_replay, for checks that act in between.
#   expect_native_differs CMD [ARGS...]
#       runs CMD natively twice; fails unless the outputs differ (proves that a
#       replay that merely re-ran the program would be caught).
#   expect_status N CMD [ARGS...]
#       runs CMD (under a timeout), fails unless it exits N; its stdout and
#       stderr are left in $T/last.out and $T/last.err.
#   expect_one_line_stderr      the last expect_status printed exactly one
#                               non-empty line on stderr
#   fail "message"

set -u

: "${REC:?REC must name the rec binary}"
: "${PROGRAMS:?PROGRAMS must name the directory of built test programs}"
: "${WORK:=/tmp/rec-itest}"
REC_TIMEOUT=${REC_TIMEOUT:-60}   # seconds allowed for each rec invocation

REC=$(readlink -f "$REC" 2>/dev/null || echo "$REC")
PROGRAMS=$(readlink -f "$PROGRAMS" 2>/dev/null || echo "$PROGRAMS")
SCRIPT_NAME=$(basename "${0%.sh}")
SCRATCH="$WORK/$SCRIPT_NAME"
rm -rf -- "$SCRATCH"
mkdir -p -- "$SCRATCH" || { echo "FAIL $SCRIPT_NAME: cannot create $SCRATCH"; exit 1; }

PASSED=0
FAILED=0
FAILED_NAMES=()
CURRENT="$SCRIPT_NAME"

# Ends the current check with a FAIL line. Outside a check it ends the script.
fail() {
  echo "FAIL $CURRENT: $*"
  exit 1
}

# Prints a line of context for the current check (not a verdict).
note() {
  echo "  [$CURRENT] $*"
}

# t NAME FUNCTION [ARGS...]: runs one check in a subshell in a fresh $T.
t() {
  local name=$1
  shift
  local dir="$SCRATCH/$name"
  rm -rf -- "$dir"
  mkdir -p -- "$dir/tmp"
  local out status
  out=$(
    CURRENT=$name
    export T=$dir
    export TMPDIR="$dir/tmp"
    cd "$dir" || exit 1
    "$@" 2>&1
  )
  status=$?
  [[ -n $out ]] && printf '%s\n' "$out"
  if ((status == 0)); then
    echo "PASS $name"
    PASSED=$((PASSED + 1))
  else
    if ! grep -q "^FAIL $name:" <<<"$out"; then
      echo "FAIL $name: check exited with status $status"
    fi
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
  fi
}

finish() {
  echo "== $SCRIPT_NAME: $PASSED passed, $FAILED failed${FAILED_NAMES[*]:+ (${FAILED_NAMES[*]})}"
  ((FAILED == 0))
}

# Shows a file to help understand a failure (first lines, non-printing escaped).
show() {
  local label=$1 file=$2
  [[ -s $file ]] || { echo "  --- $label: (empty)"; return; }
  echo "  --- $label ($(wc -c <"$file") bytes):"
  head -c 3000 -- "$file" | cat -v | head -n 25 | sed 's/^/  | /'
}

# Internal: parses the options shared by record / replay_compare.
_parse_opts() {
  OPT_STDIN=/dev/null OPT_STATUS="" OPT_REPLAY_CWD="" OPT_ENV_CLEAR=0 OPT_BETWEEN=""
  OPT_EXPECT=() OPT_RECORD_ENV=() OPT_REPLAY_ENV=() OPT_CMD=()
  while (($#)); do
    case $1 in
      --stdin) OPT_STDIN=$2; shift 2 ;;
      --status) OPT_STATUS=$2; shift 2 ;;
      --expect-out) OPT_EXPECT+=("$2"); shift 2 ;;
      --record-env) OPT_RECORD_ENV+=("$2"); shift 2 ;;
      --replay-cwd) OPT_REPLAY_CWD=$2; shift 2 ;;
      --replay-env-clear) OPT_ENV_CLEAR=1; shift ;;
      --replay-env) OPT_REPLAY_ENV+=("$2"); shift 2 ;;
      --between) OPT_BETWEEN=$2; shift 2 ;;
      --) shift; OPT_CMD=("$@"); return 0 ;;
      *) fail "internal: unknown option '$1'" ;;
    esac
  done
}

# record NAME [OPTIONS] -- CMD [ARGS...]
record() {
  local name=$1
  shift
  _parse_opts "$@"
  ((${#OPT_CMD[@]})) || fail "internal: record $name without a command"
  local base="$T/$name"
  rm -f -- "$base.rec"
  env ${OPT_RECORD_ENV[@]+"${OPT_RECORD_ENV[@]}"} timeout -k 5 "$REC_TIMEOUT" \
    "$REC" record -o "$base.rec" -- "${OPT_CMD[@]}" \
    <"$OPT_STDIN" >"$base.rec.out" 2>"$base.rec.err"
  echo $? >"$base.rec.status"
  local st
  st=$(<"$base.rec.status")
  if ((st == 124 || st == 137)); then
    show "record stdout" "$base.rec.out"
    show "record stderr" "$base.rec.err"
    fail "record of '${OPT_CMD[*]}' timed out after ${REC_TIMEOUT}s"
  fi
  if [[ ! -s $base.rec ]]; then
    show "record stderr" "$base.rec.err"
    fail "record of '${OPT_CMD[*]}' (status $st) wrote no trace $base.rec"
  fi
  if [[ -n $OPT_STATUS && $st != "$OPT_STATUS" ]]; then
    show "record stdout" "$base.rec.out"
    show "record stderr" "$base.rec.err"
    fail "record of '${OPT_CMD[*]}' exited $st, expected $OPT_STATUS"
  fi
  local re
  for re in ${OPT_EXPECT[@]+"${OPT_EXPECT[@]}"}; do
    if ! grep -Eqa -- "$re" "$base.rec.out"; then
      show "record stdout" "$base.rec.out"
      show "record stderr" "$base.rec.err"
      fail "recorded stdout of '${OPT_CMD[*]}' has no line matching /$re/"
    fi
  done
  return 0
}

# replay_compare NAME [OPTIONS]: replays $T/NAME.rec and compares with the
# recording's stdout, stderr and status.
replay_compare() {
  local name=$1
  shift
  _parse_opts "$@"
  local base="$T/$name"
  if [[ -n $OPT_BETWEEN ]]; then
    bash -c "$OPT_BETWEEN" || fail "between-step '$OPT_BETWEEN' failed"
  fi
  local -a prefix=()
  if ((OPT_ENV_CLEAR)); then
    prefix=(env -i ${OPT_REPLAY_ENV[@]+"${OPT_REPLAY_ENV[@]}"})
  elif ((${#OPT_REPLAY_ENV[@]})); then
    prefix=(env "${OPT_REPLAY_ENV[@]}")
  fi
  (
    if [[ -n $OPT_REPLAY_CWD ]]; then cd "$OPT_REPLAY_CWD" || exit 99; fi
    exec timeout -k 5 "$REC_TIMEOUT" ${prefix[@]+"${prefix[@]}"} "$REC" replay "$base.rec" \
      </dev/null >"$base.replay.out" 2>"$base.replay.err"
  )
  echo $? >"$base.replay.status"
  local rst st
  rst=$(<"$base.rec.status")
  st=$(<"$base.replay.status")
  local problems=()
  ((st == 124 || st == 137)) && problems+=("replay timed out after ${REC_TIMEOUT}s")
  ((st == 75)) && problems+=("replay reported divergence (75)")
  [[ $st != "$rst" ]] && problems+=("exit status differs: recorded $rst, replayed $st")
  cmp -s -- "$base.rec.out" "$base.replay.out" || problems+=("stdout differs")
  cmp -s -- "$base.rec.err" "$base.replay.err" || problems+=("stderr differs")
  if ((${#problems[@]})); then
    local IFS=';'
    echo "  --- '${OPT_CMD[*]:-$name}': ${problems[*]}"
    if ! cmp -s -- "$base.rec.out" "$base.replay.out"; then
      echo "  --- stdout diff (recorded vs replayed):"
      diff -a -u -- "$base.rec.out" "$base.replay.out" | head -n 30 | cat -v | sed 's/^/  | /'
    fi
    if ! cmp -s -- "$base.rec.err" "$base.replay.err"; then
      echo "  --- stderr diff (recorded vs replayed):"
      diff -a -u -- "$base.rec.err" "$base.replay.err" | head -n 30 | cat -v | sed 's/^/  | /'
    fi
    fail "${problems[*]}"
  fi
  return 0
}

# record_replay NAME [OPTIONS] -- CMD [ARGS...]
record_replay() {
  local name=$1
  shift
  record "$name" "$@"
  replay_compare "$name" "$@"
}

# Runs CMD natively twice (stdout+stderr+status) and fails if the runs agree.
expect_native_differs() {
  local a b
  a=$(timeout 20 "$@" 2>&1 </dev/null; echo "status $?")
  b=$(timeout 20 "$@" 2>&1 </dev/null; echo "status $?")
  if [[ $a == "$b" ]]; then
    fail "two native runs of '$*' printed the same; the test would not catch a replay that re-ran it"
  fi
  return 0
}

# expect_status N CMD [ARGS...]
expect_status() {
  local want=$1
  shift
  timeout -k 5 "$REC_TIMEOUT" "$@" </dev/null >"$T/last.out" 2>"$T/last.err"
  local st=$?
  if [[ $st != "$want" ]]; then
    show "stdout" "$T/last.out"
    show "stderr" "$T/last.err"
    fail "'$*' exited $st, expected $want"
  fi
  return 0
}

# The last expect_status wrote exactly one non-empty line on stderr.
expect_one_line_stderr() {
  local n
  n=$(grep -c . "$T/last.err")
  if [[ $n != 1 ]]; then
    show "stderr" "$T/last.err"
    fail "expected exactly one line on stderr, got $n"
  fi
  return 0
}

# Fails unless DIR contains nothing.
expect_empty_dir() {
  local dir=$1 what=${2:-}
  if [[ -n $(ls -A -- "$dir" 2>/dev/null) ]]; then
    ls -lA -- "$dir" | sed 's/^/  | /'
    fail "$dir is not empty${what:+ $what}"
  fi
  return 0
}

# Waits up to SECONDS for FILE to exist.
wait_for_file() {
  local file=$1 seconds=${2:-10} i
  for ((i = 0; i < seconds * 20; i++)); do
    [[ -s $file ]] && return 0
    sleep 0.05
  done
  fail "timed out waiting for $file"
}

# Checks that a test program exists.
need_program() {
  [[ -x $PROGRAMS/$1 ]] || fail "test program $PROGRAMS/$1 is not built"
}
