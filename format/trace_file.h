// The trace file: framing, compression, checksums, blobs and the index.
//
// Layout (all integers little-endian):
//   FileHeader  : "RECTRACE" magic (8 bytes), u32 format version, u32 reserved
//   Chunk*      : ChunkHeader + zstd frame
//   The first chunk holds the Header message, then Event/Blob chunks, and a
//   Footer chunk last when the recording ended cleanly.
// Every chunk is independently decodable and checksummed, so a recorder killed
// mid-run leaves a trace that is readable up to its last complete chunk.
#pragma once

#include <capnp/message.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "scoped_fd.h"
#include "trace.capnp.h"

namespace rec::format {

inline constexpr char kFileMagic[8] = {'R', 'E', 'C', 'T', 'R', 'A', 'C', 'E'};
// 2: a task's buffered syscalls are one BufferedSyscalls event per batch
// (1: one SyscallEvent each).
inline constexpr uint32_t kFormatVersion = 2;

// A problem with a trace file. what() is one line naming the file, the
// problem and where (byte offset and/or chunk number).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The trace file could not be opened at all (missing, unreadable, a
// directory). Lets the CLI tell "no trace" from "bad trace".
class TraceOpenError : public FormatError {
 public:
  TraceOpenError(const std::string& what, int err) : FormatError(what), err_(err) {}
  int error() const { return err_; }  // errno value

 private:
  int err_;
};

// The trace could not be created or written (unwritable directory, full
// disk, I/O error): `rec record` exits with kExitIoError for it.
class TraceWriteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// XXH3-128 content hash: identifies blobs (file contents) inside a trace.
struct BlobHash {
  uint64_t high = 0;
  uint64_t low = 0;
  static BlobHash of(std::span<const std::byte> data);
  static BlobHash fromBytes(
      std::span<const std::byte> sixteenBytes);  // throws FormatError if size != 16
  std::array<std::byte, 16> bytes() const;
  std::string hex() const;
  bool operator==(const BlobHash&) const = default;
  bool empty() const { return high == 0 && low == 0; }
};

// A blob chunk exactly as a trace stores it (chunk header and zstd frame),
// lying at [offset, offset + size) of an open file, so it can be copied into
// another trace unchanged and inside the kernel: the recorder's blob cache
// keeps these to skip reading, hashing and compressing the same library in
// every recording.
struct FramedBlob {
  BlobHash hash;
  ScopedFd file;
  uint64_t offset = 0;
  uint64_t size = 0;
  // The file whose contents the blob holds: read and stored afresh should
  // the copy turn out damaged when the writer checks it.
  ScopedFd original;
  std::string originalPath;
};

// Whether `bytes` is one whole blob chunk whose header checksum, sizes and
// payload hash hold (the contents are not decompressed).
bool isIntactBlobChunk(std::span<const std::byte> bytes);
// Whether `header` starts a blob chunk of `chunkSize` bytes: magic, kind,
// header checksum and sizes (the payload hash is not checked).
inline constexpr size_t kChunkHeaderSize = 32;
bool isBlobChunkHeader(std::span<const std::byte> header, uint64_t chunkSize);

struct WriterOptions {
  size_t maxEventsPerChunk = 4096;
  // Uncompressed bytes before a chunk is sealed. Small enough that chunks
  // are compressed while the program runs, not all at its end.
  size_t maxChunkBytes = 128 << 10;
  unsigned maxChunkAgeMs = 250;  // a non-empty chunk is sealed at least this often
  size_t maxQueuedChunks = 16;   // bounded memory: the tracer waits only when full
  // zstd's level for events chunks. 1, not 3: the background thread's
  // compression was a quarter of recording find's CPU; at 1, recording
  // find /usr -type f took 11% less CPU for a 6% larger trace, dd bs=4k 12%
  // less for the same size, ls -lR 2% larger (format/README.md).
  int compressionLevel = 1;
  // Called on the background thread with each blob chunk writeBlob() made,
  // once it is written (e.g. to keep it for later recordings).
  std::function<void(const BlobHash&, std::span<const std::byte> framed)> onBlobWritten;
};

// Appends messages to a trace. Not thread-safe: one tracing thread calls it;
// compression and file writes run on a background thread.
class TraceWriter {
 public:
  // Creates (truncates) path and writes the file header and the Header
  // message. Throws FormatError / std::system_error.
  static std::unique_ptr<TraceWriter> create(const std::string& path, capnp::MessageBuilder& header,
                                             WriterOptions options = {});
  virtual ~TraceWriter() = default;

