#include "fast_hash.h"

#include <xxhash.h>

#include <memory>
#include <new>

namespace rec::format {
namespace {

bool avx2() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
  return has;
}

}  // namespace

uint64_t xxh3_64(const void* data, size_t size) {
  return avx2() ? rec_xxh3_64_avx2(data, size) : XXH3_64bits(data, size);
}

void xxh3_128(const void* data, size_t size, uint64_t* high, uint64_t* low) {
  if (avx2()) return rec_xxh3_128_avx2(data, size, high, low);
  XXH128_hash_t h = XXH3_128bits(data, size);
  *high = h.high64;
  *low = h.low64;
}

uint64_t xxh3_64(std::span<const HashPiece> pieces) {
  if (avx2()) return rec_xxh3_64_pieces_avx2(pieces.data(), pieces.size());
  struct Free {
    void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
  };
  std::unique_ptr<XXH3_state_t, Free> state(XXH3_createState());
  if (!state) throw std::bad_alloc();
  XXH3_64bits_reset(state.get());
  for (const HashPiece& p : pieces) XXH3_64bits_update(state.get(), p.data, p.size);
  return XXH3_64bits_digest(state.get());
}

}  // namespace rec::format
