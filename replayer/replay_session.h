// A replay: re-runs the recorded program tree under ptrace, driving each task
// to the point of its next recorded event and injecting what the recording
// saw (syscall results and memory, signals, time stamps).
//
// Invariant: processing an event resumes only the task it names, so tasks
// interleave as recorded. Between events every live task is stopped, except
// those that parallel replay started toward their next event ahead of its
// turn, where the recording ran them beside the events in between
// (replay_ahead.cc; docs/parallel.md "Parallel replay").
//
// run() replays everything. A debugger drives the same replay step by step
// instead: open(), then step() event by event, with a ReplayObserver seeing
// each task's user code run (replay_observer.h), and the accessors below to
// read the stopped tasks.
#pragma once

#include <sys/user.h>

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <tuple>
#include <vector>

#include "blob_files.h"
#include "code_patch.h"
#include "debug_registers.h"
#include "event_window.h"
#include "rdtsc_sites.h"
#include "signals.h"
#include "syscall_buffer.h"
#include "task.h"
#include "task_state.h"
#include "time_shim.h"
#include "trace_file.h"

namespace rec {

class ReplayObserver;

struct ReplayOptions {
  std::string tracePath;
  bool force = false;  // replay even if the CPU differs from the recording's
  bool verbose = false;
  bool requireMemoryChecks = false;  // --check: the trace must carry memory digests
};

// An in-process breakpoint the replay has planted to reach a point in user
// code (code_patch.h), while the task runs toward it: what the program's
// code really holds there, and the trampoline page.
struct ActivePatch {
  int recordedTid = 0;
  uint64_t ip = 0;
  std::vector<uint8_t> original;  // the bytes the jump replaced, at ip
  uint64_t page = 0;              // the trampoline's page
  uint64_t trapIp = 0;            // rip after the trampoline's int3
};

// A recorded syscall's number, arguments and strings: what a report needs
// to describe it, without keeping its trace message.
struct RecordedCall {
  int32_t number = 0;
  std::array<uint64_t, 6> args{};
  std::vector<std::string> strings;
  static RecordedCall of(schema::SyscallEvent::Reader e);
  std::string text() const;  // as `rec dump` prints it
};

class ReplaySession {
 public:
  explicit ReplaySession(ReplayOptions options);
  ~ReplaySession();
  // Returns rec's exit status: the recorded program's, 128+N for a signal
  // death, or kExitTraceCutShort. Throws RecError (kExitDivergence, ...).
  int run();

  // Step by step: open() reads the trace and checks the CPU; each step()
  // applies one event (the first starts the program) and returns false
  // once the trace has no more; finish() then says what run() would return.
  void open();
  bool step();
  int finish();
  void setObserver(ReplayObserver* observer) { observer_ = observer; }
  // The program's writes to its stdout and stderr appear on rec's for
  // events from `index` on (a debugger going back in time does not repeat
  // output already shown).
  void echoOutputFrom(uint64_t index) { echoFrom_ = index; }

  // Index of the event step() applies next (the number of events applied).
  uint64_t nextEventIndex() const { return nextIndex_; }
  // The event step() applies next; nullopt at the end of the trace. Valid
  // until the next step().
  std::optional<schema::Event::Reader> peekEvent();
  format::TraceReader& trace() { return *reader_; }

  // The tasks alive between events, by recorded ids.
  struct TaskInfo {
    int recordedTid;
    int recordedPid;  // recorded id of its thread group
    pid_t tid;        // its id on this machine
  };
  std::vector<TaskInfo> liveTasks();
  // The task with that recorded id, stopped and ready to be read (its
  // first stop collected); nullptr when it does not exist or has exited.
  Task* inspect(int recordedTid);
  // Its registers as the program sees them: in an emulated syscall whose
  // result is decided but not yet applied, as after the syscall.
  Registers visibleRegisters(int recordedTid);
  // The in-process breakpoint planted right now, if any.
  const std::optional<ActivePatch>& activePatch() const { return activePatch_; }
  // A copy of this replay at its current boundary, with processes of its
  // own (fork injected into each replayed process, threads re-created):
  // replay_checkpoint.cc. nullptr when the state cannot be copied here.
  std::unique_ptr<ReplaySession> fork();

