#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#include <catch2/catch.hpp>
#include <array>
#include <cstring>
#include <memory>
#include <sys/syscall.h>

#include "code_patch.h"
#include "syscall_buffer.h"
#include "syscall_table.h"

using rec::buildTrampoline;
using rec::jumpPatchable;
using rec::PointEntry;
using rec::relocatable;

TEST_CASE("points: which instructions take a jump, which can be copied", "[patch]") {
  // cmpb $0,0x10(%rip): seven bytes, a jump fits over it alone.
  const uint8_t cmp[] = {0x80, 0x3d, 0x10, 0, 0, 0, 0x00, 0x90};
  CHECK(jumpPatchable(cmp, 0x1000));
  CHECK(relocatable(cmp, 0x1000));
  // add $1,%rax: four bytes, too short for a jump, fine to copy.
  const uint8_t add[] = {0x48, 0x83, 0xc0, 0x01, 0x90, 0x90, 0x90, 0x90};
  CHECK_FALSE(jumpPatchable(add, 0x1000));
  CHECK(relocatable(add, 0x1000));
  // jmp . : the two-byte loop gcc emits for for(;;){}.
  const uint8_t self[] = {0xeb, 0xfe};
  CHECK_FALSE(jumpPatchable(self, 0x1000));
  CHECK(relocatable(self, 0x1000));
  // A call pushes its own address; a syscall and int3 trap: never copied.
  const uint8_t call[] = {0xe8, 0, 0, 0, 0, 0x90};
  CHECK_FALSE(jumpPatchable(call, 0x2000));
  CHECK_FALSE(relocatable(call, 0x2000));
  const uint8_t sys[] = {0x0f, 0x05, 0x90, 0x90, 0x90, 0x90};
  CHECK_FALSE(relocatable(sys, 0x2000));
  const uint8_t trap[] = {0xcc, 0x90};
  CHECK_FALSE(relocatable(trap, 0x2000));
  // loop . : rel8 only, but its copy is rewritten; loope depends on ZF: not.
  const uint8_t loopSelf[] = {0xe2, 0xfe};
  CHECK(relocatable(loopSelf, 0x2000));
  const uint8_t loope[] = {0xe1, 0xfe};
  CHECK_FALSE(relocatable(loope, 0x2000));
}

