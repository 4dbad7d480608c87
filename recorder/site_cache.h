// Syscall sites worth patching ahead, remembered between recordings.
//
// Within a recording, a site one process made a buffered call from is
// patched in the next process as soon as its file is mapped
// (RecordSession::prepatchMapping). The first process of each program
// still pays two stops for each site's first call: python3 -c pass ~20
// of them, a third of its stops. This cache keeps, per program and file
// (both named by content hash, so an entry never goes stale), the sites
// processes of that program called from, for the first process of the
// next recording. Each site is checked as at its first patch before it is
// patched, so a wrong entry costs nothing but the check; the trace notes
// every patch, so replay never reads the cache.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

namespace rec {

class HotSiteCache {
 public:
  using Sites = std::map<uint64_t, int>;  // file offset of the `syscall` -> its number

  // The sites earlier recordings noted for `program`'s processes in `file`.
  const Sites& sitesOf(const std::string& program, const std::string& file);
  // A site a process of `program` made a buffered call from, in `file`.
  void note(const std::string& program, const std::string& file, uint64_t offset, int nr);
  // Writes the entries this recording added to; best effort (a cache).
  void save();

 private:
  struct Entry {
    Sites sites;
    bool changed = false;
  };
  Entry& entry(const std::string& program, const std::string& file);
  std::string path(const std::string& program, const std::string& file);

  std::map<std::pair<std::string, std::string>, Entry> entries_;
  std::string directory_;
  bool directoryKnown_ = false;
};

}  // namespace rec
