// Trace file writer and reader. The framing is documented byte by byte in
// format/README.md; keep the two in sync.
#include "trace_file.h"

#include "buffered_calls.h"
#include "fast_hash.h"

#include <capnp/any.h>
#include <capnp/dynamic.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace rec::format {
namespace {

static_assert(std::endian::native == std::endian::little, "the framing is written natively");

// ---------------------------------------------------------------------------
// Framing constants.

constexpr size_t kFileHeaderSize = 16;
constexpr uint32_t kChunkMagic = 0x4b484352;  // "RCHK" on disk
constexpr size_t kChunkHeaderChecked = 28;    // bytes covered by the header checksum

enum ChunkKind : uint32_t {
  kKindHeader = 1,
  kKindEvents = 2,
  kKindBlob = 3,
  kKindFooter = 4,
};

// Hard caps, checked before anything is allocated from a size field. The
// fuzz build lowers them so that a tiny crafted input cannot make every run
// allocate a gigabyte.
#ifdef REC_FORMAT_FUZZING
constexpr uint64_t kMaxUncompressed = 64ull << 20;
#else
constexpr uint64_t kMaxUncompressed = 1ull << 30;
#endif
constexpr size_t kMaxEventsInChunk = 1u << 24;
// zstd's level for events chunks after one that did not compress.
constexpr int kFastLevel = -5;
constexpr size_t kIncompressibleSample = 16 << 10;
// Events chunks at least this large are sampled before compressing.
constexpr size_t kSampledChunk = 256 << 10;
// Prefix of a blob chunk decoded at open() to learn the blob's hash.
constexpr size_t kBlobPeekBytes = 64 << 10;
constexpr size_t kReadBufferBytes = 1 << 20;
// decode() keeps its buffer for payloads up to this size.
constexpr size_t kKeptReadBytes = 16 << 20;
// Chunks stored raw from this size up are read into place (readStoredInto).
constexpr size_t kStoredReadMin = 64 << 10;
// Written lent buffers kept for reuse.
constexpr size_t kSpareBuffers = 8;
// The background thread starts writeback after each this many bytes.
constexpr uint64_t kWritebackBytes = 8 << 20;

struct ChunkHeader {
  uint32_t magic = kChunkMagic;
  uint32_t kind = 0;
  uint32_t compressedSize = 0;
  uint32_t uncompressedSize = 0;
  uint64_t payloadHash = 0;  // XXH3-64 of the compressed payload
  uint32_t messageCount = 0;
  uint32_t headerChecksum = 0;  // XXH32 (seed 0) of the 28 bytes before it
};
static_assert(sizeof(ChunkHeader) == kChunkHeaderSize);

uint32_t headerChecksum(const ChunkHeader& h) {
  return XXH32(&h, kChunkHeaderChecked, 0);
}

template <typename T>
T loadLe(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// ---------------------------------------------------------------------------
// RAII helpers.

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};
struct DStreamFree {
  void operator()(ZSTD_DStream* c) const { ZSTD_freeDStream(c); }
};
struct XxhStateFree {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};

// Bytes an event lent the writer (TraceWriter::writeEvent's `lent`): they
// come before raw[at] in the chunk.
// Or borrowed: `view` stays where it lies (rec's mapping of a syscall
// buffer), and `keep` is held until the chunk is written, then dropped,
// which tells the lender it may reuse those bytes.
struct LentBytes {
  size_t at = 0;
  std::vector<std::byte> data;
  std::span<const std::byte> view;
  std::shared_ptr<const void> keep;
};

// kj::OutputStream appending to a byte vector: capnp serialises straight
// into the open chunk without an intermediate flat array.
class VectorSink final : public kj::OutputStream {
 public:
  explicit VectorSink(std::vector<std::byte>& out) : out_(out) {}
  void write(const void* buffer, size_t size) override {
    auto p = static_cast<const std::byte*>(buffer);
    out_.insert(out_.end(), p, p + size);
  }

 private:
  std::vector<std::byte>& out_;
};

// The same, for an event one of whose segments is handed over rather than
// copied: that segment goes into the chunk's lent list, the rest is copied
// into the chunk.
class LendingSinkBase : public kj::OutputStream {
 public:
  void write(const void* buffer, size_t size) override {
    if (size > 0 && tryLend(buffer, size)) {
      lentBytes_ += size;
      return;
    }
    auto p = static_cast<const std::byte*>(buffer);
    out_.insert(out_.end(), p, p + size);
  }

 protected:
  LendingSinkBase(std::vector<std::byte>& out, std::vector<LentBytes>& lent, size_t& lentBytes)
      : out_(out), lent_(lent), lentBytes_(lentBytes) {}
  // Whether the `size` bytes at `buffer` are the segment to hand over (then
  // added to lent_ at out_'s end).
  virtual bool tryLend(const void* buffer, size_t size) = 0;
  std::vector<std::byte>& out_;
  std::vector<LentBytes>& lent_;

 private:
  size_t& lentBytes_;
};

// The segment is `data`, whose vector moves into the chunk.
class LendingSink final : public LendingSinkBase {
 public:
  LendingSink(std::vector<std::byte>& out, std::vector<LentBytes>& lent, size_t& lentBytes,
              std::vector<std::byte>& data)
      : LendingSinkBase(out, lent, lentBytes), data_(data) {}

 private:
  bool tryLend(const void* buffer, size_t size) override {
    if (buffer != data_.data() || size != data_.size()) return false;
    lent_.push_back(LentBytes{out_.size(), std::move(data_), {}, {}});
    data_.clear();
    return true;
  }
  std::vector<std::byte>& data_;
};

// The segment is borrowed where it lies (`view`, kept alive by `keep`).
class BorrowingSink final : public LendingSinkBase {
 public:
  BorrowingSink(std::vector<std::byte>& out, std::vector<LentBytes>& lent, size_t& lentBytes,
                std::span<const std::byte> view, std::shared_ptr<const void>& keep)
      : LendingSinkBase(out, lent, lentBytes), view_(view), keep_(keep) {}

 private:
  bool tryLend(const void* buffer, size_t size) override {
    if (buffer != view_.data() || size != view_.size() || !keep_) return false;
    lent_.push_back(LentBytes{out_.size(), {}, view_, std::move(keep_)});
    return true;
  }
  std::span<const std::byte> view_;
  std::shared_ptr<const void>& keep_;
};

std::string errnoText(int err) {
  return std::generic_category().message(err);
}

// Fully reads every pointer of a message through the reflection API, so a
// message whose pointers, lists or texts are malformed fails here, inside the
// reader, rather than later in the caller's field accessors.
void deepValidate(capnp::DynamicValue::Reader v);

// Per struct type, which fields hold pointers (structs, groups, lists, texts,
// data): scalars need no check, and asking the schema a field's type is
// most of the reflection's cost (a replay reads every event through here).
struct PointerFields {
  std::vector<std::pair<capnp::StructSchema::Field, bool>> nonUnion;  // and whether a struct
  std::vector<bool> byIndex;  // every field, union members included
};
const PointerFields& pointerFields(capnp::StructSchema schema) {
  thread_local std::unordered_map<uint64_t, PointerFields> cache;
  auto [it, added] = cache.try_emplace(schema.getProto().getId());
  if (added) {
    auto holdsPointer = [](capnp::StructSchema::Field f) {
      capnp::Type t = f.getType();
      return t.isStruct() || t.isList() || t.isText() || t.isData() || t.isAnyPointer() ||
             t.isInterface();
    };
    for (auto field : schema.getFields()) it->second.byIndex.push_back(holdsPointer(field));
    for (auto field : schema.getNonUnionFields())
      if (holdsPointer(field)) it->second.nonUnion.emplace_back(field, field.getType().isStruct());
  }
  return it->second;
}

void deepValidate(capnp::DynamicStruct::Reader s) {
  const PointerFields& fields = pointerFields(s.getSchema());
  for (auto [field, isStruct] : fields.nonUnion) {
    if (isStruct || s.has(field)) deepValidate(s.get(field));
  }
  KJ_IF_MAYBE (field, s.which()) {
    if (fields.byIndex[field->getIndex()]) deepValidate(s.get(*field));
  }
}
void deepValidate(capnp::DynamicValue::Reader v) {
  switch (v.getType()) {
    case capnp::DynamicValue::STRUCT:
      deepValidate(v.as<capnp::DynamicStruct>());
      break;
    case capnp::DynamicValue::LIST: {
      auto list = v.as<capnp::DynamicList>();
      auto element = list.getSchema().getElementType();
      if (element.isStruct() || element.isList() || element.isText() || element.isData()) {
        for (auto e : list) deepValidate(e);
      }
      break;
    }
    case capnp::DynamicValue::TEXT:
      (void)v.as<capnp::Text>();
      break;
    case capnp::DynamicValue::DATA:
      (void)v.as<capnp::Data>();
      break;
    default:
      break;
  }
}

template <typename T>
void validateMessage(typename T::Reader root) {
  deepValidate(capnp::toDynamic(root));
}

// Bit i: pointer slot i of `schema` holds one of `fields`.
uint64_t pointerSlots(capnp::StructSchema schema, std::initializer_list<const char*> fields) {
  uint64_t mask = 0;
  for (const char* name : fields) {
    uint32_t slot = schema.getFieldByName(name).getProto().getSlot().getOffset();
    if (slot < 64) mask |= uint64_t{1} << slot;
  }
  return mask;
}

// Whether every non-null pointer of `s` is in a slot of `allowed`.
bool onlyPointers(capnp::AnyStruct::Reader s, uint64_t allowed) {
  auto pointers = s.getPointerSection();
  for (unsigned i = 0; i < pointers.size(); ++i)
    if (!pointers[i].isNull() && (i >= 64 || !((allowed >> i) & 1))) return false;
  return true;
}

// The common syscall event (a buffered one, or a traced one with its
// registers and path strings) checked through the generated getters, which
// read each pointer as the reflection's walk would; true when that was
// the whole message. Any other pointer set: false, and the walk runs.
bool validateCommonSyscall(schema::Event::Reader event) {
  static const uint64_t eventSlots = pointerSlots(capnp::Schema::from<schema::Event>(), {"syscall"});
  static const uint64_t syscallSlots = pointerSlots(
      capnp::Schema::from<schema::SyscallEvent>(), {"args", "writes", "strings", "registers"});
  static const uint64_t writeSlots = pointerSlots(capnp::Schema::from<schema::MemWrite>(), {"data"});
  static const uint64_t registerSlots =
      pointerSlots(capnp::Schema::from<schema::Registers>(), {"raw", "changed"});
  if (!event.isSyscall() || !onlyPointers(event, eventSlots)) return false;
  auto s = event.getSyscall();
  if (!onlyPointers(s, syscallSlots)) return false;
  (void)s.getArgs();
  for (auto w : s.getWrites()) {
    if (!onlyPointers(w, writeSlots)) return false;
    (void)w.getData();
  }
  for (auto text : s.getStrings()) (void)text;
  if (s.hasRegisters()) {
    auto r = s.getRegisters();
    if (!onlyPointers(r, registerSlots)) return false;
    (void)r.getRaw();
    (void)r.getChanged();
  }
  return true;
}

// A BufferedSyscalls event checked through the generated getters (true
// when that was the whole message); its entries are checked separately.
bool validateBufferedSyscalls(schema::Event::Reader event) {
  static const uint64_t eventSlots =
      pointerSlots(capnp::Schema::from<schema::Event>(), {"bufferedSyscalls"});
  static const uint64_t batchSlots =
      pointerSlots(capnp::Schema::from<schema::BufferedSyscalls>(), {"entries"});
  if (!event.isBufferedSyscalls() || !onlyPointers(event, eventSlots)) return false;
  auto b = event.getBufferedSyscalls();
  if (!onlyPointers(b, batchSlots)) return false;
  (void)b.getEntries();
  return true;
}

capnp::ReaderOptions readerOptions(size_t words) {
  capnp::ReaderOptions o;
  // Room for callers to read every field many times; still bounded, which
  // is what defends against pointer-amplification bombs.
  o.traversalLimitInWords = std::max<uint64_t>(o.traversalLimitInWords, uint64_t{64} * words);
  return o;
}

}  // namespace

