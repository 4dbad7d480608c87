// A recording: runs a program tree under ptrace and turns every stop into
// trace events.
//
// One task executes at a time (recorder/scheduler.h decides which); each
// task's life is a state machine (recorder/record_task.h). The trace is one
// global event sequence; replay re-creates it by running the named task to
// its next stop.
#pragma once

#include <capnp/message.h>
#include <signal.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <string>
#include <vector>

#include "blob_store.h"
#include "code_patch.h"
#include "output_fds.h"
#include "process_maps.h"
#include "ptrace_emulation.h"
#include "rdtsc_sites.h"
#include "remote_syscall.h"
#include "shared_files.h"
#include "site_cache.h"
#include "syscall_buffer.h"
#include "task.h"
#include "task_state.h"
#include "time_shim.h"
#include "trace_file.h"

namespace rec {

// Chaos scheduling: perturbs the recorded schedule to surface races sooner.
// Replay follows whatever schedule was recorded, so it is deterministic
// whatever the seed.
struct ChaosOptions {
  bool enabled = false;
  uint64_t seed = 0;  // 0: pick one
};

struct RecordOptions {
  std::vector<std::string> command;  // program and arguments
  std::string tracePath;
  bool verbose = false;
  int stdoutFd = -1;  // the program's stdout/stderr; -1: rec's own
  int stderrFd = -1;
  std::chrono::milliseconds timeout{0};  // kill the program after this long (0: never)
  ChaosOptions chaos;
  bool checkMemory = false;  // a digest of the program's memory at every event (replay checks)
};

class RecordTask;
class Scheduler;

class RecordSession {
 public:
  explicit RecordSession(RecordOptions options);
  ~RecordSession();
  // Records until every task has exited; returns the initial process's raw
  // wait status. Throws RecError.
  int run();
  bool timedOut() const { return timedOut_; }
  uint64_t chaosSeed() const;

