#include "process_maps.h"

#include <fmt/format.h>
#include <sys/mman.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace rec {

std::vector<MapEntry> readMaps(pid_t pid) {
  std::vector<MapEntry> out;
  std::ifstream in(fmt::format("/proc/{}/maps", pid));
  std::string line;
  while (std::getline(in, line)) {
    MapEntry e;
    char perms[5] = {};
    unsigned long long start, end, offset, inode;
    unsigned devMajor, devMinor;
    int pathPos = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %4s %llx %x:%x %llu %n", &start, &end, perms, &offset,
                    &devMajor, &devMinor, &inode, &pathPos) < 7)
      continue;
    e.start = start;
    e.end = end;
    e.offset = offset;
    e.inode = inode;
    e.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
             (perms[2] == 'x' ? PROT_EXEC : 0);
    e.shared = perms[3] == 's';
    if (pathPos > 0 && static_cast<size_t>(pathPos) < line.size()) e.path = line.substr(pathPos);
    // " (deleted)" suffixes stay: the path is for humans and blob lookup uses map_files.
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace rec
