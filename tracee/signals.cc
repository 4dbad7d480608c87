#include "signals.h"

#include <fmt/format.h>
#include <ucontext.h>

#include <cstddef>
#include <fstream>
#include <string>

#include "task.h"

namespace rec {

namespace {
// Whether `signo` is in the signal mask named `field` of /proc/TID/status.
bool statusMaskHas(pid_t tid, const char* field, int signo) {
  std::ifstream in(fmt::format("/proc/{}/status", tid));
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

namespace {
constexpr size_t kGregs = offsetof(ucontext_t, uc_mcontext.gregs);
constexpr size_t kOffsets[3] = {kGregs + REG_ERR * 8, kGregs + REG_TRAPNO * 8,
                                kGregs + REG_CR2 * 8};
}  // namespace

FrameTrapWords readFrameTrapWords(Task& task) {
  uint64_t uc = task.regs().raw().rdx;
  FrameTrapWords words{};
  for (int i = 0; i < 3; ++i) task.read(uc + kOffsets[i], &words[i], 8);
  return words;
}

void writeFrameTrapWords(Task& task, const FrameTrapWords& words) {
  uint64_t uc = task.regs().raw().rdx;
  for (int i = 0; i < 3; ++i) task.write(uc + kOffsets[i], &words[i], 8);
}

}  // namespace rec
