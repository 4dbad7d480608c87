// The debugger's view of a replay: a timeline it can move along in both
// directions. It owns the current ReplaySession, observes it
// (ReplayObserver) to stop where gdb asked (breakpoints, watchpoints,
// single steps, signals, exits), and moves in time by starting a new
// session from a checkpoint (checkpoint.h) and replaying to a Moment
// (moment.h): reverse-continue and reverse-step first scan forward from a
// checkpoint for the last stop before the current moment, then go there.
//
// The timeline never changes what the program does: traps are taken out
// of memory at every stop (traps.h), debug registers are invisible to the
// program, and gdb cannot write registers or memory (the server refuses).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "blob_files.h"
#include "checkpoint.h"
#include "moment.h"
#include "predecessors.h"
#include "replay_observer.h"
#include "replay_session.h"
#include "trace_index.h"
#include "traps.h"
#include "x86_registers.h"

namespace rec::dbg {

// Why the debugger stopped where it did, for the stop reply.
struct StopInfo {
  enum class Why {
    Start,         // where the session started, or jumped to (event, checkpoint)
    Signal,        // the program receives `signo` when it goes on
    Breakpoint,    // arrived at a breakpoint
    Watchpoint,    // accessed a watched range
    Step,          // a single step completed
    Exited,        // the debugged process ended: waitStatus
    Exec,          // it executed a new program
    HistoryStart,  // reverse execution reached the start of the recording
    HistoryEnd,    // the recording ends here (cut short)
    Interrupted,   // gdb asked to stop (^C)
  };
  StopInfo() = default;
  explicit StopInfo(Why w, int thread = 0) : why(w), tid(thread) {}
  Why why = Why::Start;
  int tid = 0;  // recorded thread id
  int signo = 0;
  bool hardware = false;  // Breakpoint: a hardware one (hbreak)
  Watch watch;            // Watchpoint
  uint64_t watchAddress = 0;
  int waitStatus = 0;  // Exited
};

// What gdb asks for once stopped.
struct Request {
  enum class Kind {
    Continue,
    Step,  // one instruction of `tid`
    ReverseContinue,
    ReverseStep,     // back one instruction of `tid`
    GotoEvent,       // to the boundary before `event`
    GotoCheckpoint,  // to checkpoint `checkpoint`
    Quit,            // end the debugging session
  };
  Request() = default;
  explicit Request(Kind k, int thread = 0) : kind(k), tid(thread) {}
  Kind kind = Kind::Continue;
  int tid = 0;
  uint64_t event = 0;
  int checkpoint = 0;
};

// The gdb side: called at each stop, talks to gdb until it asks to go on.
class StopHandler {
 public:
  virtual ~StopHandler() = default;
  virtual Request stopped(const StopInfo& stop) = 0;
  // Polled between events while running forward: gdb asked to stop (^C).
  virtual bool interruptRequested() { return false; }
};

struct TimelineOptions {
  std::string tracePath;
  bool force = false;
  int debuggee = 0;  // recorded pid to debug; 0: the first process
  enum class Start { Beginning, AtEvent, AtEnd, AtFork } start = Start::Beginning;
  uint64_t startEvent = 0;  // AtEvent
  CheckpointPolicy checkpoints;
};

class Timeline : public ReplayObserver {
 public:
  Timeline(TimelineOptions options, StopHandler& handler);
  ~Timeline() override;

  // Debugs until gdb quits. Returns rec's exit status.
  int run();

