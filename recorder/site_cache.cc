#include "site_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "cache_dir.h"
#include "scoped_fd.h"

namespace rec {

namespace {

// One 64-bit word a site: offset << 16 | syscall number.
constexpr unsigned kNumberBits = 16;
// A program's hot sites in one file are tens; a cap keeps an entry that
// grows over many recordings from making every process patch hundreds.
constexpr size_t kMaxSites = 1024;

}  // namespace

std::string HotSiteCache::path(const std::string& program, const std::string& file) {
  if (!directoryKnown_) {
    directory_ = cacheDir("syscall-sites-v1");
    directoryKnown_ = true;
  }
  if (directory_.empty() || program.empty() || file.empty()) return "";
  return directory_ + "/" + program + "-" + file;
}

HotSiteCache::Entry& HotSiteCache::entry(const std::string& program, const std::string& file) {
  auto [it, added] = entries_.try_emplace({program, file});
  if (!added) return it->second;
  const std::string cached = path(program, file);
  if (cached.empty()) return it->second;
  ScopedFd fd(::open(cached.c_str(), O_RDONLY | O_CLOEXEC));
  uint64_t words[512];
  ssize_t n;
  while (fd.valid() && (n = ::read(fd.get(), words, sizeof words)) > 0)
    for (ssize_t i = 0; i < n / 8; ++i)
      it->second.sites.emplace(words[i] >> kNumberBits,
                               static_cast<int>(words[i] & ((1u << kNumberBits) - 1)));
  return it->second;
}

const HotSiteCache::Sites& HotSiteCache::sitesOf(const std::string& program,
                                                 const std::string& file) {
  return entry(program, file).sites;
}

void HotSiteCache::note(const std::string& program, const std::string& file, uint64_t offset,
                        int nr) {
  if (program.empty() || nr < 0 || nr >= (1 << kNumberBits)) return;
  Entry& e = entry(program, file);
  if (e.sites.size() >= kMaxSites) return;
  if (e.sites.emplace(offset, nr).second) e.changed = true;
}

void HotSiteCache::save() {
  for (auto& [key, e] : entries_) {
    if (!e.changed) continue;
    e.changed = false;
    const std::string cached = path(key.first, key.second);
    if (cached.empty()) return;
    std::vector<uint64_t> words;
    for (auto [offset, nr] : e.sites)
      words.push_back(offset << kNumberBits | static_cast<uint64_t>(nr));
    // (a temporary file renamed over: a reader sees the old list or the new)
    const std::string temp = cached + ".tmp-" + std::to_string(::getpid());
    ScopedFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    const size_t bytes = words.size() * sizeof(uint64_t);
    if (fd.valid() && ::write(fd.get(), words.data(), bytes) == static_cast<ssize_t>(bytes))
      ::rename(temp.c_str(), cached.c_str());
    else
      ::unlink(temp.c_str());
  }
}

}  // namespace rec
