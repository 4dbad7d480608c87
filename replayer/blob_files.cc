#include "blob_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include <fmt/format.h>

#include "errors.h"
#include "exit_codes.h"
#include "scoped_fd.h"

namespace rec {

BlobFiles::BlobFiles(format::TraceReader& reader) : reader_(reader) {
  const char* tmp = ::getenv("TMPDIR");
  std::string templ = fmt::format("{}/rec-replay-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!::mkdtemp(templ.data())) throwErrno(kExitIoError, "cannot create a temporary directory");
  dir_ = templ;
}

BlobFiles::~BlobFiles() {
  for (const auto& [key, path] : files_) ::unlink(path.c_str());
  for (const auto& [key, path] : sharedCopies_) ::unlink(path.c_str());
  ::rmdir(dir_.c_str());
}

namespace {
void writeFile(const std::string& path, const std::vector<std::byte>& data, mode_t mode) {
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid()) throwErrno(kExitIoError, fmt::format("cannot create {}", path));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n <= 0) throwErrno(kExitIoError, fmt::format("cannot write {}", path));
    done += static_cast<size_t>(n);
  }
}
}  // namespace

const std::string& BlobFiles::path(const format::BlobHash& hash) {
  auto key = std::make_pair(hash.high, hash.low);
  auto it = files_.find(key);
  if (it != files_.end()) return it->second;
  std::string path = fmt::format("{}/{}", dir_, hash.hex());
  writeFile(path, reader_.readBlob(hash), 0500);
  return files_[key] = path;
}

const std::string& BlobFiles::sharedCopy(const format::BlobHash& hash,
                                         const std::string& recordedPath) {
  auto it = sharedCopies_.find(recordedPath);
  if (it != sharedCopies_.end()) return it->second;
  std::string path = fmt::format("{}/shared-{}", dir_, sharedCopies_.size());
  writeFile(path, reader_.readBlob(hash), 0600);
  return sharedCopies_[recordedPath] = path;
}

bool BlobFiles::holds(const std::string& path, const format::BlobHash& hash) const {
  auto it = files_.find({hash.high, hash.low});
  return it != files_.end() && it->second == path;
}

}  // namespace rec
