// Names the code at an address of a live process for divergence reports:
// "main+0x1c in /usr/bin/foo", or just the mapping when there is no symbol.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace rec {

std::string describeCodeAddress(pid_t pid, uint64_t address);

}  // namespace rec
