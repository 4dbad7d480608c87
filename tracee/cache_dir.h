// Where rec keeps what it can reuse between runs (compressed blobs, RDTSC
// sites): $REC_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/rec.
// REC_CACHE_DIR=off turns all of it off.
#pragma once

#include <string>

namespace rec {

// The directory `leaf` under the cache root, created (mode 0700) if needed;
// empty when caching is off or the directory cannot be made.
std::string cacheDir(const std::string& leaf);

}  // namespace rec
