#include "syscall_buffer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/kcmp.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "code_patch.h"
#include "environment.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "signals.h"
#include "syscall_table.h"

namespace rec {

static_assert(REC_SYSBUF >= REC_SHIM_LOG + REC_SHIM_LOG_SIZE);
static_assert(sizeof(rec_sysbuf_entry) % 8 == 0);

SysbufMemory::SysbufMemory() {
  fd_.reset(static_cast<int>(::syscall(SYS_memfd_create, "rec-syscall-buffer", MFD_CLOEXEC)));
  if (!fd_.valid() || ::ftruncate(fd_.get(), REC_SYSBUF_SIZE) != 0)
    throwErrno(kExitInternal, "cannot make the syscall buffer");
  base_ = ::mmap(nullptr, REC_SYSBUF_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    throwErrno(kExitInternal, "cannot map the syscall buffer");
  }
}

SysbufMemory::~SysbufMemory() {
  if (base_) ::munmap(base_, REC_SYSBUF_SIZE);
}

void SysbufMemory::collectLoans() {
  const uint64_t back = loansBack_.load(std::memory_order_acquire);
  while (!loans.empty() && loans.front().seq < back) loans.pop_front();
}

void SysbufMemory::waitOldestLoan() {
  if (loans.empty() || (heldBy && loans.size() == 1)) return;
  const uint64_t seq = loans.front().seq;
  for (uint64_t back = loansBack_.load(std::memory_order_acquire); back <= seq;
       back = loansBack_.load(std::memory_order_acquire))
    loansBack_.wait(back, std::memory_order_acquire);
  collectLoans();
}

std::shared_ptr<const void> SysbufMemory::lendHeld(const std::shared_ptr<SysbufMemory>& memory) {
  memory->heldBy = 0;
  // The writer returns its loans in the order they were made (one per
  // chunk, chunks written in order): a count says which are back.
  return std::shared_ptr<const void>(memory->entries(), [memory](const void*) {
    memory->loansBack_.fetch_add(1, std::memory_order_release);
    memory->loansBack_.notify_all();
  });
}

void SysbufMemory::dropHeld() {
  if (!heldBy || loans.empty()) return;
  loans.pop_back();  // (the held loan is the newest)
  --loansMade;
  heldBy = 0;
}

bool SysbufHeld::hold(const std::shared_ptr<SysbufMemory>& memory, pid_t tid, uint32_t from,
                      uint32_t to) {
  if (memory_ || memory->heldBy || from >= to) return false;
  memory->loans.push_back({from, to, memory->loansMade++});
  memory->heldBy = tid;
  memory_ = memory;
  from_ = from;
  to_ = to;
  return true;
}

bool SysbufHeld::extend(const SysbufMemory& memory, uint32_t from, uint32_t at) {
  if (memory_.get() != &memory || to_ != from || memory_->loans.empty()) return false;
  to_ = at;
  memory_->loans.back().to = at;
  return true;
}

std::shared_ptr<const void> SysbufHeld::lend() {
  auto token = SysbufMemory::lendHeld(memory_);
  memory_.reset();
  return token;
}

void SysbufHeld::copyTo(std::vector<std::byte>& pending) {
  if (!memory_) return;
  const auto b = bytes();
  pending.insert(pending.end(), b.begin(), b.end());
  release();
}

void SysbufHeld::release() {
  if (!memory_) return;
  memory_->dropHeld();
  memory_.reset();
}

void SysbufSpace::noteCode(uint64_t start, uint64_t end, uint64_t offset,
                           const std::string& file) {
  // A new mapping replaces whatever lay in its range.
  auto it = code.lower_bound(start);
  if (it != code.begin() && std::prev(it)->second.end > start) --it;
  while (it != code.end() && it->first < end) it = code.erase(it);
  code[start] = Code{end, offset, file};
}

const SysbufSpace::Code* SysbufSpace::codeAt(uint64_t address, uint64_t* start) const {
  auto it = code.upper_bound(address);
  if (it == code.begin()) return nullptr;
  --it;
  if (address >= it->second.end) return nullptr;
  *start = it->first;
  return &it->second;
}

namespace sysbuf {

namespace {

// Trampoline pages: the entry's address, then 32-byte slots.
constexpr uint64_t kSlotsOffset = 16;
constexpr uint64_t kSlotSize = 32;
constexpr unsigned kSlotsPerPage = (kPageSize - kSlotsOffset) / kSlotSize;
constexpr uint64_t kSlotCmp = 19;    // where the displaced `cmp` runs in a slot
constexpr uint64_t kPatchSize = 9;   // at most: `syscall` (2) + `mov %rax,disp32(%rip)` (7)
constexpr uint64_t kPatchRead = 16;  // what is read at a site to find out (padding after a `ret`)

// `mov %eax,disp32(%reg)` (no SIB, not rip-relative): a store of the
// result that runs the same anywhere (ld.so's set_tid_address: `mov
// %eax,0x2d0(%rbx)`, the tid into the thread's descriptor).
bool baseDisp32Store(const uint8_t* insn) {
  const uint8_t modrm = insn[1];
  return insn[0] == 0x89 && (modrm & 0xc0) == 0x80 && (modrm & 0x07) != 0x04 && (modrm & 0x38) == 0;
}

// The bytes a patch replaces at a site: `syscall` and the compare after it
// (glibc's wrappers: cmp $-4096 or $-4095 with %rax, or with %eax), or
// `syscall` and a store of eax at a register plus disp32 (6 bytes, run in
// the slot as a compare is), or `syscall` and a 64-bit move between a
// register and a rip-relative address (glibc's brk: `mov %rax,__curbrk(%rip)`
// in ld.so, or the load of its address in libc), which the slot runs with
// its displacement adjusted, or `syscall; ret` and two bytes of the padding
// after it up to the next 16-byte boundary (glibc's __lll_lock_wake_private,
// whose result nothing checks: padding is never jumped to), or `syscall` and
// a register-to-register `mov r32,r32; neg r32` (glibc's pthread_sigmask,
// which returns the error number: `mov %eax,%edx; neg %edx`); 0 when the
// code is something else.
bool ripRelativeMove(const uint8_t* insn) {
  return (insn[0] == 0x48 || insn[0] == 0x4c) && (insn[1] == 0x89 || insn[1] == 0x8b) &&
         (insn[2] & 0xc7) == 0x05;
}

size_t patchLength(const uint8_t code[kPatchRead], uint64_t site) {
  if (code[0] != 0x0f || code[1] != 0x05) return 0;
  if (baseDisp32Store(code + 2)) return 8;
  if (ripRelativeMove(code + 2)) return 9;
  auto errorBound = [](const uint8_t* imm) {
    return (imm[0] == 0x00 || imm[0] == 0x01) && imm[1] == 0xf0 && imm[2] == 0xff && imm[3] == 0xff;
  };
  if (code[2] == 0x48 && code[3] == 0x3d && errorBound(code + 4)) return 8;
  if (code[2] == 0x3d && errorBound(code + 3)) return 7;
  if (code[2] == 0x89 && (code[3] & 0xc0) == 0xc0 && code[4] == 0xf7 && (code[5] & 0xf8) == 0xd8)
    return 6;
  if (code[2] == 0xc3) {
    const uint64_t pad = (site + 3) & 15;
    if (pad == 0 || pad > 11) return 0;  // the jump would reach past the boundary
    for (size_t at = 3; at < 5;) {
      size_t n = paddingLength(std::span<const uint8_t>(code + at, kPatchRead - at), site + at);
      if (!n) return 0;
      at += n;
    }
    return 5;
  }
  return 0;
}

// What a slot runs after the entry returns: the compare, or the `ret`.
size_t displacedLength(const uint8_t code[kPatchRead], size_t length) {
  return code[2] == 0xc3 ? 1 : length - 2;
}

bool near(uint64_t a, uint64_t b) {
  uint64_t d = a > b ? a - b : b - a;
  return d < (uint64_t{1} << 31) - 2 * kPageSize;
}

void put32(std::vector<uint8_t>& out, int64_t v) {
  auto u = static_cast<uint32_t>(static_cast<int32_t>(v));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(u >> (8 * i)));
}

// A displaced rip-relative move's displacement once it runs in the slot,
// or nothing when its target is out of the slot's reach.
std::optional<int32_t> movedDisplacement(uint64_t slot, uint64_t site,
                                         std::span<const uint8_t> displaced) {
  int32_t disp = 0;
  std::memcpy(&disp, displaced.data() + 3, 4);
  const int64_t target = static_cast<int64_t>(site + 2 + displaced.size()) + disp;
  const int64_t moved = target - static_cast<int64_t>(slot + kSlotCmp + displaced.size());
  if (moved < INT32_MIN || moved > INT32_MAX) return std::nullopt;
  return static_cast<int32_t>(moved);
}

std::vector<uint8_t> slotCode(uint64_t slot, uint64_t site, std::span<const uint8_t> displaced) {
  const uint64_t page = slot & ~(kPageSize - 1);
  std::vector<uint8_t> c = {0x48, 0x8d, 0x64, 0x24, 0x80};  // lea -128(%rsp),%rsp: the red zone
  c.insert(c.end(), {0xff, 0x15});                          // call *entry(%rip)
  put32(c, static_cast<int64_t>(page) - static_cast<int64_t>(slot + 11));
  c.insert(c.end(), {0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00});  // lea 128(%rsp),%rsp
  c.insert(c.end(), displaced.begin(), displaced.end());  // cmp $-4096,%rax, ret, or the move
  if (displaced.size() == 7 && ripRelativeMove(displaced.data())) {
    auto disp = movedDisplacement(slot, site, displaced);
    if (!disp) throw RecError(kExitInternal, "rec: a moved rip-relative operand out of reach");
    std::memcpy(c.data() + kSlotCmp + 3, &*disp, 4);
  }
  while (c.size() < kSlotCmp + 6) c.push_back(0x90);
  c.push_back(0xe9);  // jmp to the instruction after the displaced one
  put32(c, static_cast<int64_t>(site + 2 + displaced.size()) -
               static_cast<int64_t>(slot + c.size() + 4));
  if (c.size() > kSlotSize) throw RecError(kExitInternal, "rec: a syscall buffer slot overflows");
  while (c.size() < kSlotSize) c.push_back(0xcc);
  return c;
}

// An rdtsc slot (shim_abi.h): the call to the entry, the fallback, the
// displaced instructions (moved to run there), the jump back, the site.
std::vector<uint8_t> rdtscSlotCode(uint64_t slot, const SysbufPatch& patch,
                                   std::span<const uint8_t> fallback,
                                   std::span<const uint8_t> displaced) {
  const uint64_t page = slot & ~(kPageSize - 1);
  std::vector<uint8_t> c = {0x48, 0x8d, 0x64, 0x24, 0x80};  // lea -128(%rsp),%rsp: the red zone
  c.insert(c.end(), {0xff, 0x15});                          // call *8(page)
  put32(c, static_cast<int64_t>(page + 8) - static_cast<int64_t>(slot + 11));
  c.insert(c.end(), fallback.begin(), fallback.end());
  c.insert(c.end(), {0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00});  // lea 128(%rsp),%rsp
  c.insert(c.end(), displaced.begin(), displaced.end());
  c.push_back(0xe9);  // jmp back after the displaced bytes
  put32(c, static_cast<int64_t>(patch.site + patch.length) -
               static_cast<int64_t>(slot + c.size() + 4));
  while (c.size() < REC_RDTSC_SLOT_SITE) c.push_back(0xcc);
  for (int i = 0; i < 8; ++i) c.push_back(static_cast<uint8_t>(patch.site >> (8 * i)));
  return c;
}

// The length of the RDTSC (2) or RDTSCP (3) at the start of `code`, or of
// the UD2 rec wrote over one (tracee/rdtsc_sites.h); 0 for anything else.
size_t tscInstructionLength(const uint8_t* code, uint8_t rdtsc) {
  if (code[0] != 0x0f) return 0;
  if (rdtsc == 1 && (code[1] == 0x31 || code[1] == 0x0b)) return 2;
  if (rdtsc == 2 && ((code[1] == 0x01 && code[2] == 0xf9) || (code[1] == 0x0b && code[2] == 0x90)))
    return 3;
  return 0;
}

// A free page within reach of `site`: the top of the nearest gap between
// mappings (never right below the stack, which grows down into its gap).
std::optional<uint64_t> freePageNear(pid_t tid, uint64_t site) {
  std::vector<MapEntry> maps = readMaps(tid);
  std::optional<uint64_t> best;
  auto consider = [&](uint64_t candidate) {
    if (candidate < 0x10000 || !near(candidate, site)) return;
    uint64_t d = candidate > site ? candidate - site : site - candidate;
    if (!best || d < (*best > site ? *best - site : site - *best)) best = candidate;
  };
  for (size_t i = 0; i + 1 < maps.size(); ++i) {
    uint64_t from = maps[i].end, to = maps[i + 1].start;
    if (to <= from || to - from < 2 * kPageSize) continue;  // keep a page free between
    if (maps[i + 1].path == "[stack]") continue;
    consider(to - 2 * kPageSize);
    if (maps[i].path != "[heap]") consider(from + kPageSize);
  }
  return best;
}

std::string_view modeName(bool replaying) {
  return replaying ? "replay" : "recording";
}

}  // namespace

// The policy of each buffered row (the syscall table's flag), for the
// in-process code.
void fillPolicy(rec_sysbuf_header& h) {
  unsigned rules = 0;
  for (const sys::SyscallRow& row : sys::allSyscalls()) {
    if (!(row.flags & sys::kBuffered) || row.number >= REC_SYSBUF_MAX_NR) continue;
    rec_sysbuf_policy p{};
    p.args = static_cast<uint8_t>(row.argCount + 1);  // (0 means not buffered)
    const sys::OutParam& out = row.outs[0];
    if (row.buffer.fd == sys::BufferFd::Quiet) {
      // the rule's requests write nothing on such an fd: no output
    } else if (out.kind == sys::Out::ByResult || out.kind == sys::Out::CString) {
      // (CString: getcwd, whose result counts the bytes it stored)
      p.out_kind = REC_SYSBUF_OUT_RESULT;
      p.out_arg = out.arg;
    } else if (out.kind == sys::Out::Fixed) {
      p.out_kind = REC_SYSBUF_OUT_FIXED;
      p.out_arg = out.arg;
      if (out.size > UINT16_MAX) continue;
      p.out_size = static_cast<uint16_t>(out.size);
    } else if (out.kind == sys::Out::Iovec) {
      p.out_kind = REC_SYSBUF_OUT_IOVEC;
      p.out_arg = out.arg;
      p.out_size = out.lenArg;  // (the count's argument)
    } else if (out.kind != sys::Out::None) {
      continue;  // not a kind the buffer records
    } else if (row.fdWrite.data == sys::Data::Iovec) {
      p.out_kind = REC_SYSBUF_IN_IOVEC;
      p.out_arg = row.fdWrite.dataArg;
      p.out_size = row.fdWrite.countArg;
    }
    const bool vector = p.out_kind == REC_SYSBUF_OUT_IOVEC || p.out_kind == REC_SYSBUF_IN_IOVEC;
    switch (row.buffer.fd) {
      case sys::BufferFd::NotOutput:
        p.fd_check = REC_SYSBUF_FD_NOT_OUTPUT;
        break;
      case sys::BufferFd::Close:
        p.fd_check = REC_SYSBUF_FD_CLOSE;
        break;
      case sys::BufferFd::PathOpen:
        p.fd_check = REC_SYSBUF_PATH_OPEN;
        break;
      case sys::BufferFd::Quiet:
        p.fd_check = REC_SYSBUF_FD_READ;
        break;
      case sys::BufferFd::MmapAnon:
        p.fd_check = REC_SYSBUF_MMAP_ANON;
        break;
      case sys::BufferFd::Again:
        p.fd_check = REC_SYSBUF_AGAIN;
        break;
      case sys::BufferFd::Brk:
        p.fd_check = REC_SYSBUF_BRK;
        break;
      case sys::BufferFd::SigMask:
        p.fd_check = REC_SYSBUF_SIGMASK;
        break;
      case sys::BufferFd::ExecMissing:
        p.fd_check = REC_SYSBUF_EXEC_MISSING;
        break;
      case sys::BufferFd::Stream:
      case sys::BufferFd::SocketMsg:
        // (fd, buf, len, ...) or (fd, iov, count): a read when it returns
        // bytes there, else a write
        if (row.args[0] != sys::Arg::Fd || row.args[1] != sys::Arg::Ptr ||
            (row.args[2] != sys::Arg::Size && !vector) || (vector && p.out_arg != 1))
          continue;
        p.fd_check = (p.out_kind == REC_SYSBUF_OUT_RESULT || p.out_kind == REC_SYSBUF_OUT_IOVEC) &&
                             p.out_arg == 1
                         ? REC_SYSBUF_FD_READ_STREAM
                         : REC_SYSBUF_FD_WRITE_STREAM;
        p.nowait =
            row.buffer.fd == sys::BufferFd::Stream ? REC_SYSBUF_NOWAIT_RWF : REC_SYSBUF_NOWAIT_MSG;
        break;
      case sys::BufferFd::Default:
        if (row.fdWrite.data == sys::Data::Buffer || row.fdWrite.data == sys::Data::Iovec)
          p.fd_check = REC_SYSBUF_FD_WRITE;
        else if (row.args[0] == sys::Arg::Fd &&
                 (p.out_kind == REC_SYSBUF_OUT_RESULT || p.out_kind == REC_SYSBUF_OUT_IOVEC))
          p.fd_check = REC_SYSBUF_FD_READ;
        else
          p.fd_check = REC_SYSBUF_FD_ANY;
        break;
    }
    if (row.buffer.arg >= 0) {
      if (rules == REC_SYSBUF_RULES) continue;  // not buffered: no room for its rule
      rec_sysbuf_rule& r = h.rules[rules];
      r.arg = static_cast<uint8_t>(row.buffer.arg);
      r.kind = row.buffer.oneOf ? REC_SYSBUF_RULE_ONE_OF : REC_SYSBUF_RULE_NO_BITS;
      r.count = row.buffer.count;
      r.blocking_from = row.buffer.blockingFrom;
      r.ignore_bits = row.buffer.ignoreBits;
      for (unsigned i = 0; i < row.buffer.values.size(); ++i) r.values[i] = row.buffer.values[i];
      p.rule = static_cast<uint8_t>(++rules);
    }
    h.policy[row.number] = p;
  }
}

namespace {

// Pipes take RWF_NOWAIT since 6.4 (FMODE_NOWAIT), and honour it since the
// fix after it ("pipe: check for IOCB_NOWAIT alongside O_NONBLOCK"); on
// older kernels the call fails with EOPNOTSUPP (then traced) or, in
// between, could block: only 6.5 and later are trusted.
bool nowaitOnPipes() {
  static const bool yes = [] {
    utsname u{};
    int major = 0, minor = 0;
    return ::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
           (major > 6 || (major == 6 && minor >= 5));
  }();
  return yes;
}

void setMode(Task& task, uint32_t mode) {
  task.writeForced(REC_SHIM_CONTROL + offsetof(rec_shim_control, sysbuf_mode), &mode, sizeof mode);
}

}  // namespace

namespace {

// The length of an instruction that sets an argument register other than
// eax/rax from a register or an immediate, at `c` (`n` bytes left); 0 for
// anything else.
size_t argumentMove(const uint8_t* c, size_t n) {
  if (n == 0) return 0;
  size_t rex = (c[0] & 0xf0) == 0x40 ? 1 : 0;
  if (n < rex + 1) return 0;
  const uint8_t op = c[rex];
  const bool rexB = rex && (c[0] & 1);
  // mov %reg,%reg (89 /r) and xor %reg,%reg (31 /r): register-direct, the
  // destination (rm) is not rax
  if ((op == 0x89 || op == 0x31) && n >= rex + 2) {
    uint8_t modrm = c[rex + 1];
    if ((modrm & 0xc0) != 0xc0) return 0;
    if ((modrm & 7) == 0 && !rexB) return 0;
    return rex + 2;
  }
  // mov $imm32,%reg (b8+r; with REX.W a 64-bit immediate): not eax
  const size_t length = rex + 5 + ((rex && (c[0] & 8)) ? 4 : 0);
  if (op >= 0xb8 && op <= 0xbf && n >= length) {
    if (op == 0xb8 && !rexB) return 0;
    return length;
  }
  return 0;
}

}  // namespace

bool setsNumberBefore(const uint8_t (&code)[kSetsNumberWindow], long nr) {
  constexpr size_t n = kSetsNumberWindow;
  for (size_t start = 0; start + 2 <= n; ++start) {
    size_t at;
    // (a byte that may be a REX prefix before it: not eax; turned down
    // even when it is the end of another instruction)
    if (start > 0 && (code[start - 1] & 0xf0) == 0x40) continue;
    if (code[start] == 0xb8 && start + 5 <= n) {
      uint32_t imm = 0;
      std::memcpy(&imm, code + start + 1, sizeof imm);
      if (imm != static_cast<uint32_t>(nr)) continue;
      at = start + 5;
    } else if (nr == 0 && code[start] == 0x31 && code[start + 1] == 0xc0) {
      at = start + 2;
    } else {
      continue;
    }
    while (at < n) {
      size_t len = argumentMove(code + at, n - at);
      if (!len) break;
      at += len;
    }
    if (at == n) return true;
  }
  return false;
}

bool enabledByEnvironment() {
  return !offByEnvironment("REC_SYSCALL_BUFFER");
}

namespace {

void bufferMapped(Task& task, SysbufSpace& space, std::unique_ptr<SysbufMemory> buffer,
                  uint32_t mode) {
  buffer->closeFd();
  space.buffer = std::move(buffer);
  setMode(task, mode);
}

bool mapBuffer(Task& task, SysbufSpace& space, std::unique_ptr<SysbufMemory> buffer, uint32_t mode,
               StraySignals& strays) {
  if (!mapRecMemoryAt(task, buffer->fd(), REC_SYSBUF, REC_SYSBUF_SIZE, "the syscall buffer",
                      strays))
    return false;
  bufferMapped(task, space, std::move(buffer), mode);
  return true;
}

std::unique_ptr<SysbufMemory> newBuffer() {
  auto buffer = std::make_unique<SysbufMemory>();
  rec_sysbuf_header& h = buffer->header();
  fillPolicy(h);
  h.nowait_rwf = nowaitOnPipes() ? 1 : 0;
  h.limit = REC_SYSBUF_CAPACITY;
  return buffer;
}

}  // namespace

bool start(Task& task, SysbufSpace& space, uint32_t mode, StraySignals& strays) {
  return mapBuffer(task, space, newBuffer(), mode, strays);
}

bool startWithTimeLog(Task& task, SysbufSpace& space, TimeShimSpace& timeSpace, uint32_t mode,
                      StraySignals& strays) {
  auto log = std::make_unique<TimeLog>();
  auto buffer = newBuffer();
  const RecMemory memories[2] = {
      {log->fd(), REC_SHIM_LOG, REC_SHIM_LOG_SIZE, "the time shim's log"},
      {buffer->fd(), REC_SYSBUF, REC_SYSBUF_SIZE, "the syscall buffer"}};
  if (!mapRecMemoriesAt(task, memories, strays)) return false;
  time_shim::logMapped(task, timeSpace, std::move(log), mode);
  bufferMapped(task, space, std::move(buffer), mode);
  return true;
}

bool startCopy(Task& task, SysbufSpace& space, SysbufSpace& from, StraySignals& strays) {
  auto buffer = std::make_unique<SysbufMemory>();
  const rec_sysbuf_header& h = from.buffer->header();
  std::memcpy(&buffer->header(), &h, sizeof h);
  std::memcpy(&buffer->files(), &from.buffer->files(), sizeof(rec_sysbuf_files));
  std::memcpy(buffer->entries(), from.buffer->entries(),
              std::min<size_t>(h.used, REC_SYSBUF_REPLAY_CAPACITY));
  return mapBuffer(task, space, std::move(buffer), REC_SHIM_REPLAY, strays);
}

void setOutputFds(SysbufSpace& space, std::span<const OutputFd> outputFds) {
  if (!space.buffer) return;
  rec_sysbuf_header& h = space.buffer->header();
  uint64_t bits[REC_SYSBUF_OUTPUT_FDS / 64] = {}, stderrBits[REC_SYSBUF_OUTPUT_FDS / 64] = {};
  uint32_t high = 0;
  for (const OutputFd& o : outputFds) {
    if (o.fd < 0) continue;
    if (o.fd >= static_cast<long>(REC_SYSBUF_OUTPUT_FDS)) {
      high = 1;
      continue;
    }
    bits[o.fd / 64] |= uint64_t{1} << (o.fd % 64);
    if (o.origin == 2) stderrBits[o.fd / 64] |= uint64_t{1} << (o.fd % 64);
  }
  std::memcpy(h.output_fds, bits, sizeof bits);
  std::memcpy(h.stderr_fds, stderrBits, sizeof stderrBits);
  h.output_high = high;
  ++h.fd_gen;  // called at every change of the fd table rec sees
}

void setEchoWindow(SysbufSpace& space, bool open) {
  if (!space.buffer) return;
  std::atomic_ref<uint32_t>(space.buffer->header().echo_alone).store(open ? 1 : 0);
}

bool closeEchoWindow(SysbufSpace& space) {
  if (!space.buffer) return true;
  rec_sysbuf_header& h = space.buffer->header();
  // Dekker with the buffer's echo_begin: our store, a full fence, its flag.
  std::atomic_ref<uint32_t>(h.echo_alone).store(0, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return std::atomic_ref<uint32_t>(h.echo_busy).load(std::memory_order_seq_cst) == 0;
}

void setFdTables(SysbufSpace& space, bool several) {
  if (!space.buffer) return;
  rec_sysbuf_header& h = space.buffer->header();
  h.fd_cache_off = several ? 1 : 0;
  ++h.fd_gen;
}

void setWatchedFiles(SysbufSpace& space, std::span<const FileId> files) {
  if (!space.buffer) return;
  rec_sysbuf_header& h = space.buffer->header();
  // Grown only (rec never stops watching a file): the count goes up after
  // the entry it covers is written, and the buffer code reads the count first.
  size_t n = std::min<size_t>(files.size(), REC_SYSBUF_WATCHED);
  for (size_t i = 0; i < n; ++i) {
    h.watched[i].dev = files[i].device;
    h.watched[i].ino = files[i].inode;
  }
  __atomic_store_n(&h.watched_count, static_cast<uint32_t>(n), __ATOMIC_RELEASE);
  h.no_writes = files.size() > REC_SYSBUF_WATCHED;
  ++h.fd_gen;  // the fd classes remember which files are watched
}

StoredFile StoredFile::of(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_dev),         static_cast<uint64_t>(st.st_ino),
          static_cast<int64_t>(st.st_size),         static_cast<int64_t>(st.st_mtim.tv_sec),
          static_cast<int64_t>(st.st_mtim.tv_nsec), static_cast<int64_t>(st.st_ctim.tv_sec),
          static_cast<int64_t>(st.st_ctim.tv_nsec), {}};
}

