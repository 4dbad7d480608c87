#include "signals.h"

#include <fmt/format.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <ucontext.h>

#include <cstddef>
#include <sstream>
#include <string>

#include "process_maps.h"
#include "task.h"

namespace rec {

namespace {
// Whether `signo` is in the signal mask named `field` of /proc/TID/status.
bool statusMaskHas(pid_t tid, const char* field, int signo) {
  std::istringstream in(readProcFile(fmt::format("/proc/{}/status", tid)));
  std::string line;
  std::string prefix = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    uint64_t mask = std::stoull(line.substr(prefix.size()), nullptr, 16);
    return signo >= 1 && signo <= 64 && (mask >> (signo - 1)) & 1;
  }
  return false;
}
}  // namespace

bool hasHandler(pid_t tid, int signo) {
  return statusMaskHas(tid, "SigCgt", signo);
}

bool blocksSignal(pid_t tid, int signo) {
  return statusMaskHas(tid, "SigBlk", signo);
}

std::optional<uint64_t> readSignalMask(pid_t tid) {
  uint64_t mask = 0;
  if (::ptrace(PTRACE_GETSIGMASK, tid, reinterpret_cast<void*>(sizeof mask), &mask) != 0)
    return std::nullopt;
  return mask;
}

std::vector<std::byte> readSignalAction(Task& task, int signo, StraySignals& strays) {
  const uint64_t at = (task.regs().raw().rsp - 256 - kKernelSigactionSize) & ~uint64_t{15};
  std::vector<std::byte> saved(kKernelSigactionSize), action(kKernelSigactionSize);
  if (task.read(at, saved.data(), saved.size()) != saved.size()) return {};
  int64_t result =
      remoteSyscall(task, SYS_rt_sigaction, {static_cast<uint64_t>(signo), 0, at, 8, 0, 0}, strays);
  bool ok = result == 0 && task.read(at, action.data(), action.size()) == action.size();
  task.write(at, saved.data(), saved.size());
  if (!ok) action.clear();
  return action;
}

void restoreForcedSignal(Task& task, int signo, std::span<const std::byte> action,
                         StraySignals& strays) {
  if (action.size() == kKernelSigactionSize) {
    task.writeForced(kScratchData, action.data(), action.size());
    remoteSyscall(task, SYS_rt_sigaction, {static_cast<uint64_t>(signo), kScratchData, 0, 8, 0, 0},
                  strays);
  }
  if (auto mask = readSignalMask(task.tid())) {
    uint64_t blocked = *mask | signalBit(signo);
    ::ptrace(PTRACE_SETSIGMASK, task.tid(), reinterpret_cast<void*>(sizeof blocked), &blocked);
  }
}

namespace {
constexpr size_t kGregs = offsetof(ucontext_t, uc_mcontext.gregs);
constexpr size_t kOffsets[3] = {kGregs + REG_ERR * 8, kGregs + REG_TRAPNO * 8,
                                kGregs + REG_CR2 * 8};
}  // namespace

FrameTrapWords readFrameTrapWords(Task& task) {
  // err, trapno, oldmask, cr2 are adjacent: one read of the four (a short
  // read at a hole leaves the same zeros as three reads would).
  static_assert(REG_TRAPNO == REG_ERR + 1 && REG_CR2 == REG_ERR + 3);
  uint64_t uc = task.regs().raw().rdx;
  uint64_t span[4] = {};
  task.read(uc + kOffsets[0], span, sizeof span);
  return FrameTrapWords{span[0], span[1], span[3]};
}

void writeFrameTrapWords(Task& task, const FrameTrapWords& words) {
  uint64_t uc = task.regs().raw().rdx;
  for (int i = 0; i < 3; ++i) task.write(uc + kOffsets[i], &words[i], 8);
}

bool atHandlerEntry(Task& task, int signo) {
  const user_regs_struct& r = task.regs().raw();
  return r.rdi == static_cast<uint64_t>(signo) && r.rdx == r.rsp + 8;
}

HandlerFrame readHandlerFrame(Task& task, uint64_t interruptedRsp) {
  HandlerFrame frame;
  frame.trapWords = readFrameTrapWords(task);
  const uint64_t rsp = task.regs().raw().rsp;
  uint64_t fpstate = 0;
  task.read(task.regs().raw().rdx + offsetof(ucontext_t, uc_mcontext.fpregs), &fpstate,
            sizeof fpstate);
  constexpr size_t kLegacyArea = 512;            // FXSAVE image; its bytes 464..511 are software's
  constexpr uint32_t kXstateMagic = 0x46505853;  // FP_XSTATE_MAGIC1
  struct {
    uint32_t magic1, extendedSize;
  } software{};
  if (fpstate <= rsp || fpstate - rsp > (1 << 16)) return frame;  // no frame as expected
  task.read(fpstate + 464, &software, sizeof software);
  uint64_t top = fpstate + (software.magic1 == kXstateMagic ? software.extendedSize : kLegacyArea);
  // The padding up to the interrupted code's red zone, when on the same stack.
  const uint64_t redZone = interruptedRsp - 128;
  if (redZone > top && redZone - top < 128) top = redZone;
  if (top - rsp > (1 << 16)) return frame;
  frame.bytes.resize(top - rsp);
  if (task.read(rsp, frame.bytes.data(), frame.bytes.size()) != frame.bytes.size()) {
    frame.bytes.clear();
    return frame;
  }
  frame.address = rsp;
  return frame;
}

bool writeHandlerFrame(Task& task, const HandlerFrame& frame) {
  if (frame.address == 0) {
    writeFrameTrapWords(task, frame.trapWords);
    return true;
  }
  if (task.regs().raw().rsp != frame.address) return false;
  task.write(frame.address, frame.bytes.data(), frame.bytes.size());
  return true;
}

}  // namespace rec
