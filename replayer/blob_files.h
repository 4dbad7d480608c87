// Blobs from the trace, as files the replayed program can execve and mmap
// through /proc/<rec>/fd/N: memory-backed files (memfd) owned by rec, or,
// where the file recorded is still on disk unchanged (the blob cache knows
// its key and hash: tracee/blob_cache.h), that file opened read-only, which
// spares unpacking it. Replay never creates a file on disk; the memfds
// vanish with rec.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>

#include "blob_cache.h"
#include "scoped_fd.h"
#include "trace_file.h"

namespace rec {

class BlobFiles {
 public:
  BlobFiles(format::TraceReader& reader, const BlobCache& cache) : reader_(reader), cache_(cache) {}

  // A path the tracee can open to read the blob. `recordedPath` names the
  // memfd, so /proc/PID/maps and divergence reports show the original file.
  const std::string& path(const format::BlobHash& hash, const std::string& recordedPath = "");
  // A writable copy of the blob standing for the file recorded at
  // `recordedPath` (one per path), for MAP_SHARED mappings that replayed
  // processes share.
  const std::string& sharedCopy(const format::BlobHash& hash, const std::string& recordedPath);
  // An empty (zero-filled) shared file of `size` bytes standing for System V
  // segment `shmid`.
  const std::string& sharedSegment(long shmid, uint64_t size);
  // The path path() gave for a file recorded at `recordedPath`; "" if none.
  std::string pathForRecorded(const std::string& recordedPath) const;
  // True when `inode` is the file path(hash) refers to.
  bool holds(ino_t inode, const format::BlobHash& hash) const;

 private:
  struct File {
    ScopedFd fd;
    ino_t inode = 0;
    std::string path;
  };
  File create(const std::string& name, const format::BlobHash& hash);
  std::optional<File> openUnchanged(const std::string& recordedPath, const format::BlobHash& hash);

  format::TraceReader& reader_;
  const BlobCache& cache_;
  std::map<std::pair<uint64_t, uint64_t>, File> files_;
  std::map<std::string, File> sharedCopies_;
  std::map<long, File> segments_;
  std::map<std::string, std::string> byRecordedPath_;
};

}  // namespace rec
