#include "seccomp_filter.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cerrno>
#include <algorithm>
#include <cstddef>
#include <stdexcept>

#include "syscall_table.h"

namespace rec {

namespace {
constexpr uint32_t kNrOffset = offsetof(seccomp_data, nr);
constexpr uint32_t kArchOffset = offsetof(seccomp_data, arch);
constexpr uint32_t kIpLowOffset = offsetof(seccomp_data, instruction_pointer);
constexpr uint32_t kIpHighOffset = offsetof(seccomp_data, instruction_pointer) + 4;

sock_filter stmt(uint16_t code, uint32_t k) {
  return BPF_STMT(code, k);
}
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  return BPF_JUMP(code, k, jt, jf);
}
// Lets rec's own syscalls (made from the scratch page, like everything rec
// runs inside a tracee) through a program's filter; the program's code
// follows, with the accumulator as the kernel hands it to a filter.
std::vector<sock_filter> recExemptionPrefix() {
  const uint64_t from = kScratchUntracedIp, to = kScratchShimSyscallIp;
  return {
      stmt(BPF_LD | BPF_W | BPF_ABS, kIpHighOffset),
      jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(from >> 32), 0, 4),
      stmt(BPF_LD | BPF_W | BPF_ABS, kIpLowOffset),
      jump(BPF_JMP | BPF_JGE | BPF_K, static_cast<uint32_t>(from), 0, 2),
      jump(BPF_JMP | BPF_JGT | BPF_K, static_cast<uint32_t>(to), 1, 0),
      stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      stmt(BPF_LD | BPF_IMM, 0),
  };
}

// SECCOMP_MODE_STRICT as a filter. The kernel ends a strict-mode task that
// breaks the rule with SIGKILL; the filter's KILL_THREAD ends it with SIGSYS.
void appendStrictMode(std::vector<sock_filter>& code) {
  const uint32_t kKill = SECCOMP_RET_KILL_THREAD;
  code.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kArchOffset));
  code.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  code.push_back(stmt(BPF_RET | BPF_K, kKill));
  code.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kNrOffset));
  const uint32_t allowed[] = {SYS_read, SYS_write, SYS_exit, SYS_rt_sigreturn};
  for (size_t i = 0; i < std::size(allowed); ++i)
    code.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, allowed[i],
                        static_cast<uint8_t>(std::size(allowed) - i), 0));
  code.push_back(stmt(BPF_RET | BPF_K, kKill));
  code.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

}  // namespace

std::optional<ProgramSeccompRequest> programSeccompRequest(int nr,
                                                           const std::array<uint64_t, 6>& args) {
  using Kind = ProgramSeccompRequest::Kind;
  if (nr == SYS_seccomp) {
    if (args[0] == SECCOMP_SET_MODE_FILTER)
      return ProgramSeccompRequest{Kind::InstallFilter, args[1], args[2]};
    if (args[0] == SECCOMP_SET_MODE_STRICT && args[1] == 0 && args[2] == 0)
      return ProgramSeccompRequest{Kind::Strict};
    return std::nullopt;  // the kernel answers the rest (or refuses them) alike
  }
  if (nr != SYS_prctl) return std::nullopt;
  if (args[0] != PR_SET_SECCOMP) return std::nullopt;
  if (args[1] == SECCOMP_MODE_FILTER) return ProgramSeccompRequest{Kind::InstallFilter, 0, args[2]};
  if (args[1] == SECCOMP_MODE_STRICT) return ProgramSeccompRequest{Kind::Strict};
  return std::nullopt;
}

int64_t installProgramFilter(Task& task, const ProgramSeccompRequest& request,
                             StraySignals& strays) {
  std::vector<sock_filter> code = recExemptionPrefix();
  uint64_t flags = 0;
  if (request.kind == ProgramSeccompRequest::Kind::Strict) {
    appendStrictMode(code);
  } else {
    // The kernel's own checks, in its order, on what rec reads for it.
    sock_fprog program{};
    if (task.read(request.program, &program, sizeof program) != sizeof program) return -EFAULT;
    if (program.len == 0 || program.len > BPF_MAXINSNS) return -EINVAL;
    std::vector<sock_filter> own(program.len);
    size_t bytes = own.size() * sizeof(sock_filter);
    if (task.read(reinterpret_cast<uint64_t>(program.filter), own.data(), bytes) != bytes)
      return -EFAULT;
    code.insert(code.end(), own.begin(), own.end());
    flags = request.flags;
  }
  // The combined program goes into a temporary mapping of the task's.
  uint64_t bytes = sizeof(sock_fprog) + code.size() * sizeof(sock_filter);
  uint64_t size = (bytes + 4095) & ~uint64_t{4095};
  int64_t area = remoteSyscall(
      task, SYS_mmap,
      {0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0},
      strays);
  if (area < 0 && area > -4096) return -ENOMEM;
  uint64_t base = static_cast<uint64_t>(area);
  sock_fprog combined{};
  combined.len = static_cast<unsigned short>(code.size());
  combined.filter = reinterpret_cast<sock_filter*>(base + sizeof(sock_fprog));
  task.write(base, &combined, sizeof combined);
  task.write(base + sizeof(sock_fprog), code.data(), code.size() * sizeof(sock_filter));
  int64_t result = code.size() > BPF_MAXINSNS
                       ? -EINVAL
                       : remoteSyscall(task, SYS_seccomp,
                                       {SECCOMP_SET_MODE_FILTER, flags, base, 0, 0, 0}, strays);
  remoteSyscall(task, SYS_munmap, {base, size, 0, 0, 0, 0}, strays);
  return result;
}

