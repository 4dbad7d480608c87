#include "blob_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "errors.h"
#include "exit_codes.h"

namespace rec {

namespace {

void writeAllAt(int fd, std::span<const std::byte> data, uint64_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throwErrno(kExitIoError, "rec: cannot write a shared file's copy");
    done += static_cast<size_t>(n);
  }
}

}  // namespace

BlobFiles::File BlobFiles::create(const std::string& name, const Contents& contents) {
  File file;
  ScopedFd fd(::memfd_create(name.c_str(), MFD_CLOEXEC));
  if (!fd.valid()) throwErrno(kExitIoError, "rec: memfd_create");
  fill(fd.get(), contents);
  // Keep only a read-only descriptor: a file open for writing cannot be
  // executed (ETXTBSY), and nothing writes a blob again.
  ScopedFd readOnly(
      ::open(fmt::format("/proc/self/fd/{}", fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
  if (!readOnly.valid()) throwErrno(kExitIoError, "rec: cannot reopen a memfd");
  fd = std::move(readOnly);
  struct stat st;
  ::fstat(fd.get(), &st);
  file.inode = st.st_ino;
  file.path = fmt::format("/proc/{}/fd/{}", ::getpid(), fd.get());
  file.fd = std::move(fd);
  return file;
}

std::optional<BlobFiles::File> BlobFiles::openUnchanged(const std::string& recordedPath,
                                                        const format::BlobHash& hash) {
  if (recordedPath.empty() || recordedPath[0] != '/') return std::nullopt;
  ScopedFd fd(::open(recordedPath.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || cache_.hashOf(st) != hash) return std::nullopt;
  File file;
  file.inode = st.st_ino;
  file.path = fmt::format("/proc/{}/fd/{}", ::getpid(), fd.get());
  file.fd = std::move(fd);
  return file;
}

const std::string& BlobFiles::path(const format::BlobHash& hash, const std::string& recordedPath) {
  return path(Contents{hash}, recordedPath);
}

const std::string& BlobFiles::path(const Contents& contents, const std::string& recordedPath) {
  const auto* whole = std::get_if<format::BlobHash>(&contents);
  format::BlobHash hash = whole ? *whole : std::get<Sparse>(contents).id();
  auto key = std::make_pair(hash.high, hash.low);
  auto it = files_.find(key);
  if (it != files_.end()) return it->second.path;
  std::string name = recordedPath.empty() ? hash.hex() : recordedPath;
  if (auto unchanged = whole ? openUnchanged(recordedPath, hash) : std::nullopt) {
    files_[key] = std::move(*unchanged);
  } else {
    std::string memfdName = "rec:" + name;
    if (memfdName.size() > 240) memfdName.resize(240);  // memfd names are short
    files_[key] = create(memfdName, contents);
    byRecordedPath_[memfdName.substr(4)] = files_[key].path;  // as /proc/PID/maps names it
  }
  const std::string& created = files_[key].path;
  byRecordedPath_[name] = created;
  return created;
}

std::string BlobFiles::sharedKey(const std::string& recordedPath, uint64_t device, uint64_t inode) {
  if (device == 0 && inode == 0) return "path " + recordedPath;
  return fmt::format("file {}:{}", device, inode);
}

format::BlobHash BlobFiles::Sparse::id() const {
  std::vector<uint64_t> words{size};
  for (const auto& [offset, hash] : pieces)
    words.insert(words.end(), {offset, hash.high, hash.low});
  return format::BlobHash::of(std::as_bytes(std::span(words)));
}

void BlobFiles::fill(int fd, const Contents& contents) {
  if (const auto* whole = std::get_if<format::BlobHash>(&contents)) {
    std::vector<std::byte> data = reader_.readBlob(*whole);
    if (::ftruncate(fd, static_cast<off_t>(data.size())) != 0)
      throwErrno(kExitIoError, "rec: cannot resize a file's copy");
    writeAllAt(fd, data, 0);
    return;
  }
  // Holes everywhere first (the copy may hold an older version of the
  // file), then the pieces, one at a time.
  const Sparse& sparse = std::get<Sparse>(contents);
  if (::ftruncate(fd, static_cast<off_t>(sparse.size)) != 0)
    throwErrno(kExitIoError, "rec: cannot resize a file's copy");
  if (sparse.size > 0 && ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                                     static_cast<off_t>(sparse.size)) != 0)
    throwErrno(kExitIoError, "rec: cannot clear a file's copy");
  for (const auto& [offset, hash] : sparse.pieces) writeAllAt(fd, reader_.readBlob(hash), offset);
}

const std::string& BlobFiles::sharedCopy(const Contents& contents, const std::string& recordedPath,
                                         uint64_t device, uint64_t inode) {
  File& file = sharedCopies_[sharedKey(recordedPath, device, inode)];
  if (!file.fd.valid()) {
    // Kept open for writing: recorded writes to the file land here too.
    file.fd.reset(::memfd_create("rec-shared", MFD_CLOEXEC));
    if (!file.fd.valid()) throwErrno(kExitIoError, "rec: memfd_create");
    file.path = fmt::format("/proc/{}/fd/{}", ::getpid(), file.fd.get());
  }
  fill(file.fd.get(), contents);
  return file.path;
}

void BlobFiles::updateSharedCopy(uint64_t device, uint64_t inode, uint64_t size, uint64_t offset,
                                 uint64_t zeroed, std::span<const std::byte> data) {
  auto it = sharedCopies_.find(sharedKey("", device, inode));
  if (it == sharedCopies_.end()) return;
  int fd = it->second.fd.get();
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
    throwErrno(kExitIoError, "rec: cannot resize a shared file's copy");
  if (zeroed > 0 && ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                static_cast<off_t>(offset), static_cast<off_t>(zeroed)) != 0)
    throwErrno(kExitIoError, "rec: cannot punch a hole in a shared file's copy");
  writeAllAt(fd, data, offset);
}

const std::string& BlobFiles::sharedSegment(long shmid, uint64_t size) {
  auto it = segments_.find(shmid);
  if (it != segments_.end()) return it->second.path;
  File file;
  file.fd.reset(::memfd_create(fmt::format("rec-sysv-{}", shmid).c_str(), MFD_CLOEXEC));
  if (!file.fd.valid() || ::ftruncate(file.fd.get(), static_cast<off_t>(size)) != 0)
    throwErrno(kExitIoError, "rec: cannot create a memfd for a System V segment");
  file.path = fmt::format("/proc/{}/fd/{}", ::getpid(), file.fd.get());
  return (segments_[shmid] = std::move(file)).path;
}

std::string BlobFiles::pathForRecorded(const std::string& recordedPath) const {
  auto it = byRecordedPath_.find(recordedPath);
  return it == byRecordedPath_.end() ? "" : it->second;
}

bool BlobFiles::holds(ino_t inode, const format::BlobHash& hash) const {
  auto it = files_.find({hash.high, hash.low});
  return it != files_.end() && it->second.inode == inode;
}

}  // namespace rec