  // A file on this machine with the contents a mapping of `recordedPath`
  // (blob `hash`) had when recorded.
  std::string blobFile(const format::BlobHash& hash, const std::string& recordedPath);

 private:
  struct ReplayTask;

  // Resumes t into its user code (asking the observer how) and says whether
  // the observer claimed the stop that ended the run.
  void resumeUserCode(ReplayTask& t, int signal);
  bool observerClaims(ReplayTask& t, const Stop& stop);

  void checkCpu();
  void start(schema::Event::Reader first);
  void dispatch(schema::Event::Reader event);
  void releaseIfDead(int recordedTid);
  void onSyscall(ReplayTask& t, schema::SyscallEvent::Reader e);
  void applyToPtraceTracee(schema::SyscallEvent::Reader e);
  void onSyscallEnter(ReplayTask& t, schema::SyscallEnterEvent::Reader e);
  void onSignal(ReplayTask& t, schema::SignalEvent::Reader e);
  void onExec(ReplayTask& t, schema::ExecEvent::Reader e);
  void onRdtsc(ReplayTask& t, schema::RdtscEvent::Reader e);
  static std::optional<HandlerFrame> recordedFrame(schema::SignalEvent::Reader e);
  void resumeDeliveringPending(ReplayTask& t);
  void onExit(ReplayTask& t, schema::ExitEvent::Reader e);