// ---------------------------------------------------------------------------
// BlobHash

BlobHash BlobHash::of(std::span<const std::byte> data) {
  BlobHash h;
  xxh3_128(data.data(), data.size(), &h.high, &h.low);
  return h;
}

BlobHash BlobHash::fromBytes(std::span<const std::byte> b) {
  if (b.size() != 16) {
    throw FormatError("blob hash has " + std::to_string(b.size()) + " bytes, expected 16");
  }
  XXH128_canonical_t c;
  std::memcpy(c.digest, b.data(), 16);
  XXH128_hash_t h = XXH128_hashFromCanonical(&c);
  return BlobHash{h.high64, h.low64};
}

std::array<std::byte, 16> BlobHash::bytes() const {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH128_hash_t{low, high});
  std::array<std::byte, 16> out;
  std::memcpy(out.begin(), c.digest, 16);
  return out;
}

std::string BlobHash::hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (std::byte b : bytes()) {
    s += kDigits[static_cast<unsigned>(b) >> 4];
    s += kDigits[static_cast<unsigned>(b) & 15];
  }
  return s;
}

namespace {

struct BlobHashHasher {
  size_t operator()(const BlobHash& h) const { return h.low ^ (h.high * 0x9e3779b97f4a7c15ull); }
};

// ===========================================================================
// Writer

bool isBlobChunkHeader(const ChunkHeader& h, uint64_t chunkSize) {
  return h.magic == kChunkMagic && h.kind == kKindBlob && h.messageCount == 1 &&
         h.headerChecksum == headerChecksum(h) && h.uncompressedSize <= kMaxUncompressed &&
         chunkSize == kChunkHeaderSize + uint64_t{h.compressedSize};
}

bool preadAll(int fd, void* out, size_t size, uint64_t offset) {
  auto* p = static_cast<std::byte*>(out);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

}  // namespace

bool isIntactBlobChunk(std::span<const std::byte> bytes) {
  if (bytes.size() < kChunkHeaderSize) return false;
  ChunkHeader h;
  std::memcpy(&h, bytes.data(), kChunkHeaderSize);
  return isBlobChunkHeader(h, bytes.size()) &&
         xxh3_64(bytes.data() + kChunkHeaderSize, h.compressedSize) == h.payloadHash;
}

bool isBlobChunkHeader(std::span<const std::byte> header, uint64_t chunkSize) {
  if (header.size() < kChunkHeaderSize) return false;
  ChunkHeader h;
  std::memcpy(&h, header.data(), kChunkHeaderSize);
  return isBlobChunkHeader(h, chunkSize);
}

namespace {

struct PendingChunk {
  uint32_t kind = kKindEvents;
  std::vector<std::byte> raw;  // serialised capnp messages, uncompressed
  std::vector<LentBytes> lent;  // and the bytes lent to it, in their places
  size_t lentBytes = 0;
  size_t size() const { return raw.size() + lentBytes; }
  // The chunk's bytes in order, as pieces where they lie.
  std::vector<HashPiece> pieces() const {
    std::vector<HashPiece> out;
    size_t from = 0;
    for (const LentBytes& l : lent) {
      if (l.at > from) out.push_back({raw.data() + from, l.at - from});
      if (!l.data.empty()) out.push_back({l.data.data(), l.data.size()});
      if (!l.view.empty()) out.push_back({l.view.data(), l.view.size()});
      from = l.at;
    }
    if (raw.size() > from) out.push_back({raw.data() + from, raw.size() - from});
    return out;
  }
  // A whole chunk made earlier (header and zstd frame), copied as it is.
  std::optional<FramedBlob> framed;
  BlobHash blob;  // kKindBlob: the blob's hash
  uint32_t messageCount = 0;
  uint64_t firstEvent = 0;
  std::chrono::steady_clock::time_point started;
};

struct IndexEntry {
  uint64_t offset;
  uint32_t kind;
  uint64_t firstEvent;
  uint32_t eventCount;
  BlobHash blob;  // kKindBlob
};

// Writes all of buf with one write(2) call in the normal case; loops only on
// a short write (signal, full disk reporting late).
void writeAll(int fd, const std::byte* buf, size_t len, const std::string& path) {
  while (len > 0) {
    ssize_t n = ::write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw TraceWriteError("cannot write trace " + path + ": " + errnoText(errno));
    }
    buf += n;
    len -= static_cast<size_t>(n);
  }
}

// writev(2) of all of iov, in as few calls as IOV_MAX allows; loops on a
// short write. Consumes iov.
void writevAll(int fd, std::vector<iovec>& iov, const std::string& path) {
  size_t first = 0;
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = ::writev(fd, iov.data() + first, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw TraceWriteError("cannot write trace " + path + ": " + errnoText(errno));
    }
    auto left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left > 0) {
      iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
}

// The uncompressed chunk for one blob. One segment large enough for
// everything: the hash then lands in the first bytes of the message, which
// the reader peeks at in open().
PendingChunk blobChunk(const BlobHash& hash, std::span<const std::byte> data,
                       const std::string& path, const std::string& tracePath) {
  if (data.size() + path.size() + 1024 > kMaxUncompressed) {
    throw FormatError(tracePath + ": file " + path + " (" + std::to_string(data.size()) +
                      " bytes) is too large to store in a trace");
  }
  PendingChunk chunk;
  chunk.kind = kKindBlob;
  chunk.messageCount = 1;
  chunk.blob = hash;
  size_t words = (data.size() + path.size() + 16) / 8 + 32;
  capnp::MallocMessageBuilder message(static_cast<unsigned>(std::min<size_t>(words, 1u << 29)),
                                      capnp::AllocationStrategy::FIXED_SIZE);
  auto blob = message.initRoot<schema::Blob>();
  auto hashBytes = hash.bytes();
  blob.setHash(kj::arrayPtr(reinterpret_cast<const kj::byte*>(hashBytes.data()), 16));
  blob.setPath(path);
  blob.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(data.data()), data.size()));
  chunk.raw.reserve(capnp::computeSerializedSizeInWords(message) * 8);
  VectorSink sink(chunk.raw);
  capnp::writeMessage(sink, message);
  return chunk;
}

class TraceWriterImpl final : public TraceWriter {
 public:
  TraceWriterImpl(std::string path, ScopedFd fd, WriterOptions options)
      : path_(std::move(path)), fd_(std::move(fd)), options_(options) {
    options_.maxEventsPerChunk =
        std::clamp<size_t>(options_.maxEventsPerChunk, 1, kMaxEventsInChunk);
    options_.maxQueuedChunks = std::max<size_t>(options_.maxQueuedChunks, 1);
    cctx_.reset(ZSTD_createCCtx());
    if (!cctx_) throw std::bad_alloc();
  }

  ~TraceWriterImpl() override {
    if (finished_) return;
    // Cut short: flush what there is, no footer.
    try {
      std::unique_lock lock(mu_);
      if (current_.messageCount > 0 && !error_) sealLocked(lock);
      stop_ = true;
      workCv_.notify_all();
    } catch (...) {
    }
    if (thread_.joinable()) thread_.join();
  }

