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
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "blob_cache.h"
#include "scoped_fd.h"
#include "trace_file.h"

namespace rec {

class BlobFiles {
 public:
  BlobFiles(format::TraceReader& reader, const BlobCache& cache) : reader_(reader), cache_(cache) {}

  // A file recorded as its data pieces (schema::SparseFile): zeros except
  // at the pieces. Its memfd is as sparse as the recorded file.
  struct Sparse {
    uint64_t size = 0;
    std::vector<std::pair<uint64_t, format::BlobHash>> pieces;  // offset, contents
    format::BlobHash id() const;                                // names it among the blobs
  };
  // What a mapping maps: one blob, or pieces.
  using Contents = std::variant<format::BlobHash, Sparse>;

  // A path the tracee can open to read the blob. `recordedPath` names the
  // memfd, so /proc/PID/maps and divergence reports show the original file.
  const std::string& path(const format::BlobHash& hash, const std::string& recordedPath = "");
  const std::string& path(const Contents& contents, const std::string& recordedPath);
  // The shared copy standing for a file that was mapped MAP_SHARED: one per
  // recorded file (device and inode; traces without them: per path), which
  // every shared mapping of it maps, so stores through one show in the
  // others. Each mapping brings the file's contents as they were then
  // (`hash`): the copy takes them, size included (the file may have been
  // truncated, rewritten or grown since).
  const std::string& sharedCopy(const Contents& contents, const std::string& recordedPath,
                                uint64_t device, uint64_t inode);
  // A write or resize of a shared file, recorded (recorder/shared_files.h):
  // the copy takes the size, then zeros over `zeroed` bytes at `offset`
  // (a punched hole), then the bytes at `offset`. Nothing happens for a file
  // replay has no copy of (no mapping of it was replayed).
  void updateSharedCopy(uint64_t device, uint64_t inode, uint64_t size, uint64_t offset,
                        uint64_t zeroed, std::span<const std::byte> data);
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
  File create(const std::string& name, const Contents& contents);
  // Makes the file at `fd` hold exactly `contents` (size included).
  void fill(int fd, const Contents& contents);
  std::optional<File> openUnchanged(const std::string& recordedPath, const format::BlobHash& hash);

  format::TraceReader& reader_;
  const BlobCache& cache_;
  std::map<std::pair<uint64_t, uint64_t>, File> files_;
  static std::string sharedKey(const std::string& recordedPath, uint64_t device, uint64_t inode);
  std::map<std::string, File> sharedCopies_;  // by sharedKey
  std::map<long, File> segments_;
  std::map<std::string, std::string> byRecordedPath_;
};

}  // namespace rec