void setStoredFiles(SysbufSpace& space, std::span<const StoredFile> files) {
  if (!space.buffer) return;
  rec_sysbuf_files& f = space.buffer->files();
  size_t n = std::min<size_t>(files.size(), REC_SYSBUF_FILES_MAX);
  for (size_t i = f.count; i < n; ++i) {
    rec_sysbuf_file& x = f.file[i];
    x.dev = files[i].device;
    x.ino = files[i].inode;
    x.size = files[i].size;
    x.mtime_sec = files[i].mtimeSec;
    x.mtime_nsec = files[i].mtimeNsec;
    x.ctime_sec = files[i].ctimeSec;
    x.ctime_nsec = files[i].ctimeNsec;
    std::memcpy(x.hash, files[i].hash.data(), sizeof x.hash);
  }
  // (after the slots it covers: the buffer code reads the count first)
  if (n > f.count) __atomic_store_n(&f.count, static_cast<uint32_t>(n), __ATOMIC_RELEASE);
}

bool lacksMappedFile(const rec_sysbuf_entry& e) {
  return e.nr == SYS_mmap && rec_sysbuf_maps_file(e.args) &&
         e.size < sizeof e + sizeof(rec_sysbuf_mapped_file);
}

std::vector<MappedFileRef> mappedFiles(std::span<const std::byte> entries) {
  std::vector<MappedFileRef> out;
  for (size_t at = 0; at + sizeof(rec_sysbuf_entry) <= entries.size();) {
    rec_sysbuf_entry e;
    std::memcpy(&e, entries.data() + at, sizeof e);
    if (e.size < sizeof e) break;
    if (e.nr == SYS_mmap && rec_sysbuf_maps_file(e.args) && !lacksMappedFile(e) &&
        at + e.size <= entries.size()) {
      rec_sysbuf_mapped_file m;
      std::memcpy(&m, entries.data() + at + sizeof e, sizeof m);
      MappedFileRef ref{m.slot, {}};
      std::memcpy(ref.hash.data(), m.hash, sizeof m.hash);
      out.push_back(ref);
    }
    at += e.size;
  }
  return out;
}

