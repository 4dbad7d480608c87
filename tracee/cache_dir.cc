#include "cache_dir.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace rec {

namespace {

bool makeDirs(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return true;  // the common case
  for (size_t end = path.find('/', 1);; end = path.find('/', end + 1)) {
    std::string prefix = path.substr(0, end);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) return false;
    if (end == std::string::npos) break;
  }
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

std::string cacheDir(const std::string& leaf) {
  std::string root;
  if (const char* configured = std::getenv("REC_CACHE_DIR"); configured && *configured) {
    if (std::strcmp(configured, "off") == 0) return "";
    root = configured;
  } else if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg == '/') {
    root = std::string(xdg) + "/rec";
  } else if (const char* home = std::getenv("HOME"); home && *home == '/') {
    root = std::string(home) + "/.cache/rec";
  } else {
    return "";
  }
  std::string dir = root + "/" + leaf;
  return makeDirs(dir) ? dir : "";
}

}  // namespace rec
