// `rec record --until-failure`: records the program again and again, keeps
// the trace of the first run that fails and deletes the others.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "record_session.h"

namespace rec {

struct UntilFailureOptions {
  std::vector<std::string> command;
  std::string output;  // where the failing run's trace goes ("" = default location)
  int maxRuns = 1000;
  std::chrono::milliseconds maxTime{0};  // 0: no limit
  // Failure criteria; when none is chosen, a non-zero exit or death by a
  // signal is a failure.
  bool failOnExit = false;
  bool failOnSignal = false;
  std::optional<std::string> failOutput;  // ECMAScript regex over stdout and stderr
  std::chrono::milliseconds timeout{0};   // a run still going after this long hangs: failure
  ChaosOptions chaos;
  bool verbose = false;
};

// Exit status: 0 when no run failed, 1 when a failure was caught (its trace
// kept), or one of rec's own error codes.
int runUntilFailure(const UntilFailureOptions& options);

// "10s", "500ms", "2m", "1h", or plain seconds. nullopt when malformed.
std::optional<std::chrono::milliseconds> parseDuration(const std::string& text);

}  // namespace rec
