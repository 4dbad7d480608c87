#include "trace_paths.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <string_view>

#include "errors.h"
#include "exit_codes.h"

namespace rec {

namespace {
void makeDirs(const std::string& dir) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      throwErrno(kExitIoError, fmt::format("rec: cannot create {}", prefix));
  }
}
}  // namespace

std::string traceDirectory() {
  if (const char* d = ::getenv("REC_TRACE_DIR"); d && *d) return d;
  const char* home = ::getenv("HOME");
  return fmt::format("{}/.local/share/rec", home && *home ? home : "/tmp");
}

std::string newTracePath(const std::string& program) {
  std::string dir = traceDirectory();
  makeDirs(dir);
  std::string base = program.substr(program.rfind('/') + 1);
  // Past the highest number in use: one directory read, not a failed
  // create per trace already there (a thousand recordings of a program made
  // the next one try a thousand names).
  long first = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    const std::string prefix = base + "-";
    while (dirent* e = ::readdir(d)) {
      std::string_view name(e->d_name);
      if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) continue;
      std::string_view digits = name.substr(prefix.size());
      if (digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
      first = std::max(first, std::stol(std::string(digits)) + 1);
    }
    ::closedir(d);
  }
  for (long n = first;; ++n) {
    std::string path = fmt::format("{}/{}-{}", dir, base, n);
    // O_EXCL reserves the name against a concurrent recording.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::close(fd);
      return path;
    }
    if (errno != EEXIST) throwErrno(kExitIoError, fmt::format("rec: cannot create {}", path));
  }
}

void updateLatestLink(const std::string& tracePath) {
  std::string dir = traceDirectory();
  std::string link = dir + "/latest";
  std::string tmp = fmt::format("{}/.latest-{}", dir, ::getpid());
  std::string target = tracePath.substr(tracePath.rfind('/') + 1);
  if (tracePath.rfind(dir + "/", 0) != 0) {
    char buf[4096];
    target = tracePath[0] == '/'
                 ? tracePath
                 : fmt::format("{}/{}", ::getcwd(buf, sizeof buf) ? buf : ".", tracePath);
  }
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) == 0) ::rename(tmp.c_str(), link.c_str());
}

std::string latestTracePath() {
  std::string link = traceDirectory() + "/latest";
  struct stat st;
  if (::stat(link.c_str(), &st) != 0)
    throw RecError(kExitNoTrace, fmt::format("rec: no trace given and no latest recording in {}",
                                             traceDirectory()));
  return link;
}

}  // namespace rec