// The test runs a trampoline in this very process: a stub sets every
// register to a known value, switches to a stack of its own and jumps to
// the check, as a debug register stop would have rec do at X.
namespace {
extern "C" {
uint64_t gEntry;        // where the stub jumps (the check)
uint64_t gSavedRsp;     // the test's rsp while the stub runs
uint64_t gStackTop;     // rsp the stub gives the checked code
uint64_t gCounter;      // rdi at entry
uint64_t gRdiAtReturn;  // rdi when the copied code returned
void runChecked();
}
// runChecked: rax..r15 = 1..15 by number except rsp and rdi (the loop
// counter) and r11 (the jump target); flags: only IF.
asm(R"(
  .text
  .globl runChecked
runChecked:
  push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15
  mov %rsp, gSavedRsp(%rip)
  mov gStackTop(%rip), %rsp
  lea 1f(%rip), %rax
  push %rax                # the copied code's ret comes back to 1:
  push $0x202
  popfq
  mov $1, %eax
  mov $2, %ecx
  mov $3, %edx
  mov $4, %ebx
  mov $5, %ebp
  mov $6, %esi
  mov gCounter(%rip), %rdi
  mov $8, %r8d
  mov $9, %r9d
  mov $10, %r10d
  mov gEntry(%rip), %r11
  mov $12, %r12d
  mov $13, %r13d
  mov $14, %r14d
  mov $15, %r15d
  jmp *%r11
1:
  mov %rdi, gRdiAtReturn(%rip)
  mov gSavedRsp(%rip), %rsp
  pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx
  ret
)");

sigjmp_buf gTrapped;
volatile uint64_t gTrapRdi;
volatile uint64_t gTrapRip;
volatile uint64_t gTrapRcx;
void onTrap(int, siginfo_t*, void* context) {
  auto* uc = static_cast<ucontext_t*>(context);
  gTrapRdi = static_cast<uint64_t>(uc->uc_mcontext.gregs[REG_RDI]);
  gTrapRcx = static_cast<uint64_t>(uc->uc_mcontext.gregs[REG_RCX]);
  gTrapRip = static_cast<uint64_t>(uc->uc_mcontext.gregs[REG_RIP]);
  siglongjmp(gTrapped, 1);
}

// What rec does with a fault in one of the check's loads: move on to its miss.
const std::vector<rec::Trampoline::FaultSite>* gFaultSites;
int gFaults;
void onFault(int, siginfo_t*, void* context) {
  auto* uc = static_cast<ucontext_t*>(context);
  uint64_t rip = static_cast<uint64_t>(uc->uc_mcontext.gregs[REG_RIP]);
  for (const auto& site : *gFaultSites)
    if (rip >= site.start && rip < site.end) {
      uc->uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(site.missIp);
      ++gFaults;
      return;
    }
  std::abort();  // a fault the check did not expect
}

user_regs_struct stubRegisters(uint64_t rdi, uint64_t rsp, uint64_t entry) {
  user_regs_struct r{};
  r.rax = 1, r.rcx = 2, r.rdx = 3, r.rbx = 4, r.rbp = 5, r.rsi = 6, r.rdi = rdi;
  r.r8 = 8, r.r9 = 9, r.r10 = 10, r.r11 = entry, r.r12 = 12, r.r13 = 13, r.r14 = 14, r.r15 = 15;
  r.rsp = rsp;
  r.eflags = 0x202;
  return r;
}
}  // namespace