  virtual void writeEvent(capnp::MessageBuilder& event) = 0;
  // The same for an event that references `lent` as a segment of its own
  // (Orphanage::referenceExternalData of all of it, a multiple of 8 bytes):
  // the writer takes those bytes over instead of copying them, and writes
  // them from where they lie (a batch of buffered syscalls: read4k moves
  // 100 MB through here). `lent` comes back empty, often with the capacity
  // of one written earlier, so that refilling it faults no fresh pages.
  virtual void writeEvent(capnp::MessageBuilder& event, std::vector<std::byte>& lent) = 0;
  // The same for bytes that stay where they lie (rec's mapping of a syscall
  // buffer, which the program goes on filling elsewhere): the writer holds
  // `keep` until it has written them, then drops it, which tells the lender
  // that it may reuse them. The event's chunk is sealed at once, so that
  // the lender never waits for a chunk's age limit.
  virtual void writeEvent(capnp::MessageBuilder& event, std::span<const std::byte> borrowed,
                          std::shared_ptr<const void> keep) = 0;

  // Stores data once per trace; returns its hash. Cheap when already stored.
  virtual BlobHash writeBlob(std::span<const std::byte> data, const std::string& path) = 0;
  virtual bool hasBlob(const BlobHash& hash) const = 0;
  // Stores a blob chunk made by an earlier writer, once per trace, without
  // recompressing: the background thread checks it while copying it from
  // blob.file, and stores blob.original instead if it is damaged.
  virtual void writeFramedBlob(FramedBlob blob) = 0;

  // Seals the current chunk and waits until everything queued is on disk.
  virtual void flush() = 0;
  // Seals, writes the Footer (the footer's chunk list is filled in by the
  // writer), starts writeback and closes. No calls after this.
  virtual void finish(capnp::MessageBuilder& footer) = 0;

  virtual uint64_t eventCount() const = 0;
  // Where the writer keeps that count, for the tracer's clocks
  // (Task::setRunClock); valid for the writer's lifetime.
  virtual const uint64_t* eventCounter() const = 0;

  // Keeps the background thread off `cpu` (the CPU the tracer and the
  // tracees are pinned to) when another CPU is allowed; no-op otherwise.
  virtual void avoidCpu(int cpu) = 0;
};

struct TraceStats {
  uint64_t fileBytes = 0;
  uint64_t compressedBytes = 0;  // sum of chunk payloads
  uint64_t uncompressedBytes = 0;
  uint64_t chunkCount = 0;
  uint64_t eventCount = 0;
  uint64_t blobCount = 0;
  uint64_t blobBytes = 0;  // uncompressed
};

// Reads a trace. open() validates the file header, the Header and Footer
// chunks and the framing of every chunk (header checksums, sizes), building
// an index of events and blobs; each other chunk's payload is checked when
// it is first read, so opening costs little however many files a trace holds.
class TraceReader {
 public:
  // Throws FormatError for a missing/unreadable file, wrong magic, unknown
  // version, a corrupt chunk header anywhere, a corrupt Header or Footer, or
  // a file cut short before the Header. nextEvent() and readBlob() throw it
  // for a corrupt payload.
  // A file cut short after the Header opens fine: complete() is false and
  // cutShortReason() says where.
  static std::unique_ptr<TraceReader> open(const std::string& path);
  // The same for a trace already in memory (tests, the fuzzer); name is used
  // in error messages.
  static std::unique_ptr<TraceReader> openBytes(std::vector<std::byte> bytes,
                                                const std::string& name);
  virtual ~TraceReader() = default;

  virtual schema::Header::Reader header() const = 0;
  virtual bool complete() const = 0;               // Footer present
  virtual std::string cutShortReason() const = 0;  // "" when complete
  virtual std::optional<schema::Footer::Reader> footer() const = 0;
  virtual TraceStats stats() const = 0;

  // Sequential access: returns the next event, valid until the next call,
  // or nullopt at the end. Throws FormatError on a decoding problem.
  virtual std::optional<schema::Event::Reader> nextEvent() = 0;
  virtual uint64_t nextEventIndex() const = 0;  // index of the event nextEvent() returns next
  virtual void rewind() = 0;
  // The next nextEvent() returns event `index` (the end when past it).
  virtual void seek(uint64_t index) = 0;
  // Look-ahead (parallel replay): event `index`, from the chunk nextEvent()
  // reads now or a later one, decoded once for both. Valid until the next
  // call of any of these four. nullopt past the end, before the chunk
  // nextEvent() reads, or when the chunks decoded ahead hold
  // kLookAheadBytes already; throws FormatError for a damaged chunk.
  virtual std::optional<schema::Event::Reader> peekAhead(uint64_t index) = 0;
  static constexpr size_t kLookAheadBytes = 64 << 20;

  virtual bool hasBlob(const BlobHash& hash) const = 0;
  // Throws FormatError if absent.
  virtual std::vector<std::byte> readBlob(const BlobHash& hash) = 0;
};

}  // namespace rec::format