  void start(capnp::MessageBuilder& header, std::string replaced) {
    std::byte fileHeader[kFileHeaderSize];
    std::memcpy(fileHeader, kFileMagic, 8);
    uint32_t version = kFormatVersion, reserved = 0;
    std::memcpy(fileHeader + 8, &version, 4);
    std::memcpy(fileHeader + 12, &reserved, 4);
    writeAll(fd_.get(), fileHeader, sizeof fileHeader, path_);
    offset_ = kFileHeaderSize;

    PendingChunk chunk;
    chunk.kind = kKindHeader;
    VectorSink sink(chunk.raw);
    capnp::writeMessage(sink, header);
    chunk.messageCount = 1;
    // The background thread writes it first of all, so the file is a valid
    // (cut-short) trace from then on; compressing it here would set up the
    // compressor on the tracing thread before the program starts.
    queue_.push_back(std::move(chunk));
    resetCurrent();
    replaced_ = std::move(replaced);
    thread_ = std::thread([this] { backgroundLoop(); });
  }

  void writeEvent(capnp::MessageBuilder& event) override {
    std::unique_lock lock(mu_);
    throwIfFailed();
    appendLocked(lock, event, nullptr);
    if (current_.messageCount > 0 &&
        std::chrono::steady_clock::now() - current_.started >= maxAge())
      sealLocked(lock);
  }

  void writeEvent(capnp::MessageBuilder& event, std::vector<std::byte>& lent) override {
    std::unique_lock lock(mu_);
    throwIfFailed();
    appendLocked(lock, event, &lent);
    lent.clear();
    if (lent.capacity() == 0 && !spare_.empty()) {
      lent = std::move(spare_.back());
      spare_.pop_back();
    }
    if (current_.messageCount > 0 &&
        std::chrono::steady_clock::now() - current_.started >= maxAge())
      sealLocked(lock);
  }

  void writeEvent(capnp::MessageBuilder& event, std::span<const std::byte> borrowed,
                  std::shared_ptr<const void> keep) override {
    std::unique_lock lock(mu_);
    throwIfFailed();
    appendLocked(lock, event, nullptr, borrowed, &keep);
    // Its lender waits for `keep` to be dropped before it reuses the bytes:
    // the chunk goes to the background thread now, not at its age limit.
    if (current_.messageCount > 0) sealLocked(lock);
  }

  // One event into the open chunk, sealed when full; the bytes `lent`
  // holds, when its message references them, moved there (or `borrowed`,
  // referenced where they lie and kept alive by `keep`).
  void appendLocked(std::unique_lock<std::mutex>& lock, capnp::MessageBuilder& event,
                    std::vector<std::byte>* lent, std::span<const std::byte> borrowed = {},
                    std::shared_ptr<const void>* keep = nullptr) {
    const size_t before = current_.raw.size(), lentBefore = current_.lent.size(),
                 sizeBefore = current_.size();
    if (keep) {
      BorrowingSink sink(current_.raw, current_.lent, current_.lentBytes, borrowed, *keep);
      capnp::writeMessage(sink, event);
    } else if (lent) {
      LendingSink sink(current_.raw, current_.lent, current_.lentBytes, *lent);
      capnp::writeMessage(sink, event);
    } else {
      VectorSink sink(current_.raw);
      capnp::writeMessage(sink, event);
    }
    if (current_.size() > kMaxUncompressed) {
      size_t eventBytes = current_.size() - sizeBefore;
      current_.raw.resize(before);
      current_.lent.resize(lentBefore);
      current_.lentBytes = sizeBefore - before;
      throw FormatError(path_ + ": event of " + std::to_string(eventBytes) +
                        " bytes exceeds the chunk size limit");
    }
    if (current_.messageCount++ == 0) {
      current_.started = std::chrono::steady_clock::now();
      workCv_.notify_all();  // the background thread now has a deadline to watch
    }
    ++eventCount_;
    if (current_.messageCount >= options_.maxEventsPerChunk ||
        current_.size() >= options_.maxChunkBytes)
      sealLocked(lock);
  }

  BlobHash writeBlob(std::span<const std::byte> data, const std::string& path) override {
    BlobHash hash = BlobHash::of(data);
    if (blobs_.count(hash)) return hash;
    PendingChunk chunk = blobChunk(hash, data, path, path_);
    {
      std::unique_lock lock(mu_);
      throwIfFailed();
      enqueueLocked(lock, std::move(chunk));
    }
    blobs_.insert(hash);
    return hash;
  }

  bool hasBlob(const BlobHash& hash) const override { return blobs_.count(hash) != 0; }

  void writeFramedBlob(FramedBlob blob) override {
    if (!blobs_.insert(blob.hash).second) return;
    PendingChunk chunk;
    chunk.kind = kKindBlob;
    chunk.blob = blob.hash;
    chunk.framed = std::move(blob);
    std::unique_lock lock(mu_);
    throwIfFailed();
    enqueueLocked(lock, std::move(chunk));
  }