TEST_CASE("a trampoline checks every pass of a copied loop and never writes the program's stack",
          "[patch]") {
  // X: dec %rdi ; jnz X ; ret  -- a tight loop no jump fits into.
  const uint8_t body[] = {0x48, 0xff, 0xcf, 0x75, 0xfb, 0xc3};
  void* mem = mmap(nullptr, 4 * 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  auto* code = static_cast<uint8_t*>(mem);
  std::memcpy(code, body, sizeof body);
  uint64_t ip = reinterpret_cast<uint64_t>(code);
  uint64_t page = ip + 4096;
  static uint64_t stack[8192];
  uint64_t top = reinterpret_cast<uint64_t>(&stack[8192 - 16]);
  gStackTop = top;
  uint64_t rspAtX = top - 8;  // after the stub pushed its return address
  uint64_t checkIp = page;    // no code before X: the check starts the page

  auto install = [&](uint64_t matchRdi, int offByOne = -1,
                     std::span<const rec::MemoryCheck> words = {}) {
    user_regs_struct expected = stubRegisters(matchRdi, rspAtX, checkIp);
    if (offByOne >= 0) reinterpret_cast<unsigned long long*>(&expected)[offByOne] += 1;
    auto t = buildTrampoline(page, ip, std::span(body, sizeof body), ip, PointEntry::DebugRegister,
                             expected, words);
    REQUIRE(t.has_value());
    REQUIRE(t->checkIp == checkIp);
    REQUIRE(t->code.size() <= 4096);
    std::memcpy(reinterpret_cast<void*>(page), t->code.data(), t->code.size());
    std::memcpy(reinterpret_cast<void*>(page + 4096), t->data.data(), t->data.size());
    return *t;
  };

  SECTION("no pass matches: the copy runs the loop to its end and returns") {
    install(1000);
    // Everything below the stack pointer the code sees, red zone and beyond
    // (but the word the stub's own push of the flags used).
    for (int i = 0; i < 256; ++i) stack[8192 - 16 - 3 - i] = 0x5a5a5a5a5a5a5a5aull + i;
    gEntry = checkIp;
    gCounter = 10;
    runChecked();
    CHECK(gRdiAtReturn == 0);
    for (int i = 0; i < 256; ++i) CHECK(stack[8192 - 16 - 3 - i] == 0x5a5a5a5a5a5a5a5aull + i);
  }

  SECTION("one general register off by one: no pass traps, whichever it is") {
    // Every general register but rip and r11 (the stub's jump target,
    // which is also expected) and the segment/orig fields; rsp is the full
    // check's, the others the pre-check's.
    for (auto field : {&user_regs_struct::rsp, &user_regs_struct::rax, &user_regs_struct::rcx, &user_regs_struct::rdx,
                       &user_regs_struct::rbx, &user_regs_struct::rbp, &user_regs_struct::rsi,
                       &user_regs_struct::rdi, &user_regs_struct::r8, &user_regs_struct::r9,
                       &user_regs_struct::r10, &user_regs_struct::r12, &user_regs_struct::r13,
                       &user_regs_struct::r14, &user_regs_struct::r15}) {
      user_regs_struct probe{};
      int index = static_cast<int>(&(probe.*field) - reinterpret_cast<unsigned long long*>(&probe));
      install(4, index);
      gEntry = checkIp;
      gCounter = 10;
      runChecked();  // a trap here would kill the test binary with SIGTRAP
      CHECK(gRdiAtReturn == 0);
    }
  }

  SECTION("memory words: a matching word traps, a differing or unmapped one does not") {
    static volatile uint64_t word = 77;
    struct sigaction sa {
    }, oldTrap{}, oldSegv{};
    sa.sa_sigaction = onTrap;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, &oldTrap);
    auto trapsWith = [&](uint64_t address, uint64_t value) {
      rec::MemoryCheck w[] = {{address, value}};
      static rec::Trampoline held;
      held = install(4, -1, w);
      gFaultSites = &held.loads;
      gEntry = checkIp;
      gCounter = 10;
      gTrapRip = 0;
      if (sigsetjmp(gTrapped, 1) == 0) runChecked();
      return gTrapRip != 0;
    };
    CHECK(trapsWith(reinterpret_cast<uint64_t>(&word), 77));
    CHECK(gTrapRcx == 2);
    CHECK_FALSE(trapsWith(reinterpret_cast<uint64_t>(&word), 78));
    CHECK(gRdiAtReturn == 0);
    // An unmapped word: rec moves the faulting task to the load's miss path,
    // as this handler does.
    struct sigaction segv {};
    segv.sa_sigaction = onFault;
    segv.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &segv, &oldSegv);
    gFaults = 0;
    CHECK_FALSE(trapsWith(8, 0));
    CHECK(gFaults > 0);
    CHECK(gRdiAtReturn == 0);
    sigaction(SIGSEGV, &oldSegv, nullptr);
    sigaction(SIGTRAP, &oldTrap, nullptr);
  }

  SECTION("the pass whose registers match traps, with the program's registers") {
    auto t = install(4);
    struct sigaction sa {
    }, old{};
    sa.sa_sigaction = onTrap;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, &old);
    gEntry = checkIp;
    gCounter = 10;
    gTrapRdi = 0;
    if (sigsetjmp(gTrapped, 1) == 0) {
      runChecked();
      FAIL("no pass trapped");
    }
    sigaction(SIGTRAP, &old, nullptr);
    CHECK(gTrapRdi == 4);
    CHECK(gTrapRcx == 2);  // the flag-free pre-check borrows rcx and gives it back
    CHECK(gTrapRip == t.trapIp);
    // The copied instructions map back to the original ones.
    CHECK(t.originalOf(t.resumeIp) == ip);
  }
  munmap(mem, 4 * 4096);
}

