// The recorder's cache of compressed blob chunks (recorder/blob_cache.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <vector>

#include "blob_cache.h"
#include "temp_dir.h"
#include "trace_file.h"

using rec::BlobCache;
using namespace rec::format;

namespace {

struct MadeBlob {
  BlobHash hash;
  std::vector<std::byte> data;
  std::vector<std::byte> framed;  // as the writer reported it
};

// Writes one blob through a TraceWriter and keeps the chunk it reports.
MadeBlob makeBlob(const std::string& tracePath) {
  MadeBlob made;
  for (int i = 0; i < 20000; ++i) made.data.push_back(static_cast<std::byte>(i * 7 % 251));
  WriterOptions options;
  options.onBlobWritten = [&](const BlobHash& hash, std::span<const std::byte> framed) {
    made.hash = hash;
    made.framed.assign(framed.begin(), framed.end());
  };
  capnp::MallocMessageBuilder header;
  header.initRoot<rec::schema::Header>().setRecVersion("test");
  auto writer = TraceWriter::create(tracePath, header, options);
  BlobHash hash = writer->writeBlob(made.data, "/lib/libtest.so");
  capnp::MallocMessageBuilder footer;
  footer.initRoot<rec::schema::Footer>();
  writer->finish(footer);
  REQUIRE(made.hash == hash);
  REQUIRE(isIntactBlobChunk(made.framed));
  return made;
}

// A blob made by a writer, an empty cache beside it, and the stat of an old
// file (its inode settled long ago) to key entries by.
struct Fixture {
  TempDir dir;
  MadeBlob made = makeBlob(dir.file("first.rec"));
  BlobCache cache{makeCache(dir.file("cache"))};
  struct stat st = statOf("/bin/sh");

  static std::string makeCache(const std::string& path) {
    std::filesystem::create_directory(path);
    return path;
  }
  static struct stat statOf(const char* path) {
    struct stat st;
    REQUIRE(::stat(path, &st) == 0);
    return st;
  }
};

}  // namespace

TEST_CASE("blob cache: a stored chunk comes back and goes into another trace unchanged") {
  Fixture fx;
  auto& [dir, made, cache, st] = fx;
  cache.expect(made.hash, st);
  cache.onBlobWritten(made.hash, made.framed);

  auto hit = cache.lookup(st);
  REQUIRE(hit);
  CHECK(hit->hash == made.hash);
  std::vector<std::byte> stored(hit->size);
  REQUIRE(::pread(hit->file.get(), stored.data(), stored.size(), static_cast<off_t>(hit->offset)) ==
          static_cast<ssize_t>(stored.size()));
  CHECK(stored == made.framed);
  struct stat other = st;
  other.st_size += 1;
  CHECK_FALSE(cache.lookup(other));
  other = st;
  other.st_mtim.tv_nsec ^= 1;
  CHECK_FALSE(cache.lookup(other));

  // The cached chunk in a new trace reads back as the original contents.
  capnp::MallocMessageBuilder header;
  header.initRoot<rec::schema::Header>().setRecVersion("test");
  auto writer = TraceWriter::create(dir.file("second.rec"), header);
  writer->writeFramedBlob(std::move(*hit));
  capnp::MallocMessageBuilder footer;
  footer.initRoot<rec::schema::Footer>();
  writer->finish(footer);
  auto reader = TraceReader::open(dir.file("second.rec"));
  CHECK(reader->readBlob(made.hash) == made.data);
}

// Writes `blob` into a new trace and returns what the trace holds for it.
std::vector<std::byte> throughTrace(const std::string& path, FramedBlob blob) {
  capnp::MallocMessageBuilder header;
  header.initRoot<rec::schema::Header>().setRecVersion("test");
  auto writer = TraceWriter::create(path, header);
  BlobHash hash = blob.hash;
  writer->writeFramedBlob(std::move(blob));
  capnp::MallocMessageBuilder footer;
  footer.initRoot<rec::schema::Footer>();
  writer->finish(footer);
  return TraceReader::open(path)->readBlob(hash);
}

void flipByte(const std::filesystem::path& file, std::streamoff at) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  char byte = static_cast<char>(f.get());
  f.seekp(at);
  f.put(static_cast<char>(byte ^ 0x5a));
}

TEST_CASE("blob cache: damaged entries and unsettled files are never used") {
  Fixture fx;
  auto& [dir, made, cache, st] = fx;
  cache.store(st, made.hash, made.framed);
  REQUIRE(cache.lookup(st));
  std::vector<std::filesystem::path> entries;
  for (auto& e : std::filesystem::directory_iterator(dir.file("cache")))
    entries.push_back(e.path());
  REQUIRE(entries.size() == 1);

  // One flipped byte in the stored payload: the writer finds it as it copies
  // and stores the original file instead, so the trace holds good data.
  flipByte(entries[0], static_cast<std::streamoff>(std::filesystem::file_size(entries[0]) - 10));
  {
    std::string original = dir.file("libtest.so");
    std::ofstream(original, std::ios::binary)
        .write(reinterpret_cast<const char*>(made.data.data()),
               static_cast<std::streamsize>(made.data.size()));
    auto hit = cache.lookup(st);
    REQUIRE(hit);
    hit->original = rec::ScopedFd(::open(original.c_str(), O_RDONLY | O_CLOEXEC));
    hit->originalPath = original;
    CHECK(throughTrace(dir.file("repaired.rec"), std::move(*hit)) == made.data);
  }
  // Without the original to fall back on, the trace reports the damage.
  {
    auto hit = cache.lookup(st);
    REQUIRE(hit);
    CHECK_THROWS_WITH(throughTrace(dir.file("unrepaired.rec"), std::move(*hit)),
                      Catch::Contains("damaged"));
  }
  // A flipped byte in the chunk header: not even offered.
  flipByte(entries[0], 8 + 16 + 4);
  CHECK_FALSE(cache.lookup(st));

  // A file whose inode changed just now may be replaced by another file with
  // the same inode and times: not stored.
  std::ofstream(dir.file("fresh.so")) << "fresh";
  struct stat fresh;
  REQUIRE(::stat(dir.file("fresh.so").c_str(), &fresh) == 0);
  cache.store(fresh, made.hash, made.framed);
  CHECK_FALSE(cache.lookup(fresh));

  BlobCache off("");
  CHECK_FALSE(off.enabled());
  off.store(st, made.hash, made.framed);
  CHECK_FALSE(off.lookup(st));
}

TEST_CASE("blob cache: a lookup marks an entry used, at most once an hour") {
  Fixture fx;
  auto& [dir, made, cache, st] = fx;
  cache.store(st, made.hash, made.framed);
  std::string entry;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("cache")))
    entry = e.path().string();
  REQUIRE(!entry.empty());
  auto mtimeOf = [&] {
    struct stat s;
    REQUIRE(::stat(entry.c_str(), &s) == 0);
    return s.st_mtim.tv_sec;
  };
  auto setMtime = [&](time_t when) {
    timespec times[2] = {{when, 0}, {when, 0}};
    REQUIRE(::utimensat(AT_FDCWD, entry.c_str(), times, 0) == 0);
  };
  const time_t now = ::time(nullptr);
  // Used ten minutes ago: left as it is.
  setMtime(now - 600);
  REQUIRE(cache.lookup(st));
  CHECK(mtimeOf() == now - 600);
  // Used two hours ago: now.
  setMtime(now - 7200);
  REQUIRE(cache.lookup(st));
  CHECK(mtimeOf() >= now);
}
