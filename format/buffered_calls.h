// The entries of a BufferedSyscalls event: the syscalls one task made
// through the syscall buffer between two events, back to back in the layout
// the buffer itself writes (format/README.md, "Buffered syscalls"). The
// recorder stores the buffer's bytes as they are and replay hands them
// back with one copy; this is the trace's description of that layout, which
// the reader checks entry by entry before anyone reads it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

namespace rec::format {

// One entry's fixed part (little-endian, 88 bytes). Its `size` bytes hold
// this header, then (ranges > 0) `ranges` (address, length) pairs of 16
// bytes, then the written bytes unless `zero`: the single range's (ranges
// == 0: outLength bytes for outAddress) or each range's, each padded to 8.
struct BufferedCallHeader {
  uint32_t size;    // bytes of the entry, this header included: a multiple of 8
  int32_t number;   // x86-64 syscall number
  int64_t result;   // raw rax after the call
  uint64_t args[6];
  uint64_t outAddress;  // ranges == 0: where the call wrote
  uint64_t outLength;   // bytes the call wrote, in all
  uint32_t ranges;      // > 0: a vector read's ranges, in the order written
  uint32_t flags;       // kBuffered*
};
inline constexpr uint32_t kBufferedZero = 1;  // every byte written was zero, none stored
// A write to the program's stdout (stderr): it wrote no memory (outLength 0,
// no ranges); its entry stores the `result` bytes it wrote, which replay shows.
inline constexpr uint32_t kBufferedEchoStdout = 2;
inline constexpr uint32_t kBufferedEchoStderr = 4;
inline bool bufferedZero(const BufferedCallHeader& h) {
  return h.flags & kBufferedZero;
}
// 1 or 2: the output a checked entry wrote to (0: none).
inline int bufferedEchoFd(const BufferedCallHeader& h) {
  return (h.flags & kBufferedEchoStdout) ? 1 : (h.flags & kBufferedEchoStderr) ? 2 : 0;
}
static_assert(sizeof(BufferedCallHeader) == 88);

struct BufferedRange {
  uint64_t address;
  uint64_t length;
};

// A buffered mmap of a file (number 9, MAP_ANONYMOUS clear in args[3],
// args[4] not -1 as an int) maps a file the recording stored whole: its
// entry's data starts with this (no output: outLength 0).
struct BufferedMappedFile {
  uint8_t blobHash[16];  // the file's blob
  uint32_t slot;         // the buffer's stored-files slot (replay fills it)
  uint32_t reserved;
};
static_assert(sizeof(BufferedMappedFile) == 24);
inline bool bufferedMapsFile(const BufferedCallHeader& h) {
  return h.number == 9 && !(h.args[3] & 0x20) && static_cast<int32_t>(h.args[4]) != -1;
}

inline constexpr uint32_t kMaxBufferedRanges = 1024;               // UIO_MAXIOV
inline constexpr uint64_t kMaxBufferedLength = uint64_t{1} << 32;  // per range and per entry

inline constexpr uint64_t bufferedPad(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

// Whether `entries` is exactly `count` well-formed entries; "" when it is,
// else the problem, naming the entry and its byte offset.
std::string checkBufferedCalls(std::span<const std::byte> entries, uint32_t count);

// The bytes a checked entry wrote to the program's output (empty: none).
inline std::span<const std::byte> bufferedEcho(const BufferedCallHeader& h,
                                               const std::byte* entry) {
  if (!bufferedEchoFd(h)) return {};
  return {entry + sizeof h, static_cast<size_t>(h.result)};
}

// One memory range a call wrote: data == nullptr for zeros.
struct BufferedWrite {
  uint64_t address = 0;
  uint64_t length = 0;
  const std::byte* data = nullptr;
};

// Calls f(const BufferedCallHeader&, const std::byte* entry) for each entry
// of a checked batch, in order.
template <typename F>
void forEachBufferedCall(std::span<const std::byte> entries, F&& f) {
  for (size_t at = 0; at + sizeof(BufferedCallHeader) <= entries.size();) {
    BufferedCallHeader h;
    std::memcpy(&h, entries.data() + at, sizeof h);
    if (h.size < sizeof h) return;  // (not in a checked batch)
    f(h, entries.data() + at);
    at += h.size;
  }
}

// Calls f(BufferedWrite) for each range a checked entry wrote, in order.
template <typename F>
void forEachBufferedWrite(const BufferedCallHeader& h, const std::byte* entry, F&& f) {
  const std::byte* data = entry + sizeof h;
  if (!h.ranges) {
    if (h.outLength) f(BufferedWrite{h.outAddress, h.outLength, bufferedZero(h) ? nullptr : data});
    return;
  }
  const std::byte* bytes = data + h.ranges * sizeof(BufferedRange);
  for (uint32_t i = 0; i < h.ranges; ++i) {
    BufferedRange r;
    std::memcpy(&r, data + i * sizeof r, sizeof r);
    f(BufferedWrite{r.address, r.length, bufferedZero(h) ? nullptr : bytes});
    if (!bufferedZero(h)) bytes += bufferedPad(r.length);
  }
}

}  // namespace rec::format
