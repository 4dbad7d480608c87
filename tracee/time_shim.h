// rec's side of the time shim: the vDSO stand-in every tracee gets
// (tracee/time_shim/shim.c says what it does and why, shim_abi.h where it
// lives). Recording and replay both
//   - map the shim's image with the scratch page at every exec and point
//     AT_SYSINFO_EHDR at it (installScratchPage, remote_syscall.h);
//   - map a log shared with rec at a process's first time syscall and turn
//     the shim on (TimeShim::startLog);
//   - turn it off for a fork's child until that child's own first time
//     syscall, and for good in a process that starts a second thread (the
//     log has one writer).
// The recorder turns the log's entries into syscall events marked
// `buffered`, written before the task's next event; replay fills the log
// from them before running the task on.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "remote_syscall.h"
#include "scoped_fd.h"
#include "task.h"
#include "task_state.h"
#include "time_shim/shim_abi.h"
#include "trace.capnp.h"

namespace rec {

inline constexpr uint64_t kTimeShimImage = REC_SHIM_IMAGE;
inline constexpr uint64_t kTimeShimEnd = REC_SHIM_LOG + REC_SHIM_LOG_SIZE;
// rec's own pages in every tracee (the scratch page, the shim's image,
// control page and log, the syscall buffer) differ between recording and replay: digests of the
// program's memory (task_state.h) leave them out.
inline constexpr AddressRange kRecPages[] = {{kScratchAddress, REC_SYSBUF + REC_SYSBUF_SIZE}};

// The shim's ELF image as rec embeds it (loaded at kTimeShimImage).
std::span<const std::byte> timeShimImage();

// The log of one address space: a memfd that rec maps too, so reading it at
// every event costs no syscall.
class TimeLog {
 public:
  TimeLog();  // throws RecError
  ~TimeLog();
  TimeLog(const TimeLog&) = delete;
  TimeLog& operator=(const TimeLog&) = delete;

  int fd() const { return fd_.get(); }
  rec_shim_log& log() { return *log_; }

 private:
  ScopedFd fd_;
  rec_shim_log* log_ = nullptr;
};

// The shim's state in one address space (shared by the tasks created with
// CLONE_VM).
struct TimeShimSpace {
  bool disabled = false;         // a second thread appeared: the shim stays off
  std::unique_ptr<TimeLog> log;  // once mapped
};

namespace time_shim {

// Writes the image into the task (at exec, after the scratch mapping that
// holds it is made).
void writeImage(Task& task);

// At a syscall-exit stop: maps a new log into the task and turns the shim on
// in `mode` (REC_SHIM_RECORD or REC_SHIM_REPLAY). False when the task cannot
// open it (no /proc, another root): the shim then stays off.
bool startLog(Task& task, TimeShimSpace& space, uint32_t mode, StraySignals& strays);
// The second half of startLog, for a caller that mapped `log` into the task
// itself (with the syscall buffer, sysbuf::startWithTimeLog).
void logMapped(Task& task, TimeShimSpace& space, std::unique_ptr<TimeLog> log, uint32_t mode);

// The shim state of a task created with `flags` (sys::cloneFlags) by
// `parent`. A vfork child shares its parent's shim and log (the parent
// waits). Any other task sharing the address space would write the log
// beside it: the shim goes off there for good. A fork's child starts with
// it off, until its own first time syscall gives it a log of its own.
std::shared_ptr<TimeShimSpace> forChild(const std::shared_ptr<TimeShimSpace>& space, Task& parent,
                                        Task& child, uint64_t flags);

// A log entry as the syscall event it stands for (marked `buffered`, with
// the memory the call wrote), and back.
void describeEntry(const rec_shim_entry& entry, schema::SyscallEvent::Builder out);
// Throws RecError for an event the shim cannot have logged.
rec_shim_entry entryFromEvent(schema::SyscallEvent::Reader event);

// Whether a task stopped at `ip` is inside the shim: the two modes run
// different instructions there, so replay could never reach such a point;
// preemption and signal points are chosen elsewhere.
bool inShimCode(uint64_t ip);

}  // namespace time_shim

}  // namespace rec
