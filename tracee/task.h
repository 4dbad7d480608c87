// One traced task (a thread or a single-threaded process) seen through ptrace.
//
// Invariants: a Task is only touched while the task is in a ptrace-stop
// (except resume(), which ends the stop). Registers are cached from the
// first regs() of a stop and written back lazily by resume(), so that a
// handler that reads and modifies registers costs one GETREGS and at most one
// SETREGS per stop.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "scoped_fd.h"
#include "syscall_table.h"

namespace rec {

// The kinds of ptrace-stop a waitpid status can describe.
enum class StopKind {
  Seccomp,      // PTRACE_EVENT_SECCOMP: at entry of a traced syscall
  SyscallStop,  // syscall-enter- or -exit-stop (after PTRACE_SYSCALL)
  Signal,       // signal-delivery-stop
  Exec,         // PTRACE_EVENT_EXEC
  Fork,         // PTRACE_EVENT_FORK / VFORK / CLONE (the parent)
  VforkDone,    // PTRACE_EVENT_VFORK_DONE
  ExitEvent,    // PTRACE_EVENT_EXIT: about to exit
  GroupStop,    // PTRACE_EVENT_STOP: group-stop or a new child's first stop
  Exited,       // WIFEXITED / WIFSIGNALED: gone
};

struct Stop {
  StopKind kind;
  int status = 0;  // raw waitpid status
  int signal = 0;  // for Signal / GroupStop
  int event = 0;   // PTRACE_EVENT_* for event stops
};

Stop decodeStop(int status);

// The legacy vsyscall page, whose calls the kernel emulates (no exit stop).
inline bool inVsyscallPage(uint64_t ip) {
  return (ip & ~uint64_t{0xfff}) == 0xffffffffff600000ull;
}
std::string describeStop(const Stop& stop);

class Registers {
 public:
  Registers() = default;
  explicit Registers(const user_regs_struct& raw) : raw_(raw) {}
  user_regs_struct& raw() { return raw_; }
  const user_regs_struct& raw() const { return raw_; }

  uint64_t ip() const { return raw_.rip; }
  uint64_t sp() const { return raw_.rsp; }
  int64_t result() const { return static_cast<int64_t>(raw_.rax); }
  int syscallNumber() const { return static_cast<int>(static_cast<int64_t>(raw_.orig_rax)); }
  std::array<uint64_t, 6> syscallArgs() const {
    return {raw_.rdi, raw_.rsi, raw_.rdx, raw_.r10, raw_.r8, raw_.r9};
  }
  // A 32-bit syscall's (int 0x80): ebx, ecx, edx, esi, edi, ebp.
  std::array<uint64_t, 6> compatSyscallArgs() const {
    constexpr uint64_t kLow = 0xffffffff;
    return {raw_.rbx & kLow, raw_.rcx & kLow, raw_.rdx & kLow,
            raw_.rsi & kLow, raw_.rdi & kLow, raw_.rbp & kLow};
  }
  void setIp(uint64_t v) { raw_.rip = v; }
  void setResult(int64_t v) { raw_.rax = static_cast<uint64_t>(v); }
  void setSyscallNumber(int64_t v) { raw_.orig_rax = static_cast<uint64_t>(v); }
  void setSyscallArg(int index, uint64_t v);
  void setSyscallArgs(const std::array<uint64_t, 6>& args);

 private:
  user_regs_struct raw_{};
};

class Task : public sys::MemoryReader {
 public:
  Task(pid_t tid, pid_t tgid);
  ~Task();
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  pid_t tid() const { return tid_; }
  // execve from a non-leader thread gives it the leader's id.
  void setTid(pid_t tid) {
    tid_ = tid;
    dropStatFd();
  }
  pid_t tgid() const { return tgid_; }
  void setTgid(pid_t tgid) { tgid_ = tgid; }

  // Waits for this task's next stop (waitpid with __WALL).
  Stop wait();
  // The same, but nullopt when a signal to rec interrupted the wait.
  std::optional<Stop> waitUnlessInterrupted();
  // Its next stop if it has one already (waitpid with WNOHANG).
  std::optional<Stop> poll();
  // The scheduler state the kernel shows in /proc/TID/stat: 'R' running,
  // 'S'/'D' asleep (in a syscall that waits), 't' in a ptrace stop, ...;
  // 0 when the task is gone.
  char kernelState();
  // Called when a stop for this task was collected elsewhere (waitpid(-1)).
  void noteStopped();

