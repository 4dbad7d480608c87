#include "event_window.h"

#include <sys/wait.h>

#include <algorithm>

#include "errors.h"
#include "exit_codes.h"

namespace rec {

EventWindow::Entry EventWindow::classify(uint64_t index, schema::Event::Reader e) {
  Entry entry{index, Kind::Other};
  if (queued(e)) {
    entry.kind = Kind::Queued;
    return entry;
  }
  if (!e.hasRun()) return entry;
  entry.hasRun = true;
  entry.runFrom = e.getRun().getFrom();
  entry.runTo = e.getRun().getTo();
  entry.memoryPrivate = e.getRun().getMemoryPrivate();
  entry.resumedSeq = e.getRun().getResumedSeq();
  entry.stoppedSeq = e.getRun().getStoppedSeq();
  // Those whose replay starts by running the task to a syscall's entry or
  // its exit (a task killed from outside stopped where it was killed: the
  // replay kills it at its turn, so it must not run on before).
  if (e.isSyscall() || e.isSyscallEnter() || e.isExec() ||
      (e.isExit() && WIFEXITED(e.getExit().getWaitStatus())))
    entry.kind = Kind::RunsTo;
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
      const Entry entry = classify(end_, *e);
      byTask_[e->getTid()].push_back(entry);
      if (entry.hasRun)
        runs_.push_back({entry.index, entry.stoppedSeq, e->getTid(), entry.memoryPrivate});
      ++end_;
    } catch (const format::FormatError&) {
      damaged_ = true;
    }
  }
  while (!runs_.empty() && runs_.front().index < next) runs_.pop_front();
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

uint64_t EventWindow::firstConflict(int tid, uint64_t from, uint64_t to, uint64_t resumedSeq) {
  extendTo(to, from);
  // (runs_ holds the window's events from `from` on, in order)
  for (const Ran& r : runs_) {
    if (r.index >= to) break;
    if (r.index >= from && r.tid != tid && !r.memoryPrivate && r.stoppedSeq < resumedSeq)
      return r.index;
  }
  return std::min(to, end_);
}

schema::Event::Reader EventWindow::at(uint64_t index) {
  auto e = reader_.peekAhead(index);
  if (!e)
    throw RecError(kExitBadTrace, "rec: trace event #" + std::to_string(index) + " is missing");
  return *e;
}

}  // namespace rec