  void avoidCpu(int cpu) override {
    if (cpu < 0 || !thread_.joinable()) return;
    cpu_set_t allowed;
    if (::pthread_getaffinity_np(thread_.native_handle(), sizeof allowed, &allowed) != 0) return;
    cpu_set_t others = allowed;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) == 0) return;
    if (::pthread_setaffinity_np(thread_.native_handle(), sizeof others, &others) == 0)
      allowedBefore_ = allowed;
  }

  void flush() override {
    std::unique_lock lock(mu_);
    throwIfFailed();
    if (current_.messageCount > 0) sealLocked(lock);
    drainedCv_.wait(lock, [&] { return (queue_.empty() && !inFlight_) || error_; });
    throwIfFailed();
  }

  void finish(capnp::MessageBuilder& footer) override {
    // One hand-over: the background thread writes what is queued, then the
    // footer (whose index needs every chunk's offset), and ends; this
    // thread only waits for it, instead of a flush and a second round trip.
    {
      std::unique_lock lock(mu_);
      throwIfFailed();
      if (current_.messageCount > 0) sealLocked(lock);
      footer_ = &footer;
      stop_ = true;
      workCv_.notify_all();
    }
    // The program is gone, and with it the reason to keep the background
    // thread off the tracer's CPU: under load the other CPU may be busy for
    // milliseconds while this one idles in join().
    if (allowedBefore_)
      ::pthread_setaffinity_np(thread_.native_handle(), sizeof *allowedBefore_, &*allowedBefore_);
    thread_.join();
    finished_ = true;
    throwIfFailed();
    // No fsync and no writeback kick for the tail: an fsync cost 3-70 ms
    // here, and even starting writeback of the last few MiB (ext4 allocates
    // their delayed blocks in the caller) took 0.7 ms of a 20 ms python3
    // recording, while the user waits. Killing rec loses nothing either
    // way; after a power cut the trace is readable up to whichever
    // checksummed chunks reached the disk. The background thread starts
    // writeback every few MiB, so dirty pages stay bounded.
    if (::close(fd_.release()) != 0) {
      throw TraceWriteError("cannot write trace " + path_ + ": " + errnoText(errno));
    }
  }

  uint64_t eventCount() const override { return eventCount_; }
  const uint64_t* eventCounter() const override { return &eventCount_; }

 private:
  std::chrono::milliseconds maxAge() const {
    return std::chrono::milliseconds(std::max(1u, options_.maxChunkAgeMs));
  }

  void resetCurrent() {
    current_ = PendingChunk{};
    current_.kind = kKindEvents;
    current_.firstEvent = eventCount_;
    current_.raw.reserve(std::min<size_t>(options_.maxChunkBytes + 4096, 16 << 20));
  }

  void throwIfFailed() {
    if (error_) std::rethrow_exception(error_);
  }

  // Moves the open event chunk into the queue.
  void sealLocked(std::unique_lock<std::mutex>& lock) {
    PendingChunk chunk = std::move(current_);
    resetCurrent();
    enqueueLocked(lock, std::move(chunk));
  }

  // The only place the tracing thread blocks: the queue is full.
  void enqueueLocked(std::unique_lock<std::mutex>& lock, PendingChunk chunk) {
    notFullCv_.wait(lock, [&] { return queue_.size() < options_.maxQueuedChunks || error_; });
    throwIfFailed();
    queue_.push_back(std::move(chunk));
    workCv_.notify_all();
  }

  void backgroundLoop() {
    // Process-directed signals (SIGTERM to rec, ...) must reach the thread
    // that traces, whose waitpid they interrupt, not this one.
    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
    std::unique_lock lock(mu_);
    bool idleBefore = false;
    for (;;) {
      if (!queue_.empty()) {
        PendingChunk chunk = std::move(queue_.front());
        queue_.pop_front();
        inFlight_ = true;
        lock.unlock();
        std::exception_ptr failure;
        try {
          writeChunk(chunk);
          startWriteback();
        } catch (...) {
          failure = std::current_exception();
        }
        lock.lock();
        inFlight_ = false;
        for (LentBytes& l : chunk.lent)
          if (spare_.size() < kSpareBuffers && l.data.capacity() > 0) {
            l.data.clear();
            spare_.push_back(std::move(l.data));
          }
        // A tracer waiting for room goes on only now, when this chunk's
        // lent buffer is spare: one it allocated afresh would fault in a
        // page per 4 KiB (read4k: a third of the tracer's time).
        notFullCv_.notify_all();
        if (failure && !error_) {
          error_ = failure;
          queue_.clear();  // nobody may wait for a write that will never happen
          notFullCv_.notify_all();
        }
        drainedCv_.notify_all();
        continue;
      }
      if (stop_) {
        if (footer_ && !error_) {
          lock.unlock();
          std::exception_ptr failure;
          try {
            writeFooter(*footer_);
          } catch (...) {
            failure = std::current_exception();
          }
          lock.lock();
          if (failure) error_ = failure;
        }
        if (!idleBefore && !replaced_.empty()) ::unlink(replaced_.c_str());
        return;
      }
      if (!idleBefore) {
        // The first idle moment (the header is on disk): chores that need
        // not delay the program's start.
        idleBefore = true;
        lock.unlock();
        if (!replaced_.empty()) ::unlink(replaced_.c_str());
        warmUp();
        lock.lock();
        continue;
      }
      if (current_.messageCount > 0 && !error_) {
        auto deadline = current_.started + maxAge();
        if (std::chrono::steady_clock::now() >= deadline) {
          // The tracer may sit in waitpid() for a long time while the traced
          // program blocks; do not let its events linger in memory.
          PendingChunk chunk = std::move(current_);
          resetCurrent();
          queue_.push_back(std::move(chunk));
          continue;
        }
        workCv_.wait_until(lock, deadline);
      } else {
        workCv_.wait(lock);
      }
    }
  }

  // The Footer chunk, last: its index lists every chunk written before it.
  void writeFooter(capnp::MessageBuilder& footer) {
    PendingChunk chunk;
    chunk.kind = kKindFooter;
    chunk.messageCount = 1;
    {
      std::lock_guard guard(indexMu_);
      auto root = footer.getRoot<schema::Footer>();
      root.setEventCount(eventCount_);
      auto list = root.initChunks(static_cast<unsigned>(index_.size()));
      for (size_t i = 0; i < index_.size(); ++i) {
        auto e = list[static_cast<unsigned>(i)];
        e.setOffset(index_[i].offset);
        e.setKind(static_cast<uint8_t>(index_[i].kind));
        e.setFirstEvent(index_[i].firstEvent);
        e.setEventCount(index_[i].eventCount);
        if (index_[i].kind == kKindBlob) {
          auto hash = index_[i].blob.bytes();
          e.setBlobHash(kj::arrayPtr(reinterpret_cast<const kj::byte*>(hash.data()), 16));
        }
      }
    }
    VectorSink sink(chunk.raw);
    capnp::writeMessage(sink, footer);
    writeChunk(chunk);
  }

  // Touches the compressor's tables and the output buffer once, while the
  // program starts: in a VM each first touch of a page costs a fault to the
  // hypervisor, and the first events chunk is often compressed only when
  // the program has ended, where everyone waits for it.
  void warmUp() {
    std::vector<std::byte> sample(64 << 10);
    for (size_t i = 0; i < sample.size(); ++i) sample[i] = static_cast<std::byte>(i * 131 >> 7);
    size_t bound = ZSTD_compressBound(options_.maxChunkBytes);
    buffer_.resize(kChunkHeaderSize + bound);
    ZSTD_compressCCtx(cctx_.get(), buffer_.data(), buffer_.size(), sample.data(), sample.size(),
                      options_.compressionLevel);
  }

  // Starts writeback of what was written since the last time, every few
  // MiB, here on the background thread: ext4 allocates the delayed blocks
  // in the caller, which for a 100 MB trace took 8-30 ms of finish() on the
  // tracing thread, at the end, while everyone waits.
  void startWriteback() {
    if (offset_ - writebackFrom_ < kWritebackBytes) return;
    ::sync_file_range(fd_.get(), static_cast<off_t>(writebackFrom_),
                      static_cast<off_t>(offset_ - writebackFrom_), SYNC_FILE_RANGE_WRITE);
    writebackFrom_ = offset_;
  }

  // Compresses and writes one chunk; called by the background thread only,
  // so offset_ needs no lock; finish() reads index_ under indexMu_.
  void writeChunk(const PendingChunk& chunk) {
    if (chunk.framed) {
      if (copyFramedIfIntact(*chunk.framed)) {
        std::lock_guard guard(indexMu_);
        index_.push_back(IndexEntry{offset_, chunk.kind, 0, 0, chunk.blob});
        offset_ += chunk.framed->size;
      } else {
        writeChunk(blobChunkFromOriginal(*chunk.framed));
      }
      return;
    }
    const size_t size = chunk.size();
    const std::vector<HashPiece> pieces = chunk.pieces();
    size_t bound = ZSTD_compressBound(size);
    buffer_.resize(std::max(buffer_.size(), kChunkHeaderSize + bound));
    // Blobs (binaries, libraries) are large and mostly written once at exec:
    // the fastest level keeps the end of a short recording from waiting on
    // them. The header goes first, before the compressor is warmed up.
    int level =
        chunk.kind == kKindBlob || chunk.kind == kKindHeader ? 1 : options_.compressionLevel;
    // Events that carry incompressible data (a program reading random or
    // compressed files through the buffer): zstd's level 3 spends ~3 ms per
    // MiB finding nothing. While the last events chunk did not shrink by a
    // tenth, the next is compressed at a fast level, which stores such data
    // raw for a fraction of that; one that shrinks again brings level 3 back.
    // While they do not, a sample from the middle of the chunk's largest
    // piece at that level says whether this one is any different: if not,
    // it is stored as it is (raw blocks written from where the bytes lie,
    // writeStored), for a fraction of the fast level's cost again.
    // A large chunk is sampled even when the last one compressed: the
    // first chunk of read4k (1 MiB of random data) took 3 ms at level 3.
    bool stored = false;
    if (chunk.kind == kKindEvents && (eventsIncompressible_ || size >= kSampledChunk)) {
      if (eventsIncompressible_) level = std::min(level, kFastLevel);
      const HashPiece& largest = *std::max_element(
          pieces.begin(), pieces.end(),
          [](const HashPiece& a, const HashPiece& b) { return a.size < b.size; });
      const size_t sample = std::min<size_t>(largest.size, kIncompressibleSample);
      const size_t from = (largest.size - sample) / 2;
      size_t m = ZSTD_compressCCtx(cctx_.get(), buffer_.data() + kChunkHeaderSize, bound,
                                   static_cast<const std::byte*>(largest.data) + from, sample,
                                   kFastLevel);
      stored = !ZSTD_isError(m) && m * 10 > sample * 9;
    }
    ChunkHeader h;
    h.kind = chunk.kind;
    h.uncompressedSize = static_cast<uint32_t>(size);
    h.messageCount = chunk.messageCount;
    size_t n = 0;
    if (stored) {
      n = writeStored(h, pieces, size);
    } else {
      n = compress(pieces, size, bound, level);
      h.compressedSize = static_cast<uint32_t>(n);
      if (chunk.kind == kKindEvents && size >= (16 << 10))
        eventsIncompressible_ = n * 10 > size * 9;
      h.payloadHash = xxh3_64(buffer_.data() + kChunkHeaderSize, n);
      h.headerChecksum = headerChecksum(h);
      std::memcpy(buffer_.data(), &h, kChunkHeaderSize);
      writeAll(fd_.get(), buffer_.data(), kChunkHeaderSize + n, path_);
    }
    IndexEntry entry{offset_, chunk.kind, chunk.kind == kKindEvents ? chunk.firstEvent : 0,
                     chunk.kind == kKindEvents ? chunk.messageCount : 0, chunk.blob};
    offset_ += kChunkHeaderSize + n;
    if (chunk.kind == kKindBlob && options_.onBlobWritten)
      options_.onBlobWritten(chunk.blob, std::span(buffer_.data(), kChunkHeaderSize + n));
    if (chunk.kind == kKindHeader || chunk.kind == kKindFooter) return;
    std::lock_guard guard(indexMu_);
    index_.push_back(entry);
  }

  // Compresses the chunk's pieces into buffer_ after the header's room;
  // returns the payload's size.
  size_t compress(const std::vector<HashPiece>& pieces, size_t size, size_t bound, int level) {
    std::byte* out = buffer_.data() + kChunkHeaderSize;
    size_t n = 0;
    if (pieces.size() == 1) {
      n = ZSTD_compressCCtx(cctx_.get(), out, bound, pieces[0].data, pieces[0].size, level);
    } else {
      // One frame over the pieces, its content size in its header as
      // the reader wants (the size pledged).
      n = ZSTD_CCtx_reset(cctx_.get(), ZSTD_reset_session_and_parameters);
      if (!ZSTD_isError(n)) n = ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_compressionLevel, level);
      if (!ZSTD_isError(n)) n = ZSTD_CCtx_setPledgedSrcSize(cctx_.get(), size);
      ZSTD_outBuffer ob{out, bound, 0};
      for (size_t i = 0; i < pieces.size() && !ZSTD_isError(n); ++i) {
        const bool last = i + 1 == pieces.size();
        ZSTD_inBuffer ib{pieces[i].data, pieces[i].size, 0};
        do {
          n = ZSTD_compressStream2(cctx_.get(), &ob, &ib, last ? ZSTD_e_end : ZSTD_e_continue);
          if (!ZSTD_isError(n) && ob.pos == ob.size && (last ? n != 0 : ib.pos < ib.size))
            throw FormatError(path_ + ": zstd compression failed: output larger than its bound");
        } while (!ZSTD_isError(n) && (last ? n != 0 : ib.pos < ib.size));
      }
      if (!ZSTD_isError(n)) n = ob.pos;
    }
    if (ZSTD_isError(n))
      throw FormatError(path_ + ": zstd compression failed: " + ZSTD_getErrorName(n));
    return n;
  }

  // Writes the chunk with header `h` (sizes of its contents set) as a zstd
  // frame of raw blocks (RFC 8878: the frame header with the content size,
  // then each block's 3-byte header and its bytes as they are), gathered
  // from the pieces in one writev, no copy; returns the payload's size.
  // What zstd's lowest level writes for incompressible data, without its
  // copy; every zstd decoder reads it.
  size_t writeStored(ChunkHeader& h, const std::vector<HashPiece>& pieces, size_t size) {
    constexpr size_t kBlockMax = 128 << 10;  // ZSTD_BLOCKSIZE_MAX
    constexpr size_t kFrameHeader = 9;       // magic, descriptor, 4-byte content size
    size_t blocks = 0;
    for (const HashPiece& p : pieces) blocks += (p.size + kBlockMax - 1) / kBlockMax;
    frame_.resize(kFrameHeader + 3 * blocks);
    std::byte* f = frame_.data();
    const uint32_t magic = 0xFD2FB528, contentSize = static_cast<uint32_t>(size);
    std::memcpy(f, &magic, 4);
    f[4] = std::byte{0xA0};  // content size 4 bytes, single segment, no checksum, no dictionary
    std::memcpy(f + 5, &contentSize, 4);
    std::vector<HashPiece> payload;
    payload.reserve(2 * blocks + 1);
    size_t header = kFrameHeader, done = 0;
    payload.push_back({f, 0});
    for (const HashPiece& p : pieces) {
      for (size_t at = 0; at < p.size; at += kBlockMax) {
        const size_t len = std::min(kBlockMax, p.size - at);
        done += len;
        const uint32_t bh = (done == size ? 1u : 0u) | static_cast<uint32_t>(len) << 3;  // raw
        std::byte* b = f + header;
        b[0] = static_cast<std::byte>(bh);
        b[1] = static_cast<std::byte>(bh >> 8);
        b[2] = static_cast<std::byte>(bh >> 16);
        // The frame header and the first block header are one piece.
        if (payload.size() == 1 && payload[0].size == 0)
          payload[0].size = kFrameHeader + 3;
        else
          payload.push_back({b, 3});
        header += 3;
        payload.push_back({static_cast<const std::byte*>(p.data) + at, len});
      }
    }
    size_t n = 0;
    for (const HashPiece& p : payload) n += p.size;
    h.compressedSize = static_cast<uint32_t>(n);
    h.payloadHash = xxh3_64(payload);
    h.headerChecksum = headerChecksum(h);
    std::vector<iovec> iov;
    iov.reserve(payload.size() + 1);
    iov.push_back({&h, kChunkHeaderSize});
    for (const HashPiece& p : payload) iov.push_back({const_cast<void*>(p.data), p.size});
    writevAll(fd_.get(), iov, path_);
    return n;
  }

  // Appends a framed chunk, checking its payload hash on the way (here, off
  // the tracing thread). A damaged chunk is taken back out of the file.
  bool copyFramedIfIntact(const FramedBlob& blob) {
    ChunkHeader h;
    if (blob.size < kChunkHeaderSize ||
        !preadAll(blob.file.get(), &h, kChunkHeaderSize, blob.offset) ||
        !isBlobChunkHeader(h, blob.size))
      return false;
    std::unique_ptr<XXH3_state_t, XxhStateFree> state(XXH3_createState());
    if (!state) throw std::bad_alloc();
    XXH3_64bits_reset(state.get());
    buffer_.resize(std::max<size_t>(buffer_.size(), 256 << 10));
    uint64_t at = blob.offset, left = blob.size;
    while (left > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, buffer_.size()));
      if (!preadAll(blob.file.get(), buffer_.data(), n, at)) break;
      size_t payloadStart = at == blob.offset ? kChunkHeaderSize : 0;
      XXH3_64bits_update(state.get(), buffer_.data() + payloadStart, n - payloadStart);
      writeAll(fd_.get(), buffer_.data(), n, path_);
      at += n;
      left -= n;
    }
    if (left == 0 && XXH3_64bits_digest(state.get()) == h.payloadHash) return true;
    if (::ftruncate(fd_.get(), static_cast<off_t>(offset_)) != 0 ||
        ::lseek(fd_.get(), static_cast<off_t>(offset_), SEEK_SET) < 0)
      throw TraceWriteError("cannot write trace " + path_ + ": " + errnoText(errno));
    return false;
  }

  // The chunk for a framed blob made afresh from the file it came from.
  PendingChunk blobChunkFromOriginal(const FramedBlob& blob) {
    int fd = blob.original.get();
    struct stat st;
    if (fd < 0 || ::fstat(fd, &st) != 0)
      throw FormatError(path_ + ": a cached copy of " + blob.originalPath +
                        " is damaged and the file cannot be read again");
    std::vector<std::byte> data(static_cast<size_t>(st.st_size));
    if (!preadAll(fd, data.data(), data.size(), 0))
      throw FormatError(path_ + ": a cached copy of " + blob.originalPath +
                        " is damaged and the file cannot be read again");
    return blobChunk(blob.hash, data, blob.originalPath, path_);
  }

  const std::string path_;
  ScopedFd fd_;
  WriterOptions options_;
  std::unordered_set<BlobHash, BlobHashHasher> blobs_;  // tracing thread only
  uint64_t eventCount_ = 0;                             // tracing thread only
  bool finished_ = false;

  std::mutex mu_;
  std::condition_variable workCv_;     // background thread: work or a deadline
  std::condition_variable notFullCv_;  // tracing thread: queue has room
  std::condition_variable drainedCv_;  // flush(): everything written
  PendingChunk current_;               // the open event chunk
  // Lent buffers written, for writeEvent to hand back (their pages are
  // faulted in already).
  std::vector<std::vector<std::byte>> spare_;
  std::deque<PendingChunk> queue_;
  bool inFlight_ = false;
  bool stop_ = false;
  capnp::MessageBuilder* footer_ = nullptr;  // set by finish(), with stop_
  std::optional<cpu_set_t> allowedBefore_;   // the thread's CPUs before avoidCpu()
  std::exception_ptr error_;

  // Background thread only.
  std::string replaced_;  // a former trace at this path, deleted when idle
  std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx_;
  std::vector<std::byte> buffer_;
  std::vector<std::byte> frame_;  // writeStored's frame and block headers
  bool eventsIncompressible_ = false;  // the last large events chunk hardly shrank
  uint64_t offset_ = 0;
  uint64_t writebackFrom_ = 0;  // writeback started for the bytes before
  std::mutex indexMu_;
  std::vector<IndexEntry> index_;

  std::thread thread_;
};

}  // namespace

