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

t shared_file check_shared_file
t sqlite_wal check_sqlite_wal
finish