 private:
  void writeHeader(const std::string& executable, int cpuNumber);
  void loop();
  void onInterrupted(RecordTask& t);
  // Points in user code (record_signals.cc, tracee/code_patch.h).
  struct PointChoice {
    std::vector<MemoryCheck> memory;  // words the surrounding loop writes
    PointEntry entry = PointEntry::Jump;
    int steps = 0;                                    // instructions stepped to choose it
    std::chrono::steady_clock::time_point walkStart;  // for -v
  };
  std::optional<Stop> choosePoint(RecordTask& t, PointChoice& point);
  std::optional<Stop> runTo(RecordTask& t, uint64_t address);
  bool holdIfAsynchronous(RecordTask& t, const Stop& stop);
  bool onDeschedSignal(RecordTask& t, int signo, const siginfo_t& info);
  bool absorbDesched(RecordTask& t, Stop& stop);
  std::optional<Stop> settleDesched(RecordTask& t);
  void ensureDesched(RecordTask& t);
  // A stop of a task in the window of a call blocking in the buffer.
  enum class BlockSettle { Completed, Aborted, Other };
  BlockSettle settleBlock(RecordTask& t, std::optional<Stop>& other, bool* stepped = nullptr);
  bool inBlockWindow(RecordTask& t);
  void raiseInterruptingSignal(RecordTask& t);
  bool takeInterruptingSignal(RecordTask& t, int signo, siginfo_t& info);
  void setPoint(schema::Registers::Builder regs, capnp::List<schema::MemWrite>::Builder out,
                schema::PointState::Builder state, RecordTask& t, const PointChoice& point);
  // What the syscalls the other tasks of t's address space are blocked in may write.
  std::vector<AddressRange> pendingOutputsBeside(RecordTask& t) const;
  // Fills a trace list of address ranges, initialised to ranges.size().
  static void setAddressRanges(capnp::List<schema::AddressRange>::Builder list,
                               std::span<const AddressRange> ranges);
  void pretendCpuCount(RecordTask& t, int64_t result);
  void handleStop(RecordTask& t, const Stop& stop);
  void onSeccomp(RecordTask& t);
  void onSyscallExit(RecordTask& t);
  void onSignal(RecordTask& t, int signo);
  void deliverSignal(RecordTask& t, int signo, capnp::MallocMessageBuilder& msg);
  void onExec(RecordTask& t);
  void onFork(RecordTask& t, const Stop& stop);
  void onExited(RecordTask& t, int status);
  void onExitEvent(RecordTask& t);
  void writeExit(RecordTask& t, int status);
  bool diesByItself(RecordTask& t, int status, bool atExitStop) const;
  bool groupExitStillToCome(const RecordTask& t) const;
  void noteExit(RecordTask& t, int status, bool atExitStop);
  void writeGroupExits(const RecordTask& t);
  void completeExec(RecordTask& t);
  void pagesUnlikeFile(RecordTask& t, const MapEntry& m, const std::string& readPath,
                       std::vector<std::pair<uint64_t, std::vector<std::byte>>>& out);
  bool writtenPages(RecordTask& t, const MapEntry& m,
                    std::vector<std::pair<uint64_t, std::vector<std::byte>>>& out);
  void comparePagesWithFile(RecordTask& t, const MapEntry& m, const std::string& readPath,
                            std::vector<std::pair<uint64_t, std::vector<std::byte>>>& out);
  bool movesDataToOutput(RecordTask& t);
  bool answerAtEntry(RecordTask& t);
  bool carryOutSeccompRequest(RecordTask& t);
  void completeAtEntry(RecordTask& t, int64_t result, std::span<const std::byte> written = {},
                       const std::function<void(schema::SyscallEvent::Builder)>& more = {});
  bool answerTime(RecordTask& t);
  bool answerVsyscall(RecordTask& t);
  bool answerPrctl(RecordTask& t);
  bool answerSetAffinity(RecordTask& t);
  bool refuseUnmappable(RecordTask& t);
  bool refuseForeignMemory(RecordTask& t);
  pid_t foreignMemoryTarget(const RecordTask& t, int64_t result) const;
  void continueAfterSyscall(RecordTask& t);
  // Resumes `t` from its seccomp stop into the traced syscall.
  void startAlone(RecordTask& t);
  void enterTracedSyscall(RecordTask& t);
  // Parallel recording (docs/parallel.md).
  bool independent(const RecordTask& a, const RecordTask& b) const;
  // The CPU a process that execs moves to (docs/parallel.md "CPU placement").
  int cpuAtExec(const RecordTask& t) const;
  void pinAtExec(RecordTask& t);
  int freeCpuFor(const RecordTask& t) const;
  bool askMoves();
  void moveAtSyscallExit(RecordTask& t, schema::SyscallEvent::Builder event);
  bool needsExclusive(RecordTask& t);
  bool changesWatchedFile(RecordTask& t) const;
  void refuse(RecordTask& t, int error);
  void releaseVforkParent(RecordTask& child);
  bool emulateRdtsc(RecordTask& t);
  int trapSignal() const;  // the signal a trapped rdtsc raises
  void noteSignalMask(RecordTask& t);
  void patchRdtsc(RecordTask& t, const format::BlobHash& file, const std::string& readPath,
                  uint64_t start, uint64_t end, uint64_t offset, int prot);
  void injectHeldSignal(RecordTask& t);
  void holdSignal(RecordTask& t, const siginfo_t& info);
  void writeTimeLog(RecordTask& t, pid_t tid);
  // The syscall buffer (docs/syscall-buffer.md, record_syscalls.cc).
  void drainSyscallBuffer(RecordTask& t);
  void writeBuffered(RecordTask& t, pid_t tid);
  void patchSyscallSite(RecordTask& t, schema::SyscallEvent::Builder s);
  void startBufferAtFallback(RecordTask& t, schema::SyscallEvent::Builder s);
  bool startBuffer(RecordTask& t, SysbufSpace& space, StraySignals& strays);
  void configureBuffer(RecordTask& t, SysbufSpace& space);
  // A new executable file mapping of `space` (at exec, or an mmap):
  // noted, and the sites earlier processes made buffered calls from patched
  // now, the patches written into `out`.
  void prepatchMapping(RecordTask& t, SysbufSpace& space, TimeShimSpace* timeSpace,
                       const std::string& file, const std::string& readPath, uint64_t start, uint64_t end,
                       uint64_t offset, int prot, std::vector<std::pair<SysbufPatch, bool>>& done);
  // RDTSC without a stop (docs/syscall-buffer.md): the mapping's rdtsc sites
  // that can take a jump, patched to ask the time shim.
  void prepatchRdtsc(RecordTask& t, SysbufSpace& space, TimeShimSpace& timeSpace,
                     const std::string& file,
                     const std::string& readPath, uint64_t start, uint64_t end, uint64_t offset,
                     std::vector<std::pair<SysbufPatch, bool>>& done);
  bool startTimeLog(RecordTask& t, TimeShimSpace& space, StraySignals& strays);
  bool startTimeLogAndBuffer(RecordTask& t, TimeShimSpace& timeSpace, SysbufSpace& space,
                             StraySignals& strays);
  void writeTscControl(RecordTask& t);
  uint64_t tscNow();  // the counter rec reports (calibrated from CLOCK_MONOTONIC_RAW)
  std::optional<bool> applySitePatch(RecordTask& t, SysbufSpace& space, const SysbufPatch& patch);
  static void writePatch(schema::BufferPatch::Builder out, const SysbufPatch& patch,
                         bool startsBuffer);
  static void writePatches(capnp::List<schema::BufferPatch>::Builder out,
                           const std::vector<std::pair<SysbufPatch, bool>>& done);
  void updateBufferDenials();
  static bool noteFdTable(OutputFds& fds, const sys::SyscallRow& row,
                          const std::array<uint64_t, 6>& args, int64_t result);
  std::vector<sysbuf::FileId> bufferWatchedFiles() const;
  void updateBufferOutputFds(RecordTask& t);
  void updateBufferFdTables(SysbufSpace& space);
  // Whether fd `fd` of the process pidfd `pidfd` of `t` names is the
  // program's stdout (1), stderr (2) or neither (0).
  int originInProcessOf(RecordTask& t, uint64_t pidfd, uint64_t fd);
  std::vector<sysbuf::OutputFd> bufferOutputFds(const SysbufSpace& space);
  // Lets the buffer take t's writes to the program's output while t
  // executes alone (docs/syscall-buffer.md "The program's output").
  void openEchoWindow(RecordTask& t, bool alone);
  // Emulated ptrace between tracees (ptrace_emulation.cc).
  bool answerPtrace(RecordTask& t);
  bool stopAtVforkDoneForPtracer(RecordTask& t);
  bool answerWait(RecordTask& t);
  void waitInPlaceOfKernel(RecordTask& t, const std::function<bool(pid_t)>& wanted);
  bool answerWaitWithExit(RecordTask& t, const std::function<bool(pid_t)>& wanted);
  void writeWaitAnswer(RecordTask& t, pid_t who, int waitStatus, const siginfo_t& info);
  bool stopForPtracer(RecordTask& t, int signo, capnp::MallocMessageBuilder& msg);
  void enterPtraceStop(RecordTask& t, EmulatedPtrace::Held held, int status);
  void notifyPtracer(RecordTask& tracee);
  void sendPtraceSigchld(pid_t tracer, pid_t tracerGroup, const siginfo_t& info);
  void showPtraceSigchld(RecordTask& t, siginfo_t& info);
  void startTask(RecordTask& t);
  void resumeFromPtraceStop(RecordTask& t);
  void ptraceResume(RecordTask& tracee, int signo);
  bool interruptForPtracer(RecordTask& t);
  bool stopAtForkForPtracer(RecordTask& t, RecordTask& child, int event);
  void endPtraceOf(RecordTask& t, int status);
  RecordTask* findTask(pid_t tid);
  // `written`: what rec itself wrote to the syscall's one output range, so
  // it need not be read back from the task.
  void setEntryRegisters(RecordTask& t, schema::SyscallEvent::Builder s);
  // --check-memory: the digest of the task's memory now (or `taken` before).
  void attachMemoryDigest(RecordTask& t, capnp::MallocMessageBuilder& msg,
                          const std::optional<MemoryDigest>& taken = std::nullopt,
                          std::span<const AddressRange> takenMasked = {});
  void finishSyscallEvent(RecordTask& t, capnp::MallocMessageBuilder& msg,
                          std::span<const std::byte> written = {});

