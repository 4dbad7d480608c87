// Parallel replay (docs/parallel.md "Parallel replay"): a task that the
// recording ran beside other tasks' events runs beside their replay too.
//
// A task's first event after each run of its user code carries the run's
// span (trace.capnp RunSpan): rec resumed the task when `from` events had
// been written and saw the stop that ended the run when `to` had. A task
// whose memory is its own (memoryPrivate: no threads, no shared mappings,
// no ptracer) computes nothing from events from..to-1 that it did not
// compute when recorded: they touch other tasks' memory, and what replay
// does to a task on another's behalf (a watched file's write) is made
// alone, after the task stopped. So once the replay has applied the events
// before `from`, the task may run toward its stop, provided that it stops
// there before the replay applies event `to`, and before any event whose
// task ran, when recorded, wholly before this run began while able to
// write memory others see (EventWindow::firstConflict): replay runs that
// task's code at its event, which may then come after this task's reads
// instead of before. Events are still applied one at a time in trace
// order; only the tasks' user code overlaps.
#include <fmt/format.h>

#include "replay_task.h"

namespace rec {

namespace {
// How far past the event being replayed the window looks for a task's next
// run: make -j2's compilers run through a few hundred events of each other.
constexpr uint64_t kAheadReach = 4096;
}  // namespace

// After the task's event (or when its reconsideration is due): starts it
// toward its next event if the recording ran it from here, or notes when to
// look again.
void ReplaySession::considerAhead(ReplayTask& t) {
  using Park = ReplayTask::Park;
  if (!parallel_ || !runSpans_ || observer_ || t.runningAhead || t.aheadStop) return;
  if (t.park == Park::Initial) {
    // A new child: collect its first stop now, as its first run would.
    if (auto death = advanceInitial(t)) {
      t.aheadStop = *death;
      return;
    }
  }
  if (t.park != Park::SkipPending && t.park != Park::Resumable) return;
  if (t.pendingSignal || t.pendingFrame || t.awaitingSignal || t.restartAfterPtraceStop) return;
  // Tasks that share its memory (threads, CLONE_VM) take turns with it.
  if (!t.timeSpace || t.timeSpace.use_count() != 1) return;
  if (!pointBreakpoints_.empty() || activePatch_) return;
  auto next = peekEvent();
  if (!next || next->getTid() == t.recordedTid) return;  // its turn comes next anyway
  if (!window_) window_ = std::make_unique<EventWindow>(*reader_, kAheadReach);
  const auto& events = window_->eventsOf(t.recordedTid, nextIndex_);
  std::vector<uint64_t> queued;
  auto it = events.begin();
  for (; it != events.end() && it->kind == EventWindow::Kind::Queued; ++it)
    queued.push_back(it->index);
  if (it == events.end()) {
    // Its next run lies beyond the window: look again halfway there.
    if (!window_->reachesEnd())
      reconsider_.push({nextIndex_ + window_->reach() / 2, t.recordedTid, t.lastStopEvent});
    return;
  }
  const EventWindow::Entry target = *it;
  // Resumed before its last event was written: not one run from there.
  if (target.kind != EventWindow::Kind::RunsTo || !target.memoryPrivate ||
      target.runFrom <= t.lastStopEvent || target.runTo > target.index)
    return;
  if (target.runTo <= nextIndex_) return;  // nothing left to overlap
  if (target.runFrom > nextIndex_) {
    reconsider_.push({target.runFrom, t.recordedTid, t.lastStopEvent});
    return;
  }
  // It must stop before the first event it might not be independent of.
  const uint64_t collectAt =
      window_->firstConflict(t.recordedTid, nextIndex_, target.runTo, target.resumedSeq);
  if (collectAt <= nextIndex_) {
    reconsider_.push({nextIndex_ + 1, t.recordedTid, t.lastStopEvent});
    return;
  }
  for (uint64_t index : queued) queueEarly(t, index);
  t.queuedUpTo = target.index;
  beginRun(t);
  t.runningAhead = true;
  collect_.push({collectAt, t.recordedTid, t.lastStopEvent});
  ++startedAhead_;
}

void ReplaySession::reconsiderDue() {
  while (!reconsider_.empty() && reconsider_.top().index <= nextIndex_) {
    Due due = reconsider_.top();
    reconsider_.pop();
    auto it = tasks_.find(due.tid);
    if (it != tasks_.end() && it->second->lastStopEvent == due.taskEvent)
      considerAhead(*it->second);
  }
}

// Before the event being replayed: every task running ahead whose run
// ended, in the recording, before this event stops first.
void ReplaySession::collectDue() {
  while (!collect_.empty() && collect_.top().index <= eventIndex_) {
    Due due = collect_.top();
    collect_.pop();
    auto it = tasks_.find(due.tid);
    if (it == tasks_.end() || !it->second->runningAhead) continue;
    ReplayTask& t = *it->second;
    t.runningAhead = false;
    t.aheadStop = awaitStop(t);
  }
}

// Hands a task one of its queued events before its turn (it runs through
// them on its way to the event it started toward); at their turn they only
// show what they wrote to the program's output.
void ReplaySession::queueEarly(ReplayTask& t, uint64_t index) {
  auto e = window_->at(index);
  const uint64_t current = eventIndex_;
  eventIndex_ = index;  // (the batch rules compare indexes; reports name it)
  try {
    if (e.isBufferedSyscalls())
      enqueueBuffered(t, e.getBufferedSyscalls());
    else if (e.isSyscall())
      onBufferedSyscall(t, e.getSyscall());
    else
      onRdtsc(t, e.getRdtsc());
  } catch (...) {
    eventIndex_ = current;
    throw;
  }
  eventIndex_ = current;
}

}  // namespace rec
