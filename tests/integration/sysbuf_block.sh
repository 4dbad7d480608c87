# Reads and writes on pipes and sockets blocking inside the syscall buffer
# (docs/syscall-buffer.md "Blocking in the buffer"): a process that may
# execute beside others sleeps in the buffer instead of making a traced
# call. Each check records tests/programs/sysbuf_block.c (values differ on
# every run), replays, compares byte for byte, and where the mode is on
# (parallel recording and the buffer on: the serial and nobuffer variants
# run the same checks without it) counts in `rec dump` that the calls were
# buffered.
# shellcheck source=lib.bash
source "$TESTLIB"

BLOCK_ENV=REC_SYSBUF_BLOCK_STREAMS=${REC_SYSBUF_BLOCK_STREAMS:-on}
block_mode_on() {
  [[ ${REC_PARALLEL:-on} != off && ${REC_SYSCALL_BUFFER:-on} != off && $BLOCK_ENV != *=off ]]
}

# calls NAME: "buffered traced" counts of the program's 8-byte
# read/write/send/recv in the trace's dump.
calls() {
  "$REC" dump "$T/$1.rec" >"$T/$1.dump" 2>&1 || fail "rec dump failed: $(head -3 "$T/$1.dump")"
  grep -E '\] (read|write|recvfrom|sendto)\([0-9]+, 0x[0-9a-f]+, 8[,)]' "$T/$1.dump" |
    awk '{ if (/no stop/) b++; else t++ } END { printf "%d %d\n", b, t }'
}

run_mode() {
  local name=$1 pattern=$2
  shift 2
  need_program sysbuf_block
  expect_native_differs "$PROGRAMS/sysbuf_block" "$@"
  record_replay "$name" --status 0 --record-env "$BLOCK_ENV" --expect-out "$pattern" \
    -- "$PROGRAMS/sysbuf_block" "$@"
}

# 400 rounds: 1600 reads and writes; with the mode on nearly all of them
# buffered, the blocking reads included (a handful traced at the start,
# before the child's buffer and the sites exist).
check_pingpong() {
  run_mode pingpong '^pingpong 400 rounds hash [0-9a-f]{16} child 0$' pingpong 400
  if block_mode_on; then
    read -r buffered traced < <(calls pingpong)
    note "buffered $buffered, traced $traced"
    ((buffered >= 1500 && traced <= 40)) || fail "buffered $buffered, traced $traced of 1600"
  fi
}

check_socket() {
  run_mode socket '^socket 400 rounds hash [0-9a-f]{16} child 0$' socket 400
  if block_mode_on; then
    read -r buffered traced < <(calls socket)
    note "buffered $buffered, traced $traced"
    ((buffered >= 1500 && traced <= 40)) || fail "buffered $buffered, traced $traced of 1600"
  fi
}

# SIGALRM while the reader sleeps in the buffer: with SA_RESTART the read
# goes on and gets the value; without, EINTR after the handler, then the
# read again. The recording shows the signal at the exit of the traced call
# the interrupted one became.
check_restart() {
  run_mode restart '^restart: read 8 value [0-9a-f]{16} eintr 0 handled 1 child 0$' restart
  grep -q 'SIGALRM injected at syscall exit' < <("$REC" dump "$T/restart.rec") ||
    fail "no SIGALRM at a syscall exit in the dump"
}

check_eintr() {
  run_mode eintr '^eintr: read 8 value [0-9a-f]{16} eintr 1 handled 1 child 0$' eintr
  if block_mode_on; then
    read -r buffered traced < <(calls eintr)
    ((buffered >= 1)) || fail "the read after the signal was not buffered ($buffered, $traced)"
  fi
}

check_kill() {
  run_mode kill '^kill: read 8 value [0-9a-f]{16} eintr 1 handled 1 child 0$' kill
}

check_eof() {
  run_mode eof '^eof: 5 values hash [0-9a-f]{16} last 0 child 0$' eof
  if block_mode_on; then
    read -r buffered traced < <(calls eof)
    note "buffered $buffered, traced $traced"
    ((buffered >= 6)) || fail "the reads (and EOF) were not buffered: $buffered, traced $traced"
  fi
}

check_epipe() {
  run_mode epipe '^epipe: [0-9]+ writes then -1 errno EPIPE sigpipe 1 child [0-9]+ pid [0-9]+$' epipe
}

t pingpong check_pingpong
t socket check_socket
t restart check_restart
t eintr check_eintr
t kill check_kill
t eof check_eof
t epipe check_epipe
finish