  // Event output. Every event goes through emit(), which first announces the
  // syscalls other tasks are blocked in, so replay runs them up to there.
  void attachRunSpan(RecordTask& t, schema::Event::Builder event);
  void markSharesMemory(RecordTask& t);
  void emit(RecordTask& t, capnp::MallocMessageBuilder& msg, pid_t tidOverride = 0);
  bool siblingExecing(const RecordTask& t) const;
  void forget(RecordTask& t);
  RecordTask& taskFor(pid_t tid);
  bool initialProcessGone() const;
  void dropFinishedTasks();
  void absorbStrays(RecordTask& t, StraySignals& strays);

  RecordOptions options_;
  // Before writer_: the writer's thread reports blobs to it until it ends.
  std::unique_ptr<BlobCache> blobCache_ = BlobCache::fromEnvironment();
  std::unique_ptr<format::TraceWriter> writer_;
  std::unique_ptr<BlobStore> blobs_;
  SharedFiles sharedFiles_;  // files mapped MAP_SHARED, whose changes replay applies
  std::map<pid_t, std::unique_ptr<RecordTask>> tasks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<RecordTask*> unannounced_;  // in blocking syscalls, in entry order
  // Reaped tasks, dropped from tasks_ once their exit is written: rec's fds,
  // memory and per-stop work stay flat however many processes have lived.
  std::vector<pid_t> reaped_;
  uint32_t tasksSeen_ = 0;
  pid_t initialTid_ = 0;
  int initialStatus_ = 0;
  uint64_t signalCount_ = 0;
  bool warnedSetuid_ = false;
  bool interrupted_ = false;
  bool timedOut_ = false;
  bool orphansEnded_ = false;  // the first process exited; the rest was killed
  std::optional<std::chrono::steady_clock::time_point> deadline_;  // --timeout
  // Emulated ptrace: tasks traced by another (a fast path when none), and
  // the CLD_TRAPPED siginfo of each SIGCHLD rec sent a tracer's thread group.
  int ptraceTracees_ = 0;
  uint64_t tracerSequence_ = 0;  // stepped at each resume and each stop seen (Task::setRunClock)
  std::map<pid_t, std::deque<siginfo_t>> ptraceSigchld_;
  // Exits of tracees whose tracer is not their parent, per tracer thread group.
  std::map<pid_t, std::deque<PtraceZombie>> ptraceZombies_;
  std::vector<uint8_t> tracedBitmap_;
  std::vector<uint8_t> refusedBitmap_;  // answered ENOSYS by the seccomp filter, no stop
  std::vector<std::string> env_;
  std::optional<RdtscPatcher> rdtscPatcher_;  // set where RDTSC does not trap
  // The counter every rdtsc of the recording reports: tscBase_ + (ns -
  // tscNsBase_) * tscMult_ / 2^32 of CLOCK_MONOTONIC_RAW, the scale measured
  // from rec's start to its first use (the time shim reports the same).
  uint64_t tscBase_ = 0;
  uint64_t tscNsBase_ = 0;
  uint64_t tscMult_ = 0;
  uint64_t lastTsc_ = 0;
  // rdtsc sites that ran in this recording (by file and offset), and the
  // files whose sites a process patched: the first process mapping a file
  // gets all its patchable sites patched, later ones only those that ran
  // (ld.so: 8 of 21 in /bin/true; each patch is two writes that copy a
  // page of code).
  std::map<std::string, std::set<uint64_t>> hotRdtsc_;
  std::set<std::string> rdtscFilesSeen_;
  void noteRdtscRan(RecordTask& t, uint64_t site);
  // Syscall sites a process of this recording made a buffered call from, by
  // file (content hash) and offset in it, with the syscall's number: the
  // next process mapping that file gets them patched before their first
  // call, which would otherwise cost two stops each in every process.
  std::map<std::string, std::map<uint64_t, int>> hotSites_;
  // The same, by program, from earlier recordings and for later ones.
  HotSiteCache siteCache_;
  // Files a private mmap found not sparse and stored whole, by (device,
  // inode, size, mtime: the identity the blob store goes by; and ctime): a
  // later private mmap of the same file unchanged (ld.so maps each library
  // 4 times, and again in every process) takes its hash from the store
  // after a stat of it, without an open, the sparse check and an fstat.
  std::set<std::tuple<uint64_t, uint64_t, int64_t, int64_t, int64_t, int64_t, int64_t>>
      mappedWhole_;
  // The same files, in the order stored, as the buffer's stored-files table
  // (a later private, non-executable mmap of one is buffered).
  std::vector<sysbuf::StoredFile> storedFiles_;
  void noteStoredFile(const sysbuf::StoredFile& file);
  bool timeShim_ = true;                      // REC_TIME_SHIM=off hides the vDSO instead
  bool syscallBuffer_ = true;                 // REC_SYSCALL_BUFFER=off: every syscall stops
  // For measuring: REC_RDTSC_SHIM=off (every rdtsc traps, as before) and
  // REC_SYSBUF_FILE_MMAPS=off (every file mmap traced).
  bool rdtscShim_ = true;
  bool fileMmapsBuffered_ = true;
  bool parallel_ = true;   // independent processes execute at once (REC_PARALLEL=off: not)
  bool cpuMoves_ = true;   // REC_CPU_MOVES=off: a process keeps the CPU of its exec
  uint64_t processMoves_ = 0;
  // The CPUs processes may be pinned to, the header's first (REC_CPUS=N:
  // at most N; one: the whole program on the header's CPU).
  std::vector<int> cpus_;
  bool parallelOff_ = false;  // ... until something made every task depend on the others
  sysbuf::Blocking blocking_ = sysbuf::Blocking::NoWait;  // REC_SYSBUF_BLOCKING
  // Pipes and sockets blocking inside the buffer of a process that may
  // execute beside others (REC_SYSBUF_BLOCK_STREAMS; parallel mode only).
  bool blockStreams_ = false;
  // Writes to the program's stdout/stderr through the buffer while the
  // writer executes alone (REC_SYSBUF_ECHO).
  bool echoOutput_ = true;
};

// Set by rec's SIGTERM/SIGHUP handler; the session then kills the tracees
// and completes the trace.
extern volatile sig_atomic_t gRecordStopRequested;
// Set by the SIGALRM of RecordOptions::timeout.
extern volatile sig_atomic_t gRecordTimeoutExpired;

}  // namespace rec
