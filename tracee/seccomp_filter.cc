#include "seccomp_filter.h"

#include <linux/audit.h>
#include <linux/seccomp.h>

#include <cstddef>

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
}  // namespace

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

SeccompFilter::SeccompFilter(const std::vector<uint8_t>& traced, uint64_t untracedFrom,
                             uint64_t untracedTo) {
  const uint32_t kTrace = SECCOMP_RET_TRACE;
  const uint32_t kAllow = SECCOMP_RET_ALLOW;
  std::vector<int> passthrough;
  for (int nr = 0; nr < sys::kMaxSyscall; ++nr)
    if (!bitmapHas(traced, nr)) passthrough.push_back(nr);

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
  // Passthrough syscalls run without stopping.
  code_.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kNrOffset));
  for (size_t i = 0; i < passthrough.size(); ++i) {
    // Jump forward to the shared ALLOW at the end of the list.
    uint8_t toAllow = static_cast<uint8_t>(passthrough.size() - i);
    code_.push_back(
        jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(passthrough[i]), toAllow, 0));
  }
  code_.push_back(stmt(BPF_RET | BPF_K, kTrace));
  code_.push_back(stmt(BPF_RET | BPF_K, kAllow));
  program_.len = static_cast<unsigned short>(code_.size());
  program_.filter = code_.data();
}

}  // namespace rec