std::unique_ptr<TraceWriter> TraceWriter::create(const std::string& path,
                                                 capnp::MessageBuilder& header,
                                                 WriterOptions options) {
  // A trace being replaced (rec record --until-failure writes the same path
  // again and again) is moved aside and deleted by the background thread:
  // dropping a file's cached pages takes milliseconds, which O_TRUNC would
  // spend here, before the program even starts.
  std::string replaced;
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > (1 << 20)) {
    replaced = path + ".replaced-" + std::to_string(::getpid());
    if (::rename(path.c_str(), replaced.c_str()) != 0) replaced.clear();
  }
  // Private to its owner: a trace holds the environment and the contents of
  // the files the program read.
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    int err = errno;
    if (!replaced.empty()) ::rename(replaced.c_str(), path.c_str());
    throw TraceWriteError("cannot create trace " + path + ": " + errnoText(err));
  }
  if (::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077))
    ::fchmod(fd.get(), 0600);  // an older trace overwritten in place
  auto writer = std::make_unique<TraceWriterImpl>(path, std::move(fd), options);
  writer->start(header, std::move(replaced));
  return writer;
}

// ===========================================================================
// Reader

namespace {

// Where the bytes come from: a file (pread) or memory.
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly len bytes at off (the caller checked off+len <= size()).
  virtual void readAt(uint64_t off, void* buf, size_t len) = 0;
  // The same into the pieces one after the other (their lengths' sum).
  virtual void readAt(uint64_t off, std::span<const iovec> pieces) {
    for (const iovec& p : pieces) {
      readAt(off, p.iov_base, p.iov_len);
      off += p.iov_len;
    }
  }
};

class FileSource final : public Source {
 public:
  FileSource(std::string name, ScopedFd fd, uint64_t size)
      : name_(std::move(name)), fd_(std::move(fd)), size_(size) {}
  uint64_t size() const override { return size_; }
  void readAt(uint64_t off, void* buf, size_t len) override {
    auto p = static_cast<char*>(buf);
    while (len > 0) {
      ssize_t n = ::pread(fd_.get(), p, len, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        throw FormatError(name_ + ": read error at byte " + std::to_string(off) + ": " +
                          errnoText(errno));
      }
      if (n == 0) {
        throw FormatError(name_ + ": file shrank while reading (end at byte " +
                          std::to_string(off) + ")");
      }
      p += n;
      off += static_cast<uint64_t>(n);
      len -= static_cast<size_t>(n);
    }
  }
  using Source::readAt;
  // One preadv per IOV_MAX pieces; a short read goes on piece by piece.
  void readAt(uint64_t off, std::span<const iovec> pieces) override {
    while (!pieces.empty()) {
      const size_t count = std::min<size_t>(pieces.size(), IOV_MAX);
      size_t want = 0;
      for (size_t i = 0; i < count; ++i) want += pieces[i].iov_len;
      ssize_t n =
          ::preadv(fd_.get(), pieces.data(), static_cast<int>(count), static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || static_cast<size_t>(n) != want) {
        Source::readAt(off, pieces.first(count));  // (reports what went wrong)
      }
      off += want;
      pieces = pieces.subspan(count);
    }
  }

 private:
  std::string name_;
  ScopedFd fd_;
  uint64_t size_;
};

class MemorySource final : public Source {
 public:
  explicit MemorySource(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_.size(); }
  void readAt(uint64_t off, void* buf, size_t len) override {
    std::memcpy(buf, bytes_.data() + off, len);
  }

 private:
  std::vector<std::byte> bytes_;
};

