#include "shared_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "process_maps.h"
#include "scoped_fd.h"

namespace rec {

std::optional<SharedFiles::Id> SharedFiles::identify(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return Id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

namespace {

// The file position of `fd` in task `tid` (/proc/PID/fdinfo), or -1.
int64_t filePosition(pid_t tid, long fd) {
  std::istringstream info(readProcFile(fmt::format("/proc/{}/fdinfo/{}", tid, fd)));
  std::string key;
  int64_t value;
  while (info >> key >> value)
    if (key == "pos:") return value;
  return -1;
}

// The process whose memory `fd` of task `tid` is (/proc/N/mem or
// /proc/N/task/M/mem), or 0.
pid_t memoryFileOwner(pid_t tid, long fd) {
  char target[64] = {};
  ssize_t n = ::readlink(fmt::format("/proc/{}/fd/{}", tid, fd).c_str(), target, sizeof target - 1);
  if (n <= 0) return 0;
  int pid = 0, thread = 0, used = 0;
  if (std::sscanf(target, "/proc/%d/mem%n", &pid, &used) == 1 && used == n) return pid;
  if (std::sscanf(target, "/proc/%d/task/%d/mem%n", &pid, &thread, &used) == 2 && used == n)
    return pid;
  return 0;
}

}  // namespace

bool SharedFiles::openForWriting(pid_t tid, long fd) {
  // The mode of the /proc/PID/fd/N link is the open file's f_mode (the
  // kernel sets S_IWUSR from FMODE_WRITE at each lookup), which is what
  // fdinfo's access mode says for any fd that can be mapped (one with
  // FMODE_READ): one lstat instead of open, read and close of fdinfo.
  struct stat st;
  if (::lstat(fmt::format("/proc/{}/fd/{}", tid, fd).c_str(), &st) != 0) return false;
  return (st.st_mode & S_IWUSR) != 0;
}

std::optional<SharedFiles::Update> SharedFiles::updateAfter(
    const sys::SyscallRow& row, const std::array<uint64_t, 6>& args, int64_t result, Task& task,
    const std::vector<std::string>& strings) const {
  if (result < 0) return std::nullopt;
  const sys::FdWrite& w = row.fdWrite;
  bool writes = w.data != sys::Data::None && result > 0;
  bool resizes = row.flags & sys::kResizesFile;
  if (!writes && !resizes) return std::nullopt;
  pid_t memoryOf = writes ? memoryFileOwner(task.tid(), static_cast<long>(args[w.fdArg])) : 0;
  if (watched_.empty() && !memoryOf) return std::nullopt;

  // The file: the written fd, or what the resizing call names.
  std::string path;
  long fd = -1;
  if (writes || row.args[0] == sys::Arg::Fd) {
    fd = static_cast<long>(args[writes ? w.fdArg : 0]);
    path = fmt::format("/proc/{}/fd/{}", task.tid(), fd);
  } else if (!strings.empty()) {
    path =
        strings[0][0] == '/' ? strings[0] : fmt::format("/proc/{}/cwd/{}", task.tid(), strings[0]);
  } else {
    return std::nullopt;
  }
  ScopedFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!file.valid() || ::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  Id id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  if (!memoryOf && !watched_.contains(id)) return std::nullopt;

  Update update{id, static_cast<uint64_t>(st.st_size), static_cast<uint64_t>(st.st_size), 0, {}};
  update.memoryOf = memoryOf;
  if ((row.flags & sys::kZeroesRange) &&
      (args[1] & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
    update.offset = args[2];
    update.zeroed = args[3];
  }
  if (!writes) return update;
  // Where the written bytes landed: the offset argument, the loff_t it
  // points to (advanced by the call), or the file position (advanced too).
  int64_t start = -1;
  uint64_t offsetArg = args[w.offsetArg];
  if (w.offset == sys::Offset::Arg && static_cast<int64_t>(offsetArg) != -1) {
    start = static_cast<int64_t>(offsetArg);
  } else if (w.offset == sys::Offset::Ptr && offsetArg != 0) {
    int64_t after = 0;
    if (task.read(offsetArg, &after, sizeof after) == sizeof after) start = after - result;
  } else {
    int64_t position = filePosition(task.tid(), fd);
    if (position >= 0) start = position - result;
  }
  if (start < 0) return update;  // not a seekable file: nothing of it is mapped
  update.offset = static_cast<uint64_t>(start);
  update.data.resize(static_cast<size_t>(result));
  size_t done = 0;
  while (done < update.data.size()) {
    ssize_t n = ::pread(file.get(), update.data.data() + done, update.data.size() - done,
                        static_cast<off_t>(update.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  update.data.resize(done);
  return update;
}

}  // namespace rec
