// Where traces go when the user does not say: $REC_TRACE_DIR, by default
// ~/.local/share/rec/, as <program>-<N>, with a `latest` link to the newest.
#pragma once

#include <string>

namespace rec {

std::string traceDirectory();
// A new, unused path for a recording of `program` (creates the directory).
std::string newTracePath(const std::string& program);
// Points `latest` at `tracePath`.
void updateLatestLink(const std::string& tracePath);
// The trace `rec replay` uses without an argument. Throws RecError when none.
std::string latestTracePath();

}  // namespace rec
