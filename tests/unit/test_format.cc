// The trace file: round trips, truncation, corruption and background sealing.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/string.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

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
    b[8] = std::byte{2};
    CHECK_THROWS_WITH(TraceReader::openBytes(b, "t.rec"),
                      "t.rec: trace format version 2, this rec reads version 1");
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

TEST_CASE("writeEvents: batches between single events, a reused segment, data past its size",
          "[format]") {
  TempDir dir("rec-format");
  std::string path = dir.file("batch.rec");
  capnp::MallocMessageBuilder header;
  fillHeader(header);
  WriterOptions options;
  options.maxEventsPerChunk = 7;  // batches cross chunk boundaries
  std::vector<std::string> expected;
  std::mt19937_64 rng(9);
  {
    auto writer = TraceWriter::create(path, header, options);
    for (int round = 0; round < 4; ++round) {
      capnp::MallocMessageBuilder single;
      fillEvent(single, rng, static_cast<unsigned>(round));
      expected.push_back(text(single.getRoot<rec::schema::Event>().asReader()));
      writer->writeEvent(single);
      // Data sizes that vary, and one larger than the hint (capnp then adds
      // segments of its own): each event must come back exactly, with no
      // trace of the previous one's bytes in the reused words.
      std::vector<kj::Array<kj::byte>> data;
      for (int i = 0; i < 20; ++i) data.push_back(randomBytes(rng, (rng() % 5000) * (i % 3)));
      data.push_back(randomBytes(rng, 70000));
      std::vector<std::string> texts(data.size());
      writer->writeEvents(data.size(), 5000, [&](size_t i, capnp::MessageBuilder& m) {
        auto e = m.initRoot<rec::schema::Event>();
        e.setTid(100 + static_cast<int32_t>(i));
        auto s = e.initSyscall();
        s.setNumber(static_cast<int32_t>(i));
        s.setBuffered(i % 2 == 0);
        s.initArgs(6).set(0, rng());
        if (data[i].size() > 0)
          s.initWrites(1)[0].setData(data[i]);
        texts[i] = text(e.asReader());
      });
      expected.insert(expected.end(), texts.begin(), texts.end());
    }
    capnp::MallocMessageBuilder footer;
    footer.initRoot<rec::schema::Footer>();
    writer->finish(footer);
  }
  auto r = TraceReader::open(path);
  CHECK(r->complete());
  CHECK(r->stats().eventCount == expected.size());
  CHECK(readAllEvents(*r) == expected);
}
