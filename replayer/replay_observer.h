// What runs above a replay (the debugger, debugger/) sees through this hook:
// each time a task runs its own user code between two events, and each
// event once it is applied. It may stop a task there (a breakpoint, a
// watchpoint, a single step) without the replay knowing why: the replay
// resumes the task again whenever the observer claims a stop as its own,
// so the program and the recorded schedule are the same with or without it.
// A replay without an observer runs exactly as before.
#pragma once

#include <cstdint>

#include "task.h"
#include "trace.capnp.h"

namespace rec {

class ReplayObserver {
 public:
  virtual ~ReplayObserver() = default;

  enum class Run { Continue, SingleStep };

  // Task `recordedTid` is about to run user code; its registers are those
  // it resumes with. The observer may arm debug registers and write
  // breakpoints into memory (removing them again in stopped()), and says
  // whether the task runs freely or executes one instruction. It may also
  // block here (a debugger talking to its user) or throw to abandon the
  // replay (which is then only good for destruction).
  virtual Run resuming(int recordedTid, Task& task) = 0;

  // The task, resumed after resuming(), stopped with `stop`. True when the
  // stop was the observer's own (its breakpoint, watchpoint or single-step
  // trap): the replay then resumes the task (resuming() again) as if it had
  // not stopped. Called before the replay looks at the task. May block or
  // throw like resuming().
  virtual bool stopped(int recordedTid, Task& task, const Stop& stop) = 0;

  // Event `index` has been applied (every task is stopped). May block or
  // throw like resuming().
  virtual void eventDone(uint64_t index, schema::Event::Reader event) = 0;
};

}  // namespace rec