bool setReplayFile(SysbufSpace& space, const MappedFileRef& ref, const std::string& path,
                   int keptFd) {
  if (!space.buffer || ref.slot >= REC_SYSBUF_FILES_MAX) return false;
  rec_sysbuf_file& x = space.buffer->files().file[ref.slot];
  if (path.size() >= sizeof x.path) return false;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  if (x.path != path || std::memcmp(x.hash, ref.hash.data(), sizeof x.hash) != 0 ||
      x.copy_dev != st.st_dev || x.copy_ino != st.st_ino) {
    std::memcpy(x.hash, ref.hash.data(), sizeof x.hash);
    std::memcpy(x.path, path.c_str(), path.size() + 1);
    x.copy_dev = st.st_dev;
    x.copy_ino = st.st_ino;
    x.fd_plus1 = 0;
  }
  if (keptFd >= 0) x.fd_plus1 = keptFd + 1;
  return true;
}

int replayFileFd(SysbufSpace& space, pid_t tid, const std::string& path) {
  if (!space.buffer) return -1;
  const rec_sysbuf_files& f = space.buffer->files();
  for (const rec_sysbuf_file& x : f.file) {
    if (x.fd_plus1 <= 0 || x.path != path) continue;
    struct stat st;
    if (::stat(fmt::format("/proc/{}/fd/{}", tid, x.fd_plus1 - 1).c_str(), &st) == 0 &&
        st.st_dev == x.copy_dev && st.st_ino == x.copy_ino)
      return x.fd_plus1 - 1;
  }
  return -1;
}

