// Files mapped MAP_SHARED: the mappings and the file are one set of pages,
// so a write(), pwrite() or ftruncate() of the file changes what every
// mapping shows, and stores through a mapping change what read() returns.
// Replay keeps one shared copy per recorded file (replayer/blob_files.h)
// that all its shared mappings map; it never runs the program's writes, so
// the recorder notes, for every call that writes to or resizes a file that
// was mapped shared, the file's size and the bytes the call wrote, and
// replay applies them to the copy. See docs/shared-memory.md.
#pragma once

#include <sys/types.h>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "syscall_table.h"
#include "task.h"

namespace rec {

class SharedFiles {
 public:
  struct Id {
    uint64_t device = 0;
    uint64_t inode = 0;
    auto operator<=>(const Id&) const = default;
  };
  struct Update {
    Id file;
    uint64_t size = 0;    // after the call
    uint64_t offset = 0;  // where `data` starts
    uint64_t zeroed = 0;  // bytes at `offset` the call zeroed first (a punched hole)
    std::vector<std::byte> data;
    // Not a file but process `memoryOf`'s memory, written through
    // /proc/PID/mem: `data` landed at address `offset`.
    pid_t memoryOf = 0;
  };

  // The identity of the file at `path` (e.g. /proc/PID/fd/N); nullopt when
  // it is not a regular file (or cannot be looked at).
  static std::optional<Id> identify(const std::string& path);
  // True when task `tid` has `fd` open for writing (the mode of its
  // /proc/PID/fd/N link).
  static bool openForWriting(pid_t tid, long fd);
  // From now on, changes to `file` are watched.
  void watch(Id file) {
    if (watched_.insert(file).second) inOrder_.push_back(file);
  }
  bool watching() const { return !watched_.empty(); }
  // Every watched file, in the order it was first watched.
  const std::vector<Id>& watchedInOrder() const { return inOrder_; }

  // What a call that completed with `result` changed in a watched file, per
  // the row's fdWrite column (the bytes written) and kResizesFile flag (the
  // size), or in a process's memory written through /proc/PID/mem (which
  // replay, not running the write, must store itself); `strings` are the
  // call's path arguments as recorded.
  std::optional<Update> updateAfter(const sys::SyscallRow& row, const std::array<uint64_t, 6>& args,
                                    int64_t result, Task& task,
                                    const std::vector<std::string>& strings) const;

 private:
  std::set<Id> watched_;
  std::vector<Id> inOrder_;
};

}  // namespace rec
