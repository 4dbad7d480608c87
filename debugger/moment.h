// "Where am I" in a replay, finer than an event, without a PMU.
//
// Between two events exactly one task runs its user code (the task of the
// next event), and it executes the same instructions every time the replay
// passes there. So a moment is named by
//   - the event about to be applied (the boundary before it), and
//   - a path from that boundary through the user code of that event's task:
//     segments that each say "run until the n-th trap moment of this trap
//     set" (an arrival at one of its breakpoint addresses, or an access to
//     one of its watched ranges: traps.h) or "execute n instructions".
// Replaying the events up to the boundary and then following the path
// reaches the same state every time: the trap moments of a given set, and
// the instructions, come in the same order on every replay. This is exact,
// not probable: nothing is compared, everything is counted, and each count
// is over a deterministic sequence. The state at the segment's start is
// never counted, so a path can start at a breakpoint address.
//
// The cost of going to a moment is the replay from the nearest checkpoint
// to the boundary plus one run of that task up to the moment (with a trap
// per arrival at the addresses counted, ~26 us each on this VM).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "traps.h"

namespace rec::dbg {

struct Segment {
  enum class Kind { Run, Step };
  Kind kind = Kind::Run;
  TrapSet traps;       // Run: what counts
  uint64_t count = 0;  // Run: trap moments; Step: instructions
  bool operator==(const Segment&) const = default;
};

struct Moment {
  Moment() = default;
  explicit Moment(uint64_t boundary) : event(boundary) {}
  uint64_t event = 0;         // boundary: before event `event` is applied
  std::vector<Segment> path;  // within that event's user code
  bool operator==(const Moment&) const = default;
  bool atBoundary() const { return path.empty(); }
  // The path with `segment` appended (steps merge with a trailing step).
  Moment then(const Segment& segment) const;
};

std::string describe(const Moment& moment);

}  // namespace rec::dbg
