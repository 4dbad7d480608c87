#include "checkpoint.h"

#include <fmt/format.h>

#include <sstream>

#include "process_maps.h"

namespace rec::dbg {

CheckpointStore::CheckpointStore(ReplayOptions replay, CheckpointPolicy policy)
    : replay_(std::move(replay)), policy_(policy) {}

CheckpointStore::~CheckpointStore() = default;

std::unique_ptr<ReplaySession> CheckpointStore::restore(uint64_t event) {
  auto it = byEvent_.upper_bound(event);
  while (it != byEvent_.begin()) {
    --it;
    if (auto copy = it->second->fork()) {
      ++restored_;
      return copy;
    }
  }
  auto session = std::make_unique<ReplaySession>(replay_);
  session->open();
  return session;
}

uint64_t CheckpointStore::latest(uint64_t event) const {
  auto it = byEvent_.upper_bound(event);
  return it == byEvent_.begin() ? 0 : std::prev(it)->first;
}

bool CheckpointStore::add(ReplaySession& session) {
  uint64_t event = session.nextEventIndex();
  if (byEvent_.count(event)) return true;
  auto copy = session.fork();
  if (!copy) return false;
  byEvent_[event] = std::move(copy);
  ++created_;
  newest_[1] = newest_[0];
  newest_[0] = event;
  thin();
  return true;
}

// Drops the checkpoint whose neighbours are closest together, never the
// first, the last or the two made last, until at most maxCount remain.
void CheckpointStore::thin() {
  while (byEvent_.size() > policy_.maxCount && byEvent_.size() > 2) {
    auto best = byEvent_.end();
    uint64_t bestGap = UINT64_MAX;
    for (auto it = std::next(byEvent_.begin()); std::next(it) != byEvent_.end(); ++it) {
      // The ones just made are where the user works.
      if (it->first == newest_[0] || it->first == newest_[1]) continue;
      uint64_t gap = std::next(it)->first - std::prev(it)->first;
      if (gap < bestGap) {
        bestGap = gap;
        best = it;
      }
    }
    if (best == byEvent_.end()) break;
    byEvent_.erase(best);
  }
}

CheckpointStats CheckpointStore::stats() const {
  CheckpointStats s;
  s.count = byEvent_.size();
  s.created = created_;
  s.restored = restored_;
  for (const auto& [event, session] : byEvent_) {
    for (const auto& task : session->liveTasks()) {
      if (task.recordedTid != task.recordedPid) continue;  // once per process
      // Private_Dirty: pages this process has written since it was forked
      // (or never shared); what the checkpoint really costs.
      std::istringstream in(readProcFile(fmt::format("/proc/{}/smaps_rollup", task.tid)));
      std::string key;
      uint64_t kb;
      std::string unit;
      while (in >> key) {
        if (key == "Private_Dirty:" && in >> kb >> unit) s.privateBytes += kb * 1024;
        in.ignore(1 << 20, '\n');
      }
    }
  }
  return s;
}

}  // namespace rec::dbg
