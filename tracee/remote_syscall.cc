#include "remote_syscall.h"

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <span>

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

namespace {
// Runs the task from `regs` until the int3 whose next ip is `trapIp`; the
// task's registers there. The caller restores its registers.
Registers runToTrap(Task& task, const Registers& regs, uint64_t trapIp, bool keepsMask,
                    StraySignals& strays) {
  // The code ends in int3: were SIGTRAP blocked, the kernel would force it,
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
  task.setRegs(regs);
  task.resume(Task::Resume::Cont);
  for (;;) {
    Stop stop = task.wait();
    if (stop.kind == StopKind::Signal) {
      if (stop.signal == SIGTRAP && task.regs().ip() == trapIp) break;
      strays.push_back(task.siginfo());
      task.resume(Task::Resume::Cont);
      continue;
    }
    if (stop.kind == StopKind::Exited || stop.kind == StopKind::ExitEvent) taskVanished(task, stop);
    task.resume(Task::Resume::Cont);
  }
  Registers at = task.regs();
  if (unblocked && keepsMask)
    ::ptrace(PTRACE_SETSIGMASK, task.tid(), reinterpret_cast<void*>(8), &mask);
  return at;
}
}  // namespace

int64_t remoteSyscall(Task& task, int nr, std::array<uint64_t, 6> args, StraySignals& strays) {
  Registers saved = task.regs();
  Registers at = runToTrap(task, prepared(saved, kScratchSyscallInsn, nr, args),
                           kScratchSyscallInsn + 3, nr != SYS_rt_sigprocmask, strays);
  task.setRegs(saved);
  return at.result();
}

std::vector<int64_t> remoteSyscalls(Task& task, const std::vector<RemoteCall>& calls,
                                    StraySignals& strays) {
  // Generated code: per call, the arguments into their registers (an
  // earlier result from r12..r15), the number into eax, rbx = where to come
  // back, a jump to the `syscall; jmp *%rbx` the filter lets through, the
  // result into r12 + index; int3 at the end. No stack, no memory written.
  if (calls.empty() || calls.size() > 8)
    throw RecError(kExitInternal, "rec: a batch of remote syscalls holds 1 to 8 calls");
  static constexpr int kArgRegs[6] = {7 /* rdi */,  6 /* rsi */, 2 /* rdx */,
                                      10 /* r10 */, 8 /* r8 */,  9 /* r9 */};
  std::vector<uint8_t> code;
  auto imm = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) code.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  for (size_t i = 0; i < calls.size(); ++i) {
    const RemoteCall& c = calls[i];
    for (int a = 0; a < 6; ++a) {
      int dst = kArgRegs[a];
      int from = c.fromResult[static_cast<size_t>(a)];
      if (from >= static_cast<int>(i) || from >= 4)
        throw RecError(kExitInternal, "rec: a remote syscall uses a result not kept");
      if (from >= 0) {  // mov %r(12+from), %dst
        int src = 12 + from;
        code.push_back(static_cast<uint8_t>(0x48 | ((src >> 3) << 2) | (dst >> 3)));
        code.push_back(0x89);
        code.push_back(static_cast<uint8_t>(0xc0 | ((src & 7) << 3) | (dst & 7)));
      } else {  // movabs $imm, %dst
        code.push_back(static_cast<uint8_t>(0x48 | (dst >> 3)));
        code.push_back(static_cast<uint8_t>(0xb8 + (dst & 7)));
        imm(c.args[static_cast<size_t>(a)], 8);
      }
    }
    code.push_back(0xb8);  // mov $nr, %eax
    imm(static_cast<uint32_t>(c.nr), 4);
    // lea after(%rip), %rbx (after: past the jmp below, 5 bytes on)
    code.insert(code.end(), {0x48, 0x8d, 0x1d});
    imm(5, 4);
    // jmp kScratchBatchSyscall
    uint64_t jmpEnd = kScratchBatchCode + code.size() + 5;
    code.push_back(0xe9);
    imm(static_cast<uint32_t>(static_cast<int32_t>(kScratchBatchSyscall - jmpEnd)), 4);
    if (i < 4) {  // mov %rax, %r(12+i)
      code.push_back(0x49);
      code.push_back(0x89);
      code.push_back(static_cast<uint8_t>(0xc0 | ((12 + i) & 7)));
    }
  }
  code.push_back(0xcc);  // int3
  if (code.size() > kScratchAddress + kScratchSize - kScratchBatchCode)
    throw RecError(kExitInternal, "rec: a batch of remote syscalls does not fit its page");
  task.writeForced(kScratchBatchCode, code.data(), code.size());
  Registers saved = task.regs();
  Registers r = saved;
  r.setIp(kScratchBatchCode);
  r.setSyscallNumber(-1);  // no syscall restart games on the way out
  bool masks = std::any_of(calls.begin(), calls.end(),
                           [](const RemoteCall& c) { return c.nr == SYS_rt_sigprocmask; });
  Registers at = runToTrap(task, r, kScratchBatchCode + code.size(), !masks, strays);
  task.setRegs(saved);
  const user_regs_struct& u = at.raw();
  const uint64_t results[4] = {u.r12, u.r13, u.r14, u.r15};
  std::vector<int64_t> out;
  for (size_t i = 0; i < calls.size(); ++i)
    out.push_back(i < 4 ? static_cast<int64_t>(results[i]) : 0);
  return out;
}