  // ---- while stopped (for the gdb server) ----
  int debuggee() const { return debuggee_; }
  std::vector<int> threads();  // recorded tids of the debuggee's live threads
  bool threadAlive(int tid);
  std::optional<gdb::RegisterFile> registers(int tid);
  // The debuggee's memory as the program has it (no trap or patch bytes).
  size_t readMemory(uint64_t address, uint8_t* out, size_t length);
  // Breakpoints and watchpoints gdb inserts; false when they cannot be
  // (no debug register left for a watch or a hardware breakpoint).
  bool insertBreakpoint(uint64_t address, bool hardware);
  void removeBreakpoint(uint64_t address, bool hardware);
  bool insertWatch(const Watch& watch);
  void removeWatch(const Watch& watch);
  void setPassSignals(std::set<int> signals) { passSignals_ = std::move(signals); }
  // The debuggee's executable (as recorded) and its auxiliary vector.
  std::string execPath() const;
  std::string auxv() const;
  // /proc/PID/... of a recorded pid or tid as the path of the replayed one.
  std::string procPath(const std::string& path);
  // A local file holding what `recordedPath` held when recorded, or "".
  std::string localFileFor(const std::string& recordedPath);
  const Moment& now() const { return now_; }
  uint64_t eventCount() const { return index_->eventCount(); }
  // Explicit checkpoints (gdb's `checkpoint` / `restart N`).
  int addCheckpoint();
  std::string describeCheckpoints() const;
  bool hasCheckpoint(int id) const { return userCheckpoints_.count(id) != 0; }
  CheckpointStats checkpointStats() const { return checkpoints_->stats(); }

 private:
  enum class Mode {
    Free,     // no traps: replaying up to where something happens
    Forward,  // gdb's continue / step: stop at gdb's traps
    Goto,     // following target_.path to stop there
    Scan,     // following target_.path while recording the moments of scanTraps_
  };
  struct Navigate {
    Request request;
  };
  struct ScanDone {};
  struct Observation {  // a moment a scan passed
    Moment moment;
    StopInfo info;
    uint64_t ip = 0;
    bool rightAfterPrevious = false;  // reached by one step from the previous observation
    uint64_t syscallIp = 0;           // a boundary after a syscall: its return address
    bool isEnd = false;               // the scan's end itself (not before it)
  };
  struct ScanSpec {
    uint64_t fromEvent = 0;          // record from this boundary on
    Moment end;                      // stop there
    TrapSet traps;                   // what to record
    bool boundaryStops = false;      // also record signals and syscall writes into watches
    bool stepAfterArrival = false;   // one step after each recorded arrival
    std::optional<size_t> stepFrom;  // from that observation on, step everything
    uint64_t stepBudget = 0;
  };
  struct TaskRun {                     // per recorded tid
    bool stepRequested = false;        // this resume is a single step
    bool modeStep = false;             // ... that the mode asked for (not just over a breakpoint)
    bool expectSyscallReport = false;  // the first step trap is the syscall's own exit report
    bool keepStepping = false;         // inside the replay's trampoline: step on
    bool stepPending = false;          // Forward: gdb's step of this task not done yet
    bool stepCrossedSyscall = false;  // a step whose instruction was a syscall: done at next resume
    uint64_t resumeIp = 0;
    uint64_t resumeFlags = 0;  // the program's rflags when resumed
  };
  static constexpr uint64_t kStepBudget = 300000;

  // ReplayObserver
  Run resuming(int recordedTid, Task& task) override;
  bool stopped(int recordedTid, Task& task, const Stop& stop) override;
  void eventDone(uint64_t index, schema::Event::Reader event) override;

  // Executing requests.
  void execute(Request request);
  void apply(const Request& request, const Moment& here);
  void reportAndApply(const StopInfo& info, const Moment& here);
  void driveToEnd();
  void maybeCheckpoint();
  void nearTargetCheckpoint(uint64_t boundary);
  void gotoMoment(const Moment& target, const StopInfo& info);
  std::vector<Observation> scan(const ScanSpec& spec);
  void newSession(uint64_t event, Mode mode);
  Moment reverseContinueTarget(const Moment& from, StopInfo& info);
  uint64_t scanStart(const Moment& end) const;
  std::optional<Moment> predecessor(const Moment& of, int tid);
  std::optional<Moment> predecessorOf(const Observation& o, int tid);
  std::optional<Moment> predecessorInRun(const Moment& target, uint64_t targetIp, int tid,
                                         const std::set<uint64_t>& candidates);
  std::optional<Moment> lastArrival(const TrapSet& traps, const Moment& end, int tid,
                                    uint64_t address);
  std::set<uint64_t> candidatesAt(int tid, uint64_t ip, std::optional<uint64_t> returnAddress);
  Moment startMoment(StopInfo& info);

