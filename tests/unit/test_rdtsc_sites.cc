// Finding RDTSC/RDTSCP instructions in ELF files (tracee/rdtsc_sites.h).
#include <algorithm>
#include <cstring>
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <vector>

#include "code_patch.h"
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

TEST_CASE("findRdtscSites notes the bytes a jump over a site can move") {
  // rdtsc_sites.c's read_tsc: rdtsc; shl $0x20,%rdx (4 bytes) -> 4;
  // read_tscp: rdtscp; and then at least 2 bytes of whole instructions.
  std::vector<uint8_t> file = readFile(REC_TEST_PROGRAMS_DIR "/rdtsc_sites");
  for (const RdtscSite& s : findRdtscSites(file)) {
    const size_t length = s.kind == TscInstruction::Rdtscp ? 3 : 2;
    INFO("site at " << s.fileOffset);
    REQUIRE(s.moveLength > 0);
    CHECK(length + s.moveLength >= 5);
    CHECK(length + s.moveLength < 5 + 15);
    // the moved bytes are whole instructions that run anywhere
    auto moved = moveCode(std::span<const uint8_t>(file).subspan(s.fileOffset + length),
                          0x1000 + s.fileOffset + length, 5 - length, 0x1000 + s.fileOffset + length);
    REQUIRE(moved);
    CHECK(moved->size() == s.moveLength);
  }
}

TEST_CASE("moveCode moves whole instructions and adjusts rip-relative operands") {
  // shl $0x20,%rdx; or %rdx,%rax
  const uint8_t plain[] = {0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0};
  auto m = moveCode(plain, 0x1000, 3, 0x900000);
  REQUIRE(m);
  CHECK(*m == std::vector<uint8_t>(plain, plain + 4));  // one instruction covers 3 bytes
  m = moveCode(plain, 0x1000, 5, 0x900000);
  REQUIRE(m);
  CHECK(m->size() == 7);
  // andb $0xdf,0x100(%rip) at 0x1000 (ld.so's pattern): the copy at 0x2000
  // reaches the same byte (0x1107)
  const uint8_t rip[] = {0x80, 0x25, 0x00, 0x01, 0x00, 0x00, 0xdf};
  m = moveCode(rip, 0x1000, 3, 0x2000);
  REQUIRE(m);
  REQUIRE(m->size() == 7);
  int32_t disp = 0;
  std::memcpy(&disp, m->data() + 2, 4);
  CHECK(0x2000 + 7 + disp == 0x1107);
  CHECK((*m)[6] == 0xdf);
  // a branch, a call, rdtsc itself, and rip-relative out of reach: not moved
  const uint8_t jump[] = {0x74, 0x05, 0x90, 0x90, 0x90};
  CHECK(!moveCode(jump, 0x1000, 3, 0x2000));
  const uint8_t call[] = {0xe8, 0x00, 0x00, 0x00, 0x00};
  CHECK(!moveCode(call, 0x1000, 3, 0x2000));
  const uint8_t tsc[] = {0x0f, 0x31, 0x90};
  CHECK(!moveCode(tsc, 0x1000, 2, 0x2000));
  CHECK(!moveCode(rip, 0x1000, 3, 0x1000 + (uint64_t{1} << 32)));
  // cut short: not whole
  CHECK(!moveCode(std::span<const uint8_t>(plain, 2), 0x1000, 2, 0x2000));
}

TEST_CASE("branchTargets lists the relative branches and calls of a function") {
  // je +2; nop; nop; call +0; jmp -9
  const uint8_t code[] = {0x74, 0x02, 0x90, 0x90, 0xe8, 0x00, 0x00, 0x00, 0x00, 0xeb, 0xf5};
  std::vector<uint64_t> t = branchTargets(code, 0x1000);
  std::sort(t.begin(), t.end());
  CHECK(t == std::vector<uint64_t>{0x1000, 0x1004, 0x1009});
}
