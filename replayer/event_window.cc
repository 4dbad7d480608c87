#include "event_window.h"

#include <sys/wait.h>

#include <algorithm>

#include "errors.h"
#include "exit_codes.h"

namespace rec {

EventWindow::Entry EventWindow::classify(uint64_t index, schema::Event::Reader e) {
  Entry entry{index, Kind::Other};
  bool queued = e.isBufferedSyscalls() || (e.isSyscall() && e.getSyscall().getBuffered()) ||
                (e.isRdtsc() && e.getRdtsc().getInLog());
  if (queued) {
    entry.kind = Kind::Queued;
  } else if (e.hasRun() &&
             (e.isSyscall() || e.isSyscallEnter() || e.isExec() ||
              // (a task killed from outside stopped where it was killed: the
              // replay kills it at its turn, so it must not run on before)
              (e.isExit() && WIFEXITED(e.getExit().getWaitStatus())))) {
    entry.kind = Kind::RunsTo;
    entry.runFrom = e.getRun().getFrom();
    entry.runTo = e.getRun().getTo();
  }
  return entry;
}

void EventWindow::extendTo(uint64_t index, uint64_t next) {
  end_ = std::max(end_, next);
  // A damaged chunk ahead ends the window there: the replay's own reader
  // reports it when the replay gets there, after replaying what precedes it.
  while (end_ < index && !damaged_) {
    try {
      auto e = reader_.peekAhead(end_);
      if (!e) break;  // the end, or as far as the reader decodes ahead for now
      byTask_[e->getTid()].push_back(classify(end_, *e));
      ++end_;
    } catch (const format::FormatError&) {
      damaged_ = true;
    }
  }
  // Tasks nobody asks about again (dead ones) would keep their entries.
  if (next >= pruned_ + reach_) {
    pruned_ = next;
    for (auto it = byTask_.begin(); it != byTask_.end();) {
      auto& events = it->second;
      while (!events.empty() && events.front().index < next) events.pop_front();
      it = events.empty() ? byTask_.erase(it) : std::next(it);
    }
  }
}

const std::deque<EventWindow::Entry>& EventWindow::eventsOf(int tid, uint64_t next) {
  extendTo(next + reach_, next);
  auto& events = byTask_[tid];
  while (!events.empty() && events.front().index < next) events.pop_front();
  return events;
}

schema::Event::Reader EventWindow::at(uint64_t index) {
  auto e = reader_.peekAhead(index);
  if (!e)
    throw RecError(kExitBadTrace, "rec: trace event #" + std::to_string(index) + " is missing");
  return *e;
}

}  // namespace rec
