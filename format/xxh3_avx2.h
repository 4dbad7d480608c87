/* XXH3 compiled for AVX2 (xxh3_avx2.c): call only through fast_hash.h. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rec_hash_piece {
  const void* data;
  size_t size;
};

uint64_t rec_xxh3_64_avx2(const void* data, size_t size);
void rec_xxh3_128_avx2(const void* data, size_t size, uint64_t* high, uint64_t* low);
/* XXH3-64 of the pieces' bytes one after the other. */
uint64_t rec_xxh3_64_pieces_avx2(const struct rec_hash_piece* pieces, size_t count);

#ifdef __cplusplus
}
#endif
