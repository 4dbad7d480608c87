// /proc/PID/maps, parsed.
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

// Empty when the file cannot be read (the process is gone).
std::vector<MapEntry> readMaps(pid_t pid);
// The lines of a maps file; lines that do not parse are left out.
std::vector<MapEntry> parseMaps(std::string_view text);

}  // namespace rec
