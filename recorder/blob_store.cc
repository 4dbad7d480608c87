#include "blob_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "errors.h"
#include "exit_codes.h"
#include "scoped_fd.h"

namespace rec {

format::BlobHash BlobStore::storeFd(int fd, const std::string& path, bool fresh) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throwErrno(kExitIoError, fmt::format("cannot stat {}", path));
  FileKey key{st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
  if (S_ISREG(st.st_mode) && !fresh) {
    auto it = known_.find(key);
    if (it != known_.end()) return it->second;
    if (auto cached = cache_.lookup(st)) {
      format::BlobHash hash = cached->hash;
      bytes_ += static_cast<uint64_t>(st.st_size);
      // Should the writer find the cached copy damaged, it stores the file
      // itself, and the cache takes that chunk in place of the damaged one.
      cached->original = ScopedFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
      cached->originalPath = path;
      cache_.expect(hash, st);
      writer_.writeFramedBlob(std::move(*cached));
      known_[key] = hash;
      return hash;
    }
  }
  std::vector<std::byte> data;
  // A regular file is read at its size; a growing or special file (memfd
  // being written, /proc) in growing steps until EOF.
  bool regular = S_ISREG(st.st_mode);
  data.resize(regular ? static_cast<size_t>(st.st_size) : 65536);
  size_t done = 0;
  for (;;) {
    if (done == data.size()) {
      if (regular) break;
      data.resize(data.size() * 2);
    }
    ssize_t n = ::pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throwErrno(kExitIoError, fmt::format("cannot read {}", path));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  // The chunk is compressed on the writer's thread; the cache takes a copy
  // when it is written (a race lost here only means no copy this time).
  format::BlobHash hash = writer_.writeBlob(data, path);
  bytes_ += done;
  if (regular && !fresh) {
    cache_.expect(hash, st);
    known_[key] = hash;
  }
  return hash;
}

format::BlobHash BlobStore::storePath(const std::string& openPath, const std::string& displayPath,
                                      bool fresh) {
  // A file stored before (each exec's ld.so and libc) is known by its
  // identity: a stat costs less than an open and a close, the more so
  // through /proc/PID/map_files (~15 us of rec's time per exec).
  struct stat st;
  if (!fresh && ::stat(openPath.c_str(), &st) == 0)
    if (auto hash = known(st)) return *hash;
  ScopedFd fd(::open(openPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throwErrno(kExitIoError, fmt::format("cannot open {}", displayPath));
  return storeFd(fd.get(), displayPath, fresh);
}

std::optional<format::BlobHash> BlobStore::known(const struct stat& st) const {
  if (!S_ISREG(st.st_mode)) return std::nullopt;
  auto it =
      known_.find(FileKey{st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec});
  if (it == known_.end()) return std::nullopt;
  return it->second;
}

bool BlobStore::wantsSparse(int fd, uint64_t limit) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return false;
  return wantsSparse(fd, st, limit);
}

bool BlobStore::wantsSparse(int fd, const struct stat& st, uint64_t limit) {
  if (!S_ISREG(st.st_mode)) return false;
  if (static_cast<uint64_t>(st.st_size) > limit) return true;
  off_t hole = ::lseek(fd, 0, SEEK_HOLE);
  return hole >= 0 && hole < st.st_size;
}

namespace {

bool allZero(const std::byte* p, size_t n) {
  return std::all_of(p, p + n, [](std::byte b) { return b == std::byte{0}; });
}

}  // namespace

BlobStore::Sparse BlobStore::storeSparse(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throwErrno(kExitIoError, fmt::format("cannot stat {}", path));
  Sparse sparse;
  sparse.size = static_cast<uint64_t>(st.st_size);
  constexpr uint64_t kPage = 4096;
  std::vector<std::byte> buffer(kPieceBytes);
  uint64_t at = 0;
  while (at < sparse.size) {
    off_t data = ::lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // nothing but a hole from `at` on
    // A file system without SEEK_DATA: all of it is data.
    uint64_t first = data < 0 ? at : static_cast<uint64_t>(data);
    off_t hole = data < 0 ? -1 : ::lseek(fd, data, SEEK_HOLE);
    uint64_t last = hole < 0 ? sparse.size : std::min<uint64_t>(hole, sparse.size);
    first &= ~(kPage - 1);
    while (first < last) {
      // Pieces end at multiples of kPieceBytes, so an unchanged region is
      // the same blobs whatever extent it is part of.
      uint64_t end = std::min(last, (first / kPieceBytes + 1) * kPieceBytes);
      size_t want = static_cast<size_t>(end - first), done = 0;
      while (done < want) {
        ssize_t n =
            ::pread(fd, buffer.data() + done, want - done, static_cast<off_t>(first + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throwErrno(kExitIoError, fmt::format("cannot read {}", path));
        if (n == 0) break;  // truncated meanwhile
        done += static_cast<size_t>(n);
      }
      // Trim all-zero pages at both ends.
      size_t lo = 0, hi = done;
      while (lo < hi && allZero(buffer.data() + lo, std::min<size_t>(kPage, hi - lo))) lo += kPage;
      while (hi > lo) {
        size_t pageStart = (hi - 1) / kPage * kPage;
        pageStart = std::max(pageStart, lo);
        if (!allZero(buffer.data() + pageStart, hi - pageStart)) break;
        hi = pageStart;
      }
      if (lo < hi) {
        std::span<const std::byte> piece(buffer.data() + lo, hi - lo);
        sparse.pieces.emplace_back(
            first + lo, writer_.writeBlob(piece, fmt::format("{}@{:#x}", path, first + lo)));
        bytes_ += piece.size();
      }
      if (done < want) return sparse;
      first = end;
    }
    at = std::max(last, at + 1);
  }
  return sparse;
}

}  // namespace rec