std::vector<MappedFileRef> replayFiles(SysbufSpace& space) {
  std::vector<MappedFileRef> out;
  if (!space.buffer) return out;
  const rec_sysbuf_files& f = space.buffer->files();
  for (uint32_t i = 0; i < REC_SYSBUF_FILES_MAX; ++i) {
    if (!f.file[i].path[0]) continue;
    MappedFileRef ref{i, {}};
    std::memcpy(ref.hash.data(), f.file[i].hash, sizeof f.file[i].hash);
    out.push_back(ref);
  }
  return out;
}

SiteCode readSite(Task& task, uint64_t site) {
  SiteCode out;
  uint8_t bytes[kSetsNumberWindow + sizeof out.at] = {};
  const size_t got = task.read(site - kSetsNumberWindow, bytes, sizeof bytes);
  out.beforeRead = got >= kSetsNumberWindow;
  if (!out.beforeRead) return out;
  std::memcpy(out.before, bytes, kSetsNumberWindow);
  out.atRead = got - kSetsNumberWindow;
  std::memcpy(out.at.data(), bytes + kSetsNumberWindow, out.atRead);
  return out;
}

std::optional<SysbufPatch> planPatch(Task& task, SysbufSpace& space, uint64_t site,
                                     const SiteCode& code, std::span<const uint64_t> busyIps) {
  static_assert(sizeof code.at == kPatchRead);
  if (space.disabled || space.patched.count(site)) return std::nullopt;
  // (a site near the end of its mapping: 8 bytes do)
  if (code.atRead < kPatchSize) return std::nullopt;
  const size_t length = patchLength(code.at.data(), site);
  if (!length) return std::nullopt;
  // A task that would return into the replaced bytes (after the syscall, or
  // from a signal handler that interrupted it there) would run half a jump.
  auto inside = [&](uint64_t ip) { return ip > site && ip < site + length; };
  for (uint64_t ip : busyIps)
    if (inside(ip)) return std::nullopt;
  if (auto it = space.signalIps.upper_bound(site); it != space.signalIps.end() && inside(*it))
    return std::nullopt;
  // A moved rip-relative operand must stay within reach from the slot.
  const std::span<const uint8_t> displaced(code.at.data() + 2,
                                           displacedLength(code.at.data(), length));
  auto reaches = [&](uint64_t slot) {
    return !ripRelativeMove(displaced.data()) || displaced.size() != 7 ||
           movedDisplacement(slot, site, displaced).has_value();
  };
  for (const SysbufSpace::Page& page : space.pages) {
    const uint64_t slot = page.address + kSlotsOffset + page.slots * kSlotSize;
    if (page.slots < kSlotsPerPage && near(page.address, site) && reaches(slot))
      return SysbufPatch{.site = site, .slot = slot, .code = code.at};
  }
  auto page = freePageNear(task.tid(), site);
  if (!page || !reaches(*page + kSlotsOffset)) return std::nullopt;
  return SysbufPatch{.site = site, .slot = *page + kSlotsOffset, .newPage = *page, .code = code.at};
}

