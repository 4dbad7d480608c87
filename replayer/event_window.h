// The events after the one being replayed, as parallel replay needs them
// (docs/parallel.md "Parallel replay"): for each task, which of its events
// come next and whether it may run toward them ahead of its turn. Reads
// ahead with the replay's own reader, which decodes each chunk once for both.
#pragma once

#include <cstdint>
#include <deque>
#include <unordered_map>

#include "trace_file.h"

namespace rec {

class EventWindow {
 public:
  enum class Kind : uint8_t {
    Queued,  // handed to the task without a stop: a batch of buffered syscalls, a time answer
    RunsTo,  // a traced syscall's first event or an exit, with the span of the run to it
    Other,   // anything else: the task runs toward it only at its turn
  };
  struct Entry {
    uint64_t index = 0;
    Kind kind = Kind::Other;
    bool hasRun = false;  // the task ran before it (trace.capnp RunSpan):
    uint64_t runFrom = 0, runTo = 0;
    uint64_t resumedSeq = 0, stoppedSeq = 0;
    bool memoryPrivate = false;
  };

  // Whether the event is handed to its task without a stop (a batch of
  // buffered syscalls, a time answer): the task reads it on its way.
  static bool queued(schema::Event::Reader e) {
    return e.isBufferedSyscalls() || (e.isSyscall() && e.getSyscall().getBuffered()) ||
           (e.isRdtsc() && e.getRdtsc().getInLog());
  }

  // Looks `reach` events past the first one not yet replayed (less where
  // the chunks ahead are large: TraceReader::kLookAheadBytes).
  EventWindow(format::TraceReader& reader, uint64_t reach) : reader_(reader), reach_(reach) {}

  // The task's events from `next` (the first not yet replayed) on, as far
  // as the window reaches. Valid until the next call.
  const std::deque<Entry>& eventsOf(int tid, uint64_t next);
  // Whether eventsOf saw every event up to the trace's end.
  bool reachesEnd() const { return damaged_ || end_ >= reader_.stats().eventCount; }
  uint64_t reach() const { return reach_; }
  // Event `index`: valid until the next call.
  schema::Event::Reader at(uint64_t index);
  // The first event in [from, to) that replay cannot apply while task `tid`
  // (whose memory is its own) runs ahead on a run resumed at sequence
  // `resumedSeq`: another task's whose own run (replayed when its event is
  // applied) may write memory others see (not memoryPrivate), and ended,
  // in the recording, before that run began, so that nothing says the two
  // are independent. `to` if none (or as far as the window reaches).
  uint64_t firstConflict(int tid, uint64_t from, uint64_t to, uint64_t resumedSeq);

 private:
  void extendTo(uint64_t index, uint64_t next);
  static Entry classify(uint64_t index, schema::Event::Reader e);

  format::TraceReader& reader_;
  uint64_t reach_;
  uint64_t end_ = 0;  // the first index not read ahead
  uint64_t pruned_ = 0;
  bool damaged_ = false;
  std::unordered_map<int, std::deque<Entry>> byTask_;
  struct Ran {  // every event with a run span, in trace order
    uint64_t index, stoppedSeq;
    int tid;
    bool memoryPrivate;
  };
  std::deque<Ran> runs_;
};

}  // namespace rec