  const Registers& regs();
  Registers& mutableRegs();  // marks registers dirty; written back on resume
  void setRegs(const Registers& regs);

  // The code at `ip` as the caller just read it in this stop: a single
  // step from there (resume(Step) looks for `pushf`) need not read it
  // again. Forgotten at the next stop, resume, or write to the task.
  void knowCodeAt(uint64_t ip, std::span<const uint8_t> code);

  enum class Resume { Cont, Syscall, Step };  // Step: PTRACE_SINGLESTEP (one instruction)
  // Writes back dirty registers and resumes, delivering `signal` (0: none).
  void resume(Resume how, int signal = 0);
  // Logical clocks of the owner's (the recorder's: events written so far,
  // and a sequence it also steps at each stop it sees), read (the sequence
  // stepped) at every resume, so the owner knows what it did while the
  // task ran (docs/parallel.md "Parallel replay"). They must outlive the task.
  void setRunClock(const uint64_t* clock, uint64_t* sequence) {
    runClock_ = clock;
    sequence_ = sequence;
  }
  uint64_t resumedAt() const { return resumedAt_; }    // the clock at the last resume
  uint64_t resumedSeq() const { return resumedSeq_; }  // the sequence's value then
  // Whether the last resume ran user code (Cont, Step), not only the
  // kernel's side of a syscall (Syscall).
  bool lastResumeRanUserCode() const { return lastResumeUser_; }
  // At a group-stop: PTRACE_LISTEN, the task stays stopped (job control)
  // until SIGCONT or SIGKILL, which the next wait reports.
  void listen();
  // Out of PTRACE_LISTEN (which PTRACE_CONT & co refuse with ESRCH): the
  // task reports a PTRACE_EVENT_STOP, returned here, and can be resumed.
  Stop endListen();

  siginfo_t siginfo();
  void setSiginfo(const siginfo_t& info);
  unsigned long eventMessage();

  // Memory. read() may be short at an unmapped page.
  size_t read(uint64_t addr, void* buf, size_t len) override;
  std::vector<std::byte> readBytes(uint64_t addr, size_t len);
  std::string readCString(uint64_t addr, size_t maxLen = 4096);
  // Writes as the kernel would for the task's own syscall: false (nothing
  // or part written) where the task could not write.
  bool writeAsTask(uint64_t addr, const void* buf, size_t len);
  // Writes even to read-only pages (through /proc/pid/mem). Throws on failure.
  void write(uint64_t addr, const void* buf, size_t len);
  // The same for pages known to be read-only (code, rec's scratch page),
  // without trying the cheaper way first.
  void writeForced(uint64_t addr, const void* buf, size_t len);
  void write(uint64_t addr, std::span<const std::byte> data) {
    write(addr, data.data(), data.size());
  }
  // After exec the task has a new address space: reopen /proc/pid/mem.
  void resetMemory();

 private:
  pid_t tid_;
  const uint64_t* runClock_ = nullptr;
  uint64_t* sequence_ = nullptr;
  uint64_t resumedAt_ = 0, resumedSeq_ = 0;
  bool lastResumeUser_ = true;
  pid_t tgid_;
  Registers regs_;
  bool regsValid_ = false;
  bool regsDirty_ = false;
  ScopedFd memFd_;
  ScopedFd statFd_;  // /proc/TID/stat, kept open for kernelState()
  // A single-step over `pushf` pushes the trap flag the step itself set; the
  // program would pop it later and trap on its own (Go's asyncPreempt does
  // pushfq ... popfq). Where that word lands and how wide it is, until the
  // step's stop clears the flag there.
  struct PushfStep {
    uint64_t nextIp = 0;
    uint64_t slot = 0;
    unsigned width = 0;
  };
  std::optional<PushfStep> pushfStep_;
  struct KnownCode {
    uint64_t ip = 0;
    std::array<uint8_t, 3> bytes{};
    size_t size = 0;
  };
  std::optional<KnownCode> knownCode_;  // knowCodeAt(), until the stop ends
  void notePushfStep();
  void dropStatFd();
  void clearPushedTrapFlag();
};

}  // namespace rec