TEST_CASE("a copied `loop .` counts rcx down and is checked at every pass", "[patch]") {
  // X: loop X ; mov %rcx,%rdi ; ret  -- the stub enters with rcx = 2.
  const uint8_t body[] = {0xe2, 0xfe, 0x48, 0x89, 0xcf, 0xc3};
  void* mem = mmap(nullptr, 4 * 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  std::memcpy(mem, body, sizeof body);
  uint64_t ip = reinterpret_cast<uint64_t>(mem);
  uint64_t page = ip + 4096;
  static uint64_t stack[8192];
  gStackTop = reinterpret_cast<uint64_t>(&stack[8192 - 16]);
  auto install = [&](uint64_t matchRcx) {
    user_regs_struct expected = stubRegisters(77, gStackTop - 8, page);
    expected.rcx = matchRcx;
    auto t = buildTrampoline(page, ip, std::span(body, sizeof body), ip, PointEntry::DebugRegister,
                             expected);
    REQUIRE(t.has_value());
    std::memcpy(reinterpret_cast<void*>(page), t->code.data(), t->code.size());
    std::memcpy(reinterpret_cast<void*>(page + 4096), t->data.data(), t->data.size());
    return *t;
  };
  gEntry = page;
  gCounter = 77;
  SECTION("no pass matches: rcx reaches 0 and the code after the loop runs") {
    install(5);
    gRdiAtReturn = 1;
    runChecked();
    CHECK(gRdiAtReturn == 0);
  }
  SECTION("the second pass (rcx 1) matches") {
    auto t = install(1);
    struct sigaction sa {
    }, old{};
    sa.sa_sigaction = onTrap;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, &old);
    gTrapRcx = 0;
    if (sigsetjmp(gTrapped, 1) == 0) {
      runChecked();
      FAIL("no pass trapped");
    }
    sigaction(SIGTRAP, &old, nullptr);
    CHECK(gTrapRcx == 1);
    CHECK(gTrapRip == t.trapIp);
  }
  munmap(mem, 4 * 4096);
}

TEST_CASE("a jump entry copies the one instruction it covers", "[patch]") {
  // mov 0x10(%rip),%eax ; ret
  const uint8_t body[] = {0x8b, 0x05, 0x10, 0, 0, 0, 0xc3};
  uint64_t ip = 0x400000;
  auto t = buildTrampoline(0x401000, ip, std::span(body, sizeof body), ip, PointEntry::Jump,
                           user_regs_struct{});
  REQUIRE(t.has_value());
  REQUIRE(t->jump.size() == 6u);
  CHECK(t->jump[0] == 0xe9);
  CHECK(t->jump[5] == 0x90);
  CHECK(t->originalOf(t->resumeIp) == ip);
  // Too short for a jump.
  const uint8_t shortOne[] = {0x48, 0xff, 0xcf, 0xc3};
  CHECK_FALSE(buildTrampoline(0x401000, ip, std::span(shortOne, sizeof shortOne), ip,
                              PointEntry::Jump, user_regs_struct{})
                  .has_value());
}

TEST_CASE("a point in an inner loop gets the inner loop copied though its outer loop calls",
          "[patch]") {
  // outer: call outer+0x40 ; mov $500,%ecx ; inner: dec %ecx ; X: jne inner ; jmp outer
  const uint8_t body[] = {0xe8, 0x3b, 0,    0, 0,  // call (cannot run from a copy)
                          0xb9, 0xf4, 0x01, 0, 0,  // mov $500,%ecx
                          0xff, 0xc9,              // inner: dec %ecx
                          0x75, 0xfc,              // X: jne inner
                          0xeb, 0xf0};             // jmp outer
  const uint64_t codeStart = 0x400000, inner = codeStart + 10, ip = codeStart + 12;
  auto t = buildTrampoline(0x401000, ip, std::span(body, sizeof body), codeStart,
                           PointEntry::DebugRegister, user_regs_struct{});
  REQUIRE(t.has_value());
  // The inner loop runs in the copy: its dec comes before the check, so each
  // round is checked without leaving the trampoline.
  bool decCopied = false;
  for (auto [copy, original] : t->moved) decCopied |= original == inner && copy < t->checkIp;
  CHECK(decCopied);
  CHECK(t->originalOf(t->resumeIp) == ip);
}

