// Stores the contents of files a program executes or maps in the trace, once
// per trace, and remembers which (device, inode, size, mtime) it already
// hashed so a library mapped by every process is read only once.
#pragma once

#include <sys/stat.h>

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "blob_cache.h"
#include "trace_file.h"

namespace rec {

class BlobStore {
 public:
  BlobStore(format::TraceWriter& writer, BlobCache& cache) : writer_(writer), cache_(cache) {}
  // Stores the file open at `fd` (read from offset 0); `path` is for humans.
  // `fresh`: read it even if a file of the same identity, size and mtime was
  // stored before (stores through a shared mapping need not change them).
  // Throws RecError when it cannot be read.
  format::BlobHash storeFd(int fd, const std::string& path, bool fresh = false);
  // Opens `path` (e.g. /proc/PID/map_files/..., /proc/PID/fd/N) and stores it.
  format::BlobHash storePath(const std::string& openPath, const std::string& displayPath,
                             bool fresh = false);
  // A file's contents as its data extents, each stored in aligned pieces of
  // at most kPieceBytes (schema::SparseFile): a 1 TiB memfd with one page
  // written, or a 100 GiB file with a hole in the middle, costs what its
  // data costs, read through one bounded buffer. All-zero pages at a
  // piece's ends are left out (they read back as zeros from a hole).
  struct Sparse {
    uint64_t size = 0;
    std::vector<std::pair<uint64_t, format::BlobHash>> pieces;  // offset, contents
  };
  static constexpr uint64_t kPieceBytes = 4ull << 20;
  Sparse storeSparse(int fd, const std::string& path);
  // Whether the file at `fd` is better stored with storeSparse(): it has a
  // hole, or is larger than `limit` bytes.
  static bool wantsSparse(int fd, uint64_t limit);
  // The same, with the file's fstat already at hand.
  static bool wantsSparse(int fd, const struct stat& st, uint64_t limit);
  // What storeFd returned for a regular file of this identity, size and
  // mtime (not `fresh`), if it stored one.
  std::optional<format::BlobHash> known(const struct stat& st) const;
  uint64_t bytesStored() const { return bytes_; }

 private:
  using FileKey = std::tuple<dev_t, ino_t, off_t, long, long>;
  format::TraceWriter& writer_;
  BlobCache& cache_;
  std::map<FileKey, format::BlobHash> known_;
  uint64_t bytes_ = 0;
};

}  // namespace rec
