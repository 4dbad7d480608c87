// The seccomp-bpf filter that decides which syscalls stop for rec.
//
// Syscalls whose bit is clear in the traced bitmap (the table's Passthrough
// rows) run without any ptrace stop; everything else, including numbers the
// table does not know and non-x86-64 ABIs, returns SECCOMP_RET_TRACE. A
// syscall made from rec's own scratch page (its ip, the address after the
// syscall instruction, in [untracedFrom, untracedTo]) is always allowed:
// that is how rec runs syscalls inside the tracee, and how the time shim
// reads the clock while recording. Syscalls rec refuses whatever their
// arguments (the table's Refused rows) are answered by the filter itself,
// ENOSYS without a stop, in record and replay alike (the trace header's
// bitmap lists them: its second half).
#pragma once

#include <linux/filter.h>

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "remote_syscall.h"

namespace rec {

class SeccompFilter {
 public:
  SeccompFilter(const std::vector<uint8_t>& tracedBitmap, const std::vector<uint8_t>& refusedBitmap,
                uint64_t untracedFrom, uint64_t untracedTo);
  const sock_fprog* program() const { return &program_; }

 private:
  std::vector<sock_filter> code_;
  sock_fprog program_{};
};

// The bitmap of syscalls the current syscall table traces.
std::vector<uint8_t> tracedSyscallBitmap();
// The bitmap of syscalls the filter answers with ENOSYS (the table's Refused
// rows: rec refuses them whatever their arguments). Empty: none.
std::vector<uint8_t> refusedSyscallBitmap();
// The trace header's `tracedSyscalls` holds the traced bitmap, then the
// refused one (absent from traces made before the filter answered them).
std::vector<uint8_t> headerSyscallBitmaps(const std::vector<uint8_t>& traced,
                                          const std::vector<uint8_t>& refused);
void splitHeaderSyscallBitmaps(const uint8_t* data, size_t size, std::vector<uint8_t>& traced,
                               std::vector<uint8_t>& refused);
bool bitmapHas(const std::vector<uint8_t>& bitmap, int nr);

// A program's own seccomp request, which rec carries out itself (record and
// replay alike) because rec's filter is already installed in every tracee:
// - a filter (seccomp(SECCOMP_SET_MODE_FILTER) or prctl(PR_SET_SECCOMP,
//   SECCOMP_MODE_FILTER)) is installed for real, behind a prefix that lets
//   rec's own syscalls (from the scratch page) through, so it acts on the
//   program's syscalls exactly as natively: ERRNO, TRAP (SIGSYS) and KILL
//   come from the kernel in the recording and again in the replay;
// - strict mode (which the kernel refuses once a filter exists) becomes the
//   equivalent filter: read, write, exit and rt_sigreturn only.
// (PR_GET_SECCOMP is answered by the recorder from the mode it tracks.)
struct ProgramSeccompRequest {
  enum class Kind { InstallFilter, Strict } kind;
  uint64_t flags = 0;    // SECCOMP_FILTER_FLAG_*
  uint64_t program = 0;  // the program's struct sock_fprog
};
std::optional<ProgramSeccompRequest> programSeccompRequest(int nr,
                                                           const std::array<uint64_t, 6>& args);

// From a syscall-exit stop: carries out an InstallFilter or Strict request
// with remote syscalls; returns what the program's syscall returns.
int64_t installProgramFilter(Task& task, const ProgramSeccompRequest& request,
                             StraySignals& strays);

}  // namespace rec
