// A replay: re-runs the recorded program tree under ptrace, driving each task
// to the point of its next recorded event and injecting what the recording
// saw (syscall results and memory, signals, time stamps).
//
// Invariant: between events every live task is stopped; processing an event
// resumes only the task it names, so tasks interleave exactly as recorded.
#pragma once

#include <sys/user.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "blob_files.h"
#include "code_patch.h"
#include "rdtsc_sites.h"
#include "task.h"
#include "time_shim.h"
#include "trace_file.h"

namespace rec {

struct ReplayOptions {
  std::string tracePath;
  bool force = false;  // replay even if the CPU differs from the recording's
  bool verbose = false;
};

class ReplaySession {
 public:
  explicit ReplaySession(ReplayOptions options);
  ~ReplaySession();
  // Returns rec's exit status: the recorded program's, 128+N for a signal
  // death, or kExitTraceCutShort. Throws RecError (kExitDivergence, ...).
  int run();

 private:
  struct ReplayTask;

  void checkCpu();
  void start(schema::Event::Reader first);
  void dispatch(schema::Event::Reader event);
  void onSyscall(ReplayTask& t, schema::SyscallEvent::Reader e);
  void onSyscallEnter(ReplayTask& t, schema::SyscallEnterEvent::Reader e);
  void onSignal(ReplayTask& t, schema::SignalEvent::Reader e);
  void onExec(ReplayTask& t, schema::ExecEvent::Reader e);
  void onRdtsc(ReplayTask& t, schema::RdtscEvent::Reader e);
  void onExit(ReplayTask& t, schema::ExitEvent::Reader e);

  Stop advance(ReplayTask& t);
  void skipSyscall(ReplayTask& t);
  void reachPoint(ReplayTask& t, const user_regs_struct& expected,
                  const std::vector<MemoryCheck>& memory, const std::string& what);
  static std::vector<MemoryCheck> memoryChecks(capnp::List<schema::MemWrite>::Reader list);
  // Collects a new task's first stop; returns instead the exit stop of a
  // task killed before it ever ran.
  std::optional<Stop> advanceInitial(ReplayTask& t);
  static user_regs_struct rawRegisters(schema::Registers::Reader r);
  std::optional<uint64_t> temporarySignalMask(ReplayTask& t);
  void reachSeccomp(ReplayTask& t, const std::string& expected);
  void checkSyscallMatches(ReplayTask& t, schema::SyscallEvent::Reader e);
  void parkSkipPending(ReplayTask& t, schema::SyscallEvent::Reader e, bool sigsuspend);
  void applyMmap(ReplayTask& t, schema::SyscallEvent::Reader e);
  void applyShmAt(ReplayTask& t, schema::SyscallEvent::Reader e);
  void applyShmDt(ReplayTask& t, schema::SyscallEvent::Reader e);
  int64_t mapIntoTask(ReplayTask& t, const std::string& file, bool writable,
                      std::array<uint64_t, 6> mmapArgs);
  // Creates the task the recording named `recordedChild`; the program sees
  // it as `idSeen` (clone's result).
  void runForkLike(ReplayTask& t, int recordedChild, int32_t idSeen);
  void onBufferedSyscall(ReplayTask& t, schema::SyscallEvent::Reader e);
  void startTimeLog(ReplayTask& t, schema::SyscallEvent::Reader e);
  void completeForkLike(ReplayTask& t, schema::SyscallEvent::Reader e);
  void fixParentTid(ReplayTask& t);
  void execInGroup(ReplayTask& t, int recordedLeader);
  void releaseRobustFutexes(ReplayTask& t);
  Stop waitSyscallExit(ReplayTask& t);
  void echoOutput(ReplayTask& t, schema::SyscallEvent::Reader e);
  void remapExecFiles(ReplayTask& t, schema::ExecEvent::Reader e);
  void patchRdtsc(ReplayTask& t, schema::Mapping::Reader m);
  ReplayTask& taskFor(int recordedTid);
  [[noreturn]] void diverge(ReplayTask& t, const std::string& expected, const std::string& actual);
  void killAll();

  ReplayOptions options_;
  std::unique_ptr<format::TraceReader> reader_;
  std::unique_ptr<BlobCache> blobCache_ = BlobCache::fromEnvironment();
  std::unique_ptr<BlobFiles> blobs_;
  std::map<int, std::unique_ptr<ReplayTask>> tasks_;  // by recorded tid
  int initialRecordedTid_ = 0;
  int initialStatus_ = 0;
  bool initialExited_ = false;
  uint64_t eventIndex_ = 0;
  std::vector<pid_t> zombies_;  // exited leaders, reaped once their threads are gone
  // Set when the recording patched RDTSC or this machine does not trap it.
  std::optional<RdtscPatcher> rdtscPatcher_;
  bool timeShim_ = false;  // the recording had the time shim (time_shim.h)
};

}  // namespace rec
