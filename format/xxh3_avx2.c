/* XXH3 built for AVX2 (the system's libxxhash is built for SSE2, which
 * hashes about half as fast); fast_hash.cc calls these only where the CPU
 * has AVX2. The hashes are XXH3's whatever the instruction set. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "xxh3_avx2.h"

uint64_t rec_xxh3_64_avx2(const void* data, size_t size) { return XXH3_64bits(data, size); }

void rec_xxh3_128_avx2(const void* data, size_t size, uint64_t* high, uint64_t* low) {
  XXH128_hash_t h = XXH3_128bits(data, size);
  *high = h.high64;
  *low = h.low64;
}

uint64_t rec_xxh3_64_pieces_avx2(const struct rec_hash_piece* pieces, size_t count) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  for (size_t i = 0; i < count; ++i) XXH3_64bits_update(&state, pieces[i].data, pieces[i].size);
  return XXH3_64bits_digest(&state);
}
