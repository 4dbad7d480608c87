#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "task_state.h"

using rec::staleXsaveInRedZone;

namespace {
constexpr uint64_t kRedZone = 0x7fffffffcb00;  // 64-byte aligned, as rsp - 128 may be

// 128 bytes of red zone holding an XSAVEC header (XSTATE_BV, XCOMP_BV, 48
// zero bytes) at `offset`, the rest filled with `fill`.
std::vector<uint8_t> redZoneWithHeader(size_t offset, uint64_t xstateBv, uint64_t xcompBv,
                                       uint8_t fill = 0x5a) {
  std::vector<uint8_t> bytes(128, fill);
  std::memcpy(&bytes[offset], &xstateBv, 8);
  std::memcpy(&bytes[offset + 8], &xcompBv, 8);
  std::memset(&bytes[offset + 16], 0, std::min<size_t>(48, 128 - offset - 16));
  return bytes;
}
}  // namespace

TEST_CASE("an XSAVEC header left in the red zone is masked from it to the red zone's end") {
  // As seen on an AVX-512 machine: SSE in use when recording, not in replay.
  auto bytes = redZoneWithHeader(0, 0x2, 0x80000000000000e6);
  auto range = staleXsaveInRedZone(bytes, kRedZone);
  CHECK(range.start == kRedZone);
  CHECK(range.end == kRedZone + 128);
  bytes = redZoneWithHeader(64, 0x0, 0x80000000000000e6);
  range = staleXsaveInRedZone(bytes, kRedZone);
  CHECK(range.start == kRedZone + 64);
  CHECK(range.end == kRedZone + 128);
  // A header whose reserved bytes run past the red zone: those in it are checked.
  bytes = redZoneWithHeader(64, 0x6, 0x8000000000000006);
  CHECK(staleXsaveInRedZone(bytes, kRedZone + 32).start == 0);  // not 64-aligned there
}

TEST_CASE("red-zone data that is not an XSAVEC header stays in the digest") {
  // Not compacted (XSAVE's standard format has XCOMP_BV 0).
  CHECK(staleXsaveInRedZone(redZoneWithHeader(0, 0x3, 0x3), kRedZone).end == 0);
  // XSTATE_BV marks a component XCOMP_BV lacks.
  CHECK(staleXsaveInRedZone(redZoneWithHeader(0, 0x10, 0x80000000000000e6), kRedZone).end == 0);
  // Without SSE, or with components no CPU has.
  CHECK(staleXsaveInRedZone(redZoneWithHeader(0, 0x0, 0x8000000000000004), kRedZone).end == 0);
  CHECK(staleXsaveInRedZone(redZoneWithHeader(0, 0x2, 0x8000000100000006), kRedZone).end == 0);
  // Reserved bytes not zero.
  auto bytes = redZoneWithHeader(0, 0x2, 0x80000000000000e6);
  bytes[40] = 1;
  CHECK(staleXsaveInRedZone(bytes, kRedZone).end == 0);
  // A leaf function's locals.
  std::vector<uint8_t> locals(128);
  for (size_t i = 0; i < locals.size(); ++i) locals[i] = static_cast<uint8_t>(i * 7 + 1);
  CHECK(staleXsaveInRedZone(locals, kRedZone).end == 0);
}
