// A per-user cache of compressed blob chunks, so that recording a program
// again does not read, hash and compress its binary and libraries again
// (for a short program that is most of what recording costs). Replay uses
// its keys too: a file on disk whose key maps to a blob's hash holds that
// blob, so replay maps the file instead of unpacking the blob.
//
// Keyed by what identifies a file's contents without reading it: device,
// inode, size, and modification and change times to the nanosecond. Each
// entry is one file holding the blob's hash and the chunk exactly as a trace
// stores it; it is checked (chunk checksums) as it is copied into a trace,
// where a damaged one is replaced by the file's contents, and it is written
// by rename, so concurrent recorders and crashes leave no half entries.
// Location: blobs-v<format> under rec's cache directory (tracee/cache_dir.h).
// Bounded: the least recently used entries (to the hour) go when it grows past
// kBudgetBytes.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "scoped_fd.h"
#include "trace_file.h"

namespace rec {

class BlobCache {
 public:
  static constexpr uint64_t kBudgetBytes = 512ull << 20;

  // The cache at its place; disabled (lookups miss, stores do nothing) when
  // caching is off or the directory cannot be made.
  static std::unique_ptr<BlobCache> fromEnvironment();
  explicit BlobCache(std::string dir);

  bool enabled() const { return !dir_.empty(); }
  // The stored chunk for the file described by `st`, if its header is
  // intact. Its payload is checked by the trace writer as it copies it
  // (TraceWriter::writeFramedBlob), off the tracing thread.
  std::optional<format::FramedBlob> lookup(const struct stat& st) const;
  // The hash of the blob stored for the file described by `st` (the chunk
  // itself is not read or checked).
  std::optional<format::BlobHash> hashOf(const struct stat& st) const;
  // Keeps a chunk for the file described by `st`. Thread-safe; never throws.
  void store(const struct stat& st, const format::BlobHash& hash,
             std::span<const std::byte> framed);

  // The recorder is about to have the writer compress the file described by
  // `st` as blob `hash`; when the writer reports the chunk written
  // (WriterOptions::onBlobWritten), it is stored.
  void expect(const format::BlobHash& hash, const struct stat& st);
  void onBlobWritten(const format::BlobHash& hash, std::span<const std::byte> framed);

 private:
  std::string entryPath(const struct stat& st) const;
  ScopedFd openEntry(const struct stat& st, std::span<std::byte> header) const;
  void evictIfOverBudget();

  std::string dir_;
  std::mutex mu_;
  std::mutex expectedMu_;
  std::map<std::pair<uint64_t, uint64_t>, struct stat> expected_;  // by hash (high, low)
};

}  // namespace rec
