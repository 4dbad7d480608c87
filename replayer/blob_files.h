// Blobs from the trace, extracted to a private temporary directory so that
// replay can execve and mmap them. Removed when replay ends.
#pragma once

#include <map>
#include <string>

#include "trace_file.h"

namespace rec {

class BlobFiles {
 public:
  explicit BlobFiles(format::TraceReader& reader);
  ~BlobFiles();
  BlobFiles(const BlobFiles&) = delete;
  BlobFiles& operator=(const BlobFiles&) = delete;

  // Path of the file holding the blob (extracted on first use).
  const std::string& path(const format::BlobHash& hash);
  // A writable copy of the blob standing for the file recorded at `recordedPath`
  // (one per path), for MAP_SHARED mappings that processes share.
  const std::string& sharedCopy(const format::BlobHash& hash, const std::string& recordedPath);
  // True when `path` is one of ours holding `hash`.
  bool holds(const std::string& path, const format::BlobHash& hash) const;

 private:
  format::TraceReader& reader_;
  std::string dir_;
  std::map<std::pair<uint64_t, uint64_t>, std::string> files_;
  std::map<std::string, std::string> sharedCopies_;
};

}  // namespace rec