struct ChunkInfo {
  uint64_t number = 0;  // 0 is the Header chunk
  uint64_t offset = 0;  // of the chunk header
  ChunkHeader h;
  uint64_t firstEvent = 0;
};

class TraceReaderImpl final : public TraceReader {
 public:
  TraceReaderImpl(std::string name, std::unique_ptr<Source> source)
      : name_(std::move(name)), source_(std::move(source)) {
    dctx_.reset(ZSTD_createDCtx());
    if (!dctx_) throw std::bad_alloc();
  }

  ~TraceReaderImpl() noexcept override {}  // capnp readers' destructors are noexcept(false)

  void scan();

  schema::Header::Reader header() const override { return headerRoot_; }
  bool complete() const override { return footerMessage_.has_value(); }
  std::string cutShortReason() const override { return cutShortReason_; }
  std::optional<schema::Footer::Reader> footer() const override {
    if (!footerMessage_) return std::nullopt;
    return footerRoot_;
  }
  TraceStats stats() const override { return stats_; }

  std::optional<schema::Event::Reader> nextEvent() override;
  uint64_t nextEventIndex() const override { return nextEvent_; }
  void rewind() override { seek(0); }
  void seek(uint64_t index) override {
    nextEvent_ = std::min(index, stats_.eventCount);
    eventMessage_.reset();
    peekMessage_.reset();
  }
  std::optional<schema::Event::Reader> peekAhead(uint64_t index) override;

  bool hasBlob(const BlobHash& hash) const override { return blobs_.count(hash) != 0; }
  std::vector<std::byte> readBlob(const BlobHash& hash) override;

 private:
  [[noreturn]] void fail(const ChunkInfo& c, const std::string& problem) const {
    throw FormatError(name_ + ": chunk " + std::to_string(c.number) + " at byte " +
                      std::to_string(c.offset) + ": " + problem);
  }
  void verifyPayload(const ChunkInfo& c);
  void decode(const ChunkInfo& c, kj::Array<capnp::word>& out);
  // The same into `store`, grown only when too small (a replay reads
  // chunk after chunk: no allocation, no fresh pages each time); returns
  // the payload's words at its start.
  kj::ArrayPtr<capnp::word> decodeInto(const ChunkInfo& c, kj::Array<capnp::word>& store);
  bool readStoredInto(const ChunkInfo& c, std::byte* out);
  BlobHash peekBlobHash(const ChunkInfo& c);
  void indexBlobs(const std::vector<ChunkInfo>& chunks);
  // An event chunk decoded, and where its messages start (in words, one per
  // message plus the end).
  struct LoadedChunk {
    size_t chunk = SIZE_MAX;
    kj::Array<capnp::word> store;
    kj::ArrayPtr<capnp::word> words;  // the payload, in store
    std::vector<size_t> offsets;
  };
  size_t chunkOf(uint64_t event) const;
  void loadEventChunk(size_t i, LoadedChunk& into);
  // The loaded chunk `i`: one already loaded, or loaded with those between
  // after the last one (look-ahead, while the loaded chunks' bytes stay
  // under the limit), or the only one. Null when look-ahead would go past
  // the limit or back before the first one.
  LoadedChunk* loaded(size_t i, bool lookingAhead);
  static kj::ArrayPtr<const capnp::word> messageWords(const LoadedChunk& c, size_t k) {
    return {c.words.begin() + c.offsets[k], c.offsets[k + 1] - c.offsets[k]};
  }

  std::string name_;
  std::unique_ptr<Source> source_;
  std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx_;
  std::vector<std::byte> readBuffer_;

  kj::Array<capnp::word> headerWords_;
  std::optional<capnp::FlatArrayMessageReader> headerMessage_;
  schema::Header::Reader headerRoot_;
  kj::Array<capnp::word> footerWords_;
  std::optional<capnp::FlatArrayMessageReader> footerMessage_;
  schema::Footer::Reader footerRoot_;
  std::string cutShortReason_;
  TraceStats stats_;

  std::vector<ChunkInfo> eventChunks_;
  std::unordered_map<BlobHash, ChunkInfo, BlobHashHasher> blobs_;

  // Sequential event access, and look-ahead: consecutive decoded chunks,
  // from the one nextEvent() reads on to the furthest one peeked at; their
  // stores are kept for the next chunks (a replay reads chunk after chunk:
  // no allocation, no fresh pages each time).
  uint64_t nextEvent_ = 0;
  std::deque<LoadedChunk> loaded_;
  std::vector<LoadedChunk> spare_;
  size_t loadedBytes_ = 0;
  // Compressed payloads read by decode(), uninitialised, kept for the next.
  std::unique_ptr<std::byte[]> compressed_;
  size_t compressedSize_ = 0;
  std::optional<capnp::FlatArrayMessageReader> eventMessage_;
  std::optional<capnp::FlatArrayMessageReader> peekMessage_;
};

// Streams the payload through XXH3 with a fixed buffer (payloads can be large)
// and checks that it starts with one zstd frame of the announced size.
void TraceReaderImpl::verifyPayload(const ChunkInfo& c) {
  std::unique_ptr<XXH3_state_t, XxhStateFree> state(XXH3_createState());
  if (!state) throw std::bad_alloc();
  XXH3_64bits_reset(state.get());
  // Sized to the largest payload seen so far, at most kReadBufferBytes.
  readBuffer_.resize(std::max<size_t>(readBuffer_.size(),
                                      std::min<uint64_t>(c.h.compressedSize, kReadBufferBytes)));
  uint64_t off = c.offset + kChunkHeaderSize;
  uint64_t left = c.h.compressedSize;
  bool first = true;
  while (left > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, readBuffer_.size()));
    source_->readAt(off, readBuffer_.data(), n);
    if (first) {
      unsigned long long size = ZSTD_getFrameContentSize(readBuffer_.data(), n);
#ifndef REC_FORMAT_FUZZING
      if (size != c.h.uncompressedSize) {
        fail(c, size == ZSTD_CONTENTSIZE_ERROR ? "payload is not a zstd frame"
                                               : "zstd frame size disagrees with the chunk header");
      }
#else
      (void)size;
#endif
      first = false;
    }
    XXH3_64bits_update(state.get(), readBuffer_.data(), n);
    off += n;
    left -= n;
  }
#ifndef REC_FORMAT_FUZZING  // the fuzzer must get past the checksums to reach the decoders
  if (XXH3_64bits_digest(state.get()) != c.h.payloadHash) fail(c, "checksum mismatch");
#endif
}

// Reads, checks and decompresses one chunk payload into word-aligned memory.
void TraceReaderImpl::decode(const ChunkInfo& c, kj::Array<capnp::word>& out) {
  out = kj::heapArray<capnp::word>(c.h.uncompressedSize / sizeof(capnp::word));
  decodeInto(c, out);
}

// A payload that is one zstd frame of raw blocks, as the writer stores
// incompressible chunks (writeStored; zstd stores them so too): a 9-byte
// frame header (4-byte content size, single segment, no checksum), then
// blocks of at most 128 KiB, each a 3-byte header and its bytes. Its
// blocks' bytes are the chunk's, in order: they are read straight into
// `out` (each block with the next block's header, one preadv) instead of
// into a buffer the decompressor then copies from (read4k's replay: 100 MB
// copied once less). The sizes decide whether to try (the compressed size
// is the content's plus headers of 3 bytes); every header read is checked,
// and anything else (a compressed block) returns false: the caller decodes
// the payload as any other, over what was read here. The checksum covers
// the bytes in the file's order, headers included.
bool TraceReaderImpl::readStoredInto(const ChunkInfo& c, std::byte* out) {
  constexpr size_t kBlockMax = 128 << 10;  // ZSTD_BLOCKSIZE_MAX
  constexpr size_t kFrameHeader = 9;
  const size_t size = c.h.uncompressedSize;
  const uint64_t csize = c.h.compressedSize;
  if (size < kStoredReadMin || csize < kFrameHeader + 3 + size ||
      (csize - size - kFrameHeader) % 3 != 0)
    return false;
  const size_t blocks = static_cast<size_t>((csize - size - kFrameHeader) / 3);
  std::vector<std::byte> headers(kFrameHeader + 3 * blocks);
  uint64_t off = c.offset + kChunkHeaderSize;
  source_->readAt(off, headers.data(), kFrameHeader + 3);
  off += kFrameHeader + 3;
  if (loadLe<uint32_t>(headers.data()) != 0xFD2FB528 || headers[4] != std::byte{0xA0} ||
      loadLe<uint32_t>(headers.data() + 5) != size)
    return false;
  std::vector<HashPiece> pieces;
  pieces.reserve(2 * blocks + 1);
  pieces.push_back({headers.data(), kFrameHeader + 3});
  size_t done = 0;
  for (size_t i = 0; i < blocks; ++i) {
    const std::byte* b = headers.data() + kFrameHeader + 3 * i;
    const uint32_t bh = static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
                        static_cast<uint32_t>(b[2]) << 16;
    const size_t len = bh >> 3;
    const bool last = (bh & 1) != 0;
    // raw (type 0), at most a block, the last one last and ending the content
    if (((bh >> 1) & 3) != 0 || len > kBlockMax || len > size - done || last != (i + 1 == blocks) ||
        (last && done + len != size))
      return false;
    std::byte* next = headers.data() + kFrameHeader + 3 * (i + 1);
    const iovec v[2] = {{out + done, len}, {next, 3}};
    source_->readAt(off, std::span<const iovec>(v, last ? 1 : 2));
    off += len + (last ? 0 : 3);
    pieces.push_back({out + done, len});
    if (!last) pieces.push_back({next, 3});
    done += len;
  }
#ifndef REC_FORMAT_FUZZING
  if (xxh3_64(pieces) != c.h.payloadHash) fail(c, "checksum mismatch");
#endif
  return true;
}

