// /proc/PID/maps, parsed; and reading /proc files whole.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rec {

struct MapEntry {
  uint64_t start = 0;
  uint64_t end = 0;
  int prot = 0;  // PROT_*
  bool shared = false;
  uint64_t offset = 0;
  uint64_t inode = 0;
  std::string path;  // "" for anonymous, "[stack]", "[vdso]", ...

  bool isFile() const { return inode != 0 && !path.empty() && path[0] == '/'; }
};

// A /proc file's whole text; empty when it cannot be read (the process is
// gone: a read then fails with ESRCH, which an ifstream throws as an
// internal error).
std::string readProcFile(const std::string& path);

// Empty when the file cannot be read (the process is gone).
std::vector<MapEntry> readMaps(pid_t pid);
// The lines of a maps file; lines that do not parse are left out.
std::vector<MapEntry> parseMaps(std::string_view text);

}  // namespace rec
