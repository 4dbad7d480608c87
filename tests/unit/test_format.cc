// The trace file: round trips, truncation, corruption and background sealing.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/string.h>
#include <unistd.h>
#include <xxhash.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "buffered_calls.h"
#include "fast_hash.h"
#include "temp_dir.h"
#include "trace_file.h"

namespace fs = std::filesystem;
using rec::format::BlobHash;
using rec::format::FormatError;
using rec::format::TraceReader;
using rec::format::TraceWriter;
using rec::format::WriterOptions;

namespace {

std::vector<std::byte> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

void writeFile(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

template <typename Reader>
std::string text(Reader r) {
  return kj::str(r).cStr();
}

void fillHeader(capnp::MallocMessageBuilder& m) {
  auto h = m.initRoot<rec::schema::Header>();
  h.setRecVersion("test");
  auto argv = h.initArgv(2);
  argv.set(0, "/bin/true");
  argv.set(1, "--flag");
  h.setCwd("/tmp");
  h.setExecutable("/bin/true");
  h.setStartTimeNs(1700000000123456789);
  h.setKernelRelease("6.1.0");
  h.getCpu().setVendor("GenuineIntel");
  h.setPageSize(4096);
}

kj::Array<kj::byte> randomBytes(std::mt19937_64& rng, size_t n) {
  auto a = kj::heapArray<kj::byte>(n);
  for (auto& b : a) b = static_cast<kj::byte>(rng());
  return a;
}

// Fills one event of kind (variant % 6) with random contents.
void fillEvent(capnp::MallocMessageBuilder& m, std::mt19937_64& rng, unsigned variant) {
  auto e = m.initRoot<rec::schema::Event>();
  e.setTid(static_cast<int32_t>(1000 + rng() % 5));
  switch (variant % 6) {
    case 0: {
      auto s = e.initSyscall();
      s.setNumber(static_cast<int32_t>(rng() % 400));
      auto args = s.initArgs(6);
      for (unsigned i = 0; i < 6; ++i) args.set(i, rng());
      s.setResult(static_cast<int64_t>(rng() % 100) - 50);
      auto writes = s.initWrites(static_cast<unsigned>(rng() % 3));
      for (auto w : writes) {
        w.setAddress(rng());
        w.setData(randomBytes(rng, rng() % 300));
      }
      if (rng() % 2) s.initStrings(1).set(0, "/etc/passwd");
      s.setIp(rng());
      s.setInterrupted(rng() % 2);
      s.setNewTask(static_cast<int32_t>(rng() % 3));
      if (rng() % 4 == 0) {
        auto mp = s.initMapping();
        mp.setStart(0x400000);
        mp.setEnd(0x401000);
        mp.setPath("/lib/x.so");
      }
      break;
    }
    case 1:
      e.initSyscallEnter().setNumber(static_cast<int32_t>(rng() % 400));
      break;
    case 2: {
      auto s = e.initSignal();
      s.setSigno(static_cast<int32_t>(1 + rng() % 31));
      s.setSiginfo(randomBytes(rng, 128));
      s.setDisposition(rec::schema::SignalDisposition::INJECT_AT_SYSCALL_EXIT);
      s.setIp(rng());
      s.setSynchronous(rng() % 2);
      break;
    }
    case 3: {
      auto x = e.initExec();
      x.setFilename("/bin/ls");
      auto maps = x.initMappings(3);
      for (auto mp : maps) {
        mp.setStart(rng());
        mp.setEnd(rng());
        mp.setBlobHash(randomBytes(rng, 16));
      }
      x.setStackStart(0x7ffd0000);
      x.setStackImage(randomBytes(rng, 1000));
      x.initRegisters().setRaw(randomBytes(rng, 216));
      x.initArgv(1).set(0, "ls");
      break;
    }
    case 4: {
      auto r = e.initRdtsc();
      r.setValue(rng());
      r.setIsRdtscp(true);
      r.setAux(3);
      break;
    }
    case 5: {
      auto x = e.initExit();
      x.setWaitStatus(static_cast<int32_t>(rng() % 256) << 8);
      x.setThreadOnly(rng() % 2);
      break;
    }
  }
}

struct Written {
  std::vector<std::string> events;  // text form, for comparison
  std::vector<std::pair<BlobHash, std::vector<std::byte>>> blobs;
};

// Writes a trace of `count` random events with a few blobs interleaved.
Written writeTrace(const std::string& path, uint64_t seed, size_t count, WriterOptions options,
                   bool finish = true) {
  std::mt19937_64 rng(seed);
  capnp::MallocMessageBuilder header;
  fillHeader(header);
  Written w;
  auto writer = TraceWriter::create(path, header, options);
  for (size_t i = 0; i < count; ++i) {
    capnp::MallocMessageBuilder m;
    fillEvent(m, rng, static_cast<unsigned>(i + rng() % 2));
    w.events.push_back(text(m.getRoot<rec::schema::Event>().asReader()));
    writer->writeEvent(m);
    if (i % 7 == 3) {
      std::vector<std::byte> data(100 + rng() % 2000);
      for (auto& b : data) b = static_cast<std::byte>(rng() % 4);  // compressible
      BlobHash h = writer->writeBlob(data, "/lib/blob" + std::to_string(i));
      CHECK(h == BlobHash::of(data));
      CHECK(writer->hasBlob(h));
      // The same contents again: deduplicated.
      CHECK(writer->writeBlob(data, "/other/name") == h);
      w.blobs.emplace_back(h, std::move(data));
    }
  }
  if (finish) {
    capnp::MallocMessageBuilder footer;
    footer.initRoot<rec::schema::Footer>().setExitStatus(3 << 8);
    writer->finish(footer);
  }
  return w;
}

std::vector<std::string> readAllEvents(TraceReader& r) {
  std::vector<std::string> out;
  while (auto e = r.nextEvent()) out.push_back(text(*e));
  return out;
}

std::vector<std::byte> flipBit(std::vector<std::byte> bytes, size_t bit) {
  bytes[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
  return bytes;
}

}  // namespace

TEST_CASE("BlobHash bytes and hex round trip", "[format]") {
  std::vector<std::byte> data{std::byte{1}, std::byte{2}, std::byte{3}};
  BlobHash h = BlobHash::of(data);
  CHECK(!h.empty());
  auto bytes = h.bytes();
  CHECK(BlobHash::fromBytes(bytes) == h);
  CHECK(h.hex().size() == 32);
  CHECK_THROWS_AS(BlobHash::fromBytes(std::span(bytes).first(15)), FormatError);
}

TEST_CASE("random events round trip", "[format]") {
  TempDir dir("rec-format");
  for (uint64_t seed : {1, 2, 3, 42, 1234}) {
    CAPTURE(seed);
    WriterOptions options;
    options.maxEventsPerChunk = 1 + seed % 50;
    options.maxQueuedChunks = 1 + seed % 3;
    std::string path = dir.file("t" + std::to_string(seed) + ".rec");
    Written w = writeTrace(path, seed, 300, options);

    auto r = TraceReader::open(path);
    CHECK(r->complete());
    CHECK(r->cutShortReason().empty());
    CHECK(std::string(r->header().getArgv()[0].cStr()) == "/bin/true");
    REQUIRE(r->footer().has_value());
    CHECK(r->footer()->getEventCount() == 300);
    CHECK(r->footer()->getExitStatus() == (3 << 8));
    CHECK(r->footer()->getChunks().size() > 1);
    uint64_t indexed = 0;
    for (auto c : r->footer()->getChunks()) indexed += c.getEventCount();
    CHECK(indexed == 300);
    CHECK(r->stats().eventCount == 300);
    CHECK(r->stats().blobCount == w.blobs.size());

    CHECK(r->nextEventIndex() == 0);
    CHECK(readAllEvents(*r) == w.events);
    CHECK(r->nextEventIndex() == 300);
    r->rewind();
    auto first = r->nextEvent();
    REQUIRE(first);
    CHECK(text(*first) == w.events[0]);

    for (auto& [hash, data] : w.blobs) {
      CHECK(r->hasBlob(hash));
      CHECK(r->readBlob(hash) == data);
    }
    CHECK_THROWS_AS(r->readBlob(BlobHash{1, 2}), FormatError);
  }
}

// Parallel replay's look-ahead: events ahead of nextEvent() read from the
// same decoded chunks, in any order within them, while sequential reading
// goes on unchanged.
namespace {
// A trace of `count` random events, `perChunk` to a chunk, at `path`.
Written writeSmallChunks(const std::string& path, uint64_t seed, size_t count, size_t perChunk) {
  WriterOptions options;
  options.maxEventsPerChunk = perChunk;
  return writeTrace(path, seed, count, options);
}
}  // namespace

TEST_CASE("peekAhead reads ahead without disturbing nextEvent", "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("ahead.rec");
  Written w = writeSmallChunks(path, 99, 200, 7);
  auto r = TraceReader::open(path);
  CHECK_FALSE(r->peekAhead(0));  // nothing decoded yet: no look-ahead
  std::mt19937_64 rng(5);
  for (uint64_t i = 0; i < 200; ++i) {
    auto e = r->nextEvent();
    REQUIRE(e);
    REQUIRE(text(*e) == w.events[i]);
    // Ahead, backward within what is decoded, and the event just read.
    for (uint64_t k : {i + 1 + rng() % 60, i + 1 + rng() % 10, i}) {
      CAPTURE(i, k);
      auto ahead = r->peekAhead(k);
      if (k >= 200) {
        CHECK_FALSE(ahead);
      } else {
        REQUIRE(ahead);
        CHECK(text(*ahead) == w.events[k]);
      }
    }
  }
  CHECK_FALSE(r->nextEvent());
  // A chunk before the one being read is no longer decoded.
  r->seek(100);
  REQUIRE(r->nextEvent());
  CHECK_FALSE(r->peekAhead(10));
  CHECK(text(*r->peekAhead(101)) == w.events[101]);
}

// A damaged chunk ahead fails the look-ahead as it will fail nextEvent().
TEST_CASE("peekAhead reports a damaged chunk ahead", "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("damaged.rec");
  writeSmallChunks(path, 7, 40, 4);
  std::vector<std::byte> bytes = readFile(path);
  auto intact = TraceReader::openBytes(bytes, "intact");
  // The last event chunk's payload, found through the footer's index.
  REQUIRE(intact->footer());
  uint64_t lastEvents = 0;
  for (auto c : intact->footer()->getChunks())
    if (c.getEventCount() > 0) lastEvents = c.getOffset();
  REQUIRE(lastEvents > 0);
  auto damaged = flipBit(bytes, (lastEvents + rec::format::kChunkHeaderSize + 2) * 8 + 3);
  std::unique_ptr<TraceReader> r;
  try {
    r = TraceReader::openBytes(damaged, "damaged");
  } catch (const FormatError&) {
    FAIL("open checks only chunk headers: the damaged payload must open");
    return;
  }
  REQUIRE(r->nextEvent());
  bool threw = false;
  for (uint64_t k = 1; k < 40 && !threw; ++k) {
    try {
      if (!r->peekAhead(k)) break;
    } catch (const FormatError&) {
      threw = true;
    }
  }
  CHECK(threw);
}

TEST_CASE("large blob round trip", "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("big.rec");
  capnp::MallocMessageBuilder header;
  fillHeader(header);
  std::vector<std::byte> data(24 << 20);
  std::mt19937_64 rng(7);
  for (size_t i = 0; i < data.size(); i += 64) data[i] = static_cast<std::byte>(rng());
  BlobHash h;
  {
    auto writer = TraceWriter::create(path, header);
    h = writer->writeBlob(data, "/usr/lib/big.so");
    capnp::MallocMessageBuilder footer;
    footer.initRoot<rec::schema::Footer>();
    writer->finish(footer);
  }
  auto r = TraceReader::open(path);
  CHECK(r->complete());
  CHECK(r->stats().blobCount == 1);
  CHECK(r->readBlob(h) == data);
}

TEST_CASE("truncation at every byte offset", "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("small.rec");
  WriterOptions options;
  options.maxEventsPerChunk = 3;
  Written w = writeTrace(path, 9, 12, options);
  auto bytes = readFile(path);
  REQUIRE(bytes.size() > 100);

  size_t cutShortOpens = 0;
  for (size_t len = 0; len <= bytes.size(); ++len) {
    CAPTURE(len);
    std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + static_cast<long>(len));
    try {
      auto r = TraceReader::openBytes(prefix, "small.rec");
      auto events = readAllEvents(*r);
      REQUIRE(events.size() <= w.events.size());
      CHECK(std::equal(events.begin(), events.end(), w.events.begin()));
      if (len == bytes.size()) {
        CHECK(r->complete());
        CHECK(events == w.events);
      } else {
        CHECK(!r->complete());
        CHECK(!r->cutShortReason().empty());
        ++cutShortOpens;
      }
    } catch (const FormatError& e) {
      CHECK(std::string(e.what()).find("small.rec") == 0);
    }
  }
  CHECK(cutShortOpens > bytes.size() / 2);
}

TEST_CASE("cut-short reasons", "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("cut.rec");
  WriterOptions options;
  options.maxEventsPerChunk = 2;
  writeTrace(path, 5, 6, options, /*finish=*/false);
  auto r = TraceReader::open(path);
  CHECK(!r->complete());
  CHECK(!r->footer());
  CHECK(r->cutShortReason().find("recording did not finish") == 0);
  CHECK(readAllEvents(*r).size() == 6);

  auto bytes = readFile(path);
  bytes.resize(bytes.size() - 3);
  auto cut = TraceReader::openBytes(bytes, "cut.rec");
  CHECK(cut->cutShortReason().find("cut short at byte " + std::to_string(bytes.size()) +
                                   " (inside chunk ") == 0);
  CHECK(readAllEvents(*cut).size() < 6);
}

TEST_CASE("open learns blob hashes from the footer and checks a blob when it is read", "[format]") {
  TempDir dir("rec-format");
  WriterOptions options;
  options.maxEventsPerChunk = 5;
  std::string path = dir.file("blobs.rec");
  Written w = writeTrace(path, 21, 40, options);
  REQUIRE(w.blobs.size() >= 3);
  auto bytes = readFile(path);
  // The footer's index gives every blob chunk's hash.
  uint64_t damagedAt = 0;
  BlobHash damaged;
  {
    auto r = TraceReader::openBytes(bytes, "blobs.rec");
    size_t listed = 0;
    for (auto c : r->footer()->getChunks()) {
      if (c.getKind() != 3) continue;
      REQUIRE(c.getBlobHash().size() == 16);
      BlobHash h = BlobHash::fromBytes(
          std::span(reinterpret_cast<const std::byte*>(c.getBlobHash().begin()), 16));
      CHECK(r->hasBlob(h));
      if (listed++ == 1) {
        damagedAt = c.getOffset();
        damaged = h;
      }
    }
    CHECK(listed == w.blobs.size());
  }
  // A damaged blob payload: the trace opens (the chunk is not read yet) and
  // replays its events, and reading that blob fails with the chunk named.
  auto bad = bytes;
  bad[damagedAt + 32 + 3] ^= std::byte{0x40};
  auto r = TraceReader::openBytes(bad, "blobs.rec");
  CHECK(r->complete());
  CHECK(readAllEvents(*r) == w.events);
  CHECK(r->hasBlob(damaged));
  CHECK_THROWS_WITH(r->readBlob(damaged),
                    Catch::StartsWith("blobs.rec: chunk ") &&
                        Catch::Contains(" at byte " + std::to_string(damagedAt)) &&
                        Catch::Contains("checksum mismatch"));
  for (auto& [hash, data] : w.blobs)
    if (!(hash == damaged)) CHECK(r->readBlob(hash) == data);

  // Without a footer (rec killed), each blob chunk is checked at open and its
  // hash read from the chunk itself.
  std::string cutPath = dir.file("cut.rec");
  Written cut = writeTrace(cutPath, 21, 40, options, /*finish=*/false);
  auto c = TraceReader::open(cutPath);
  CHECK(!c->complete());
  for (auto& [hash, data] : cut.blobs) CHECK(c->readBlob(hash) == data);
}

TEST_CASE("every single-bit flip is detected", "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("flip.rec");
  WriterOptions options;
  options.maxEventsPerChunk = 4;
  Written w = writeTrace(path, 11, 8, options);
  auto bytes = readFile(path);
  REQUIRE(bytes.size() < 8192);

  size_t silent = 0;
  for (size_t bit = 0; bit < bytes.size() * 8; ++bit) {
    try {
      auto r = TraceReader::openBytes(flipBit(bytes, bit), "flip.rec");
      auto events = readAllEvents(*r);
      for (auto& [hash, data] : w.blobs) {
        if (r->hasBlob(hash)) (void)r->readBlob(hash);
      }
      // Never wrong data: at most a trace that reads exactly as written.
      CHECK(events == w.events);
      ++silent;
    } catch (const FormatError&) {
    }
  }
  CHECK(silent == 0);
}

TEST_CASE("open errors", "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("good.rec");
  writeTrace(path, 3, 5, WriterOptions{});
  auto bytes = readFile(path);

  SECTION("missing file") {
    std::string missing = dir.file("missing.rec");
    try {
      TraceReader::open(missing);
      FAIL("opened a missing file");
    } catch (const rec::format::TraceOpenError& e) {
      CHECK(e.error() == ENOENT);
      CHECK(std::string(e.what()).find(missing) == 0);
    }
  }
  SECTION("directory") {
    CHECK_THROWS_AS(TraceReader::open(dir.file("")), FormatError);
  }
  SECTION("empty file") {
    writeFile(dir.file("empty.rec"), {});
    CHECK_THROWS_WITH(TraceReader::open(dir.file("empty.rec")),
                      Catch::Contains("empty file") && Catch::Contains("empty.rec"));
  }
  SECTION("wrong magic") {
    auto b = bytes;
    b[0] = std::byte{'X'};
    CHECK_THROWS_WITH(TraceReader::openBytes(b, "t.rec"), Catch::Contains("not a rec trace"));
    std::vector<std::byte> text(200, std::byte{'a'});
    CHECK_THROWS_WITH(TraceReader::openBytes(text, "t.rec"), Catch::Contains("not a rec trace"));
  }
  SECTION("version mismatch") {
    auto b = bytes;
    b[8] = std::byte{3};
    CHECK_THROWS_WITH(TraceReader::openBytes(b, "t.rec"),
                      "t.rec: trace format version 3, this rec reads version 2 (recorded by a "
                      "newer rec)");
    b[8] = std::byte{1};
    CHECK_THROWS_WITH(TraceReader::openBytes(b, "t.rec"),
                      "t.rec: trace format version 1, this rec reads version 2 (recorded by an "
                      "older rec: record it again)");
  }
  SECTION("cut inside the file header or Header chunk") {
    for (size_t len : {size_t{4}, size_t{12}, size_t{16}, size_t{20}, size_t{60}}) {
      std::vector<std::byte> b(bytes.begin(), bytes.begin() + static_cast<long>(len));
      CHECK_THROWS_AS(TraceReader::openBytes(b, "t.rec"), FormatError);
    }
  }
  SECTION("garbage after the footer") {
    auto b = bytes;
    b.insert(b.end(), 40, std::byte{0});
    CHECK_THROWS_WITH(TraceReader::openBytes(b, "t.rec"), Catch::Contains("after the footer"));
  }
  SECTION("checksum message names chunk and byte") {
    auto b = flipBit(bytes, (bytes.size() - 3) * 8);
    CHECK_THROWS_WITH(TraceReader::openBytes(b, "t.rec"), Catch::StartsWith("t.rec: chunk ") &&
                                                              Catch::Contains(" at byte ") &&
                                                              Catch::Contains("checksum mismatch"));
  }
}

TEST_CASE("a stale chunk is sealed by the background thread", "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("live.rec");
  capnp::MallocMessageBuilder header;
  fillHeader(header);
  WriterOptions options;
  options.maxChunkAgeMs = 50;
  auto writer = TraceWriter::create(path, header, options);
  capnp::MallocMessageBuilder m;
  std::mt19937_64 rng(1);
  fillEvent(m, rng, 4);
  std::string expected = text(m.getRoot<rec::schema::Event>().asReader());
  writer->writeEvent(m);
  // The tracing thread now idles, as when the traced program blocks.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto copy = readFile(path);
  auto r = TraceReader::openBytes(copy, "live.rec");
  CHECK(!r->complete());
  auto events = readAllEvents(*r);
  REQUIRE(events.size() == 1);
  CHECK(events[0] == expected);
  CHECK(writer->eventCount() == 1);
}

TEST_CASE("flush makes events readable; destructor leaves a cut-short trace", "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("flush.rec");
  capnp::MallocMessageBuilder header;
  fillHeader(header);
  WriterOptions options;
  options.maxChunkAgeMs = 60000;
  {
    auto writer = TraceWriter::create(path, header, options);
    std::mt19937_64 rng(2);
    for (int i = 0; i < 3; ++i) {
      capnp::MallocMessageBuilder m;
      fillEvent(m, rng, 0);
      writer->writeEvent(m);
    }
    writer->flush();
    CHECK(TraceReader::open(path)->stats().eventCount == 3);
    capnp::MallocMessageBuilder m;
    fillEvent(m, rng, 1);
    writer->writeEvent(m);
  }
  auto r = TraceReader::open(path);
  CHECK(!r->complete());
  CHECK(readAllEvents(*r).size() == 4);
}

namespace {

// One buffered call in the trace's entry layout (format/buffered_calls.h).
void appendCall(std::vector<std::byte>& out, int32_t nr, int64_t result,
                const std::vector<std::pair<uint64_t, std::vector<std::byte>>>& writes,
                bool zero = false) {
  rec::format::BufferedCallHeader h{};
  h.number = nr;
  h.result = result;
  for (unsigned i = 0; i < 6; ++i) h.args[i] = 0x1000u * (i + 1) + static_cast<uint64_t>(nr);
  std::vector<std::byte> body;
  for (const auto& [address, bytes] : writes) h.outLength += bytes.size();
  if (writes.size() == 1) {
    h.outAddress = writes[0].first;
  } else {
    h.ranges = static_cast<uint32_t>(writes.size());
    for (const auto& [address, bytes] : writes) {
      rec::format::BufferedRange r{address, bytes.size()};
      const auto* p = reinterpret_cast<const std::byte*>(&r);
      body.insert(body.end(), p, p + sizeof r);
    }
  }
  h.flags = zero;
  if (!zero)
    for (const auto& [address, bytes] : writes) {
      body.insert(body.end(), bytes.begin(), bytes.end());
      body.resize(rec::format::bufferedPad(body.size()));
    }
  h.size = static_cast<uint32_t>(sizeof h + body.size());
  const auto* p = reinterpret_cast<const std::byte*>(&h);
  out.insert(out.end(), p, p + sizeof h);
  out.insert(out.end(), body.begin(), body.end());
}

std::vector<std::byte> bytesOf(std::string_view s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

// A trace whose events are a syscall, one BufferedSyscalls event holding
// `entries` with `count`, and another syscall; returns its bytes.
std::vector<std::byte> batchTrace(const TempDir& dir, const std::vector<std::byte>& entries,
                                  uint32_t count) {
  std::string path = dir.file("batch.rec");
  capnp::MallocMessageBuilder header;
  fillHeader(header);
  {
    auto writer = TraceWriter::create(path, header);
    std::mt19937_64 rng(5);
    capnp::MallocMessageBuilder before;
    fillEvent(before, rng, 0);
    writer->writeEvent(before);
    capnp::MallocMessageBuilder m;
    auto e = m.initRoot<rec::schema::Event>();
    e.setTid(7);
    auto b = e.initBufferedSyscalls();
    b.setCount(count);
    // referenced, as the recorder does, not copied
    b.adoptEntries(m.getOrphanage().referenceExternalData(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(entries.data()), entries.size())));
    writer->writeEvent(m);
    capnp::MallocMessageBuilder after;
    fillEvent(after, rng, 1);
    writer->writeEvent(after);
    capnp::MallocMessageBuilder footer;
    footer.initRoot<rec::schema::Footer>();
    writer->finish(footer);
  }
  return readFile(path);
}

}  // namespace

TEST_CASE("buffered syscalls: one event per batch, every entry checked", "[format]") {
  TempDir dir("rec-format");
  std::vector<std::byte> entries;
  appendCall(entries, 0, 5, {{0x5000, bytesOf("hello")}});                       // a read
  appendCall(entries, 1, 4096, {});                                              // a write
  appendCall(entries, 0, 8192, {{0x6000, std::vector<std::byte>(8192)}}, true);  // zeros
  appendCall(entries, 19, 7, {{0x7000, bytesOf("abc")}, {0x8000, bytesOf("defg")}});  // readv
  appendCall(entries, 3, 0, {});

  SECTION("round trip: the entries come back as written") {
    auto r = TraceReader::openBytes(batchTrace(dir, entries, 5), "t.rec");
    CHECK(r->stats().eventCount == 3);
    (void)r->nextEvent();
    auto e = r->nextEvent();
    REQUIRE(e);
    REQUIRE(e->isBufferedSyscalls());
    CHECK(e->getTid() == 7);
    auto b = e->getBufferedSyscalls();
    CHECK(b.getCount() == 5);
    auto data = b.getEntries();
    REQUIRE(data.size() == entries.size());
    CHECK(std::memcmp(data.begin(), entries.data(), entries.size()) == 0);
    std::vector<std::string> seen;
    rec::format::forEachBufferedCall(
        std::span(reinterpret_cast<const std::byte*>(data.begin()), data.size()),
        [&](const rec::format::BufferedCallHeader& h, const std::byte* entry) {
          std::string s = std::to_string(h.number) + "=" + std::to_string(h.result);
          rec::format::forEachBufferedWrite(h, entry, [&](const rec::format::BufferedWrite& w) {
            s += " " + std::to_string(w.address) + ":" +
                 (w.data ? std::string(reinterpret_cast<const char*>(w.data), w.length)
                         : std::to_string(w.length) + " zeros");
          });
          seen.push_back(s);
        });
    CHECK(seen == std::vector<std::string>{"0=5 20480:hello", "1=4096", "0=8192 24576:8192 zeros",
                                           "19=7 28672:abc 32768:defg", "3=0"});
    CHECK(r->nextEvent());
    CHECK(!r->nextEvent());
  }

  // Each damage (made before the checksums are computed, as a crafted or
  // buggy writer would) is a FormatError naming the event and the entry.
  auto expectBad = [&](std::vector<std::byte> bad, uint32_t count, const std::string& what) {
    CAPTURE(what);
    auto r = TraceReader::openBytes(batchTrace(dir, bad, count), "t.rec");
    CHECK_THROWS_WITH(
        [&] {
          while (r->nextEvent()) {
          }
        }(),
        Catch::Contains("t.rec: chunk ") && Catch::Contains("event 1: ") && Catch::Contains(what));
  };
  auto at = [&](std::vector<std::byte> b, size_t offset, uint64_t value, size_t width) {
    std::memcpy(b.data() + offset, &value, width);
    return b;
  };
  const size_t second = 88 + 8;  // the read's entry: header and "hello" padded
  SECTION("counts and sizes") {
    expectBad(entries, 4, "more entries than the count of 4");
    expectBad(entries, 6, "5 entries, the count says 6");
    expectBad(at(entries, 0, 0, 4), 5, "buffered syscall 0 at byte 0 of its batch: bad size 0");
    expectBad(at(entries, 0, 92, 4), 5, "bad size 92");
    expectBad(at(entries, second, 1u << 20, 4), 5, "buffered syscall 1 at byte 96");
    std::vector<std::byte> cut(entries.begin(), entries.end() - 8);
    expectBad(cut, 5, "buffered syscall 4");
    std::vector<std::byte> tail = entries;
    tail.resize(tail.size() + 40);
    expectBad(tail, 5, "more entries than the count of 5");
  }
  SECTION("outputs") {
    expectBad(at(entries, offsetof(rec::format::BufferedCallHeader, outLength), 9, 8), 5,
              "output longer than the entry");
    expectBad(at(entries, offsetof(rec::format::BufferedCallHeader, flags), 8, 4), 5,
              "bad flags 8");
    // An output write that claims to have written memory too.
    expectBad(at(entries, offsetof(rec::format::BufferedCallHeader, flags), 2, 4), 5,
              "bad output of the program");
    expectBad(at(entries, offsetof(rec::format::BufferedCallHeader, ranges), 2000, 4), 5,
              "too many ranges");
    expectBad(at(entries, offsetof(rec::format::BufferedCallHeader, ranges), 9, 4), 5,
              "ranges past the entry's end");
    const size_t readv = second + 88 + 88;  // after the write and the zeros
    expectBad(at(entries, readv + offsetof(rec::format::BufferedCallHeader, outLength), 8, 8), 5,
              "ranges disagree with the output length");
    // a range longer than the bytes stored, the total agreeing
    auto b = at(entries, readv + 88 + 8, 20, 8);
    b = at(b, readv + offsetof(rec::format::BufferedCallHeader, outLength), 24, 8);
    expectBad(b, 5, "output longer than the entry");
  }
}

// Batches lent to the writer (writeEvent's `lent`): taken over, not copied,
// and written as they lie, raw zstd blocks when their bytes do not
// compress. Read back byte for byte, whatever mix of chunks they land in.
TEST_CASE("lent batches: stored raw or compressed, read back exactly", "[format]") {
  TempDir dir("rec-format");
  std::mt19937_64 rng(11);
  auto randomBytes = [&](size_t n, bool compressible) {
    std::vector<std::byte> out(n);
    for (auto& b : out) b = static_cast<std::byte>(compressible ? rng() % 3 : rng());
    return out;
  };
  // Sizes around zstd's 128 KiB block and the 256 KiB sampling threshold.
  struct Batch {
    size_t bytes;
    bool compressible;
  };
  const std::vector<Batch> batches = {{700 << 10, false}, {300 << 10, true},   {(1 << 20) + 24, false},
                                      {100, false},       {128 << 10, false},  {5000, true},
                                      {(2 << 20) + 8, false}, {(400 << 10) + 16, true}};
  for (size_t maxChunk : {size_t{64} << 10, size_t{4} << 20}) {
    CAPTURE(maxChunk);
    std::string path = dir.file("lent.rec");
    capnp::MallocMessageBuilder header;
    fillHeader(header);
    std::vector<std::vector<std::byte>> written;
    std::vector<std::string> small;
    WriterOptions options;
    options.maxChunkBytes = maxChunk;
    {
      auto writer = TraceWriter::create(path, header, options);
      std::vector<std::byte> lent;
      for (size_t i = 0; i < batches.size(); ++i) {
        capnp::MallocMessageBuilder before;
        fillEvent(before, rng, static_cast<unsigned>(i));
        small.push_back(text(before.getRoot<rec::schema::Event>().asReader()));
        writer->writeEvent(before);
        lent.clear();
        appendCall(lent, 0, static_cast<int64_t>(batches[i].bytes),
                   {{0x5000, randomBytes(batches[i].bytes, batches[i].compressible)}});
        written.push_back(lent);
        capnp::MallocMessageBuilder m;
        auto e = m.initRoot<rec::schema::Event>();
        e.setTid(7);
        auto b = e.initBufferedSyscalls();
        b.setCount(1);
        b.adoptEntries(m.getOrphanage().referenceExternalData(
            kj::arrayPtr(reinterpret_cast<const kj::byte*>(lent.data()), lent.size())));
        writer->writeEvent(m, lent);
        CHECK(lent.empty());
      }
      capnp::MallocMessageBuilder footer;
      footer.initRoot<rec::schema::Footer>();
      writer->finish(footer);
    }
    auto r = TraceReader::open(path);
    CHECK(r->complete());
    for (size_t i = 0; i < batches.size(); ++i) {
      CAPTURE(i);
      auto e = r->nextEvent();
      REQUIRE(e);
      CHECK(text(*e) == small[i]);
      e = r->nextEvent();
      REQUIRE(e);
      REQUIRE(e->isBufferedSyscalls());
      auto data = e->getBufferedSyscalls().getEntries();
      REQUIRE(data.size() == written[i].size());
      CHECK(std::memcmp(data.begin(), written[i].data(), data.size()) == 0);
    }
    CHECK(!r->nextEvent());
    // The random batches were stored raw: the file is barely larger than
    // its contents; with a chunk each, the compressible ones did shrink (a
    // chunk that mixes both is stored or compressed as its largest piece
    // says).
    auto stats = r->stats();
    size_t randomBytes = 0;
    for (const Batch& b : batches)
      if (!b.compressible) randomBytes += b.bytes;
    CHECK(stats.compressedBytes > randomBytes);
    CHECK(stats.compressedBytes < stats.uncompressedBytes + (1 << 10));
    if (maxChunk < (1 << 20)) CHECK(stats.compressedBytes < randomBytes + (200 << 10));
    // A flipped bit inside a stored block is caught by the payload hash.
    auto bytes = readFile(path);
    bytes[bytes.size() / 2] ^= std::byte{0x10};
    auto damaged = TraceReader::openBytes(bytes, "d.rec");
    CHECK_THROWS_WITH(
        [&] {
          while (damaged->nextEvent()) {
          }
        }(),
        Catch::Contains("checksum mismatch"));
  }
}

// A stored chunk (raw zstd blocks) is read into place, its block headers
// checked one by one (TraceReaderImpl::readStoredInto): every bit flipped in
// the frame header or in any block header, read from a file (preadv) and
// from memory, is an error, never other data.
TEST_CASE("stored chunks read into place: every header bit flip is caught", "[format]") {
  TempDir dir("rec-format");
  std::mt19937_64 rng(23);
  std::vector<std::byte> data((300 << 10) + 40);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  std::vector<std::byte> entries;
  appendCall(entries, 0, static_cast<int64_t>(data.size()), {{0x5000, data}});
  const std::vector<std::byte> bytes = batchTrace(dir, entries, 1);
  auto entriesOf = [](TraceReader& r) {
    std::vector<std::byte> got;
    while (auto e = r.nextEvent())
      if (e->isBufferedSyscalls()) {
        auto d = e->getBufferedSyscalls().getEntries();
        got.assign(reinterpret_cast<const std::byte*>(d.begin()),
                   reinterpret_cast<const std::byte*>(d.end()));
      }
    return got;
  };
  {
    auto r = TraceReader::open(dir.file("batch.rec"));
    CHECK(entriesOf(*r) == entries);
    auto m = TraceReader::openBytes(bytes, "m.rec");
    CHECK(entriesOf(*m) == entries);
  }
  // The stored frame: the zstd magic followed by a 4-byte content size
  // descriptor (0xA0), then raw blocks.
  std::vector<size_t> headerBytes;
  for (size_t at = 0; at + 12 < bytes.size(); ++at) {
    if (bytes[at] != std::byte{0x28} || bytes[at + 1] != std::byte{0xB5} ||
        bytes[at + 2] != std::byte{0x2F} || bytes[at + 3] != std::byte{0xFD} ||
        bytes[at + 4] != std::byte{0xA0})
      continue;
    uint32_t content = 0;
    std::memcpy(&content, &bytes[at + 5], 4);
    if (content < data.size()) continue;
    for (size_t i = 0; i < 9; ++i) headerBytes.push_back(at + i);
    size_t pos = at + 9, done = 0;
    while (pos + 3 <= bytes.size()) {
      const uint32_t bh = static_cast<uint32_t>(bytes[pos]) |
                          static_cast<uint32_t>(bytes[pos + 1]) << 8 |
                          static_cast<uint32_t>(bytes[pos + 2]) << 16;
      REQUIRE(((bh >> 1) & 3) == 0);  // raw: the chunk was stored
      for (size_t i = 0; i < 3; ++i) headerBytes.push_back(pos + i);
      pos += 3 + (bh >> 3);
      done += bh >> 3;
      if (bh & 1) break;
    }
    CHECK(done == content);
    break;
  }
  REQUIRE(headerBytes.size() >= 9 + 3 * 3);  // at least three blocks
  size_t silent = 0;
  for (size_t at : headerBytes)
    for (unsigned bit = 0; bit < 8; ++bit) {
      std::vector<std::byte> flipped = bytes;
      flipped[at] ^= static_cast<std::byte>(1u << bit);
      writeFile(dir.file("flipped.rec"), flipped);
      for (bool fromFile : {true, false}) {
        try {
          auto r = fromFile ? TraceReader::open(dir.file("flipped.rec"))
                            : TraceReader::openBytes(flipped, "f.rec");
          (void)entriesOf(*r);
          ++silent;
        } catch (const FormatError&) {
        }
      }
    }
  CHECK(silent == 0);
}

// The chunk checksums and blob hashes go through fast_hash (AVX2 where the
// CPU has it): the values must be XXH3's, as the library computes them.
TEST_CASE("fast_hash gives XXH3's values", "[format]") {
  std::mt19937_64 rng(3);
  std::vector<std::byte> data(3 << 20);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  for (size_t size : {size_t{0}, size_t{1}, size_t{16}, size_t{17}, size_t{128}, size_t{129},
                      size_t{240}, size_t{241}, size_t{1000}, size_t{1024}, size_t{65536 + 7},
                      size_t{(1 << 20) + 3}, data.size()}) {
    CAPTURE(size);
    const std::byte* p = data.data() + (size < data.size() ? 1 : 0);  // unaligned too
    if (size == data.size()) p = data.data();
    CHECK(rec::format::xxh3_64(p, size) == XXH3_64bits(p, size));
    uint64_t high = 0, low = 0;
    rec::format::xxh3_128(p, size, &high, &low);
    XXH128_hash_t h = XXH3_128bits(p, size);
    CHECK(high == h.high64);
    CHECK(low == h.low64);
    // The same bytes in pieces of uneven sizes.
    std::vector<rec::format::HashPiece> pieces;
    for (size_t at = 0; at < size;) {
      size_t n = std::min<size_t>(size - at, 1 + rng() % 300000);
      pieces.push_back({p + at, n});
      at += n;
    }
    CHECK(rec::format::xxh3_64(pieces) == XXH3_64bits(p, size));
  }
}