kj::ArrayPtr<capnp::word> TraceReaderImpl::decodeInto(const ChunkInfo& c,
                                                      kj::Array<capnp::word>& store) {
  const size_t words = c.h.uncompressedSize / sizeof(capnp::word);
  if (store.size() < words) {
    store = nullptr;
    store = kj::heapArray<capnp::word>(words);
  }
  if (readStoredInto(c, reinterpret_cast<std::byte*>(store.begin()))) return store.slice(0, words);
  // A large blob's payload is read into memory of its own, not kept.
  std::unique_ptr<std::byte[]> once;
  std::byte* at = compressed_.get();
  if (c.h.compressedSize > kKeptReadBytes) {
    once = std::make_unique_for_overwrite<std::byte[]>(c.h.compressedSize);
    at = once.get();
  } else if (compressedSize_ < c.h.compressedSize) {
    compressed_.reset();
    compressed_ = std::make_unique_for_overwrite<std::byte[]>(c.h.compressedSize);
    compressedSize_ = c.h.compressedSize;
    at = compressed_.get();
  }
  std::span<std::byte> compressed(at, c.h.compressedSize);
  source_->readAt(c.offset + kChunkHeaderSize, compressed.data(), compressed.size());
#ifndef REC_FORMAT_FUZZING
  if (xxh3_64(compressed.data(), compressed.size()) != c.h.payloadHash) {
    fail(c, "checksum mismatch");
  }
#endif
  if (ZSTD_findFrameCompressedSize(compressed.data(), compressed.size()) != compressed.size()) {
    fail(c, "payload is not exactly one zstd frame");
  }
  if (ZSTD_getFrameContentSize(compressed.data(), compressed.size()) != c.h.uncompressedSize) {
    fail(c, "zstd frame size disagrees with the chunk header");
  }
  size_t n = ZSTD_decompressDCtx(dctx_.get(), store.begin(), c.h.uncompressedSize,
                                 compressed.data(), compressed.size());
  if (ZSTD_isError(n)) fail(c, std::string("zstd: ") + ZSTD_getErrorName(n));
  if (n != c.h.uncompressedSize) fail(c, "decompressed size disagrees with the chunk header");
  return store.slice(0, words);
}

// Decodes just the start of a blob chunk to learn its hash, so open() does not
// decompress every stored file. The writer puts the hash right after the root.
BlobHash TraceReaderImpl::peekBlobHash(const ChunkInfo& c) {
  // The first zstd block can need far more than kBlobPeekBytes of input
  // before it yields output, so feed the whole (size-checked) payload.
  size_t inSize = static_cast<size_t>(c.h.compressedSize);
  std::vector<std::byte> in(inSize);
  source_->readAt(c.offset + kChunkHeaderSize, in.data(), inSize);
  size_t outCap = std::min<size_t>(c.h.uncompressedSize, kBlobPeekBytes);
  auto out = kj::heapArray<capnp::word>(outCap / sizeof(capnp::word));
  std::unique_ptr<ZSTD_DStream, DStreamFree> ds(ZSTD_createDStream());
  if (!ds) throw std::bad_alloc();
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  ZSTD_outBuffer ob{out.begin(), out.size() * sizeof(capnp::word), 0};
  while (ob.pos < ob.size && ib.pos < ib.size) {
    size_t r = ZSTD_decompressStream(ds.get(), &ob, &ib);
    if (ZSTD_isError(r)) fail(c, std::string("zstd: ") + ZSTD_getErrorName(r));
    if (r == 0) break;
  }
  size_t words = ob.pos / sizeof(capnp::word);
  // Segment table: u32 (segments - 1), u32 size of each, padded to a word.
  if (words < 1) fail(c, "blob message too short");
  uint32_t segments = loadLe<uint32_t>(reinterpret_cast<const std::byte*>(out.begin())) + 1;
  if (segments == 0 || segments > 512) fail(c, "bad blob message segment table");
  size_t tableWords = (segments + 2) / 2;
  if (words <= tableWords) fail(c, "blob message too short");
  uint32_t segment0 = loadLe<uint32_t>(reinterpret_cast<const std::byte*>(out.begin()) + 4);
  size_t available = std::min<size_t>(segment0, words - tableWords);
  kj::ArrayPtr<const capnp::word> segment(out.begin() + tableWords, available);
  try {
    capnp::SegmentArrayMessageReader message(kj::arrayPtr(&segment, 1), readerOptions(available));
    auto hash = message.getRoot<schema::Blob>().getHash();
    return BlobHash::fromBytes(
        std::span(reinterpret_cast<const std::byte*>(hash.begin()), hash.size()));
  } catch (const kj::Exception& e) {
    fail(c, "blob hash unreadable: " + std::string(e.getDescription().cStr()));
  } catch (const FormatError& e) {
    fail(c, e.what());
  }
}

void TraceReaderImpl::scan() {
  const uint64_t size = source_->size();
  if (size == 0) throw FormatError(name_ + ": empty file, not a rec trace");
  std::byte fileHeader[kFileHeaderSize];
  size_t got = static_cast<size_t>(std::min<uint64_t>(size, kFileHeaderSize));
  source_->readAt(0, fileHeader, got);
  if (std::memcmp(fileHeader, kFileMagic, std::min<size_t>(got, 8)) != 0) {
    throw FormatError(name_ + ": not a rec trace (bad magic)");
  }
  if (got < kFileHeaderSize) {
    throw FormatError(name_ + ": cut short inside the file header (" + std::to_string(size) +
                      " bytes)");
  }
  uint32_t version = loadLe<uint32_t>(fileHeader + 8);
  if (version != kFormatVersion) {
    throw FormatError(name_ + ": trace format version " + std::to_string(version) +
                      ", this rec reads version " + std::to_string(kFormatVersion) +
                      (version < kFormatVersion ? " (recorded by an older rec: record it again)"
                                                : " (recorded by a newer rec)"));
  }
  if (loadLe<uint32_t>(fileHeader + 12) != 0) {
    throw FormatError(name_ + ": reserved field in the file header is not zero");
  }

  stats_.fileBytes = size;
  uint64_t off = kFileHeaderSize;
  uint64_t number = 0;
  bool sawFooter = false;
  std::vector<ChunkInfo> blobChunks;
  for (;; ++number) {
    if (off == size) break;
    ChunkInfo c;
    c.number = number;
    c.offset = off;
    auto cutShort = [&] {
      if (number == 0) {
        throw FormatError(name_ + ": cut short at byte " + std::to_string(size) +
                          " inside the Header chunk");
      }
      cutShortReason_ = "cut short at byte " + std::to_string(size) + " (inside chunk " +
                        std::to_string(number) + ", which starts at byte " + std::to_string(off) +
                        ")";
    };
    if (sawFooter) fail(c, "data after the footer");
    if (size - off < kChunkHeaderSize) {
      cutShort();
      break;
    }
    source_->readAt(off, &c.h, kChunkHeaderSize);
    if (c.h.magic != kChunkMagic) fail(c, "bad chunk magic");
#ifndef REC_FORMAT_FUZZING
    if (c.h.headerChecksum != headerChecksum(c.h)) fail(c, "chunk header checksum mismatch");
#endif
    if (c.h.kind < kKindHeader || c.h.kind > kKindFooter) {
      fail(c, "unknown chunk kind " + std::to_string(c.h.kind));
    }
    if ((c.h.kind == kKindHeader) != (number == 0)) {
      fail(c, number == 0 ? "first chunk is not the Header" : "second Header chunk");
    }
    if (c.h.uncompressedSize > kMaxUncompressed || c.h.uncompressedSize % 8 != 0 ||
        c.h.uncompressedSize == 0) {
      fail(c, "bad uncompressed size " + std::to_string(c.h.uncompressedSize));
    }
    if (c.h.compressedSize == 0 || c.h.compressedSize > ZSTD_compressBound(kMaxUncompressed)) {
      fail(c, "bad compressed size " + std::to_string(c.h.compressedSize));
    }
    bool single = c.h.kind != kKindEvents;
    if (single ? c.h.messageCount != 1
               : (c.h.messageCount == 0 || c.h.messageCount > kMaxEventsInChunk ||
                  c.h.messageCount > c.h.uncompressedSize / 8)) {
      fail(c, "bad message count " + std::to_string(c.h.messageCount));
    }
    if (size - off - kChunkHeaderSize < c.h.compressedSize) {
      cutShort();
      break;
    }
    // Its payload is checked where it is first read (decode()): a replay
    // reads only the events and the few blobs it needs, not every file's
    // contents at open.
    stats_.chunkCount++;
    stats_.compressedBytes += c.h.compressedSize;
    stats_.uncompressedBytes += c.h.uncompressedSize;
    switch (c.h.kind) {
      case kKindHeader:
        decode(c, headerWords_);
        try {
          headerMessage_.emplace(kj::arrayPtr(headerWords_.begin(), headerWords_.size()),
                                 readerOptions(headerWords_.size()));
          headerRoot_ = headerMessage_->getRoot<schema::Header>();
          validateMessage<schema::Header>(headerRoot_);
        } catch (const kj::Exception& e) {
          fail(c, "bad Header message: " + std::string(e.getDescription().cStr()));
        }
        break;
      case kKindEvents:
        c.firstEvent = stats_.eventCount;
        stats_.eventCount += c.h.messageCount;
        eventChunks_.push_back(c);
        break;
      case kKindBlob:
        blobChunks.push_back(c);
        break;
      case kKindFooter:
        decode(c, footerWords_);
        try {
          footerMessage_.emplace(kj::arrayPtr(footerWords_.begin(), footerWords_.size()),
                                 readerOptions(footerWords_.size()));
          footerRoot_ = footerMessage_->getRoot<schema::Footer>();
          validateMessage<schema::Footer>(footerRoot_);
        } catch (const kj::Exception& e) {
          fail(c, "bad Footer message: " + std::string(e.getDescription().cStr()));
        }
        if (footerRoot_.getEventCount() != stats_.eventCount) {
          fail(c, "footer counts " + std::to_string(footerRoot_.getEventCount()) +
                      " events, the chunks hold " + std::to_string(stats_.eventCount));
        }
        sawFooter = true;
        break;
    }
    off += kChunkHeaderSize + c.h.compressedSize;
  }
  if (number == 0) {
    throw FormatError(name_ + ": cut short at byte " + std::to_string(size) +
                      " before the Header chunk");
  }
  if (!sawFooter && cutShortReason_.empty()) {
    cutShortReason_ = "recording did not finish (no footer after chunk " +
                      std::to_string(number - 1) + ", at byte " + std::to_string(size) + ")";
  }
  indexBlobs(blobChunks);
}