TEST_CASE("syscall buffer: which sites load the syscall's number", "[patch][sysbuf]") {
  using rec::sysbuf::kSetsNumberWindow;
  using rec::sysbuf::setsNumberBefore;
  auto window = [](std::initializer_list<uint8_t> tail) {
    uint8_t code[kSetsNumberWindow];
    std::memset(code, 0x90, sizeof code);
    std::copy(tail.begin(), tail.end(), code + sizeof code - tail.size());
    return std::to_array(code);
  };
  auto check = [](const std::array<uint8_t, kSetsNumberWindow>& a, long nr) {
    uint8_t code[kSetsNumberWindow];
    std::copy(a.begin(), a.end(), code);
    return setsNumberBefore(code, nr);
  };
  // mov $0x101,%eax right before
  CHECK(check(window({0xb8, 0x01, 0x01, 0, 0}), 257));
  CHECK_FALSE(check(window({0xb8, 0x01, 0x01, 0, 0}), 2));
  // xor %eax,%eax for read
  CHECK(check(window({0x31, 0xc0}), 0));
  CHECK_FALSE(check(window({0x31, 0xc0}), 1));
  // glibc's __open_nocancel: mov $0x101,%eax; mov %rdi,%rsi; mov $-100,%edi
  CHECK(check(window({0xb8, 0x01, 0x01, 0, 0, 0x48, 0x89, 0xfe, 0xbf, 0x9c, 0xff, 0xff, 0xff}), 257));
  // mov $0x101,%eax; mov %rcx,%r10; xor %r10d,%r10d
  CHECK(check(window({0xb8, 0x01, 0x01, 0, 0, 0x49, 0x89, 0xca, 0x45, 0x31, 0xd2}), 257));
  // ... but not when eax is written after it (mov %edi,%eax), or by anything
  // not known to leave it alone (add $1,%rsi), or from memory (mov (%rdi),%eax)
  CHECK_FALSE(check(window({0xb8, 0x01, 0x01, 0, 0, 0x89, 0xf8}), 257));
  CHECK_FALSE(check(window({0xb8, 0x01, 0x01, 0, 0, 0x48, 0x83, 0xc6, 0x01}), 257));
  CHECK_FALSE(check(window({0xb8, 0x01, 0x01, 0, 0, 0x8b, 0x07}), 257));
  // mov $imm,%r8d (41 b8) is not mov $imm,%eax
  CHECK_FALSE(check(window({0x41, 0xb8, 0x01, 0x01, 0, 0}), 257));
}

TEST_CASE("padding after a `syscall; ret` site: nops of every length and int3, nothing else",
          "[patch]") {
  const uint8_t nop1[] = {0x90}, int3[] = {0xcc}, nop2[] = {0x66, 0x90},
                nopl5[] = {0x0f, 0x1f, 0x44, 0x00, 0x00},
                nopw10[] = {0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00};
  CHECK(rec::paddingLength(nop1, 0x1000) == 1);
  CHECK(rec::paddingLength(int3, 0x1000) == 1);
  CHECK(rec::paddingLength(nop2, 0x1000) == 2);
  CHECK(rec::paddingLength(nopl5, 0x1000) == 5);
  CHECK(rec::paddingLength(nopw10, 0x1000) == 10);
  const uint8_t push[] = {0x55}, mov[] = {0x48, 0x89, 0xe5}, cut[] = {0x0f, 0x1f, 0x44};
  CHECK(rec::paddingLength(push, 0x1000) == 0);
  CHECK(rec::paddingLength(mov, 0x1000) == 0);
  CHECK(rec::paddingLength(cut, 0x1000) == 0);  // a nop cut short is not one
}