int64_t remoteSyscallVia(Task& task, uint64_t syscallInsn, int nr, std::array<uint64_t, 6> args,
                         StraySignals& strays, bool filterStops) {
  Registers saved = task.regs();
  task.setRegs(prepared(saved, syscallInsn, nr, args));
  // Past the seccomp stop (which comes after the syscall-entry-stop), the
  // next stop is the syscall-exit-stop either way.
  task.resume(filterStops ? Task::Resume::Cont : Task::Resume::Syscall);
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

void installScratchPage(Task& task, StraySignals& strays, bool withTimeShim, bool mmapStops) {
  uint64_t insn = findVdsoSyscall(task);
  if (!insn)
    throw RecError(kExitUnsupported, "no syscall instruction in the vDSO to bootstrap from");
  int64_t addr = remoteSyscallVia(
      task, insn, SYS_mmap,
      {kScratchAddress, withTimeShim ? REC_SHIM_LOG - kScratchAddress : kScratchSize,
       PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
       static_cast<uint64_t>(-1), 0},
      strays, mmapStops);
  if (addr != static_cast<int64_t>(kScratchAddress))
    throw RecError(
        kExitUnsupported,
        fmt::format("cannot map rec's scratch page at {:#x} (error {})", kScratchAddress, addr));
  // The page's code and the time shim's image after it, in one write (each
  // write through /proc/PID/mem is a syscall and a page walk).
  static_assert(kScratchAddress + kScratchSize == kTimeShimImage);
  const std::span<const std::byte> image =
      withTimeShim ? timeShimImage() : std::span<const std::byte>();
  std::vector<std::byte> bytes(kScratchSize + image.size());
  auto put = [&](uint64_t address, std::initializer_list<unsigned char> code) {
    std::memcpy(bytes.data() + (address - kScratchAddress), std::data(code), code.size());
  };
  put(kScratchSyscallInsn, {0x0f, 0x05, 0xcc});         // syscall; int3
  put(kScratchShimSyscall, {0x0f, 0x05, 0xc3});         // syscall; ret
  put(kScratchBatchSyscall, {0x0f, 0x05, 0xff, 0xe3});  // syscall; jmp *%rbx
  std::copy(image.begin(), image.end(), bytes.begin() + kScratchSize);
  // Without the image, only the code before the data area.
  size_t length = image.empty() ? kScratchData - kScratchAddress : bytes.size();
  task.writeForced(kScratchAddress, bytes.data(), length);
}

uint64_t putScratchString(Task& task, const std::string& s) {
  if (s.size() + 1 > kScratchDataSize)
    throw RecError(kExitInternal, fmt::format("path too long for the scratch page: {}", s));
  task.writeForced(kScratchData, s.c_str(), s.size() + 1);
  return kScratchData;
}

bool mapRecMemoryAt(Task& task, int recFd, uint64_t address, uint64_t size, const char* what,
                    StraySignals& strays) {
  const RecMemory memory{recFd, address, size, what};
  return mapRecMemoriesAt(task, std::span(&memory, 1), strays);
}

bool mapRecMemoriesAt(Task& task, std::span<const RecMemory> memories, StraySignals& strays) {
  if (memories.empty() || memories.size() > 2)
    throw RecError(kExitInternal, "rec: 1 or 2 of rec's memories are mapped at once");
  // Their paths one after another in the scratch data area, in one write.
  std::string paths;
  std::vector<uint64_t> pathAt;
  for (const RecMemory& m : memories) {
    pathAt.push_back(kScratchData + paths.size());
    paths += fmt::format("/proc/{}/fd/{}", ::getpid(), m.recFd);
    paths.push_back('\0');
  }
  if (paths.size() > kScratchDataSize)
    throw RecError(kExitInternal, "rec: paths too long for the scratch page");
  task.writeForced(kScratchData, paths.data(), paths.size());
  // One stop for all: the opens, the mmaps, then the closes (a failed open
  // fails its mmap with EBADF before it unmaps anything, and its close the
  // same way). The opens' and mmaps' results are the batch's first four.
  const size_t n = memories.size();
  std::vector<RemoteCall> calls;
  for (size_t i = 0; i < n; ++i)
    calls.push_back(RemoteCall{
        SYS_openat, {static_cast<uint64_t>(AT_FDCWD), pathAt[i], O_RDWR | O_CLOEXEC, 0, 0, 0}});
  for (size_t i = 0; i < n; ++i) {
    const RecMemory& m = memories[i];
    RemoteCall mmap{SYS_mmap,
                    {m.address, m.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, 0, 0}};
    mmap.fromResult[4] = static_cast<int8_t>(i);
    calls.push_back(mmap);
  }
  for (size_t i = 0; i < n; ++i) {
    RemoteCall close{SYS_close, {0, 0, 0, 0, 0, 0}};
    close.fromResult[0] = static_cast<int8_t>(i);
    calls.push_back(close);
  }
  std::vector<int64_t> got = remoteSyscalls(task, calls, strays);
  for (size_t i = 0; i < n; ++i)
    if (got[i] < 0) return false;
  for (size_t i = 0; i < n; ++i)
    if (got[n + i] != static_cast<int64_t>(memories[i].address))
      throw RecError(kExitInternal, fmt::format("cannot map {} in task {} ({})", memories[i].what,
                                                task.tid(), got[n + i]));
  return true;
}

}  // namespace rec
