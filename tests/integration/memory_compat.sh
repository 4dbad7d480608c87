# Shared memory (docs/shared-memory.md): files mapped MAP_SHARED that the
# program also changes with write(), pwrite() and ftruncate(), remaps after
# truncation, grows under a mapping, maps twice (a memfd written through one
# view and executed through the other), shares with a child, copies its own
# memory with process_vm_writev; and SQLite
# in WAL mode, whose processes share the -shm index. The recorded
# output must be what the program sees natively (every view agrees), and the
# replay must match it byte for byte.
# shellcheck source=lib.bash
source "$TESTLIB"

check_shared_file() {
  need_program shared_file
  expect_native_differs "$PROGRAMS/shared_file"
  record_replay shared_file --status 0 \
    --expect-out '^1 pread sees: map [0-9a-f]{8}$' \
    --expect-out '^2 remapped: second [0-9a-f]{8}$' \
    --expect-out '^3 grown page: [0-9a-f]{8} \(same\)$' \
    --expect-out '^4 jit round 2: [0-9a-f]{8} \(same\)$' \
    --expect-out '^5 mapping: child [0-9]+ [0-9a-f]{8} \(same\)$' \
    --expect-out '^6 private view: [0-9a-f]{8} \(same\)$' \
    --expect-out '^7 process_vm_writev 8: [0-9a-f]{8} [0-9a-f]{8}, process_vm_readv 8: same$' \
    -- "$PROGRAMS/shared_file"
  grep -q DIFFERENT shared_file.rec.out && fail "two views of a shared file disagreed while recording"
  return 0
}

# SQLite in WAL mode: every connection maps the database's -shm index
# MAP_SHARED and takes turns through it and through fcntl locks; three
# writer processes at once, then a reader. Rows hold random bytes.
check_sqlite_wal() {
  command -v sqlite3 >/dev/null || fail "sqlite3 is not installed (tools/install-deps.sh installs it)"
  cat >wal.sh <<'SCRIPT'
db=$PWD/wal.db
rm -f "$db" "$db-wal" "$db-shm"
sqlite3 "$db" "PRAGMA journal_mode=WAL; CREATE TABLE t(who, x);" >/dev/null
for who in a b c; do
  sqlite3 -cmd ".timeout 5000" "$db" \
    "INSERT INTO t VALUES('$who', hex(randomblob(4))); INSERT INTO t VALUES('$who', hex(randomblob(4)));" &
done
wait
sqlite3 -cmd ".timeout 5000" "$db" "SELECT 'rows', count(*) FROM t; SELECT who, x FROM t ORDER BY rowid;"
SCRIPT
  expect_native_differs sh wal.sh
  record_replay wal --status 0 --expect-out '^rows\|6$' --expect-out '^c\|[0-9A-F]{8}$' -- sh wal.sh
}

# Huge and sparse files mapped whole (a 64 GiB hole, a 1 TiB memfd, a 2 GiB
# memfd mapped twice, a page of a 20 GiB memfd): rec stores their data, not
# their holes, so it stays small in memory and the trace stays small; a hole
# punched under a live mapping reads zeros on replay too.
check_sparse_file() {
  need_program sparse_file
  expect_native_differs "$PROGRAMS/sparse_file"
  cat >rss.py <<'PY'
import resource, subprocess, sys
status = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:  # the largest peak RSS of rec and the program, in KiB
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(status)
PY
  cat >rec-rss <<SCRIPT
#!/bin/sh
exec python3 "$T/rss.py" "$T/peak-rss.\$\$" "$REC" "\$@"
SCRIPT
  chmod +x rec-rss
  REC="$T/rec-rss" record_replay sparse_file --status 0 \
    --expect-out '^1 hole: punched under the mapping 0{16}$' \
    --expect-out '^1 hole: punched 0{16}, kept [0-9a-f]{16} \(same\), end [0-9a-f]{16} \(same\)$' \
    --expect-out '^2 terabyte memfd: [0-9a-f]{16} seen by 2 of 2 readable mappings$' \
    --expect-out '^3 two views: [0-9a-f]{16} \(same\)$' \
    --expect-out '^4 executable page: [0-9a-f]{16} \(same\)$' \
    -- "$PROGRAMS/sparse_file"
  local f kib
  for f in peak-rss.*; do
    kib=$(<"$f")
    ((kib < 200 * 1024)) || fail "rec or the program peaked at $kib KiB RSS (bound: 200 MiB)"
  done
  local size
  size=$(stat -c %s sparse_file.rec)
  ((size < 8 * 1024 * 1024)) || fail "the trace has $size bytes: holes were stored"
}

