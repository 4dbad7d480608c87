#include "blob_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "exit_codes.h"

namespace rec {

BlobFiles::File BlobFiles::create(const std::string& name, const format::BlobHash& hash) {
  File file;
  std::vector<std::byte> data = reader_.readBlob(hash);
  ScopedFd fd(::memfd_create(name.c_str(), MFD_CLOEXEC));
  if (!fd.valid()) throwErrno(kExitIoError, "rec: memfd_create");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      throwErrno(kExitIoError, "rec: cannot fill a memfd");
    }
    done += static_cast<size_t>(n);
  }
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

const std::string& BlobFiles::path(const format::BlobHash& hash, const std::string& recordedPath) {
  auto key = std::make_pair(hash.high, hash.low);
  auto it = files_.find(key);
  if (it != files_.end()) return it->second.path;
  std::string name = "rec:" + (recordedPath.empty() ? hash.hex() : recordedPath);
  if (name.size() > 240) name.resize(240);  // memfd names are short
  const std::string& created = (files_[key] = create(name, hash)).path;
  byRecordedPath_[name.substr(4)] = created;
  return created;
}

const std::string& BlobFiles::sharedCopy(const format::BlobHash& hash,
                                         const std::string& recordedPath) {
  auto it = sharedCopies_.find(recordedPath);
  if (it != sharedCopies_.end()) return it->second.path;
  return (sharedCopies_[recordedPath] = (create("rec-shared", hash))).path;
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
