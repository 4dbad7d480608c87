#include <catch2/catch.hpp>

#include "cpu_info.h"

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
