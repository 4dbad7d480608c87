// Names the code at an address of a live process for divergence reports:
// "main+0x1c in /usr/bin/foo", or just the mapping when there is no symbol.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

namespace rec {

// `fileFor` maps a recorded file's path to a path rec can open for its ELF
// symbols (replay maps recorded files from memfds); "" when it has none.
std::string describeCodeAddress(pid_t pid, uint64_t address,
                                const std::function<std::string(const std::string&)>& fileFor);

}  // namespace rec