  Stop advance(ReplayTask& t);
  void beginRun(ReplayTask& t);
  Stop awaitStop(ReplayTask& t);
  // Parallel replay (replay_ahead.cc).
  void considerAhead(ReplayTask& t);
  void reconsiderDue();
  void collectDue();
  void queueEarly(ReplayTask& t, uint64_t index);
  void enqueueBuffered(ReplayTask& t, schema::BufferedSyscalls::Reader b);
  void showBuffered(schema::BufferedSyscalls::Reader b);
  bool compatPassthrough(ReplayTask& t);
  void skipSyscall(ReplayTask& t);
  // A point in user code as recorded, and reaching it (replay_points.cc).
  struct RecordedPoint {
    user_regs_struct regs{};
    std::vector<MemoryCheck> words;              // checked in-process with the registers
    std::optional<std::vector<uint8_t>> xstate;  // absent in traces from before full states
    std::vector<AddressRange> pendingOutputs;    // hashed as zeros (PointState.pendingOutputs)
    std::optional<MemoryDigest> memory;
    uint64_t runNs = 0;  // how long the task ran to get there, when recorded
    PointEntry entry = PointEntry::Jump;
    std::vector<uint8_t> stack;      // from rsp up, checked in-process (empty in older traces)
    bool deadStackExcluded = false;  // the digest leaves out the stack below the red zone
    // While reaching it: the memory block that differed at the last candidate.
    mutable std::optional<uint64_t> suspectBlock;
  };
  static RecordedPoint recordedPoint(schema::Registers::Reader regs,
                                     capnp::List<schema::MemWrite>::Reader words, bool hasState,
                                     schema::PointState::Reader state);
  void reachPoint(ReplayTask& t, const RecordedPoint& point, const std::string& what);
  std::optional<std::string> stateDifference(ReplayTask& t, const RecordedPoint& point,
                                             uint64_t ip);
  // Collects a new task's first stop; returns instead the exit stop of a
  // task killed before it ever ran.
  std::optional<Stop> advanceInitial(ReplayTask& t);
  static user_regs_struct rawRegisters(schema::Registers::Reader r);
  static int64_t numberAtDelivery(schema::SignalEvent::Reader e, int64_t fallback);
  static void deliverAtSkippedExit(ReplayTask& t, schema::SignalEvent::Reader e, int signo);
  std::optional<uint64_t> temporarySignalMask(ReplayTask& t);
  void reachSeccomp(ReplayTask& t, const std::string& expected);
  void checkSyscallMatches(ReplayTask& t, schema::SyscallEvent::Reader e);
  void decodeEntryRegisters(ReplayTask& t, schema::SyscallEvent::Reader e);
  void parkSkipPending(ReplayTask& t, schema::SyscallEvent::Reader e, bool sigsuspend);
  void applyMmap(ReplayTask& t, schema::SyscallEvent::Reader e);
  void applyShmAt(ReplayTask& t, schema::SyscallEvent::Reader e);
  void applyShmDt(ReplayTask& t, schema::SyscallEvent::Reader e);
  void openForMmap(ReplayTask& t, const std::string& file, bool writable);
  int64_t mapIntoTask(ReplayTask& t, const std::string& file, bool writable,
                      std::array<uint64_t, 6> mmapArgs);
  // Creates the task the recording named `recordedChild`; the program sees
  // it as `idSeen` (clone's result).
  void runForkLike(ReplayTask& t, int recordedChild, int32_t idSeen, int cpu);
  // Pins `t` to its recorded CPU (-1: leaves it where it is).
  void pinRecorded(ReplayTask& t, int cpu);
  // Moves rec's thread to the CPU of `t`, which it is about to run: replay
  // runs one task at a time, and each stop of a task on another CPU than
  // rec's costs two cross-CPU wake-ups.
  void followTask(const ReplayTask& t);
  int replayerCpu_ = -1;  // the CPU rec's thread is pinned to (-1: none)
  void onBufferedSyscall(ReplayTask& t, schema::SyscallEvent::Reader e);
  void startTimeLog(ReplayTask& t, schema::SyscallEvent::Reader e);
  void queueTimeAnswer(ReplayTask& t, const rec_shim_entry& entry);
  SysbufPatch replayRdtscPatch(ReplayTask& t, schema::BufferPatch::Reader p, StraySignals& strays);
  void onBufferedSyscalls(ReplayTask& t, schema::BufferedSyscalls::Reader b);
  void applyBufferPatch(ReplayTask& t, schema::SyscallEvent::Reader e, bool executed);
  void startBufferAtExit(ReplayTask& t, schema::SyscallEvent::Reader e, bool executed);
  void applyBufferPatches(ReplayTask& t, capnp::List<schema::BufferPatch>::Reader patches);
  SysbufPatch replayPatch(ReplayTask& t, schema::BufferPatch::Reader p, StraySignals& strays);
  void checkBufferConsumed(ReplayTask& t);
  void completeForkLike(ReplayTask& t, schema::SyscallEvent::Reader e);
  void fixParentTid(ReplayTask& t);
  void execInGroup(ReplayTask& t, int recordedLeader);
  void releaseRobustFutexes(ReplayTask& t);
  void withoutNamespaces(ReplayTask& t);
  bool applyRlimit(ReplayTask& t, schema::SyscallEvent::Reader e);
  Stop waitSyscallExit(ReplayTask& t);
  void echoOutput(ReplayTask& t, schema::SyscallEvent::Reader e);
  static void showOutput(int fd, std::span<const std::byte> data);
  void remapExecFiles(ReplayTask& t, schema::ExecEvent::Reader e);
  std::optional<format::BlobHash> diskFileHash(const std::string& path);
  void patchRdtsc(ReplayTask& t, schema::Mapping::Reader m);
  // State checks at events (replay_checks.cc).
  void checkRegisters(ReplayTask& t, schema::Registers::Reader recorded, const std::string& at);
  void checkMemory(ReplayTask& t, const std::string& at);
  void noteMatched(ReplayTask& t, schema::Event::Reader event);
  std::vector<AddressRange> rangesNotDigested() const;
  static MemoryDigest recordedDigest(capnp::List<schema::MemoryBlock>::Reader blocks);
  ReplayTask& taskFor(int recordedTid);
  [[noreturn]] void diverge(ReplayTask& t, const std::string& expected, const std::string& actual);
  void killAll();
  // fork() helpers (replay_checkpoint.cc).
  struct ForkState;
  bool copyProcess(ReplaySession& copy, std::vector<ReplayTask*>& threads, ForkState& state);