std::optional<SysbufPatch> planRdtscPatch(Task& task, SysbufSpace& space, uint64_t site,
                                          uint8_t rdtsc, uint8_t moveLength,
                                          std::span<const uint8_t> code) {
  if (space.disabled || space.patched.count(site) || (rdtsc != 1 && rdtsc != 2) ||
      code.size() < 4u + moveLength)
    return std::nullopt;
  const size_t length = tscInstructionLength(code.data(), rdtsc);
  if (!length || length + moveLength < kJumpSize ||
      REC_RDTSC_SLOT_DISPLACED + moveLength + 5 > REC_RDTSC_SLOT_SITE)
    return std::nullopt;
  constexpr unsigned kRdtscSlots = REC_RDTSC_SLOT_SIZE / kSlotSize;
  const auto total = static_cast<uint8_t>(length + moveLength);
  for (const SysbufSpace::Page& page : space.pages)
    if (page.slots + kRdtscSlots <= kSlotsPerPage && near(page.address, site))
      return SysbufPatch{.site = site,
                         .slot = page.address + kSlotsOffset + page.slots * kSlotSize,
                         .rdtsc = rdtsc,
                         .length = total,
                         .code = std::nullopt};
  auto page = freePageNear(task.tid(), site);
  if (!page) return std::nullopt;
  return SysbufPatch{.site = site,
                     .slot = *page + kSlotsOffset,
                     .newPage = *page,
                     .rdtsc = rdtsc,
                     .length = total,
                     .code = std::nullopt};
}