// The blobs' hashes: from the footer's index when it lists one for every
// blob chunk (readBlob() then checks the chunk and that its contents have
// that hash); else, from a trace cut short or written before the index held
// them, each chunk is checked now and the start of its payload decoded.
void TraceReaderImpl::indexBlobs(const std::vector<ChunkInfo>& chunks) {
  std::unordered_map<uint64_t, BlobHash> listed;  // by chunk offset
  if (footerMessage_) {
    for (auto e : footerRoot_.getChunks()) {
      if (e.getKind() != kKindBlob) continue;
      auto hash = e.getBlobHash();
      if (hash.size() != 16) {
        listed.clear();
        break;
      }
      listed[e.getOffset()] =
          BlobHash::fromBytes(std::span(reinterpret_cast<const std::byte*>(hash.begin()), 16));
    }
  }
  bool useListed = listed.size() == chunks.size() &&
                   std::all_of(chunks.begin(), chunks.end(),
                               [&](const ChunkInfo& c) { return listed.count(c.offset) != 0; });
  for (const ChunkInfo& c : chunks) {
    BlobHash hash;
    if (useListed) {
      hash = listed.at(c.offset);
    } else {
      verifyPayload(c);
      hash = peekBlobHash(c);
    }
    if (blobs_.emplace(hash, c).second) {
      stats_.blobCount++;
      stats_.blobBytes += c.h.uncompressedSize;
    }
  }
}

void TraceReaderImpl::loadEventChunk(size_t i, LoadedChunk& into) {
  const ChunkInfo& c = eventChunks_[i];
  into.chunk = SIZE_MAX;
  into.words = nullptr;
  into.words = decodeInto(c, into.store);
  // Find and validate every message now, so a bad chunk fails as a whole
  // and the count agrees with the index built by open().
  std::vector<size_t>& offsets = into.offsets;
  offsets.clear();
  size_t pos = 0;
  try {
    while (pos < into.words.size()) {
      kj::ArrayPtr<const capnp::word> rest(into.words.begin() + pos, into.words.size() - pos);
      capnp::FlatArrayMessageReader message(rest, readerOptions(rest.size()));
      auto event = message.getRoot<schema::Event>();
      if (!validateCommonSyscall(event) && !validateBufferedSyscalls(event))
        validateMessage<schema::Event>(event);
      if (event.isBufferedSyscalls()) {
        auto b = event.getBufferedSyscalls();
        auto entries = b.getEntries();
        std::string problem = checkBufferedCalls(
            std::span(reinterpret_cast<const std::byte*>(entries.begin()), entries.size()),
            b.getCount());
        if (!problem.empty())
          fail(c, "event " + std::to_string(c.firstEvent + offsets.size()) + ": " + problem);
      }
      offsets.push_back(pos);
      pos = static_cast<size_t>(message.getEnd() - into.words.begin());
      if (offsets.size() > c.h.messageCount) break;
    }
  } catch (const kj::Exception& e) {
    fail(c, "bad event message: " + std::string(e.getDescription().cStr()));
  }
  if (offsets.size() != c.h.messageCount || pos != into.words.size()) {
    fail(c, "holds " + std::to_string(offsets.size()) + " messages, header says " +
                std::to_string(c.h.messageCount));
  }
  offsets.push_back(pos);
  into.chunk = i;
}

// Chunks are sorted by firstEvent.
size_t TraceReaderImpl::chunkOf(uint64_t event) const {
  auto it = std::upper_bound(eventChunks_.begin(), eventChunks_.end(), event,
                             [](uint64_t v, const ChunkInfo& c) { return v < c.firstEvent; });
  return static_cast<size_t>(it - eventChunks_.begin()) - 1;
}

TraceReaderImpl::LoadedChunk* TraceReaderImpl::loaded(size_t i, bool lookingAhead) {
  if (!loaded_.empty() && i >= loaded_.front().chunk && i <= loaded_.back().chunk)
    return &loaded_[i - loaded_.front().chunk];
  // (sequential reading skips chunks it jumps over: a seek)
  const bool ahead = !loaded_.empty() && i > loaded_.back().chunk &&
                     (lookingAhead || i == loaded_.back().chunk + 1);
  if (lookingAhead && !ahead) return nullptr;
  if (!ahead) {
    for (auto& c : loaded_) spare_.push_back(std::move(c));
    loaded_.clear();
    loadedBytes_ = 0;
  }
  // The chunks up to `i`, one after another (they stay consecutive).
  for (size_t next = ahead ? loaded_.back().chunk + 1 : i; next <= i; ++next) {
    if (lookingAhead && loadedBytes_ >= kLookAheadBytes) return nullptr;
    LoadedChunk chunk;
    if (!spare_.empty()) {
      chunk = std::move(spare_.back());
      spare_.pop_back();
    }
    loadEventChunk(next, chunk);
    loadedBytes_ += chunk.words.size() * sizeof(capnp::word);
    loaded_.push_back(std::move(chunk));
  }
  return &loaded_.back();
}

std::optional<schema::Event::Reader> TraceReaderImpl::nextEvent() {
  eventMessage_.reset();
  if (nextEvent_ >= stats_.eventCount) return std::nullopt;
  const size_t i = chunkOf(nextEvent_);
  // Chunks before this one are done with (a look-ahead stays behind it).
  while (!loaded_.empty() && loaded_.front().chunk < i) {
    loadedBytes_ -= loaded_.front().words.size() * sizeof(capnp::word);
    spare_.push_back(std::move(loaded_.front()));
    loaded_.pop_front();
  }
  if (spare_.size() > 2) spare_.resize(2);
  const LoadedChunk& chunk = *loaded(i, false);
  const auto words = messageWords(chunk, nextEvent_ - eventChunks_[i].firstEvent);
  eventMessage_.emplace(words, readerOptions(words.size()));
  ++nextEvent_;
  return eventMessage_->getRoot<schema::Event>();
}

std::optional<schema::Event::Reader> TraceReaderImpl::peekAhead(uint64_t index) {
  peekMessage_.reset();
  if (index >= stats_.eventCount) return std::nullopt;
  const size_t i = chunkOf(index);
  const LoadedChunk* chunk = loaded(i, true);
  if (!chunk) return std::nullopt;
  const auto words = messageWords(*chunk, index - eventChunks_[i].firstEvent);
  peekMessage_.emplace(words, readerOptions(words.size()));
  return peekMessage_->getRoot<schema::Event>();
}

std::vector<std::byte> TraceReaderImpl::readBlob(const BlobHash& hash) {
  auto it = blobs_.find(hash);
  if (it == blobs_.end()) {
    throw FormatError(name_ + ": no blob " + hash.hex() + " in the trace");
  }
  const ChunkInfo& c = it->second;
  kj::Array<capnp::word> words;
  decode(c, words);
  std::vector<std::byte> data;
  try {
    capnp::FlatArrayMessageReader message(kj::arrayPtr(words.begin(), words.size()),
                                          readerOptions(words.size()));
    if (message.getEnd() != words.begin() + words.size()) fail(c, "trailing data after the blob");
    auto blob = message.getRoot<schema::Blob>();
    validateMessage<schema::Blob>(blob);
    auto bytes = blob.getData();
    data.assign(reinterpret_cast<const std::byte*>(bytes.begin()),
                reinterpret_cast<const std::byte*>(bytes.end()));
  } catch (const kj::Exception& e) {
    fail(c, "bad blob message: " + std::string(e.getDescription().cStr()));
  }
#ifndef REC_FORMAT_FUZZING
  if (BlobHash::of(data) != hash) fail(c, "blob contents do not match hash " + hash.hex());
#endif
  return data;
}

std::unique_ptr<TraceReader> openSource(const std::string& name, std::unique_ptr<Source> source) {
  auto reader = std::make_unique<TraceReaderImpl>(name, std::move(source));
  reader->scan();
  return reader;
}

}  // namespace

std::unique_ptr<TraceReader> TraceReader::open(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int err = errno;
    throw TraceOpenError(path + ": cannot open: " + errnoText(err), err);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    int err = errno;
    throw TraceOpenError(path + ": cannot stat: " + errnoText(err), err);
  }
  if (S_ISDIR(st.st_mode)) throw TraceOpenError(path + ": is a directory", EISDIR);
  if (!S_ISREG(st.st_mode)) throw FormatError(path + ": not a regular file");
  return openSource(
      path, std::make_unique<FileSource>(path, std::move(fd), static_cast<uint64_t>(st.st_size)));
}

std::unique_ptr<TraceReader> TraceReader::openBytes(std::vector<std::byte> bytes,
                                                    const std::string& name) {
  return openSource(name, std::make_unique<MemorySource>(std::move(bytes)));
}

}  // namespace rec::format
