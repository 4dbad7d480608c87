#include "blob_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cache_dir.h"
#include "scoped_fd.h"

namespace rec {

namespace {

constexpr char kEntryMagic[8] = {'R', 'E', 'C', 'B', 'L', 'O', 'B', '1'};
constexpr size_t kEntryHeaderSize = sizeof kEntryMagic + 16;  // magic, blob hash
// Only files whose inode last changed this long ago are stored. A later file
// that reuses the inode gets a change time after that store, so the key
// (which includes the change time) can never match it, whatever the
// filesystem's timestamp granularity.
constexpr int64_t kSettledSeconds = 2;
// An entry's modification time says when it was last used, to the hour.
constexpr int64_t kTouchSeconds = 3600;

bool writeAllAt(int fd, const void* data, size_t size, off_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return true;
}

}  // namespace

std::unique_ptr<BlobCache> BlobCache::fromEnvironment() {
  return std::make_unique<BlobCache>(cacheDir(fmt::format("blobs-v{}", format::kFormatVersion)));
}

BlobCache::BlobCache(std::string dir) : dir_(std::move(dir)) {}

std::string BlobCache::entryPath(const struct stat& st) const {
  return fmt::format("{}/{:x}-{:x}-{:x}-{}.{:09}-{}.{:09}", dir_, st.st_dev, st.st_ino, st.st_size,
                     st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

// The entry for the file described by `st`, open, with its first
// header.size() bytes read into `header` and its magic checked.
ScopedFd BlobCache::openEntry(const struct stat& st, std::span<std::byte> header) const {
  if (!enabled() || !S_ISREG(st.st_mode)) return {};
  ScopedFd fd(::open(entryPath(st).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() ||
      ::pread(fd.get(), header.data(), header.size(), 0) != static_cast<ssize_t>(header.size()) ||
      std::memcmp(header.data(), kEntryMagic, sizeof kEntryMagic) != 0)
    return {};
  return fd;
}

std::optional<format::FramedBlob> BlobCache::lookup(const struct stat& st) const {
  std::byte header[kEntryHeaderSize + format::kChunkHeaderSize];
  format::FramedBlob blob;
  blob.file = openEntry(st, header);
  struct stat entry;
  if (!blob.file.valid() || ::fstat(blob.file.get(), &entry) != 0 ||
      entry.st_size <= static_cast<off_t>(sizeof header))
    return std::nullopt;
  blob.hash = format::BlobHash::fromBytes(std::span(header + sizeof kEntryMagic, 16));
  blob.offset = kEntryHeaderSize;
  blob.size = static_cast<uint64_t>(entry.st_size) - kEntryHeaderSize;
  if (!format::isBlobChunkHeader(std::span(header + kEntryHeaderSize, format::kChunkHeaderSize),
                                 blob.size))
    return std::nullopt;
  // Recently used: evicted last. An entry used within the last hour is
  // recent enough, and is not touched again (a metadata write per library
  // per recording, on the tracing thread).
  timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  if (now.tv_sec - entry.st_mtim.tv_sec > kTouchSeconds || entry.st_mtim.tv_sec > now.tv_sec)
    ::futimens(blob.file.get(), nullptr);
  return blob;
}

std::optional<format::BlobHash> BlobCache::hashOf(const struct stat& st) const {
  std::byte header[kEntryHeaderSize];
  if (!openEntry(st, header).valid()) return std::nullopt;
  return format::BlobHash::fromBytes(std::span(header + sizeof kEntryMagic, 16));
}

void BlobCache::store(const struct stat& st, const format::BlobHash& hash,
                      std::span<const std::byte> framed) {
  if (!enabled() || !S_ISREG(st.st_mode)) return;
  timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  if (now.tv_sec - st.st_ctim.tv_sec < kSettledSeconds) return;
  static std::atomic<unsigned> serial{0};
  std::string final = entryPath(st);
  std::string temp = fmt::format("{}/.tmp-{}-{}", dir_, ::getpid(), serial++);
  std::lock_guard guard(mu_);
  {
    ScopedFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid()) return;
    auto hashBytes = hash.bytes();
    bool ok = writeAllAt(fd.get(), kEntryMagic, sizeof kEntryMagic, 0) &&
              writeAllAt(fd.get(), hashBytes.data(), hashBytes.size(), sizeof kEntryMagic) &&
              writeAllAt(fd.get(), framed.data(), framed.size(), kEntryHeaderSize);
    if (!ok) {
      ::unlink(temp.c_str());
      return;
    }
  }
  if (::rename(temp.c_str(), final.c_str()) != 0) {
    ::unlink(temp.c_str());
    return;
  }
  evictIfOverBudget();
}

void BlobCache::expect(const format::BlobHash& hash, const struct stat& st) {
  if (!enabled()) return;
  std::lock_guard guard(expectedMu_);
  expected_[{hash.high, hash.low}] = st;
}

void BlobCache::onBlobWritten(const format::BlobHash& hash, std::span<const std::byte> framed) {
  struct stat st;
  {
    std::lock_guard guard(expectedMu_);
    auto it = expected_.find({hash.high, hash.low});
    if (it == expected_.end()) return;
    st = it->second;
    expected_.erase(it);
  }
  store(st, hash, framed);
}

void BlobCache::evictIfOverBudget() {
  struct Entry {
    std::string path;
    timespec used;
    uint64_t size;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;
  if (DIR* d = ::opendir(dir_.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string path = dir_ + "/" + e->d_name;
      struct stat st;
      if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      entries.push_back({path, st.st_mtim, static_cast<uint64_t>(st.st_size)});
      total += static_cast<uint64_t>(st.st_size);
    }
    ::closedir(d);
  }
  if (total <= kBudgetBytes) return;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.used.tv_sec != b.used.tv_sec ? a.used.tv_sec < b.used.tv_sec
                                          : a.used.tv_nsec < b.used.tv_nsec;
  });
  for (const Entry& e : entries) {
    if (total <= kBudgetBytes * 3 / 4) break;
    if (::unlink(e.path.c_str()) == 0) total -= e.size;
  }
}

}  // namespace rec
