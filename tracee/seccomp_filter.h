// The seccomp-bpf filter that decides which syscalls stop for rec.
//
// Syscalls whose bit is clear in the traced bitmap (the table's Passthrough
// rows) run without any ptrace stop; everything else, including numbers the
// table does not know and non-x86-64 ABIs, returns SECCOMP_RET_TRACE. A
// syscall made from rec's own scratch page (its ip, the address after the
// syscall instruction, in [untracedFrom, untracedTo]) is always allowed:
// that is how rec runs syscalls inside the tracee, and how the time shim
// reads the clock while recording.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <vector>

namespace rec {

class SeccompFilter {
 public:
  SeccompFilter(const std::vector<uint8_t>& tracedBitmap, uint64_t untracedFrom,
                uint64_t untracedTo);
  const sock_fprog* program() const { return &program_; }

 private:
  std::vector<sock_filter> code_;
  sock_fprog program_{};
};

// The bitmap of syscalls the current syscall table traces.
std::vector<uint8_t> tracedSyscallBitmap();
bool bitmapHas(const std::vector<uint8_t>& bitmap, int nr);

}  // namespace rec
