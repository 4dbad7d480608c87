#include "blob_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

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
  ScopedFd fd(::open(openPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throwErrno(kExitIoError, fmt::format("cannot open {}", displayPath));
  return storeFd(fd.get(), displayPath, fresh);
}

}  // namespace rec
