// Which buffered calls may block (docs/syscall-buffer.md "Blocking"): the
// futex row's rule, as the syscall table states it and as the buffer's
// policy carries it.
#include <linux/futex.h>
#include <sys/syscall.h>

#include <catch2/catch.hpp>

#include "syscall_buffer.h"
#include "syscall_table.h"

using namespace rec;

namespace {
std::array<uint64_t, 6> op(int64_t futexOp) {
  return {0x1000, static_cast<uint64_t>(futexOp), 0, 0, 0, 0};
}
}  // namespace

TEST_CASE("futex waits may block in the buffer, wakes never, other operations are not buffered") {
  const sys::SyscallRow* futex = sys::findSyscall(SYS_futex);
  REQUIRE(futex);
  REQUIRE((futex->flags & sys::kBuffered));
  for (int64_t flags : {0, FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME,
                        FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME}) {
    CHECK(sysbuf::mayBlockInBuffer(*futex, op(FUTEX_WAIT | flags), false));
    CHECK(sysbuf::mayBlockInBuffer(*futex, op(FUTEX_WAIT_BITSET | flags), false));
    CHECK_FALSE(sysbuf::mayBlockInBuffer(*futex, op(FUTEX_WAKE | flags), false));
    CHECK_FALSE(sysbuf::mayBlockInBuffer(*futex, op(FUTEX_WAKE_BITSET | flags), false));
    // rec patches a site only for a call its row's rule allows: every form
    for (int64_t allowed : {FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_WAKE, FUTEX_WAKE_BITSET})
      CHECK(sys::bufferRuleAllows(*futex, op(allowed | flags)));
  }
  CHECK_FALSE(sys::bufferRuleAllows(*futex, op(FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG)));
  for (int64_t other : {FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP, FUTEX_LOCK_PI,
                        FUTEX_WAIT_REQUEUE_PI, FUTEX_UNLOCK_PI})
    CHECK_FALSE(sysbuf::mayBlockInBuffer(*futex, op(other), true));
  // The rule names each operation once, wakes before waits.
  const sys::BufferRule& rule = futex->buffer;
  CHECK(rule.oneOf);
  CHECK(rule.blockingFrom == 2);
  CHECK(rule.count == 4);
  CHECK(rule.ignoreBits == (FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME));
}

TEST_CASE("pipe and socket reads and writes may block only with REC_SYSBUF_BLOCKING=desched") {
  for (long nr : {SYS_read, SYS_write, SYS_sendto, SYS_recvfrom}) {
    const sys::SyscallRow* row = sys::findSyscall(nr);
    REQUIRE(row);
    CHECK(sysbuf::mayBlockInBuffer(*row, {3, 0x1000, 16, 0, 0, 0}, true));
    CHECK_FALSE(sysbuf::mayBlockInBuffer(*row, {3, 0x1000, 16, 0, 0, 0}, false));
  }
  // rows without a blocking rule never do
  for (long nr : {SYS_close, SYS_openat, SYS_lseek, SYS_fstat})
    CHECK_FALSE(sysbuf::mayBlockInBuffer(*sys::findSyscall(nr), {3, 0, 0, 0, 0, 0}, true));
}
