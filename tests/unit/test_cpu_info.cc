#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>

#include "boot_cache.h"
#include "cpu_info.h"
#include "rdtsc_sites.h"
#include "temp_dir.h"

using rec::CpuDescription;
using rec::cpuDifferences;
using rec::describeThisCpu;

namespace {
rec::CpuidAnswer* leaf(CpuDescription& d, uint32_t leaf, uint32_t subleaf) {
  for (auto& a : d.leaves)
    if (a.leaf == leaf && a.subleaf == subleaf) return &a;
  return nullptr;
}
}  // namespace

TEST_CASE("this CPU is described", "[cpu]") {
  CpuDescription here = describeThisCpu();
  CHECK_FALSE(here.vendor.empty());
  CHECK(leaf(here, 0, 0) != nullptr);
  CHECK(leaf(here, 1, 0) != nullptr);
  CHECK(cpuDifferences(here, here).empty());
}

TEST_CASE("replay reports CPU feature differences", "[cpu]") {
  CpuDescription recorded = describeThisCpu();
  CpuDescription here = recorded;

  SECTION("a missing feature bit") {
    auto* l = leaf(here, 1, 0);
    REQUIRE(l);
    l->ecx ^= 1u << 25;  // AES-NI
    auto diffs = cpuDifferences(recorded, here);
    REQUIRE(diffs.size() == 1);
    CHECK(diffs[0].find("CPUID.1:ECX") != std::string::npos);
  }
  SECTION("another vendor") {
    here.vendor = recorded.vendor == "GenuineIntel" ? "AuthenticAMD" : "GenuineIntel";
    auto diffs = cpuDifferences(recorded, here);
    REQUIRE_FALSE(diffs.empty());
    CHECK(diffs[0].find("vendor") != std::string::npos);
  }
  SECTION("other XSAVE state") {
    here.xcr0 ^= 0xe0;  // AVX-512 state components
    auto diffs = cpuDifferences(recorded, here);
    REQUIRE(diffs.size() == 1);
    CHECK(diffs[0].find("XCR0") != std::string::npos);
  }
  SECTION("bits that differ between cores of one machine are ignored") {
    auto* l = leaf(here, 1, 0);
    REQUIRE(l);
    l->ebx ^= 0xff000000;  // initial APIC id
    l->ecx ^= 1u << 27;    // OSXSAVE follows the OS
    CHECK(cpuDifferences(recorded, here).empty());
  }
}

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void spit(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}
// Equal but for the APIC ids of the CPU that ran CPUID (leaf 1, and the
// x2APIC id in the topology leaves 0xb and 0x1f).
bool sameCpu(CpuDescription a, CpuDescription b) {
  for (auto* d : {&a, &b})
    for (auto& l : d->leaves) {
      if (l.leaf == 1) l.ebx &= 0x00ffffff;
      if (l.leaf == 0xb || l.leaf == 0x1f) l.edx = 0;
    }
  if (a.vendor != b.vendor || a.modelName != b.modelName || a.xcr0 != b.xcr0 ||
      a.family != b.family || a.model != b.model || a.stepping != b.stepping ||
      a.leaves.size() != b.leaves.size())
    return false;
  for (size_t i = 0; i < a.leaves.size(); ++i) {
    const auto &x = a.leaves[i], &y = b.leaves[i];
    if (x.leaf != y.leaf || x.subleaf != y.subleaf || x.eax != y.eax || x.ebx != y.ebx ||
        x.ecx != y.ecx || x.edx != y.edx)
      return false;
  }
  return true;
}
}  // namespace

TEST_CASE("the CPU's description is cached per boot, its feature words checked every time",
          "[cpu]") {
  TempDir dir("rec-cpu");
  ::setenv("REC_CACHE_DIR", dir.file("cache").c_str(), 1);
  REQUIRE(!rec::bootCacheDir().empty());
  const std::string file = rec::bootCacheDir() + "/cpu";
  const std::string bootId = slurp("/proc/sys/kernel/random/boot_id");
  REQUIRE(bootId.size() > 32);
  ::unlink(file.c_str());

  CpuDescription probed = describeThisCpu();
  CHECK(sameCpu(rec::describeThisCpuCached(), probed));
  const std::string stored = slurp(file);
  REQUIRE(stored.rfind(bootId, 0) == 0);
  CHECK(sameCpu(rec::describeThisCpuCached(), probed));

  // An informational leaf (the brand string's) comes from the cache...
  auto edited = [&](const std::string& from, const std::string& to) {
    std::string text = stored;
    size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
  };
  auto* brand = leaf(probed, 0x80000002, 0);
  REQUIRE(brand);
  auto line = [](const rec::CpuidAnswer& a) {
    return std::to_string(a.leaf) + " " + std::to_string(a.subleaf) + " " + std::to_string(a.eax) +
           " " + std::to_string(a.ebx) + " " + std::to_string(a.ecx) + " " + std::to_string(a.edx) +
           "\n";
  };
  rec::CpuidAnswer changed = *brand;
  changed.eax ^= 1;
  spit(file, edited(line(*brand), line(changed)));
  CHECK(leaf(*std::make_unique<CpuDescription>(rec::describeThisCpuCached()), 0x80000002, 0)->eax ==
        changed.eax);

  // ...but a feature word that disagrees with this CPU makes it probe again
  // and store what it found.
  auto* features = leaf(probed, 7, 0);
  REQUIRE(features);
  changed = *features;
  changed.ebx ^= 1u << 5;  // AVX2
  spit(file, edited(line(*features), line(changed)));
  CHECK(sameCpu(rec::describeThisCpuCached(), probed));
  CHECK(slurp(file).find(line(changed)) == std::string::npos);

  // Garbage, or another boot's description: probed again.
  spit(file, bootId + "cpu 1\ngarbage\n");
  CHECK(sameCpu(rec::describeThisCpuCached(), probed));
  spit(file, "00000000-0000-0000-0000-000000000000\n" + stored.substr(bootId.size()));
  CHECK(sameCpu(rec::describeThisCpuCached(), probed));
  CHECK(slurp(file).rfind(bootId, 0) == 0);
  ::unsetenv("REC_CACHE_DIR");
}

TEST_CASE("whether RDTSC traps is probed once per boot", "[cpu]") {
  // Where it is known for this boot, the probe (a child that executes RDTSC
  // and dies of SIGSEGV where it traps, which Catch's handler would catch)
  // does not run: the stored answer is taken as it is.
  TempDir dir("rec-rdtsc");
  ::setenv("REC_CACHE_DIR", dir.file("cache").c_str(), 1);
  REQUIRE(!rec::bootCacheDir().empty());
  rec::writeBootCache("rdtsc-traps", "0");
  CHECK_FALSE(rec::rdtscTrapsHere());
  ::unsetenv("REC_CACHE_DIR");
}