  ReplayOptions options_;
  std::shared_ptr<format::TraceReader> reader_;  // shared with the copies fork() makes
  std::unique_ptr<BlobCache> blobCache_ = BlobCache::fromEnvironment();
  std::unique_ptr<BlobFiles> blobs_;
  std::map<int, std::unique_ptr<ReplayTask>> tasks_;  // by recorded tid
  int initialRecordedTid_ = 0;
  int initialStatus_ = 0;
  bool initialExited_ = false;
  uint64_t eventIndex_ = 0;  // of the event being applied
  uint64_t nextIndex_ = 0;
  bool started_ = false;
  bool peeked_ = false;
  bool seekFirst_ = false;  // a copy: position the shared reader before reading
  std::optional<schema::Event::Reader> next_;
  ReplayObserver* observer_ = nullptr;
  uint64_t echoFrom_ = 0;
  std::optional<ActivePatch> activePatch_;
  // The debug registers of a point (replay_points.cc): the one that enters
  // its check, or those that guard a jump over several instructions; armed
  // around each run of user code while the task runs toward it, disarmed in
  // reverse order (each puts back the DR7 it found).
  std::vector<std::unique_ptr<ExecutionBreakpoint>> pointBreakpoints_;
  void disarmPointBreakpoints() {
    while (!pointBreakpoints_.empty()) pointBreakpoints_.pop_back();
  }
  // Parallel replay: off with REC_REPLAY_PARALLEL=off or a debugger.
  bool parallel_ = true;
  bool runSpans_ = false;  // the trace's events carry their run spans (Header.runSpans)
  std::unique_ptr<EventWindow> window_;  // read on the first chance to run ahead
  struct Due {
    uint64_t index;
    int tid;
    uint64_t taskEvent;  // the task's lastStopEvent when queued (stale once it moved on)
    bool operator>(const Due& o) const { return index > o.index; }
  };
  using DueQueue = std::priority_queue<Due, std::vector<Due>, std::greater<Due>>;
  DueQueue reconsider_;  // tasks whose next run may start once the replay is there
  DueQueue collect_;     // tasks running ahead, to be stopped before the replay is there
  uint64_t startedAhead_ = 0;
  std::vector<pid_t> zombies_;  // exited leaders, reaped once their threads are gone
  // Set when the recording patched RDTSC or this machine does not trap it.
  std::optional<RdtscPatcher> rdtscPatcher_;
  bool timeShim_ = false;       // the recording had the time shim (time_shim.h)
  bool syscallBuffer_ = false;  // ... and the syscall buffer (syscall_buffer.h)
  std::optional<schema::Event::Reader> currentEvent_;  // the event being replayed
  // The last event whose checks passed, for reports: what it takes to
  // describe it, kept per event and turned into text only for a report
  // (formatting every event was a tenth of a buffered-heavy replay).
  struct MatchedEvent {
    bool valid = false;
    uint64_t index = 0;
    int tid = 0;
    schema::Event::Which kind = schema::Event::SYSCALL;
    RecordedCall call;   // a syscall's
    int32_t number = 0;  // a syscall entry's number or a signal's
    uint64_t rip = 0;    // a preemption's
    std::string text() const;
  };
  MatchedEvent lastMatched_;
  std::vector<AddressRange> trampolines_;  // rec's pages in the task now (not digested)
  // What diskFileHash found, by device, inode, size, mtime and ctime.
  using DiskFileKey = std::tuple<uint64_t, uint64_t, uint64_t, int64_t, int64_t, int64_t, int64_t>;
  std::map<DiskFileKey, format::BlobHash> diskHashes_;
};

}  // namespace rec
