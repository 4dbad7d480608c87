#include "signals.h"

#include <fmt/format.h>
#include <ucontext.h>

#include <cstddef>
#include <fstream>
#include <string>

#include "task.h"

namespace rec {

bool hasHandler(pid_t tid, int signo) {
  std::ifstream in(fmt::format("/proc/{}/status", tid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("SigCgt:", 0) != 0) continue;
    uint64_t mask = std::stoull(line.substr(7), nullptr, 16);
    return signo >= 1 && signo <= 64 && (mask >> (signo - 1)) & 1;
  }
  return false;
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
