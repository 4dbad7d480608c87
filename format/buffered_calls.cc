#include "buffered_calls.h"

namespace rec::format {

std::string checkBufferedCalls(std::span<const std::byte> entries, uint32_t count) {
  uint64_t at = 0;
  uint32_t n = 0;
  auto problem = [&](const std::string& what) {
    return "buffered syscall " + std::to_string(n) + " at byte " + std::to_string(at) +
           " of its batch: " + what;
  };
  while (at < entries.size()) {
    const uint64_t left = entries.size() - at;
    if (n == count) return problem("more entries than the count of " + std::to_string(count));
    if (left < sizeof(BufferedCallHeader)) return problem("cut short");
    BufferedCallHeader h;
    std::memcpy(&h, entries.data() + at, sizeof h);
    if (h.size < sizeof h || h.size % 8 != 0 || h.size > left)
      return problem("bad size " + std::to_string(h.size));
    if (h.flags & ~(kBufferedZero | kBufferedEchoStdout | kBufferedEchoStderr))
      return problem("bad flags " + std::to_string(h.flags));
    const bool zero = bufferedZero(h);
    if (h.ranges > kMaxBufferedRanges) return problem("too many ranges");
    if (h.outLength > kMaxBufferedLength) return problem("bad output length");
    const uint64_t body = h.size - sizeof h;
    if (bufferedMapsFile(h) && (h.outLength || h.ranges || body < sizeof(BufferedMappedFile)))
      return problem("an mmap of a file without its file");
    if (h.flags & (kBufferedEchoStdout | kBufferedEchoStderr)) {
      if ((h.flags & (kBufferedEchoStdout | kBufferedEchoStderr)) ==
              (kBufferedEchoStdout | kBufferedEchoStderr) ||
          zero || h.outLength || h.ranges || h.result <= 0 ||
          static_cast<uint64_t>(h.result) > body)
        return problem("bad output of the program");
    }
    if (!h.ranges) {
      if (!zero && h.outLength > body) return problem("output longer than the entry");
    } else {
      const uint64_t table = uint64_t{h.ranges} * sizeof(BufferedRange);
      if (table > body) return problem("ranges past the entry's end");
      uint64_t total = 0, stored = 0;
      for (uint32_t i = 0; i < h.ranges; ++i) {
        BufferedRange r;
        std::memcpy(&r, entries.data() + at + sizeof h + i * sizeof r, sizeof r);
        if (r.length > kMaxBufferedLength) return problem("bad range length");
        total += r.length;
        stored += bufferedPad(r.length);
      }
      if (total != h.outLength) return problem("ranges disagree with the output length");
      if (!zero && stored > body - table) return problem("output longer than the entry");
    }
    at += h.size;
    ++n;
  }
  if (n != count)
    return "buffered syscalls: " + std::to_string(n) + " entries, the count says " +
           std::to_string(count);
  return {};
}

}  // namespace rec::format
