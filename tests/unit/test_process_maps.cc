#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

#include "process_maps.h"

using rec::MapEntry;
using rec::parseMaps;
using rec::readMaps;

TEST_CASE("parseMaps reads every field of a maps line", "[maps]") {
  auto maps = parseMaps(
      "555555554000-555555556000 r--p 00000000 fd:01 1835123                    /usr/bin/true\n"
      "7ffff7fc3000-7ffff7fc5000 rw-s 0002a000 00:1a 99   /memfd:rec log (deleted)\n"
      "7ffff7fc7000-7ffff7fc9000 r-xp 00000000 00:00 0                          [vdso]\n"
      "7ffff7fca000-7ffff7fcb000 ---p 00000000 00:00 0 \n"
      "not a maps line\n"
      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]");
  REQUIRE(maps.size() == 5);
  CHECK(maps[0].start == 0x555555554000);
  CHECK(maps[0].end == 0x555555556000);
  CHECK(maps[0].prot == PROT_READ);
  CHECK_FALSE(maps[0].shared);
  CHECK(maps[0].offset == 0);
  CHECK(maps[0].inode == 1835123);
  CHECK(maps[0].path == "/usr/bin/true");
  CHECK(maps[0].isFile());
  CHECK(maps[1].prot == (PROT_READ | PROT_WRITE));
  CHECK(maps[1].shared);
  CHECK(maps[1].offset == 0x2a000);
  CHECK(maps[1].inode == 99);
  CHECK(maps[1].path == "/memfd:rec log (deleted)");
  CHECK(maps[2].prot == (PROT_READ | PROT_EXEC));
  CHECK(maps[2].path == "[vdso]");
  CHECK_FALSE(maps[2].isFile());
  CHECK(maps[3].prot == 0);
  CHECK(maps[3].path.empty());
  CHECK(maps[4].start == 0xffffffffff600000);
  CHECK(maps[4].path == "[vsyscall]");
}

TEST_CASE("readMaps finds this process's own mappings", "[maps]") {
  // Enough mappings that the file is longer than one read's buffer.
  std::vector<void*> pages;
  for (int i = 0; i < 400; ++i) {
    void* p = ::mmap(nullptr, 4096, i % 2 ? PROT_READ : PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    pages.push_back(p);
  }
  auto maps = readMaps(::getpid());
  size_t found = 0;
  for (void* p : pages)
    for (const MapEntry& m : maps)
      if (m.start <= reinterpret_cast<uint64_t>(p) && reinterpret_cast<uint64_t>(p) < m.end)
        ++found;
  CHECK(found == pages.size());
  CHECK(maps.size() > 400);
  bool stack = false;
  for (const MapEntry& m : maps) stack |= m.path == "[stack]";
  CHECK(stack);
  for (void* p : pages) ::munmap(p, 4096);
  CHECK(readMaps(-5).empty());
}