// Every row the syscall table marks buffered gets a policy: none is left
// out for want of room for its argument rule or an output kind the
// buffer's code does not know (it would silently stay traced).
TEST_CASE("syscall buffer: every buffered row has a policy") {
  auto header = std::make_unique<rec_sysbuf_header>();
  std::memset(header.get(), 0, sizeof *header);
  rec::sysbuf::fillPolicy(*header);
  int rows = 0;
  for (const rec::sys::SyscallRow& row : rec::sys::allSyscalls()) {
    if (!(row.flags & rec::sys::kBuffered)) continue;
    INFO(row.name);
    REQUIRE(row.number < REC_SYSBUF_MAX_NR);
    CHECK(header->policy[row.number].args == row.argCount + 1);
    ++rows;
  }
  CHECK(rows >= 28);  // (28 when this was written)
  const rec_sysbuf_policy& readv = header->policy[SYS_readv];
  CHECK(readv.out_kind == REC_SYSBUF_OUT_IOVEC);
  CHECK(readv.fd_check == REC_SYSBUF_FD_READ_STREAM);
  CHECK(header->policy[SYS_writev].out_kind == REC_SYSBUF_IN_IOVEC);
  CHECK(header->policy[SYS_writev].fd_check == REC_SYSBUF_FD_WRITE_STREAM);
  CHECK(header->policy[SYS_pwritev2].fd_check == REC_SYSBUF_FD_WRITE);
  CHECK(header->policy[SYS_preadv].fd_check == REC_SYSBUF_FD_READ);
  // executed rows replay's buffer code makes again
  CHECK(header->policy[SYS_mmap].fd_check == REC_SYSBUF_MMAP_ANON);
  CHECK(header->policy[SYS_brk].fd_check == REC_SYSBUF_BRK);
  CHECK(header->policy[SYS_set_tid_address].fd_check == REC_SYSBUF_AGAIN);
}

TEST_CASE("a loop too tight for a jump over one instruction takes one over several, guarded",
          "[patch]") {
  // The thread pool's loop (bench/threads.c at -O2) and what follows it:
  //   X0: mulsd %xmm2,%xmm0 ; addsd %xmm1,%xmm0 ; sub $1,%eax ; jne X0
  //       mov %rbx,%rdi ; movsd %xmm0,8(%rsp) ; call ...
  const uint8_t body[] = {0xf2, 0x0f, 0x59, 0xc2, 0xf2, 0x0f, 0x58, 0xc1, 0x83, 0xe8,
                          0x01, 0x75, 0xf3, 0x48, 0x89, 0xdf, 0xf2, 0x0f, 0x11, 0x44,
                          0x24, 0x08, 0xe8, 0xed, 0xfd, 0xff, 0xff};
  const uint64_t start = 0x401268;
  auto build = [&](uint64_t ip) {
    return buildTrampoline(0x402000, ip, std::span(body, sizeof body), start,
                           PointEntry::DebugRegister, user_regs_struct{}, {}, {}, {}, true);
  };
  struct Case {
    uint64_t ip;
    size_t jumpSize;
    std::vector<uint64_t> guards;
  };
  for (const Case& c : {Case{start, 8, {start + 4}}, Case{start + 4, 7, {start + 8}},
                        Case{start + 8, 5, {start + 11}}, Case{start + 11, 5, {start + 13}}}) {
    auto t = build(c.ip);
    REQUIRE(t.has_value());
    CHECK(t->jump.size() == c.jumpSize);
    CHECK(t->jump[0] == 0xe9);
    CHECK(t->guards == c.guards);
    for (uint64_t g : t->guards) CHECK(t->copyOf(g).has_value());
    // The padding after the jump traps if ever run.
    for (size_t i = 5; i < t->jump.size(); ++i) CHECK(t->jump[i] == 0xcc);
  }
  // Without jumpOver: no jump, as before.
  auto plain = buildTrampoline(0x402000, start, std::span(body, sizeof body), start,
                               PointEntry::DebugRegister, user_regs_struct{});
  REQUIRE(plain.has_value());
  CHECK(plain->jump.empty());
  CHECK(plain->guards.empty());
  // A call within the jump's 5 bytes cannot be copied: no jump.
  //   X: dec %ecx ; jne X ; call ...
  const uint8_t withCall[] = {0xff, 0xc9, 0x75, 0xfc, 0xe8, 0, 0, 0, 0, 0xc3};
  auto t = buildTrampoline(0x402000, 0x401002, std::span(withCall, sizeof withCall), 0x401000,
                           PointEntry::DebugRegister, user_regs_struct{}, {}, {}, {}, true);
  REQUIRE(t.has_value());
  CHECK(t->jump.empty());
  CHECK(t->guards.empty());
  // A branch of the copy into the middle of a covered instruction: no jump.
  //   dec %ecx ; X: jne (into the mov's second byte) ; mov $1,%eax ; ret
  const uint8_t midway[] = {0xff, 0xc9, 0x75, 0x01, 0xb8, 0x01, 0, 0, 0, 0xc3};
  t = buildTrampoline(0x402000, 0x401002, std::span(midway, sizeof midway), 0x401000,
                      PointEntry::DebugRegister, user_regs_struct{}, {}, {}, {}, true);
  REQUIRE(t.has_value());
  CHECK(t->jump.empty());
}

