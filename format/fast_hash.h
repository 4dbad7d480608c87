// XXH3 as the trace needs it, with AVX2 where the CPU has it: the chunk
// checksums hash every byte a recording writes and a replay reads (read4k:
// 100 MB each way), and the system's libxxhash is built for SSE2 only.
// The values are XXH3's on every CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "xxh3_avx2.h"

namespace rec::format {

using HashPiece = rec_hash_piece;

uint64_t xxh3_64(const void* data, size_t size);
// high and low halves of XXH3-128.
void xxh3_128(const void* data, size_t size, uint64_t* high, uint64_t* low);
// XXH3-64 of the pieces' bytes one after the other.
uint64_t xxh3_64(std::span<const HashPiece> pieces);

}  // namespace rec::format