bool bitmapHas(const std::vector<uint8_t>& bitmap, int nr) {
  if (nr < 0 || static_cast<size_t>(nr / 8) >= bitmap.size()) return true;
  return bitmap[nr / 8] & (1u << (nr % 8));
}

std::vector<uint8_t> tracedSyscallBitmap() {
  std::vector<uint8_t> bitmap(sys::kMaxSyscall / 8, 0xff);
  for (const auto& row : sys::allSyscalls())
    if (!row.traced()) bitmap[row.number / 8] &= static_cast<uint8_t>(~(1u << (row.number % 8)));
  return bitmap;
}

std::vector<uint8_t> refusedSyscallBitmap() {
  std::vector<uint8_t> bitmap(sys::kMaxSyscall / 8, 0);
  for (const auto& row : sys::allSyscalls())
    if (row.support == sys::Support::Refused)
      bitmap[row.number / 8] |= static_cast<uint8_t>(1u << (row.number % 8));
  return bitmap;
}

std::vector<uint8_t> headerSyscallBitmaps(const std::vector<uint8_t>& traced,
                                          const std::vector<uint8_t>& refused) {
  std::vector<uint8_t> out = traced;
  out.resize(sys::kMaxSyscall / 8, 0xff);
  out.insert(out.end(), refused.begin(), refused.end());
  return out;
}

void splitHeaderSyscallBitmaps(const uint8_t* data, size_t size, std::vector<uint8_t>& traced,
                               std::vector<uint8_t>& refused) {
  const size_t half = sys::kMaxSyscall / 8;
  traced.assign(data, data + std::min(size, half));
  refused.clear();
  if (size > half) refused.assign(data + half, data + std::min(size, 2 * half));
}

SeccompFilter::SeccompFilter(const std::vector<uint8_t>& traced,
                             const std::vector<uint8_t>& refusedBitmap, uint64_t untracedFrom,
                             uint64_t untracedTo) {
  const uint32_t kTrace = SECCOMP_RET_TRACE;
  const uint32_t kAllow = SECCOMP_RET_ALLOW;
  const uint32_t kRefuse = SECCOMP_RET_ERRNO | ENOSYS;
  std::vector<int> passthrough, refused;
  for (int nr = 0; nr < sys::kMaxSyscall; ++nr) {
    if (!bitmapHas(traced, nr))
      passthrough.push_back(nr);
    else if (static_cast<size_t>(nr / 8) < refusedBitmap.size() &&
             (refusedBitmap[nr / 8] & (1u << (nr % 8))))
      refused.push_back(nr);
  }
  if (passthrough.size() + refused.size() > 250)
    throw std::logic_error("seccomp filter: too many syscalls for its short jumps");

  // Other ABIs (int 0x80) always stop, marked so rec knows their numbers
  // and registers for 32-bit ones (syscall_table.h).
  code_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kArchOffset));
  code_.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  code_.push_back(stmt(BPF_RET | BPF_K, kTrace | sys::kSeccompCompatData));
  // rec's own syscalls, from its scratch page: ip in [untracedFrom, untracedTo].
  code_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kIpHighOffset));
  code_.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(untracedFrom >> 32), 0, 4));
  code_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kIpLowOffset));
  code_.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, static_cast<uint32_t>(untracedFrom), 0, 2));
  code_.push_back(jump(BPF_JMP | BPF_JGT | BPF_K, static_cast<uint32_t>(untracedTo), 1, 0));
  code_.push_back(stmt(BPF_RET | BPF_K, kAllow));
  // Passthrough syscalls run without stopping; refused ones fail with
  // ENOSYS without stopping (the same answer rec gave at their stop).
  // Layout: the passthrough tests, the refused tests, TRACE, ALLOW, ERRNO.
  code_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kNrOffset));
  const size_t p = passthrough.size(), r = refused.size();
  for (size_t i = 0; i < p; ++i) {
    uint8_t toAllow = static_cast<uint8_t>(p - i - 1 + r + 1);
    code_.push_back(
        jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(passthrough[i]), toAllow, 0));
  }
  for (size_t i = 0; i < r; ++i) {
    uint8_t toRefuse = static_cast<uint8_t>(r - i - 1 + 2);
    code_.push_back(
        jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(refused[i]), toRefuse, 0));
  }
  code_.push_back(stmt(BPF_RET | BPF_K, kTrace));
  code_.push_back(stmt(BPF_RET | BPF_K, kAllow));
  code_.push_back(stmt(BPF_RET | BPF_K, kRefuse));
  program_.len = static_cast<unsigned short>(code_.size());
  program_.filter = code_.data();
}

}  // namespace rec