TEST_CASE("a loop entered by a jump over several instructions runs checked from its copy",
          "[patch]") {
  // +0: dec %rdi ; X = +3: jnz +0 ; +5: mov %rdi,%rax ; +8: ret
  const uint8_t body[] = {0x48, 0xff, 0xcf, 0x75, 0xfb, 0x48, 0x89, 0xf8, 0xc3};
  void* mem = mmap(nullptr, 4 * 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  auto* code = static_cast<uint8_t*>(mem);
  const uint64_t start = reinterpret_cast<uint64_t>(code), ip = start + 3, page = start + 4096;
  static uint64_t stack[8192];
  gStackTop = reinterpret_cast<uint64_t>(&stack[8192 - 16]);
  auto install = [&](uint64_t matchRdi) {
    std::memcpy(code, body, sizeof body);
    user_regs_struct expected = stubRegisters(matchRdi, gStackTop - 8, start);
    auto t = buildTrampoline(page, ip, std::span(body, sizeof body), start,
                             PointEntry::DebugRegister, expected, {}, {}, {}, true);
    REQUIRE(t.has_value());
    REQUIRE(t->jump.size() == 5u);
    REQUIRE(t->guards == std::vector<uint64_t>{ip + 2});
    std::memcpy(reinterpret_cast<void*>(page), t->code.data(), t->code.size());
    std::memcpy(reinterpret_cast<void*>(page + 4096), t->data.data(), t->data.size());
    std::memcpy(code + 3, t->jump.data(), t->jump.size());  // what replay plants at X
    return *t;
  };
  gEntry = start;  // the program's own code, before X
  SECTION("no pass matches: the loop runs to its end in the copy, and what follows") {
    install(1000);
    gCounter = 10;
    gRdiAtReturn = 1;
    runChecked();
    CHECK(gRdiAtReturn == 0);
  }
  SECTION("the pass with rdi 4 traps, after its first pass through the original dec") {
    auto t = install(4);
    struct sigaction sa {
    }, old{};
    sa.sa_sigaction = onTrap;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, &old);
    gCounter = 10;
    gTrapRdi = 0;
    if (sigsetjmp(gTrapped, 1) == 0) {
      runChecked();
      FAIL("no pass trapped");
    }
    sigaction(SIGTRAP, &old, nullptr);
    CHECK(gTrapRdi == 4);
    CHECK(gTrapRip == t.trapIp);
  }
  munmap(mem, 4 * 4096);
}