void applyPatch(Task& task, SysbufSpace& space, const SysbufPatch& patch, StraySignals& strays,
                bool replaying, bool ud2Fallback, std::span<const uint8_t> known,
                CodeWrites* deferred) {
  const int failure = replaying ? kExitDivergence : kExitInternal;
  uint8_t code[64] = {};
  size_t length = 0;
  std::vector<uint8_t> displaced;
  if (patch.rdtsc) {
    // (the instruction, then what the jump displaces, moved to the slot)
    size_t got = 0;
    if (known.empty()) {
      got = task.read(patch.site, code, sizeof code);
    } else {
      got = std::min(known.size(), sizeof code);
      std::memcpy(code, known.data(), got);
    }
    const size_t insn = got >= 4 ? tscInstructionLength(code, patch.rdtsc) : 0;
    if (insn && patch.length > insn && patch.length <= got) {
      auto moved = moveCode(std::span<const uint8_t>(code + insn, got - insn), patch.site + insn,
                            patch.length - insn, patch.slot + REC_RDTSC_SLOT_DISPLACED);
      if (moved && moved->size() == patch.length - insn) {
        length = patch.length;
        displaced = std::move(*moved);
      }
    }
    if (!length || REC_RDTSC_SLOT_DISPLACED + displaced.size() + 5 > REC_RDTSC_SLOT_SITE)
      throw RecError(failure, fmt::format("rec: {}: no rdtsc site to patch at {:#x}",
                                          modeName(replaying), patch.site));
  } else if (patch.code && !replaying) {
    std::memcpy(code, patch.code->data(), kPatchRead);
    length = patchLength(code, patch.site);
  } else if (task.read(patch.site, code, kPatchRead) >= kPatchSize) {
    length = patchLength(code, patch.site);
  }
  if (!length)
    throw RecError(failure, fmt::format("rec: {}: no syscall site to patch at {:#x}",
                                        modeName(replaying), patch.site));
  const uint64_t pageAddress = patch.slot & ~(kPageSize - 1);
  if (patch.newPage) {
    if (patch.newPage != pageAddress)
      throw RecError(kExitBadTrace, "rec: a syscall buffer patch outside its new page");
    int64_t got = remoteSyscall(
        task, SYS_mmap,
        {patch.newPage, kPageSize, PROT_READ | PROT_EXEC,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, static_cast<uint64_t>(-1), 0},
        strays);
    if (got != static_cast<int64_t>(patch.newPage))
      throw RecError(failure, fmt::format("rec: {}: cannot map a trampoline page at {:#x} ({})",
                                          modeName(replaying), patch.newPage, got));
    const uint64_t entries[2] = {REC_SYSBUF_ENTRY, REC_RDTSC_ENTRY};
    task.writeForced(patch.newPage, entries, sizeof entries);
    space.pages.push_back({patch.newPage, 0});
  }
  SysbufSpace::Page* page = nullptr;
  for (SysbufSpace::Page& p : space.pages)
    if (p.address == pageAddress) page = &p;
  const unsigned slots = patch.rdtsc ? REC_RDTSC_SLOT_SIZE / kSlotSize : 1;
  if (!page || patch.slot != pageAddress + kSlotsOffset + page->slots * kSlotSize ||
      page->slots + slots > kSlotsPerPage || !near(patch.slot, patch.site))
    throw RecError(failure, fmt::format("rec: {}: the syscall buffer's slot {:#x} is not the next",
                                        modeName(replaying), patch.slot));
  std::vector<uint8_t> slot;
  if (patch.rdtsc) {
    static constexpr uint8_t kFallbacks[2][2][3] = {{{0x0f, 0x31, 0x90}, {0x0f, 0x01, 0xf9}},
                                                    {{0x0f, 0x0b, 0x90}, {0x0f, 0x0b, 0xf9}}};
    slot = rdtscSlotCode(patch.slot, patch, kFallbacks[ud2Fallback ? 1 : 0][patch.rdtsc - 1],
                         displaced);
  } else {
    slot = slotCode(patch.slot, patch.site,
                    std::span<const uint8_t>(code + 2, displacedLength(code, length)));
  }
  if (deferred)
    deferred->emplace_back(patch.slot, std::move(slot));
  else
    task.writeForced(patch.slot, slot.data(), slot.size());
  page->slots += slots;
  std::vector<uint8_t> jump = {0xe9};
  put32(jump, static_cast<int64_t>(patch.slot) - static_cast<int64_t>(patch.site + 5));
  while (jump.size() < length) jump.push_back(0xcc);  // never reached
  if (deferred)
    deferred->emplace_back(patch.site, std::move(jump));
  else
    task.writeForced(patch.site, jump.data(), jump.size());
  space.patched.insert(patch.site);
  // The task is at the syscall's exit: it goes on with the displaced cmp.
  moveOutOfSite(task, patch);
}

void moveOutOfSite(Task& task, const SysbufPatch& patch) {
  if (patch.rdtsc) return;  // (patched only where no task can stand inside)
  if (task.regs().ip() == patch.site + 2) task.mutableRegs().setIp(patch.slot + kSlotCmp);
}

std::shared_ptr<SysbufSpace> forChild(const std::shared_ptr<SysbufSpace>& space, Task& child,
                                      uint64_t flags) {
  if (!space) return nullptr;
  if (flags & CLONE_VM) return space;
  auto copy = std::make_shared<SysbufSpace>();
  copy->disabled = space->disabled;
  copy->pages = space->pages;
  copy->patched = space->patched;
  copy->signalIps = space->signalIps;
  copy->code = space->code;
  // Its mapping is the parent's memfd: off until it has a buffer of its own.
  if (space->buffer) setMode(child, REC_SHIM_OFF);
  return copy;
}

void disable(Task& task, SysbufSpace& space) {
  space.disabled = true;
  if (space.buffer) setMode(task, REC_SHIM_OFF);
}

std::pair<uint32_t, uint32_t> take(SysbufSpace& space) {
  if (!space.buffer) return {0, 0};
  rec_sysbuf_header& h = space.buffer->header();
  uint32_t used = std::min<uint32_t>(h.used, REC_SYSBUF_RECORD_AREA);
  const std::byte* entries = space.buffer->entries();
  // Whole entries only: the program may have written over the buffer.
  uint32_t at = std::min(space.drained, used);
  const uint32_t from = at;
  while (at + sizeof(rec_sysbuf_entry) <= used) {
    rec_sysbuf_entry e;
    std::memcpy(&e, entries + at, sizeof e);
    if (e.size < sizeof e || e.size % 8 || at + e.size > used ||
        !forEachWrite(entries + at, [](const SysbufWrite&) {}))
      throw RecError(kExitInternal, "rec: the syscall buffer was overwritten by the program");
    at += e.size;
  }
  space.drained = at;
  return {from, at};
}