  // Helpers for the observer.
  bool isDebuggee(int tid) const;
  TrapSet armedTraps() const;
  bool followingHere() const;
  const Segment* followSegment() const;
  Moment currentMoment() const;
  void newState(int tid, uint64_t ip, const std::vector<Watch>& watches, bool stepDone,
                uint64_t watchAddress, bool atRunStart);
  void undoStepFlagInR11(TaskRun& r, Task& task);
  void checkSyscallWrites(int tid, schema::SyscallEvent::Reader e);
  void noteExec(int tid, schema::ExecEvent::Reader e);
  void noteMappings(schema::Event::Reader event);

  TimelineOptions options_;
  StopHandler& handler_;
  std::unique_ptr<format::TraceReader> indexReader_;
  std::unique_ptr<TraceIndex> index_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<ReplaySession> session_;
  TrapArming arming_;
  CodeAnalyzer analyzer_;
  int debuggee_ = 0;
  std::set<int> passSignals_;

  // gdb's traps
  std::map<uint64_t, int> softBreakpoints_, hardBreakpoints_;  // address -> insert count
  std::map<Watch, int> watches_;
  TrapSet gdbTraps() const;
  std::set<uint64_t> hardwareBreakpoints() const;  // gdb's hbreak ones

  // Where the replay is.
  Mode mode_ = Mode::Free;
  Moment now_;                   // boundary of the current event + completed segments
  Segment running_;              // Forward: the segment in progress
  bool segmentKindSet_ = false;  // Forward: running_.kind decided for this event
  bool atSegmentStart_ = true;   // the state now is where the segment started
  bool arrivalHandled_ = false;  // the arrival at the running task's ip is accounted for
  bool firstResumeOfEvent_ = true;
  int runningTid_ = 0;  // the task whose run is in progress (0 at a boundary)
  int stepTid_ = 0;     // Forward: the thread gdb steps
  std::map<int, TaskRun> runs_;
  uint64_t echoFrom_ = 0;  // events from here on echo the program's output
  std::chrono::steady_clock::time_point sinceCheckpoint_;  // the last automatic one

  // Goto / Scan
  Moment target_;
  StopInfo targetInfo_;
  size_t followIndex_ = 0;
  uint64_t followProgress_ = 0;
  uint64_t followCombined_ = 0;
  ScanSpec scan_;
  bool scanReachedEnd_ = false;
  bool steppingAll_ = false;
  std::vector<Observation> observations_;
  bool lastStateObserved_ = false;  // the state before the current one was observed
  Moment stepBase_;                 // ScanSpec::stepFrom: the observation steps count from
  uint64_t stepsSinceBase_ = 0;
  uint64_t stepsTaken_ = 0;

  // What gdb needs about the debuggee's program and files.
  struct ProgramInfo {
    std::string path;  // the executable, as recorded
    std::string auxv;  // its auxiliary vector
  };
  std::map<int, ProgramInfo> programs_;  // by recorded pid (a fork's child inherits)
  std::map<std::string, format::BlobHash> recordedFiles_;
  // Files for gdb: one set for the whole session (gdb notices a file that
  // changes from one replay session to the next).
  std::unique_ptr<BlobCache> blobCache_;
  std::unique_ptr<BlobFiles> files_;
  std::map<int, Moment> userCheckpoints_;
  int nextCheckpointId_ = 1;
  bool exited_ = false;
};

}  // namespace rec::dbg
