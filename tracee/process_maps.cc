#include "process_maps.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include "scoped_fd.h"

namespace rec {

namespace {

// A number in `base` at the start of `s`, which it leaves after the number
// and the one separator that follows it. False when there is none.
bool number(std::string_view& s, uint64_t& out, int base) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  if (ec != std::errc() || end == s.data()) return false;
  s.remove_prefix(static_cast<size_t>(end - s.data()));
  if (!s.empty()) s.remove_prefix(1);
  return true;
}

bool parseLine(std::string_view s, MapEntry& e) {
  uint64_t major = 0, minor = 0;
  if (!number(s, e.start, 16) || !number(s, e.end, 16) || s.size() < 5) return false;
  std::string_view perms = s.substr(0, 4);
  s.remove_prefix(5);
  if (!number(s, e.offset, 16) || !number(s, major, 16) || !number(s, minor, 16) ||
      !number(s, e.inode, 10))
    return false;
  e.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
           (perms[2] == 'x' ? PROT_EXEC : 0);
  e.shared = perms[3] == 's';
  size_t path = s.find_first_not_of(' ');
  // " (deleted)" suffixes stay: the path is for humans and blob lookup uses map_files.
  if (path != std::string_view::npos) e.path.assign(s.substr(path));
  return true;
}

}  // namespace

std::vector<MapEntry> parseMaps(std::string_view text) {
  std::vector<MapEntry> out;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    MapEntry e;
    if (parseLine(line, e)) out.push_back(std::move(e));
  }
  return out;
}

// Read whole and parsed by hand: rec reads a process's maps at each exec,
// and an ifstream with sscanf per line cost ~30 us of rec's time each
// (perf, 100 x /bin/true).
std::vector<MapEntry> readMaps(pid_t pid) {
  return parseMaps(readProcFile(fmt::format("/proc/{}/maps", pid)));
}

std::string readProcFile(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};
  std::string text;
  size_t used = 0;
  text.resize(16384);
  for (;;) {
    if (used == text.size()) text.resize(text.size() * 2);
    ssize_t n = ::read(fd.get(), text.data() + used, text.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return {};  // (ESRCH: gone meanwhile)
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  text.resize(used);
  return text;
}

}  // namespace rec
