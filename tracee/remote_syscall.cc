#include "remote_syscall.h"

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <cstring>

#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "scoped_fd.h"
#include "time_shim.h"

namespace rec {

namespace {

[[noreturn]] void taskVanished(Task& task, const Stop& stop) {
  throw RecError(kExitInternal, fmt::format("task {} {} while rec was running a syscall in it",
                                            task.tid(), describeStop(stop)));
}

Registers prepared(const Registers& saved, uint64_t ip, int nr,
                   const std::array<uint64_t, 6>& args) {
  Registers r = saved;
  r.setIp(ip);
  r.setResult(nr);
  r.setSyscallNumber(-1);  // no syscall restart games on the way out
  r.setSyscallArgs(args);
  return r;
}

}  // namespace

bool atSyscallExit(Task& task) {
  __ptrace_syscall_info info{};
  long n = ::ptrace(static_cast<__ptrace_request>(PTRACE_GET_SYSCALL_INFO), task.tid(),
                    reinterpret_cast<void*>(sizeof info), &info);
  return n > 0 && info.op == PTRACE_SYSCALL_INFO_EXIT;
}

int64_t remoteSyscall(Task& task, int nr, std::array<uint64_t, 6> args, StraySignals& strays) {
  // The call ends in int3: were SIGTRAP blocked, the kernel would force it,
  // resetting the program's SIGTRAP handler. Unblocked meanwhile.
  constexpr uint64_t kTrapBit = uint64_t{1} << (SIGTRAP - 1);
  uint64_t mask = 0;
  bool unblocked =
      ::ptrace(PTRACE_GETSIGMASK, task.tid(), reinterpret_cast<void*>(8), &mask) == 0 &&
      (mask & kTrapBit);
  if (unblocked) {
    uint64_t without = mask & ~kTrapBit;
    ::ptrace(PTRACE_SETSIGMASK, task.tid(), reinterpret_cast<void*>(8), &without);
  }
  Registers saved = task.regs();
  task.setRegs(prepared(saved, kScratchSyscallInsn, nr, args));
  task.resume(Task::Resume::Cont);
  for (;;) {
    Stop stop = task.wait();
    if (stop.kind == StopKind::Signal) {
      if (stop.signal == SIGTRAP && task.regs().ip() == kScratchSyscallInsn + 3) break;
      strays.push_back(task.siginfo());
      task.resume(Task::Resume::Cont);
      continue;
    }
    if (stop.kind == StopKind::Exited || stop.kind == StopKind::ExitEvent) taskVanished(task, stop);
    task.resume(Task::Resume::Cont);
  }
  int64_t result = task.regs().result();
  task.setRegs(saved);
  if (unblocked && nr != SYS_rt_sigprocmask)
    ::ptrace(PTRACE_SETSIGMASK, task.tid(), reinterpret_cast<void*>(8), &mask);
  return result;
}

int64_t remoteSyscallVia(Task& task, uint64_t syscallInsn, int nr, std::array<uint64_t, 6> args,
                         StraySignals& strays) {
  Registers saved = task.regs();
  task.setRegs(prepared(saved, syscallInsn, nr, args));
  task.resume(Task::Resume::Syscall);
  for (;;) {
    Stop stop = task.wait();
    if (stop.kind == StopKind::SyscallStop && atSyscallExit(task)) break;
    if (stop.kind == StopKind::Exited || stop.kind == StopKind::ExitEvent) taskVanished(task, stop);
    if (stop.kind == StopKind::Signal) strays.push_back(task.siginfo());
    task.resume(Task::Resume::Syscall);
  }
  int64_t result = task.regs().result();
  task.setRegs(saved);
  return result;
}

void skipToSyscallExit(Task& task, int64_t result, StraySignals& strays) {
  Registers& r = task.mutableRegs();
  r.setSyscallNumber(-1);
  r.setResult(result);
  task.resume(Task::Resume::Syscall);
  for (;;) {
    Stop stop = task.wait();
    if (stop.kind == StopKind::SyscallStop) return;
    if (stop.kind == StopKind::Exited || stop.kind == StopKind::ExitEvent) taskVanished(task, stop);
    if (stop.kind == StopKind::Signal) strays.push_back(task.siginfo());
    task.resume(Task::Resume::Syscall);
  }
}

void unwindSyscallEntry(Task& task, StraySignals& strays) {
  int nr = task.regs().syscallNumber();
  skipToSyscallExit(task, 0, strays);
  Registers& r = task.mutableRegs();
  r.setIp(r.ip() - 2);  // the syscall instruction is two bytes
  r.setResult(nr);
  r.setSyscallNumber(-1);
}

uint64_t findVdsoSyscall(Task& task) {
  // The kernel maps the same vDSO image into every 64-bit process: where its
  // syscall instruction sits in rec's own copy tells where it sits in the
  // task's, found from the task's auxiliary vector.
  static const uint64_t offset = [] {
    auto* base = reinterpret_cast<const unsigned char*>(::getauxval(AT_SYSINFO_EHDR));
    if (!base) return uint64_t{0};
    for (size_t i = 0; i + 1 < 2 * 4096; ++i)
      if (base[i] == 0x0f && base[i + 1] == 0x05) return uint64_t{i};
    return uint64_t{0};
  }();
  if (offset) {
    uint64_t auxv[2 * 64];
    size_t n = 0;
    ScopedFd fd(::open(fmt::format("/proc/{}/auxv", task.tid()).c_str(), O_RDONLY | O_CLOEXEC));
    ssize_t got = fd.valid() ? ::read(fd.get(), auxv, sizeof auxv) : -1;
    if (got > 0) n = static_cast<size_t>(got) / 16;
    for (size_t i = 0; i < n; ++i) {
      if (auxv[2 * i] != AT_SYSINFO_EHDR || !auxv[2 * i + 1]) continue;
      unsigned char insn[2] = {};
      uint64_t at = auxv[2 * i + 1] + offset;
      if (task.read(at, insn, 2) == 2 && insn[0] == 0x0f && insn[1] == 0x05) return at;
    }
  }
  for (const auto& m : readMaps(task.tid())) {
    if (m.path != "[vdso]") continue;
    auto image = task.readBytes(m.start, m.end - m.start);
    for (size_t i = 0; i + 1 < image.size(); ++i)
      if (image[i] == std::byte{0x0f} && image[i + 1] == std::byte{0x05}) return m.start + i;
  }
  return 0;
}

void installScratchPage(Task& task, StraySignals& strays, bool withTimeShim) {
  uint64_t insn = findVdsoSyscall(task);
  if (!insn)
    throw RecError(kExitUnsupported, "no syscall instruction in the vDSO to bootstrap from");
  int64_t addr = remoteSyscallVia(
      task, insn, SYS_mmap,
      {kScratchAddress, withTimeShim ? REC_SHIM_LOG - kScratchAddress : kScratchSize,
       PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
       static_cast<uint64_t>(-1), 0},
      strays);
  if (addr != static_cast<int64_t>(kScratchAddress))
    throw RecError(
        kExitUnsupported,
        fmt::format("cannot map rec's scratch page at {:#x} (error {})", kScratchAddress, addr));
  const unsigned char code[] = {0x0f, 0x05, 0xcc};  // syscall; int3
  task.writeForced(kScratchSyscallInsn, code, sizeof code);
  const unsigned char shimCode[] = {0x0f, 0x05, 0xc3};  // syscall; ret
  task.writeForced(kScratchShimSyscall, shimCode, sizeof shimCode);
  if (withTimeShim) time_shim::writeImage(task);
}

uint64_t putScratchString(Task& task, const std::string& s) {
  if (s.size() + 1 > kScratchDataSize)
    throw RecError(kExitInternal, fmt::format("path too long for the scratch page: {}", s));
  task.writeForced(kScratchData, s.c_str(), s.size() + 1);
  return kScratchData;
}

bool mapRecMemoryAt(Task& task, int recFd, uint64_t address, uint64_t size, const char* what,
                    StraySignals& strays) {
  uint64_t path = putScratchString(task, fmt::format("/proc/{}/fd/{}", ::getpid(), recFd));
  int64_t fd =
      remoteSyscall(task, SYS_openat,
                    {static_cast<uint64_t>(AT_FDCWD), path, O_RDWR | O_CLOEXEC, 0, 0, 0}, strays);
  if (fd < 0) return false;
  int64_t got = remoteSyscall(
      task, SYS_mmap,
      {address, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, static_cast<uint64_t>(fd), 0},
      strays);
  remoteSyscall(task, SYS_close, {static_cast<uint64_t>(fd), 0, 0, 0, 0, 0}, strays);
  if (got != static_cast<int64_t>(address))
    throw RecError(kExitInternal,
                   fmt::format("cannot map {} in task {} ({})", what, task.tid(), got));
  return true;
}

}  // namespace rec
