#include "task.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "errors.h"
#include "exit_codes.h"

namespace rec {

void throwErrno(int exitCode, const std::string& what) {
  throw RecError(exitCode, what + ": " + std::strerror(errno));
}

Stop decodeStop(int status) {
  Stop stop{StopKind::Exited, status};
  if (WIFEXITED(status) || WIFSIGNALED(status)) return stop;
  int sig = WSTOPSIG(status);
  int event = (status >> 16) & 0xff;
  stop.event = event;
  if (sig == (SIGTRAP | 0x80)) {
    stop.kind = StopKind::SyscallStop;
    return stop;
  }
  switch (event) {
    case 0:
      stop.kind = StopKind::Signal;
      stop.signal = sig;
      return stop;
    case PTRACE_EVENT_SECCOMP:
      stop.kind = StopKind::Seccomp;
      return stop;
    case PTRACE_EVENT_EXEC:
      stop.kind = StopKind::Exec;
      return stop;
    case PTRACE_EVENT_FORK:
    case PTRACE_EVENT_VFORK:
    case PTRACE_EVENT_CLONE:
      stop.kind = StopKind::Fork;
      return stop;
    case PTRACE_EVENT_VFORK_DONE:
      stop.kind = StopKind::VforkDone;
      return stop;
    case PTRACE_EVENT_EXIT:
      stop.kind = StopKind::ExitEvent;
      return stop;
    case PTRACE_EVENT_STOP:
      stop.kind = StopKind::GroupStop;
      stop.signal = sig;
      return stop;
    default:
      stop.kind = StopKind::Signal;
      stop.signal = sig;
      return stop;
  }
}

std::string describeStop(const Stop& stop) {
  switch (stop.kind) {
    case StopKind::Seccomp:
      return "syscall entry";
    case StopKind::SyscallStop:
      return "syscall stop";
    case StopKind::Signal:
      return fmt::format("signal {}", sys::signalName(stop.signal));
    case StopKind::Exec:
      return "exec";
    case StopKind::Fork:
      return "fork";
    case StopKind::VforkDone:
      return "vfork done";
    case StopKind::ExitEvent:
      return "exit";
    case StopKind::GroupStop:
      return "group stop";
    case StopKind::Exited:
      if (WIFEXITED(stop.status)) return fmt::format("exited with {}", WEXITSTATUS(stop.status));
      return fmt::format("killed by {}", sys::signalName(WTERMSIG(stop.status)));
  }
  return "?";
}

void Registers::setSyscallArg(int index, uint64_t v) {
  switch (index) {
    case 0:
      raw_.rdi = v;
      break;
    case 1:
      raw_.rsi = v;
      break;
    case 2:
      raw_.rdx = v;
      break;
    case 3:
      raw_.r10 = v;
      break;
    case 4:
      raw_.r8 = v;
      break;
    case 5:
      raw_.r9 = v;
      break;
  }
}

void Registers::setSyscallArgs(const std::array<uint64_t, 6>& args) {
  for (int i = 0; i < 6; ++i) setSyscallArg(i, args[i]);
}

Task::Task(pid_t tid, pid_t tgid) : tid_(tid), tgid_(tgid) {}

Task::~Task() {
  dropStatFd();
}

Stop Task::wait() {
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(tid_, &status, __WALL);
    if (r == tid_) break;
    if (r < 0 && errno == EINTR) continue;
    throwErrno(kExitInternal, fmt::format("waitpid({})", tid_));
  }
  noteStopped();
  return decodeStop(status);
}

std::optional<Stop> Task::waitUnlessInterrupted() {
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(tid_, &status, __WALL);
    if (r == tid_) break;
    if (r < 0 && errno == EINTR) return std::nullopt;
    throwErrno(kExitInternal, fmt::format("waitpid({})", tid_));
  }
  noteStopped();
  return decodeStop(status);
}

std::optional<Stop> Task::poll() {
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(tid_, &status, __WALL | WNOHANG);
    if (r == tid_) break;
    if (r == 0) return std::nullopt;
    if (r < 0 && errno == EINTR) continue;
    throwErrno(kExitInternal, fmt::format("waitpid({})", tid_));
  }
  noteStopped();
  return decodeStop(status);
}

namespace {
// Tasks whose /proc/TID/stat rec keeps open (kernelState): bounded, so that
// a program with thousands of threads does not use up rec's fds.
int gOpenStatFds = 0;
constexpr int kMaxOpenStatFds = 128;
}  // namespace

