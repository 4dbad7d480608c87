#!/bin/bash
# Debugging replays with the real gdb (Debian's), in batch mode, through
# `rec replay -d` (rec starts gdb) and `rec replay --gdb-port` (gdb
# connects): breakpoints with ignore counts, conditions and temporary and
# hardware ones, watchpoints forwards and backwards (also the write a
# crashed program made), stepping both ways, threads, a child process,
# detaching and reattaching, checkpoints and events, and a hostile packet
# stream. Each check asserts on gdb's own output.
source "$TESTLIB"

SRC=$(cd "$(dirname "$TESTLIB")/../programs" && pwd)
command -v gdb >/dev/null || fail "gdb is not installed (tools/install-deps.sh installs it)"

# The line number of a `// LINE:name` marker in a test program's source.
line_of() {
  local n
  n=$(grep -n "LINE:$2\$" "$SRC/$1.c" | cut -d: -f1)
  [[ -n $n ]] || fail "internal: no marker LINE:$2 in $1.c"
  echo "$n"
}

# gdb_replay NAME TRACE [REC OPTIONS...] -- GDB COMMANDS...
# `rec replay -d` with gdb in batch mode running the commands (one per
# argument, each an -ex: a command that fails does not end the session).
# gdb's and the program's output go to $T/NAME.out.
gdb_replay() {
  local name=$1 trace=$2
  shift 2
  local -a options=() commands=() verb=(replay -d)
  # `debug` first among the options: start it as `rec debug` (the same).
  if [[ ${1:-} == debug ]]; then
    verb=(debug)
    shift
  fi
  while (($#)) && [[ $1 != -- ]]; do
    options+=("$1")
    shift
  done
  shift
  local c
  for c in "$@"; do commands+=(--gdb-arg=-ex "--gdb-arg=$c"); done
  # shellcheck disable=SC2086 # CHECKPOINTS: options, split
  timeout -k 5 90 "$REC" "${verb[@]}" ${CHECKPOINTS:-} ${options[@]+"${options[@]}"} "$trace" \
    --gdb-arg=-batch --gdb-arg=-nx "${commands[@]}" </dev/null >"$T/$name.out" 2>&1
  echo $? >"$T/$name.status"
}

# expect_in_order FILE REGEX...: lines matching each REGEX, in this order.
expect_in_order() {
  local file=$1
  shift
  local from=1 re n
  for re in "$@"; do
    n=$(tail -n +"$from" "$file" | grep -n -E -m1 -- "$re" | cut -d: -f1)
    if [[ -z $n ]]; then
      show "gdb session" "$file"
      sed -n '1,200p' "$file" | sed 's/^/  | /' | tail -n 60
      fail "no line matching /$re/ (after line $((from - 1)))"
    fi
    from=$((from + n))
  done
  return 0
}

# The N-th recorded "observe V" value of debug_calls.
observed() {
  grep '^observe ' "$T/calls.rec.out" | sed -n "${1}p" | cut -d' ' -f2
}

record_calls() {
  need_program debug_calls
  expect_native_differs "$PROGRAMS/debug_calls"
  record calls --status 3 --expect-out '^observe [0-9]+' -- "$PROGRAMS/debug_calls"
}

check_breakpoints() {
  record_calls
  local third fifth
  third=$(observed 3)
  fifth=$(observed 5)
  gdb_replay bp "$T/calls.rec" -- \
    'break observe' 'ignore 1 2' 'continue' 'print value' 'bt' \
    'info registers rip' 'print $xmm0.v4_int32' 'print $ymm0.v8_int32' \
    'tbreak twice' 'continue' 'hbreak twice' "condition 1 value == $fifth" 'continue' \
    'continue' 'print value' 'info breakpoints' 'delete' 'continue'
  expect_in_order "$T/bp.out" \
    "^Breakpoint 1, observe \\(value=$third\\) at .*debug_calls.c:" \
    "^\\\$1 = $third\$" \
    "^#1 .* main \\(\\) at .*debug_calls.c:$(line_of debug_calls call-observe)\$" \
    '^rip +0x[0-9a-f]+ +0x[0-9a-f]+ <observe>' \
    '^\$2 = \{-?[0-9]+, -?[0-9]+, -?[0-9]+, -?[0-9]+\}$' \
    '^\$3 = \{(-?[0-9]+, ){7}-?[0-9]+\}$' \
    '^Temporary breakpoint 2, twice \(x=(x@entry=)?3\)' \
    '^Hardware assisted breakpoint 3 at' \
    '^Breakpoint 3, twice \(x=(x@entry=)?4\)' \
    "^Breakpoint 1, observe \\(value=$fifth\\)" \
    "^\\\$4 = $fifth\$" \
    '^3 +hw breakpoint +keep y' \
    '^\[Inferior 1 \(process [0-9]+\) exited with code 03\]'
  # The program's own output went by once, as recorded, whatever gdb did.
  diff <(grep -E '^(observe [0-9]+|counter [0-9]+ total [0-9]+)$' "$T/bp.out") "$T/calls.rec.out" >/dev/null ||
    fail "the program's output under gdb differs from the recording's"
}

check_watch_and_refusals() {
  record_calls
  local v1 v2 sum1 sum2
  v1=$(observed 1)
  v2=$(observed 2)
  sum1=$((v1 & 255))
  sum2=$((sum1 + (v2 & 255)))
  gdb_replay watch "$T/calls.rec" -- \
    'break main' 'continue' 'watch counter' 'continue' 'continue' \
    'set var counter = 1' 'print twice(2)' 'print counter' \
    'delete' 'rwatch counter' 'continue' 'delete' 'continue'
  expect_in_order "$T/watch.out" \
    '^Hardware watchpoint 2: counter' \
    '^Old value = 0$' "^New value = $sum1\$" \
    "^observe \\(value=$v1\\) at .*debug_calls.c:$(($(line_of debug_calls observe-add) + 1))" \
    "^Old value = $sum1\$" "^New value = $sum2\$" \
    '^Cannot access memory at address 0x555' \
    '^Cannot access memory at address 0x7ff' \
    "^\\\$1 = $sum2\$" \
    '^Hardware read watchpoint 3: counter' \
    '^Value = ' \
    'exited with code 03'
  # Neither refused change touched the replay: it went on as recorded.
  diff <(grep -E '^(observe [0-9]+|counter [0-9]+ total [0-9]+)$' "$T/watch.out") "$T/calls.rec.out" >/dev/null ||
    fail "the program's output under gdb differs from the recording's"
}

check_reverse_stepping() {
  record_calls
  local v1 v2 call_twice call_observe body
  v1=$(observed 1)
  v2=$(observed 2)
  call_twice=$(line_of debug_calls call-twice)
  call_observe=$(line_of debug_calls call-observe)
  body=$(line_of debug_calls twice-body)
  gdb_replay rev "$T/calls.rec" -- \
    'break observe' 'continue' 'continue' 'reverse-continue' 'print value' \
    'continue' 'print value' \
    'reverse-step' 'reverse-step' 'print x' 'reverse-finish' 'print i' 'reverse-next' \
    'next' 'print $pc' 'stepi' 'stepi' 'reverse-stepi' 'reverse-stepi' 'print $pc' \
    'step' 'print value' 'when'
  expect_in_order "$T/rev.out" \
    "^Breakpoint 1, observe \\(value=$v2\\)" \
    "^Breakpoint 1, observe \\(value=$v1\\)" "^\\\$1 = $v1\$" \
    "^Breakpoint 1, observe \\(value=$v2\\)" "^\\\$2 = $v2\$" \
    "^main \\(\\) at .*debug_calls.c:$call_observe\$" \
    "in twice \\(x=(x@entry=)?1\\) at .*debug_calls.c:$((body + 1))\$" "^\\\$3 = 1\$" \
    "in main \\(\\) at .*debug_calls.c:$call_twice\$" "^\\\$4 = 1\$" \
    "^$call_twice[[:space:]]" \
    "^$call_observe[[:space:]]" \
    '^\$5 = \(void \(\*\)\(\)\) 0x[0-9a-f]+' \
    '^\$6 = \(void \(\*\)\(\)\) 0x[0-9a-f]+' \
    "^Breakpoint 1, observe \\(value=$v2\\)" "^\\\$7 = $v2\$" \
    '^Current event: [0-9]+'
  # reverse-stepi twice undid stepi twice: the same pc.
  local a b
  a=$(grep -E '^\$5 = ' "$T/rev.out" | grep -oE '0x[0-9a-f]+' | head -1)
  b=$(grep -E '^\$6 = ' "$T/rev.out" | grep -oE '0x[0-9a-f]+' | head -1)
  [[ -n $a && $a == "$b" ]] || fail "stepi twice then reverse-stepi twice: pc $a became $b"
}

# Memory the kernel wrote in an emulated syscall (getrandom into a local)
# triggers a write watchpoint: forwards right after the syscall, backwards
# on its syscall instruction, with the recorded values.
check_kernel_writes() {
  record_calls
  local v1 v2
  v1=$(observed 1)
  v2=$(observed 2)
  gdb_replay kwrite "$T/calls.rec" -- \
    "break debug_calls.c:$(line_of debug_calls call-twice)" 'continue' 'print r' 'watch -l r' \
    'continue' 'print $pc' 'continue' 'reverse-continue' 'print $pc'
  expect_in_order "$T/kwrite.out" \
    "^\\\$1 = $v1\$" '^Hardware watchpoint 2: -location r' \
    "^Old value = $v1\$" "^New value = $v2\$" 'in (__GI___)?getrandom ' \
    '^Breakpoint 1, main \(\)' \
    "^Old value = $v2\$" "^New value = $v1\$" 'in (__GI___)?getrandom '
  # Backwards it stops on the syscall instruction (2 bytes), not after it.
  local after before
  after=$(grep -E '^\$2 = ' "$T/kwrite.out" | grep -oE '0x[0-9a-f]+' | head -1)
  before=$(grep -E '^\$3 = ' "$T/kwrite.out" | grep -oE '0x[0-9a-f]+' | head -1)
  [[ -n $after && $((after - before)) == 2 ]] ||
    fail "the backward stop ($before) is not the syscall instruction before $after"
}

check_crash() {
  need_program debug_crash
  expect_native_differs "$PROGRAMS/debug_crash"
  record crash --status 139 --expect-out '^seed [0-9]+' -- "$PROGRAMS/debug_crash"
  local write crash
  write=$(line_of debug_crash corrupting-write)
  crash=$(line_of debug_crash crash)
  gdb_replay crash "$T/crash.rec" -- \
    'continue' 'watch -l records[1].target' 'reverse-continue' 'print name' 'print i' \
    'bt' 'continue' 'continue' 'continue'
  expect_in_order "$T/crash.out" \
    '^Program received signal SIGSEGV, Segmentation fault\.' \
    "debug_crash.c:$crash\$" \
    '^Hardware watchpoint 1: -location records\[1\].target' \
    '^Old value = \(long \*\) 0x2165726f6d2d726f$' \
    "^0x[0-9a-f]+ in set_name \\(.*\\) at .*debug_crash.c:$write\$" \
    '^\$1 = .*"sixteen-or-more!"' '^\$2 = 15$' \
    "^#1 .* main \\(\\) at .*debug_crash.c:$(line_of debug_crash set-long-name)\$" \
    '^Program received signal SIGSEGV' \
    '^Program terminated with signal SIGSEGV, Segmentation fault\.'
  # -e: straight to the end, where it crashed.
  gdb_replay end "$T/crash.rec" debug -e -- 'bt 1' 'when'
  expect_in_order "$T/end.out" "^#0 .* main \\(\\) at .*debug_crash.c:$crash\$" \
    '^Current event: [0-9]+'
}

check_threads() {
  need_program debug_race
  expect_native_differs "$PROGRAMS/debug_race"
  record race --expect-out '^writes [0-9]+ [0-9]+, last writer [12]$' -- "$PROGRAMS/debug_race"
  local last report
  last=$(sed -n 's/^writes .*, last writer \([12]\)$/\1/p' "$T/race.rec.out")
  report=$(line_of debug_race report)
  gdb_replay threads "$T/race.rec" -- \
    "break debug_race.c:$report" 'continue' 'print shared' 'watch shared' 'reverse-continue' \
    'print me' 'bt 1' 'info threads' 'print writes[me]' 'continue' 'reverse-continue' \
    'print writes[me]'
  expect_in_order "$T/threads.out" \
    "^Breakpoint 1, main \\(\\) at .*debug_race.c:$report\$" \
    "^\\\$1 = $last\$" \
    '^Thread [0-9]+ hit Hardware watchpoint 2: shared' \
    "^\\\$2 = $last\$" \
    "^#0 +writer \\(arg=0x$last\\) at .*debug_race.c:$(line_of debug_race racy-write)\$" \
    '^\* [0-9]+ +Thread [0-9]+\.[0-9]+ +writer'
  # Forward over that write and back again: going back from the watchpoint
  # stop crosses the same write, not the one before it.
  local before again
  before=$(sed -n 's/^\$3 = //p' "$T/threads.out")
  again=$(sed -n 's/^\$4 = //p' "$T/threads.out")
  [[ -n $before && $before == "$again" ]] ||
    fail "reverse-continue from a watchpoint stop skipped its write (writes[me] $before, then $again)"
}

check_process_tree() {
  need_program debug_tree
  expect_native_differs "$PROGRAMS/debug_tree"
  record tree --expect-out '^child [0-9]+ value [0-9]+$' -- "$PROGRAMS/debug_tree"
  local child value
  read -r child value < <(sed -n 's/^child \([0-9]*\) value \([0-9]*\)$/\1 \2/p' "$T/tree.rec.out")
  "$REC" ps "$T/tree.rec" | grep -qw "$child" || fail "rec ps does not list the child $child"
  gdb_replay tree "$T/tree.rec" -p "$child" -- \
    'break child_work' 'continue' 'print value' 'info threads' 'continue'
  # gdb says "exited normally" for 0, else the code in octal.
  local code=$((value % 1000 % 100)) exited="exited normally"
  ((code == 0)) || exited="exited with code $(printf '0%o' "$code")"
  expect_in_order "$T/tree.out" \
    "^Breakpoint 1, child_work \\(value=$value\\)" "^\\\$1 = $value\$" \
    "^\\* 1 +Thread $child\\.$child " "$exited"
  # --onfork: from the fork, before the child ran anything of its own.
  gdb_replay onfork "$T/tree.rec" --onfork "$child" -- 'info threads' 'break child_work' \
    'continue' 'print value'
  expect_in_order "$T/onfork.out" "Thread $child\\.$child" "^\\\$1 = $value\$"
  # A process the recording does not have.
  expect_status 64 "$REC" replay -d -p 999999 "$T/tree.rec"
  expect_one_line_stderr
  expect_status 64 "$REC" replay -g 3 "$T/tree.rec"
  expect_one_line_stderr
}

# `rec replay --gdb-port`: one gdb connects, stops somewhere and detaches;
# another connects and finds the replay where the first left it.
check_detach_reattach() {
  record_calls
  local v2 v3
  v2=$(observed 2)
  v3=$(observed 3)
  "$REC" replay --gdb-port 0 "$T/calls.rec" >"$T/server.out" 2>"$T/server.err" &
  local server=$!
  local port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/.*gdb server on 127.0.0.1:\([0-9]*\).*/\1/p' "$T/server.err")
    [[ -n $port ]] && break
    sleep 0.05
  done
  [[ -n $port ]] || { kill "$server"; fail "rec did not say where it listens"; }
  timeout 60 gdb -batch -nx -ex "set remotetimeout 60" -ex "target extended-remote 127.0.0.1:$port" \
    -ex 'break observe' -ex 'continue' -ex 'continue' -ex 'print value' -ex 'detach' \
    </dev/null >"$T/first.out" 2>&1
  timeout 60 gdb -batch -nx -ex "set remotetimeout 60" -ex "target extended-remote 127.0.0.1:$port" \
    -ex 'print value' -ex 'break observe' -ex 'continue' -ex 'print value' -ex 'kill' \
    </dev/null >"$T/second.out" 2>&1
  local status=0
  timeout 20 tail --pid="$server" -f /dev/null || { kill "$server"; status=1; }
  wait "$server" || status=$?
  expect_in_order "$T/first.out" "^\\\$1 = $v2\$" '^\[Inferior 1 \(process [0-9]+\) detached\]'
  expect_in_order "$T/second.out" "^\\\$1 = $v2\$" "^Breakpoint 1, observe \\(value=$v3\\)" \
    "^\\\$2 = $v3\$"
  ((status == 0)) || { show "server stderr" "$T/server.err"; fail "rec --gdb-port ended with $status"; }
}

check_checkpoints_and_events() {
  record_calls
  local v2
  v2=$(observed 2)
  gdb_replay cp "$T/calls.rec" -- \
    'break observe' 'continue' 'continue' 'checkpoint' 'continue' 'continue' \
    'restart 1' 'print value' 'goto 12' 'when' 'monitor checkpoints'
  expect_in_order "$T/cp.out" "^Checkpoint 1 at " "^\\\$1 = $v2\$" '^Current event: 12$' \
    '^1 event [0-9]+'
  gdb_replay ev "$T/calls.rec" -g 12 -- 'when'
  expect_in_order "$T/ev.out" '^Current event: 12$'
}

# Malformed and hostile packets get error replies; the server keeps
# answering and ends cleanly when told.
check_hostile_packets() {
  record_calls
  "$REC" replay --gdb-port 0 "$T/calls.rec" >"$T/server.out" 2>"$T/server.err" &
  local server=$!
  local port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/.*gdb server on 127.0.0.1:\([0-9]*\).*/\1/p' "$T/server.err")
    [[ -n $port ]] && break
    sleep 0.05
  done
  [[ -n $port ]] || { kill "$server"; fail "rec did not say where it listens"; }
  python3 - "$port" >"$T/hostile.out" 2>&1 <<'EOF'
import socket, sys

s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
buf = b""

def frame(payload):
    return b"$" + payload + b"#" + b"%02x" % (sum(payload) & 0xff)

def reply():
    """The next packet's payload (acking it)."""
    global buf
    while True:
        start = buf.find(b"$")
        end = buf.find(b"#", start)
        if start >= 0 and end >= 0 and len(buf) >= end + 3:
            payload = buf[start + 1:end]
            buf = buf[end + 3:]
            s.sendall(b"+")
            return payload
        data = s.recv(65536)
        if not data:
            raise SystemExit("connection closed")
        buf += data

def ask(payload):
    s.sendall(frame(payload))
    return reply()

def expect(payload, check, what):
    got = ask(payload)
    ok = check(got)
    print(("ok  " if ok else "BAD ") + what + ": " + repr(got[:60]))
    if not ok:
        raise SystemExit(1)

# A wrong checksum is refused with '-'.
s.sendall(b"$g#00")
ack = s.recv(1)
print("ok  bad checksum nacked" if ack == b"-" else "BAD bad checksum: %r" % ack)
if ack != b"-":
    raise SystemExit(1)
# A packet far beyond PacketSize is dropped, not buffered.
s.sendall(b"$" + b"A" * 200000 + b"#00")
ack = s.recv(1)
print("ok  oversized packet nacked" if ack == b"-" else "BAD oversized: %r" % ack)
# Garbage between packets, an unfinished escape, binary noise.
s.sendall(bytes(range(256)).replace(b"$", b"").replace(b"-", b"").replace(b"+", b"").replace(b"\x03", b""))
expect(b"?", lambda r: r.startswith(b"T05"), "still answers ?")
expect(b"m" + b"zz,4", lambda r: r.startswith(b"E"), "bad hex address")
expect(b"mffffffffffffffffff,4", lambda r: r.startswith(b"E"), "address too long")
expect(b"m0,4", lambda r: r.startswith(b"E"), "unmapped memory")
expect(b"m7fffffffe000,ffffffff", lambda r: r.startswith(b"E") or len(r) < 70000, "huge read bounded")
expect(b"M1000,4:01020304", lambda r: r.startswith(b"E."), "memory write refused")
expect(b"X1000,2:}", lambda r: r.startswith(b"E."), "binary write refused")
expect(b"P10=0000000000000000", lambda r: r.startswith(b"E."), "register write refused")
expect(b"G" + b"00" * 10, lambda r: r.startswith(b"E."), "register block write refused")
expect(b"p9999", lambda r: r.startswith(b"E"), "unknown register")
expect(b"Z0,zz,1", lambda r: r.startswith(b"E"), "bad breakpoint")
expect(b"Z9,1000,1", lambda r: r == b"", "unknown breakpoint kind")
expect(b"Z2,1000,0", lambda r: r.startswith(b"E"), "zero-length watch")
expect(b"Z2,1000,1;Z2,2000,8;Z2,3000,8;Z2,4000,8", lambda r: r in (b"OK", b"E01"), "watch with junk")
expect(b"Z2,5000,40", lambda r: r.startswith(b"E"), "watch too long for debug registers")
expect(b"qXfer:features:read:target.xml:zz,10", lambda r: r.startswith(b"E"), "bad xfer range")
expect(b"qXfer:features:read:nosuch.xml:0,10", lambda r: r.startswith(b"E"), "unknown annex")
expect(b"qXfer:nosuch:read::0,10", lambda r: r == b"", "unknown object")
expect(b"qXfer:features:read:target.xml:ffffffff,10", lambda r: r == b"l", "offset past the end")
expect(b"vFile:open:" + b"/nonexistent".hex().encode() + b",0,0", lambda r: r.startswith(b"F-1"), "missing file")
expect(b"vFile:open:" + b"/etc/hostname".hex().encode() + b",1,0", lambda r: r.startswith(b"F-1"), "write open refused")
expect(b"vFile:pread:99,10,0", lambda r: r.startswith(b"F-1"), "bad file descriptor")
expect(b"vFile:open:zz,0,0", lambda r: r.startswith(b"E"), "bad file name hex")
expect(b"vCont;x", lambda r: r.startswith(b"E"), "bad vCont action")
expect(b"vCont;s:pzz.zz", lambda r: r.startswith(b"E"), "bad thread id")
expect(b"Hgzz", lambda r: r.startswith(b"E"), "bad H thread")
expect(b"Tzz", lambda r: r.startswith(b"E"), "bad T thread")
expect(b"qRcmd," + b"nosuch".hex().encode(), lambda r: r.startswith(b"E."), "unknown monitor command")
expect(b"qRcmd,zz", lambda r: r.startswith(b"E"), "bad monitor hex")
expect(b"vRun;;" + b"banana".hex().encode(), lambda r: r.startswith(b"E."), "bad run argument")
expect(b"vRun;;" + b"c42".hex().encode(), lambda r: r.startswith(b"E."), "no such checkpoint")
expect(b"QPassSignals:zz", lambda r: r.startswith(b"E"), "bad signal list")
expect(b"x" * 100, lambda r: r == b"", "unknown packet")
expect(b"?", lambda r: r.startswith(b"T05"), "still answers ? at the end")
expect(b"g", lambda r: len(r) > 100, "registers still readable")
expect(b"vKill;1", lambda r: r == b"OK", "kill")
s.close()
EOF
  local client=$?
  local status=0
  timeout 20 tail --pid="$server" -f /dev/null || { kill "$server"; status=1; }
  wait "$server" || status=$?
  sed 's/^/  | /' "$T/hostile.out"
  ((client == 0)) || fail "the server answered a hostile packet wrongly"
  ((status == 0)) || { show "server stderr" "$T/server.err"; fail "the server ended with $status"; }
  grep -q "internal error" "$T/server.err" && fail "the server reported an internal error"
  return 0
}

# Mappings the syscall buffer made (docs/syscall-buffer.md "File mmaps":
# private, non-executable pieces of a file rec stored) are real mappings of
# the stored file in the replay: gdb's `info proc mappings` names the file
# at each piece's offset, and its library list (read from ld.so's r_debug,
# which the buffered pieces of libc hold) has libc. The file on disk is
# rewritten before the replay.
check_buffered_mappings() {
  need_program mapped_pieces
  head -c 20000 /dev/urandom >dbg.bin
  record pieces --status 0 --expect-out '^2 pieces: ' -- "$PROGRAMS/mapped_pieces" "$T/dbg.bin"
  head -c 20000 /dev/urandom >dbg.bin
  local n
  n=$("$REC" dump "$T/pieces.rec" | grep -cE '\] mmap\(.*dbg\.bin\] \[syscall buffer, no stop\]')
  ((n >= 5)) || fail "only $n mmaps of the file went through the buffer"
  # at round 2's munmap: its pieces, buffered
  gdb_replay mappings "$T/pieces.rec" -- 'break munmap' 'continue' 'continue' \
    'info proc mappings' 'info sharedlibrary'
  expect_in_order "$T/mappings.out" \
    ' 0x1000 +0x1000 +r--p +/.*dbg\.bin' ' 0x2000 +rw-p +/.*dbg\.bin' \
    '^0x[0-9a-f]+ +0x[0-9a-f]+ +Yes .*libc\.so'
}

t breakpoints check_breakpoints
t buffered_mappings check_buffered_mappings
t watch_and_refusals check_watch_and_refusals
t reverse_stepping check_reverse_stepping
t kernel_writes check_kernel_writes
t crash check_crash
t threads check_threads
t process_tree check_process_tree
t detach_reattach check_detach_reattach
t checkpoints_and_events check_checkpoints_and_events
t hostile_packets check_hostile_packets

# The same reverse execution when it starts from forked copies of the
# replay (a checkpoint at every event, few kept: copies of copies, thinned
# as it goes, threads re-created), not from the program's start.
check_from_checkpoints() {
  local CHECKPOINTS="--checkpoint-interval 0 --max-checkpoints 6"
  check_reverse_stepping
  check_crash
  check_threads
  gdb_replay stats "$T/race.rec" -- 'break writer' 'continue' 'continue' 'reverse-continue' \
    'reverse-continue' 'monitor stats'
  expect_in_order "$T/stats.out" \
    '^[1-6] automatic checkpoint\(s\), [0-9]+ KiB of memory of their own; [0-9]+ made, [1-9][0-9]* restored'
}
t from_checkpoints check_from_checkpoints
finish
