// What the debugger needs to know about a whole trace before replaying it:
// its processes (recorded ids), where each was created, exec'd and ended,
// and which process every thread belongs to. One pass over the events, no
// replay.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "trace_file.h"

namespace rec::dbg {

struct ProcessInfo {
  int pid = 0;                         // recorded
  uint64_t created = 0;                // index of the event that created it (0: the first)
  std::vector<uint64_t> execs;         // indexes of its exec events
  std::optional<uint64_t> exited;      // index of the exit event of its last thread
  int waitStatus = 0;                  // how it ended (of its leader)
  std::optional<uint64_t> lastSignal;  // index of its last signal event
  int lastSigno = 0;
};

class TraceIndex {
 public:
  explicit TraceIndex(format::TraceReader& reader);  // rewinds the reader when done

  uint64_t eventCount() const { return eventCount_; }
  const std::map<int, ProcessInfo>& processes() const { return processes_; }
  const ProcessInfo* process(int pid) const;
  // The recorded pid of a recorded thread id (0 if unknown).
  int processOf(int tid) const;
  int initialPid() const { return initialPid_; }

 private:
  uint64_t eventCount_ = 0;
  int initialPid_ = 0;
  std::map<int, ProcessInfo> processes_;
  std::map<int, int> processOf_;  // tid -> pid
};

}  // namespace rec::dbg