void rearm(SysbufSpace& space, size_t pendingBytes) {
  if (!space.buffer) return;
  SysbufMemory& m = *space.buffer;
  rec_sysbuf_header& h = m.header();
  // Below this much room the program goes on at the start (when nothing
  // lies there) or waits for the oldest loan: a fill that small would stop
  // the task again soon for little.
  constexpr uint32_t kMinRoom = 256 << 10;
  uint32_t bound = REC_SYSBUF_RECORD_AREA;
  for (;;) {
    m.collectLoans();
    bound = REC_SYSBUF_RECORD_AREA;
    for (const SysbufMemory::Loan& loan : m.loans)
      if (loan.from >= space.drained) bound = std::min(bound, loan.from);
    // A task stopped inside the buffer's code (busy) may hold `used` in a
    // register, about to store it plus its entry: the buffer stays as it is
    // until it is out (a fault in there leaves it busy for good: the
    // buffer fills, and every call after is traced).
    const bool atStart = space.drained == 0 && h.used == 0;
    if (!h.busy && !atStart &&
        (m.loans.empty() ||
         (bound == REC_SYSBUF_RECORD_AREA && REC_SYSBUF_RECORD_AREA - space.drained < kMinRoom))) {
      // Empty, or at the end of the ring with every loan behind: from the start.
      h.used = 0;
      space.drained = 0;
      continue;  // (the loans, if any, now lie ahead)
    }
    if (bound - space.drained >= kMinRoom || bound == REC_SYSBUF_RECORD_AREA) break;
    // The oldest loan lies in the way (the ring's last round). A held one
    // comes back only at its task's event: the program gets the little
    // room there is, and its calls are traced when it runs out.
    if (m.heldBy && m.loans.size() == 1) break;
    m.waitOldestLoan();
  }
  const size_t pendingRoom =
      REC_SYSBUF_REPLAY_CAPACITY - std::min<size_t>(pendingBytes, REC_SYSBUF_REPLAY_CAPACITY);
  size_t limit = std::min<size_t>(space.drained + REC_SYSBUF_CAPACITY, bound);
  limit = std::min<size_t>(limit, space.drained + pendingRoom);
  h.limit = static_cast<uint32_t>(limit);
}

void setTrapSignal(SysbufSpace& space, int signo) {
  if (space.buffer) space.buffer->header().trap_signal = signo;
}

std::optional<SignalMaskNote> takeSignalMask(SysbufSpace& space) {
  if (!space.buffer) return std::nullopt;
  rec_sysbuf_header& h = space.buffer->header();
  if (h.sigmask_tid <= 0) return std::nullopt;
  SignalMaskNote note{.tid = h.sigmask_tid, .mask = h.sigmask, .trapAction = {}};
  const int trap = h.trap_signal;
  if (trap > 0 && trap <= 64 && (note.mask >> (trap - 1)) & 1) {
    static_assert(sizeof h.sigmask_trap_action == kKernelSigactionSize);
    const auto* action = reinterpret_cast<const std::byte*>(h.sigmask_trap_action);
    note.trapAction.assign(action, action + sizeof h.sigmask_trap_action);
  }
  h.sigmask_tid = 0;
  return note;
}

bool stopAtNextCall(SysbufSpace& space) {
  if (space.disabled || !space.buffer) return false;
  // The buffer code reads the limit once per call: a call already past that
  // check completes buffered, the next one finds no room and is traced.
  __atomic_store_n(&space.buffer->header().limit, 0u, __ATOMIC_RELAXED);
  return true;
}

uint32_t unread(SysbufSpace& space) {
  if (!space.buffer) return 0;
  const rec_sysbuf_header& h = space.buffer->header();
  return h.used > h.next ? h.used - h.next : 0;
}

std::vector<std::pair<uint64_t, uint64_t>> pendingMappings(SysbufSpace& space, uint64_t startBrk) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t heapEnd = 0;
  if (!space.buffer) return out;
  const rec_sysbuf_header& h = space.buffer->header();
  const std::byte* entries = space.buffer->entries();
  for (uint32_t at = h.next; at + sizeof(rec_sysbuf_entry) <= h.used;) {
    rec_sysbuf_entry e;
    std::memcpy(&e, entries + at, sizeof e);
    if (e.size < sizeof e) break;
    at += e.size;
    const bool ok = e.result >= 0 || e.result < -4095;
    // (the rows the buffer makes again on replay: their policy says so)
    const bool maps =
        e.nr >= 0 && e.nr < REC_SYSBUF_MAX_NR && h.policy[e.nr].fd_check == REC_SYSBUF_MMAP_ANON;
    if (maps && ok && e.args[1])
      out.emplace_back(
          static_cast<uint64_t>(e.result),
          static_cast<uint64_t>(e.result) + ((e.args[1] + kPageSize - 1) & ~(kPageSize - 1)));
    const bool breaks =
        e.nr >= 0 && e.nr < REC_SYSBUF_MAX_NR && h.policy[e.nr].fd_check == REC_SYSBUF_BRK;
    if (breaks) heapEnd = std::max(heapEnd, static_cast<uint64_t>(e.result));
  }
  // (brk keeps a page free above the break: the kernel refuses to grow the
  // heap within a page of the next mapping)
  if (startBrk && heapEnd > startBrk)
    out.emplace_back(startBrk & ~(kPageSize - 1),
                     ((heapEnd + kPageSize - 1) & ~(kPageSize - 1)) + kPageSize);
  return out;
}

void clearQueue(SysbufSpace& space) {
  if (!space.buffer) return;
  space.buffer->header().used = 0;
  space.buffer->header().next = 0;
}

Enqueued enqueue(SysbufSpace& space, std::span<const std::byte> entries) {
  if (!space.buffer) return Enqueued::Malformed;
  // Whole entries the buffer's code can follow (it trusts sizes and
  // lengths): the same checks as drain's.
  for (size_t at = 0; at < entries.size();) {
    rec_sysbuf_entry e;
    if (entries.size() - at < sizeof e) return Enqueued::Malformed;
    std::memcpy(&e, entries.data() + at, sizeof e);
    if (e.size < sizeof e || e.size % 8 || e.size > entries.size() - at ||
        !forEachWrite(entries.data() + at, [](const SysbufWrite&) {}) || lacksMappedFile(e))
      return Enqueued::Malformed;
    at += e.size;
  }
  rec_sysbuf_header& h = space.buffer->header();
  if (entries.size() >
      REC_SYSBUF_REPLAY_CAPACITY - std::min<size_t>(h.used, REC_SYSBUF_REPLAY_CAPACITY))
    return Enqueued::Full;
  std::memcpy(space.buffer->entries() + h.used, entries.data(), entries.size());
  h.used = static_cast<uint32_t>(h.used + entries.size());
  return Enqueued::Ok;
}

bool ownSigpipe(Task& task, SysbufSpace* space, int signo, const siginfo_t& info) {
  if (signo != SIGPIPE || info.si_code != SI_USER || !space || !space->buffer ||
      !space->buffer->header().busy)
    return false;
  const Registers& regs = task.regs();
  return regs.ip() == kScratchShimSyscallIp && static_cast<int64_t>(regs.raw().rax) == -EPIPE;
}

Blocking blockingByEnvironment() {
  const char* v = std::getenv("REC_SYSBUF_BLOCKING");
  std::string_view s(v ? v : "");
  // nowait is the default: measured faster (docs/syscall-buffer.md "Blocking")
  if (s == "auto") return Blocking::Auto;
  if (s == "desched") return Blocking::Desched;
  return Blocking::NoWait;
}