char Task::kernelState() {
  // The file stays open: a blocking syscall asks this at each call (the pipe
  // ping-pong: twice a round), and a pread at offset 0 regenerates it, so
  // open and close need not be paid each time. A failed read (the task
  // gone) drops it, and so does a new id (setTid).
  char buf[512];
  ScopedFd once;
  int fd = statFd_.get();
  if (fd < 0) {
    once.reset(::open(fmt::format("/proc/{}/stat", tid_).c_str(), O_RDONLY | O_CLOEXEC));
    if (!once.valid()) return 0;
    fd = once.get();
    if (gOpenStatFds < kMaxOpenStatFds) {
      statFd_ = std::move(once);
      ++gOpenStatFds;
    }
  }
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) {
    dropStatFd();
    return 0;
  }
  buf[n] = 0;
  // "pid (comm) S ...": comm may hold spaces and parentheses; the state
  // follows the last ')'.
  const char* close = std::strrchr(buf, ')');
  return close && close[1] == ' ' ? close[2] : 0;
}

void Task::dropStatFd() {
  if (!statFd_.valid()) return;
  statFd_.reset();
  --gOpenStatFds;
}

const Registers& Task::regs() {
  if (!regsValid_) {
    if (::ptrace(PTRACE_GETREGS, tid_, nullptr, &regs_.raw()) != 0)
      throwErrno(kExitInternal, fmt::format("PTRACE_GETREGS({})", tid_));
    regsValid_ = true;
  }
  return regs_;
}

Registers& Task::mutableRegs() {
  regs();
  regsDirty_ = true;
  return regs_;
}

void Task::setRegs(const Registers& regs) {
  regs_ = regs;
  regsValid_ = true;
  regsDirty_ = true;
}

void Task::knowCodeAt(uint64_t ip, std::span<const uint8_t> code) {
  KnownCode known;
  known.ip = ip;
  known.size = std::min(code.size(), known.bytes.size());
  std::copy_n(code.begin(), known.size, known.bytes.begin());
  knownCode_ = known;
}

void Task::noteStopped() {
  knownCode_.reset();
  regsValid_ = false;
  regsDirty_ = false;
  if (pushfStep_) clearPushedTrapFlag();
}

void Task::notePushfStep() {
  pushfStep_.reset();
  const Registers& r = regs();
  constexpr uint64_t kTrapFlag = 0x100;
  if (r.raw().eflags & kTrapFlag) return;  // the program's own: leave it
  uint8_t code[3] = {};
  size_t got = 0;
  if (knownCode_ && knownCode_->ip == r.ip()) {
    got = knownCode_->size;
    std::copy_n(knownCode_->bytes.begin(), got, code);
  } else {
    got = read(r.ip(), code, sizeof code);
  }
  if (got < 2) return;
  unsigned at = code[0] == 0x66 || code[0] == 0x48 ? 1 : 0;
  if (code[at] != 0x9c) return;
  unsigned width = code[0] == 0x66 ? 2 : 8;
  pushfStep_ = PushfStep{r.ip() + at + 1, r.raw().rsp - width, width};
}

void Task::clearPushedTrapFlag() {
  PushfStep step = *pushfStep_;
  pushfStep_.reset();
  user_regs_struct now{};
  if (::ptrace(PTRACE_GETREGS, tid_, nullptr, &now) != 0) return;  // gone, or not in a stop
  if (now.rip != step.nextIp || now.rsp != step.slot) return;      // the step did not complete
  uint64_t word = 0;
  if (read(step.slot, &word, step.width) != step.width) return;
  if (!(word & 0x100)) return;
  word &= ~uint64_t{0x100};
  write(step.slot, &word, step.width);
}

void Task::resume(Resume how, int signal) {
  if (runClock_) resumedAt_ = *runClock_;
  if (sequence_) resumedSeq_ = ++*sequence_;
  lastResumeUser_ = how != Resume::Syscall;
  if (how == Resume::Step) notePushfStep();
  knownCode_.reset();
  if (regsDirty_) {
    regsDirty_ = false;
    if (::ptrace(PTRACE_SETREGS, tid_, nullptr, &regs_.raw()) != 0) {
      // Killed meanwhile (SIGKILL, a sibling's exit_group): the next wait
      // reports its death.
      if (errno == ESRCH) return;
      throwErrno(kExitInternal, fmt::format("PTRACE_SETREGS({})", tid_));
    }
  }
  regsValid_ = false;
  int request = how == Resume::Cont      ? PTRACE_CONT
                : how == Resume::Syscall ? PTRACE_SYSCALL
                                         : PTRACE_SINGLESTEP;
  if (::ptrace(static_cast<__ptrace_request>(request), tid_, nullptr,
               reinterpret_cast<void*>(static_cast<intptr_t>(signal))) != 0) {
    // The task may have been killed (SIGKILL, exit_group of a sibling)
    // meanwhile: its exit is reported by the next wait.
    if (errno == ESRCH) return;
    throwErrno(kExitInternal, fmt::format("ptrace resume({})", tid_));
  }
}

