// Copies of a replay at an event boundary, for the debugger's checkpoints.

#include "replay_session.h"
#include "replay_task.h"

namespace rec {

std::unique_ptr<ReplaySession> ReplaySession::fork() {
  return nullptr;
}

}  // namespace rec