void setDeschedStreams(SysbufSpace& space, bool on) {
  if (space.buffer) space.buffer->header().desched_streams = on ? 1 : 0;
}

bool mayBlockInBuffer(const sys::SyscallRow& row, const std::array<uint64_t, 6>& args,
                      bool streams) {
  if (!(row.flags & sys::kBuffered)) return false;
  const sys::BufferRule& r = row.buffer;
  if (streams && (r.fd == sys::BufferFd::Stream || r.fd == sys::BufferFd::SocketMsg)) return true;
  if (!r.oneOf || r.arg < 0 || r.arg >= 6) return false;
  const int64_t v = static_cast<int64_t>(args[r.arg]) & ~r.ignoreBits;
  for (unsigned i = r.blockingFrom; i < r.count && i < r.values.size(); ++i)
    if (r.values[i] == v) return true;
  return false;
}

std::unique_ptr<DeschedEvent> openDesched(Task& task, SysbufSpace& space, StraySignals& strays) {
  if (!space.buffer || space.disabled) return nullptr;
  rec_sysbuf_header& h = space.buffer->header();
  if (h.fd_cache_off) return nullptr;  // tasks with another fd table share the buffer
  int slot = -1;
  for (int i = 0; i < REC_SYSBUF_DESCHED_TASKS && slot < 0; ++i)
    if (h.desched[i].tid == 0) slot = i;
  if (slot < 0) return nullptr;
  const pid_t tid = task.tid();
  // Dead threads' events: closed while that number still holds them (the
  // program may have put a file of its own there).
  for (const auto& dead : space.deadDesched)
    if (::syscall(SYS_kcmp, ::getpid(), task.tgid(), KCMP_FILE, dead->fd.get(), dead->traceeFd) ==
        0)
      remoteSyscall(task, SYS_close, {static_cast<uint64_t>(dead->traceeFd), 0, 0, 0, 0, 0},
                    strays);
  space.deadDesched.clear();
  // High, where the program's lowest-free allocation does not reach, but
  // within a table of 1024 (a larger soft limit would grow it to its size).
  rlimit limit{};
  if (::prlimit(tid, RLIMIT_NOFILE, nullptr, &limit) != 0) return nullptr;
  const uint64_t top = std::min<uint64_t>(limit.rlim_cur, 1024);
  if (top < 256) return nullptr;
  const uint64_t floor = top - REC_SYSBUF_DESCHED_TASKS - 16;
  perf_event_attr attr{};
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_CONTEXT_SWITCHES;
  attr.sample_period = 1;
  attr.disabled = 1;
  // (not exclude_kernel, which an unprivileged user at perf_event_paranoid
  // 2 could open: such an event counts no context switch at all here)
  task.writeForced(kScratchData, &attr, sizeof attr);
  const int64_t fd =
      remoteSyscall(task, SYS_perf_event_open,
                    {kScratchData, static_cast<uint64_t>(tid), static_cast<uint64_t>(-1),
                     static_cast<uint64_t>(-1), PERF_FLAG_FD_CLOEXEC, 0},
                    strays);
  if (fd < 0) return nullptr;
  const int64_t high = remoteSyscall(
      task, SYS_fcntl, {static_cast<uint64_t>(fd), F_DUPFD_CLOEXEC, floor, 0, 0, 0}, strays);
  remoteSyscall(task, SYS_close, {static_cast<uint64_t>(fd), 0, 0, 0, 0, 0}, strays);
  if (high < 0) return nullptr;
  auto event = std::make_unique<DeschedEvent>();
  event->traceeFd = static_cast<int>(high);
  event->tid = tid;
  ScopedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, task.tgid(), 0)));
  if (pidfd.valid())
    event->fd.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), high, 0)));
  bool ok = event->fd.valid();
  if (ok) {
    // Set from rec's copy (one open file): the signal goes to the thread.
    f_owner_ex owner{F_OWNER_TID, tid};
    const int flags = ::fcntl(event->fd.get(), F_GETFL);
    ok = ::fcntl(event->fd.get(), F_SETOWN_EX, &owner) == 0 &&
         ::fcntl(event->fd.get(), F_SETSIG, REC_SYSBUF_DESCHED_SIGNAL) == 0 && flags >= 0 &&
         ::fcntl(event->fd.get(), F_SETFL, flags | O_ASYNC) == 0;
  }
  if (!ok) {
    remoteSyscall(task, SYS_close, {static_cast<uint64_t>(high), 0, 0, 0, 0, 0}, strays);
    return nullptr;
  }
  h.desched[slot].fd = static_cast<int32_t>(high);
  __atomic_store_n(&h.desched[slot].tid, tid, __ATOMIC_RELEASE);
  return event;
}

void dropDesched(SysbufSpace* space, std::unique_ptr<DeschedEvent> event) {
  if (!event) return;
  disarmDesched(*event);
  if (!space || !space->buffer) return;
  rec_sysbuf_header& h = space->buffer->header();
  for (auto& entry : h.desched)
    if (entry.tid == event->tid) {
      entry.fd = -1;
      entry.tid = 0;
    }
  space->deadDesched.push_back(std::move(event));
}

void disarmDesched(const DeschedEvent& event) {
  ::ioctl(event.fd.get(), PERF_EVENT_IOC_DISABLE, 0);
}

bool isDeschedSignal(const DeschedEvent* event, int signo, const siginfo_t& info) {
  return event && signo == REC_SYSBUF_DESCHED_SIGNAL && info.si_code >= POLL_IN &&
         info.si_code <= POLL_HUP && info.si_fd == event->fd.get();
}

bool deschedArmed(const SysbufSpace* space) {
  return space && space->buffer && space->buffer->header().desched_armed;
}

void setDeschedAbort(SysbufSpace& space) {
  if (space.buffer) space.buffer->header().desched_abort = 1;
}

bool blockStreamsByEnvironment() {
  return !offByEnvironment("REC_SYSBUF_BLOCK_STREAMS");
}
bool echoOutputByEnvironment() {
  return !offByEnvironment("REC_SYSBUF_ECHO");
}

void setBlockStreams(SysbufSpace& space, bool on) {
  if (space.buffer && !space.disabled)
    __atomic_store_n(&space.buffer->header().block_streams, on ? 1u : 0u, __ATOMIC_RELAXED);
}

bool blockArmed(const SysbufSpace* space) {
  return space && space->buffer &&
         __atomic_load_n(&space->buffer->header().block_armed, __ATOMIC_SEQ_CST) != 0;
}

void setBlockAbort(SysbufSpace& space) {
  if (!space.buffer) return;
  space.buffer->header().block_abort = 1;
  // The window is over: the scheduler must not interrupt the task for it
  // again on its way to the traced call.
  __atomic_store_n(&space.buffer->header().block_armed, 0u, __ATOMIC_SEQ_CST);
}

bool inBufferData(uint64_t address) {
  return address >= kSysbufAddress && address < kSysbufEnd;
}

}  // namespace sysbuf

}  // namespace rec
