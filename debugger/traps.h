// Breakpoints and watchpoints in a replayed task, and telling what made it
// stop. A breakpoint at A stops the task each time it *arrives* at A (about
// to execute it); a watchpoint stops it right after an instruction that
// accessed the watched bytes. These meanings do not depend on how a trap is
// armed, so the same moments are found whichever way: x86 debug registers
// (PTRACE_POKEUSER into u_debugreg; nothing in memory changes) for the
// watchpoints and as many breakpoints as fit in the four registers, int3
// written into the code for the rest, taken out again at every stop so that
// the replay and the debugger only ever see the program's own bytes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "replay_session.h"
#include "task.h"

namespace rec::dbg {

enum class WatchKind { Write, Read, Access };

struct Watch {
  uint64_t address = 0;
  uint64_t length = 0;
  WatchKind kind = WatchKind::Write;
  bool operator==(const Watch&) const = default;
  auto operator<=>(const Watch&) const = default;
  bool overlaps(uint64_t start, uint64_t size) const {
    return start < address + length && address < start + size;
  }
};

// What stops a task: its arrivals at these addresses and accesses to these
// ranges.
struct TrapSet {
  std::set<uint64_t> breakpoints;
  std::set<Watch> watches;
  bool empty() const { return breakpoints.empty() && watches.empty(); }
  bool operator==(const TrapSet&) const = default;
  TrapSet operator|(const TrapSet& other) const;
};

// How many debug registers a watch of this range needs (aligned pieces of
// 1, 2, 4 or 8 bytes).
int debugRegistersFor(const Watch& watch);
inline constexpr int kDebugRegisters = 4;

// What a SIGTRAP stop of a task running with traps armed was.
struct TrapHit {
  bool ours = false;                   // a trap this arming caused (else the program's own)
  bool stepped = false;                // the single step asked for completed
  std::optional<uint64_t> breakpoint;  // arrived at this breakpoint address
  std::vector<Watch> watches;          // these watches were accessed
  uint64_t watchAddress = 0;           // the accessed address, for gdb
};

class TrapArming {
 public:
  // Arms `traps` in `task` (of thread group `tgid`) for its next run:
  // debug registers for the watches and for the breakpoints in `hardware`
  // (gdb's hbreak), int3 for the other breakpoints. A breakpoint in a debug
  // register would save two memory writes per run, but while any is enabled
  // this VM runs the task about 3 times slower (measured: docs/debugging.md).
  // `skip`: a breakpoint address left out (the task steps over it). No int3
  // goes inside the code the replay has patched right now.
  void arm(Task& task, const TrapSet& traps, std::optional<uint64_t> skip,
           const std::optional<ActivePatch>& patch, const std::set<uint64_t>& hardware = {});
  // Takes the int3s out of memory again (after every stop of the task).
  void disarm(Task& task);
  // Classifies the stop that ended the run (after disarm()). A hit on an
  // int3 puts the task back on the breakpoint's address.
  TrapHit classify(Task& task, const Stop& stop, bool steppingRequested);
  // Forgets what was programmed into which thread (a new replay session:
  // its threads have other ids and no debug registers set).
  void reset();
  // The int3 bytes in place right now, to hide them from memory reads.
  const std::map<uint64_t, uint8_t>& inserted() const { return inserted_; }

 private:
  struct Slot {
    uint64_t address = 0;
    int length = 1;  // 1, 2, 4, 8
    enum class Use { Free, Exec, Write, Access } use = Use::Free;
    Watch watch;  // the watch this piece belongs to
    bool operator==(const Slot& o) const {
      return address == o.address && length == o.length && use == o.use;
    }
  };
  struct ThreadState {
    std::array<Slot, kDebugRegisters> slots;
    bool programmed = false;
  };
  void program(Task& task, const std::array<Slot, kDebugRegisters>& slots);

  std::map<pid_t, ThreadState> threads_;  // by real tid
  std::array<Slot, kDebugRegisters> armedSlots_{};
  std::map<uint64_t, uint8_t> inserted_;  // int3 address -> original byte
  std::set<uint64_t> wasInserted_;        // the int3s of the run that just stopped
  pid_t insertedIn_ = 0;                  // the task whose memory holds them
};

}  // namespace rec::dbg
