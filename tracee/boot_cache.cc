#include "boot_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>

#include "cache_dir.h"
#include "scoped_fd.h"

namespace rec {

namespace {

constexpr size_t kMaxBytes = 64 << 10;

std::string readSmallFile(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxBytes) return "";
  }
  return out;
}

// The boot id (read once per run, with its newline) and the directory.
struct Place {
  std::string bootId;
  std::string dir;  // empty when the cache is off or the boot id unknown
};

Place place() {
  static const std::string bootId = [] {
    std::string id = readSmallFile("/proc/sys/kernel/random/boot_id");
    return id.size() >= 32 && id.back() == '\n' ? id : std::string();
  }();
  return {bootId, bootId.empty() ? std::string() : cacheDir("machine")};
}

}  // namespace

std::optional<std::string> readBootCache(const std::string& name) {
  const Place p = place();
  if (p.dir.empty()) return std::nullopt;
  std::string text = readSmallFile(p.dir + "/" + name);
  if (text.size() < p.bootId.size() || text.compare(0, p.bootId.size(), p.bootId) != 0)
    return std::nullopt;
  return text.substr(p.bootId.size());
}

std::string bootCacheDir() {
  return place().dir;
}

void writeBootCache(const std::string& name, const std::string& contents) {
  const Place p = place();
  if (p.dir.empty()) return;
  std::string text = p.bootId + contents;
  std::string temp = fmt::format("{}/.{}-{}", p.dir, name, ::getpid());
  {
    ScopedFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid()) return;
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      ::unlink(temp.c_str());
      return;
    }
  }
  if (::rename(temp.c_str(), (p.dir + "/" + name).c_str()) != 0) ::unlink(temp.c_str());
}

}  // namespace rec
