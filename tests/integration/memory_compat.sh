# Shared memory (docs/shared-memory.md): files mapped MAP_SHARED that the
# program also changes with write(), pwrite() and ftruncate(), remaps after
# truncation, grows under a mapping, maps twice (a memfd written through one
# view and executed through the other) and shares with a child. The recorded
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
    -- "$PROGRAMS/shared_file"
  grep -q DIFFERENT shared_file.rec.out && fail "two views of a shared file disagreed while recording"
  return 0
}

t shared_file check_shared_file
finish
