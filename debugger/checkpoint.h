// Checkpoints: replay sessions kept aside at event boundaries so that going
// back in time replays from the nearest one instead of from the start.
//
// A checkpoint is a ReplaySession that is never run: a copy of every
// replayed process made with fork() injected into it (threads re-created
// with their registers; shared memory copied: ReplaySession::fork), with
// the replay's own state copied beside it. Restoring forks the checkpoint
// again, so it stays pristine for the next time. The processes of a
// checkpoint share their unchanged pages with the live replay (fork is
// copy-on-write), so a checkpoint costs the pages written after it.
//
// Memory is bounded by count and spacing: checkpoints are taken at event
// boundaries at least `interval` of replay time apart; beyond `maxCount`
// the store drops one from the densest stretch, keeping the first (the
// program's start), the last and the two made last (where the user
// works), so the spacing grows with distance from there (as rr does).
// Besides the periodic ones, going to a moment leaves one at its event's
// boundary and the one before: stepping back from there replays one or
// two events.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "replay_session.h"

namespace rec::dbg {

struct CheckpointPolicy {
  bool enabled = true;
  size_t maxCount = 24;
  std::chrono::milliseconds interval{200};  // of replay time between automatic ones
};

struct CheckpointStats {
  size_t count = 0;
  uint64_t privateBytes = 0;  // memory the checkpoints' processes do not share
  size_t created = 0;
  size_t restored = 0;
};

class CheckpointStore {
 public:
  CheckpointStore(ReplayOptions replay, CheckpointPolicy policy);
  ~CheckpointStore();

  const CheckpointPolicy& policy() const { return policy_; }
  // A new session at the latest checkpoint at or before boundary `event`
  // (a fresh session, opened but not started, when there is none).
  std::unique_ptr<ReplaySession> restore(uint64_t event);
  // Keeps a copy of the session, which stands at a boundary; false when its
  // state cannot be copied there (a task inside a real blocking syscall).
  bool add(ReplaySession& session);
  bool has(uint64_t event) const { return byEvent_.count(event) != 0; }
  // The boundary of the latest checkpoint at or before `event` (0, the
  // start, when there is none).
  uint64_t latest(uint64_t event) const;
  CheckpointStats stats() const;

 private:
  void thin();

  ReplayOptions replay_;
  CheckpointPolicy policy_;
  std::map<uint64_t, std::unique_ptr<ReplaySession>> byEvent_;
  size_t created_ = 0;
  size_t restored_ = 0;
  std::array<uint64_t, 2> newest_{};  // the events of the last two added
};

}  // namespace rec::dbg
