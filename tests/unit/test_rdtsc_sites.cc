// Finding RDTSC/RDTSCP instructions in ELF files (tracee/rdtsc_sites.h).
#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <vector>

#include "rdtsc_sites.h"

using namespace rec;

namespace {

std::vector<uint8_t> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

size_t countBytes(const std::vector<uint8_t>& file, std::initializer_list<uint8_t> pattern) {
  size_t n = 0;
  for (size_t i = 0; i + pattern.size() <= file.size(); ++i)
    if (std::equal(pattern.begin(), pattern.end(), file.begin() + static_cast<long>(i))) ++n;
  return n;
}

}  // namespace

TEST_CASE("findRdtscSites finds the real instructions and not the decoys") {
  // tests/programs/rdtsc_sites.c: one RDTSC, one RDTSCP, and an immediate
  // holding the bytes of each.
  std::vector<uint8_t> file = readFile(REC_TEST_PROGRAMS_DIR "/rdtsc_sites");
  REQUIRE(file.size() > 1000);
  REQUIRE(countBytes(file, {0x0f, 0x31}) >= 2);
  REQUIRE(countBytes(file, {0x0f, 0x01, 0xf9}) >= 2);

  std::vector<RdtscSite> sites = findRdtscSites(file);
  REQUIRE(sites.size() == 2);
  size_t rdtsc = 0, rdtscp = 0;
  for (const RdtscSite& s : sites) {
    REQUIRE(s.fileOffset + 3 <= file.size());
    CHECK(file[s.fileOffset] == 0x0f);
    if (s.kind == TscInstruction::Rdtsc) {
      ++rdtsc;
      CHECK(file[s.fileOffset + 1] == 0x31);
    } else {
      ++rdtscp;
      CHECK(file[s.fileOffset + 1] == 0x01);
      CHECK(file[s.fileOffset + 2] == 0xf9);
    }
    // A decoy sits right after a mov opcode byte (b8+r).
    CHECK((file[s.fileOffset - 1] & 0xf8) != 0xb8);
  }
  CHECK(rdtsc == 1);
  CHECK(rdtscp == 1);
}

TEST_CASE("findRdtscSites is safe on anything that is not a whole ELF file") {
  std::vector<uint8_t> file = readFile(REC_TEST_PROGRAMS_DIR "/rdtsc_sites");
  REQUIRE(!file.empty());
  for (size_t cut = 0; cut < file.size(); cut += 61) {
    std::vector<uint8_t> prefix(file.begin(), file.begin() + static_cast<long>(cut));
    for (const RdtscSite& s : findRdtscSites(prefix)) CHECK(s.fileOffset < cut);
  }
  std::vector<uint8_t> noise(4096);
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  CHECK(findRdtscSites(noise).empty());
}