void Task::listen() {
  regsValid_ = false;
  if (::ptrace(PTRACE_LISTEN, tid_, nullptr, nullptr) != 0 && errno != ESRCH)
    throwErrno(kExitInternal, fmt::format("PTRACE_LISTEN({})", tid_));
}

Stop Task::endListen() {
  if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) != 0 && errno != ESRCH)
    throwErrno(kExitInternal, fmt::format("PTRACE_INTERRUPT({})", tid_));
  return wait();
}

siginfo_t Task::siginfo() {
  siginfo_t info{};
  if (::ptrace(PTRACE_GETSIGINFO, tid_, nullptr, &info) != 0)
    throwErrno(kExitInternal, fmt::format("PTRACE_GETSIGINFO({})", tid_));
  return info;
}

void Task::setSiginfo(const siginfo_t& info) {
  if (::ptrace(PTRACE_SETSIGINFO, tid_, nullptr, &info) != 0)
    throwErrno(kExitInternal, fmt::format("PTRACE_SETSIGINFO({})", tid_));
}

unsigned long Task::eventMessage() {
  unsigned long msg = 0;
  if (::ptrace(PTRACE_GETEVENTMSG, tid_, nullptr, &msg) != 0)
    throwErrno(kExitInternal, fmt::format("PTRACE_GETEVENTMSG({})", tid_));
  return msg;
}

size_t Task::read(uint64_t addr, void* buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    iovec local{static_cast<char*>(buf) + done, len - done};
    iovec remote{reinterpret_cast<void*>(addr + done), len - done};
    ssize_t n = ::process_vm_readv(tid_, &local, 1, &remote, 1, 0);
    if (n <= 0) {
      // A range crossing into an unmapped page reads short; retry page by
      // page so we return everything up to the hole.
      size_t toPageEnd = 4096 - ((addr + done) & 4095);
      if (toPageEnd < len - done) {
        iovec l{static_cast<char*>(buf) + done, toPageEnd};
        iovec r{reinterpret_cast<void*>(addr + done), toPageEnd};
        n = ::process_vm_readv(tid_, &l, 1, &r, 1, 0);
      }
      if (n <= 0) break;
    }
    done += static_cast<size_t>(n);
  }
  return done;
}

std::vector<std::byte> Task::readBytes(uint64_t addr, size_t len) {
  std::vector<std::byte> out(len);
  out.resize(read(addr, out.data(), len));
  return out;
}

std::string Task::readCString(uint64_t addr, size_t maxLen) {
  std::string out;
  if (addr == 0) return out;
  char chunk[256];
  while (out.size() < maxLen) {
    // Stay within one page per read so a string ending just before an
    // unmapped page is still read whole.
    size_t want = std::min<size_t>(sizeof chunk, 4096 - ((addr + out.size()) & 4095));
    size_t n = read(addr + out.size(), chunk, want);
    if (n == 0) break;
    const char* nul = static_cast<const char*>(std::memchr(chunk, 0, n));
    if (nul) {
      out.append(chunk, nul - chunk);
      return out;
    }
    out.append(chunk, n);
  }
  return out;
}

void Task::resetMemory() {
  memFd_.reset();
}

bool Task::writeAsTask(uint64_t addr, const void* buf, size_t len) {
  knownCode_.reset();
  iovec local{const_cast<void*>(buf), len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  return ::process_vm_writev(tid_, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len);
}

void Task::write(uint64_t addr, const void* buf, size_t len) {
  knownCode_.reset();
  if (len == 0) return;
  iovec local{const_cast<void*>(buf), len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_writev(tid_, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(len)) return;
  writeForced(addr, buf, len);
}

void Task::writeForced(uint64_t addr, const void* buf, size_t len) {
  knownCode_.reset();
  // /proc/pid/mem writes with FOLL_FORCE, as a debugger does.
  if (!memFd_.valid()) {
    memFd_.reset(::open(fmt::format("/proc/{}/mem", tid_).c_str(), O_RDWR | O_CLOEXEC));
    if (!memFd_.valid()) throwErrno(kExitInternal, fmt::format("open /proc/{}/mem", tid_));
  }
  size_t done = 0;
  while (done < len) {
    ssize_t w = ::pwrite(memFd_.get(), static_cast<const char*>(buf) + done, len - done,
                         static_cast<off_t>(addr + done));
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      throwErrno(kExitInternal,
                 fmt::format("cannot write {} bytes at {:#x} in task {}", len, addr, tid_));
    }
    done += static_cast<size_t>(w);
  }
}

}  // namespace rec