# Adjacent mappings of one open file merged by the kernel, then moved or
# shrunk across the old boundary with mremap: replay must merge them too.
check_merged_mappings() {
  need_program merged_mappings
  expect_native_differs "$PROGRAMS/merged_mappings"
  record_replay merged_mappings --status 0 \
    --expect-out '^1 grown: [0-9a-f]{16} [0-9a-f]{16}$' \
    --expect-out '^2 shrunk: [0-9a-f]{16} [0-9a-f]{16}$' \
    --expect-out '^3 middle: [0-9a-f]{16} [0-9a-f]{16}$' \
    -- "$PROGRAMS/merged_mappings"
}

# Writes into a child's memory and its own through /proc/PID/mem
# (pwrite, pwritev, lseek+write): replay must store them where they landed.
check_proc_mem_write() {
  need_program proc_mem_write
  expect_native_differs "$PROGRAMS/proc_mem_write"
  record_replay proc_mem_write --status 0 \
    --expect-out '^parent wrote [0-9a-f]{16} [0-9a-f]{16} [0-9a-f]{16}$' \
    --expect-out '^own memory [0-9a-f]{16} \(same\)$' \
    -- "$PROGRAMS/proc_mem_write"
  local wrote sees
  wrote=$(sed -n 's/^parent wrote //p' proc_mem_write.rec.out)
  sees=$(sed -n 's/^child sees //p' proc_mem_write.rec.out)
  [[ -n $wrote && $wrote == "$sees" ]] || fail "the child saw '$sees', its parent wrote '$wrote'"
}

# A child that kills itself with SIGKILL after storing into memory its
# parent shares, with no event in between: replay must run it up to that
# kill before it dies.
check_kill_self() {
  need_program kill_self
  expect_native_differs "$PROGRAMS/kill_self"
  record_replay kill_self --status 0 \
    --expect-out '^child killed itself, stored [0-9a-f]{16}$' -- "$PROGRAMS/kill_self"
}

# process_vm_writev into a child (another recorded process): the write is
# recorded as the child's memory, which replay writes itself; the child
# prints what it found there (a nonce, different per run).
check_vm_write_child() {
  need_program vm_write
  expect_native_differs "$PROGRAMS/vm_write"
  record_replay vm_write --status 0 \
    --expect-out '^process_vm_writev wrote [0-9]+ bytes \(ok\)$' \
    --expect-out '^child.s mailbox: nonce [0-9]+$' \
    --expect-out '^parent.s mailbox: empty; child exited 0$' \
    -- "$PROGRAMS/vm_write"
}

# A file mapped the way ld.so maps a library: a reserving mmap of the fd,
# then MAP_FIXED pieces of the same fd inside it (executable, read-only,
# writable private), twice through new fds of the same file, then again
# after the program appended to the file. rec stores the file once and
# takes later mappings of it unchanged from what it stored; the pieces must
# show the recorded bytes on replay though the file on disk was rewritten
# in between, and the program's own change must show in the last round.
check_mapped_pieces() {
  need_program mapped_pieces
  head -c 20000 /dev/urandom >pieces.bin
  expect_native_differs "$PROGRAMS/mapped_pieces" "$T/pieces.bin"
  head -c 20000 /dev/urandom >pieces.bin
  record_replay mapped_pieces --status 0 \
    --expect-out '^1 pieces: [0-9a-f]{16} [0-9a-f]{16} [0-9a-f]{16} size 20000$' \
    --expect-out '^3 pieces: [0-9a-f]{16} [0-9a-f]{16} [0-9a-f]{16} size 24096$' \
    --between "head -c 20000 /dev/urandom >'$T/pieces.bin'" \
    -- "$PROGRAMS/mapped_pieces" "$T/pieces.bin"
  local one two three
  one=$(sed -n 's/^1 pieces: //p' mapped_pieces.rec.out)
  two=$(sed -n 's/^2 pieces: //p' mapped_pieces.rec.out)
  three=$(sed -n 's/^3 pieces: //p' mapped_pieces.rec.out)
  [[ $one == "$two" ]] || fail "the same file mapped again showed other bytes: '$one' then '$two'"
  [[ ${one% size*} != "${three% size*}" ]] || fail "the appended file showed its old bytes: '$three'"
  # The first two pieces did not change with the append: only the last one.
  [[ ${one:0:33} == "${three:0:33}" ]] || fail "unchanged pieces differ after the append: '$one', '$three'"
}

t shared_file check_shared_file
t mapped_pieces check_mapped_pieces
t vm_write_child check_vm_write_child
t kill_self check_kill_self
t proc_mem_write check_proc_mem_write
t merged_mappings check_merged_mappings
t sparse_file check_sparse_file
t sqlite_wal check_sqlite_wal
finish
