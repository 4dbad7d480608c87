#include "cpu_info.h"

#include <cpuid.h>
#include <fmt/format.h>

#include <cstring>
#include <optional>
#include <sstream>

#include "boot_cache.h"

namespace rec {

namespace {

CpuidAnswer query(uint32_t leaf, uint32_t subleaf) {
  CpuidAnswer a{leaf, subleaf, 0, 0, 0, 0};
  __cpuid_count(leaf, subleaf, a.eax, a.ebx, a.ecx, a.edx);
  return a;
}

uint64_t readXcr0() {
  uint32_t ecx1, edx1, eax1, ebx1;
  __cpuid(1, eax1, ebx1, ecx1, edx1);
  if (!(ecx1 & (1u << 27))) return 0;  // OSXSAVE off: XGETBV would fault
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

// Registers that describe features (not the APIC id or cache topology,
// which differ between cores of the same machine).
struct FeatureWord {
  uint32_t leaf, subleaf;
  int reg;  // 0 eax, 1 ebx, 2 ecx, 3 edx
  uint32_t ignoreMask;
  const char* name;
};
constexpr FeatureWord kFeatureWords[] = {
    {1, 0, 2, 1u << 27, "CPUID.1:ECX"},  // OSXSAVE follows the OS
    {1, 0, 3, 0, "CPUID.1:EDX"},
    {7, 0, 1, 0, "CPUID.7.0:EBX"},
    {7, 0, 2, 1u << 4, "CPUID.7.0:ECX"},  // OSPKE follows the OS
    {7, 0, 3, 0, "CPUID.7.0:EDX"},
    {0xd, 1, 0, 0, "CPUID.D.1:EAX"},
    {0x80000001, 0, 2, 0, "CPUID.80000001:ECX"},
    {0x80000001, 0, 3, 0, "CPUID.80000001:EDX"},
};

// The leaves kFeatureWords read.
constexpr std::pair<uint32_t, uint32_t> kFeatureLeaves[] = {
    {1, 0}, {7, 0}, {0xd, 1}, {0x80000001, 0}};

uint32_t reg(const CpuidAnswer& a, int r) {
  switch (r) {
    case 0:
      return a.eax;
    case 1:
      return a.ebx;
    case 2:
      return a.ecx;
    default:
      return a.edx;
  }
}

const CpuidAnswer* find(const std::vector<CpuidAnswer>& leaves, uint32_t leaf, uint32_t sub) {
  for (const auto& a : leaves)
    if (a.leaf == leaf && a.subleaf == sub) return &a;
  return nullptr;
}

// Leaf 0's vendor string (ebx, edx, ecx).
std::string vendorOf(const CpuidAnswer& l0) {
  char vendor[13] = {};
  std::memcpy(vendor, &l0.ebx, 4);
  std::memcpy(vendor + 4, &l0.edx, 4);
  std::memcpy(vendor + 8, &l0.ecx, 4);
  return vendor;
}

}  // namespace

CpuDescription describeThisCpu() {
  CpuDescription d;
  CpuidAnswer l0 = query(0, 0);
  d.vendor = vendorOf(l0);
  uint32_t maxLeaf = l0.eax;
  d.leaves.push_back(l0);
  for (uint32_t leaf = 1; leaf <= std::min<uint32_t>(maxLeaf, 0x1f); ++leaf) {
    d.leaves.push_back(query(leaf, 0));
    if (leaf == 7 || leaf == 0xd) d.leaves.push_back(query(leaf, 1));
  }
  CpuidAnswer ext = query(0x80000000, 0);
  d.leaves.push_back(ext);
  char brand[49] = {};
  for (uint32_t leaf = 0x80000001; leaf <= std::min<uint32_t>(ext.eax, 0x80000008); ++leaf) {
    CpuidAnswer a = query(leaf, 0);
    d.leaves.push_back(a);
    if (leaf >= 0x80000002 && leaf <= 0x80000004) {
      uint32_t regs[4] = {a.eax, a.ebx, a.ecx, a.edx};
      std::memcpy(brand + (leaf - 0x80000002) * 16, regs, 16);
    }
  }
  d.modelName = brand;
  while (!d.modelName.empty() && d.modelName.back() == ' ') d.modelName.pop_back();
  while (!d.modelName.empty() && d.modelName.front() == ' ') d.modelName.erase(0, 1);
  CpuidAnswer l1 = query(1, 0);
  uint32_t baseFamily = (l1.eax >> 8) & 0xf, baseModel = (l1.eax >> 4) & 0xf;
  d.family = baseFamily == 0xf ? baseFamily + ((l1.eax >> 20) & 0xff) : baseFamily;
  d.model = (baseFamily == 0x6 || baseFamily == 0xf) ? (((l1.eax >> 16) & 0xf) << 4) | baseModel
                                                     : baseModel;
  d.stepping = l1.eax & 0xf;
  d.xcr0 = readXcr0();
  return d;
}

CpuDescription describeCpuFeatures() {
  CpuDescription d;
  CpuidAnswer l0 = query(0, 0);
  d.vendor = vendorOf(l0);
  d.leaves.push_back(l0);
  // The same leaves describeThisCpu() would have, so that absent ones
  // compare alike.
  for (auto [leaf, subleaf] : kFeatureLeaves)
    if (leaf < 0x80000000 && leaf <= std::min<uint32_t>(l0.eax, 0x1f))
      d.leaves.push_back(query(leaf, subleaf));
  CpuidAnswer ext = query(0x80000000, 0);
  d.leaves.push_back(ext);
  for (auto [leaf, subleaf] : kFeatureLeaves)
    if (leaf > 0x80000000 && leaf <= std::min<uint32_t>(ext.eax, 0x80000008))
      d.leaves.push_back(query(leaf, subleaf));
  d.xcr0 = readXcr0();
  return d;
}

namespace {

std::string serialize(const CpuDescription& d) {
  std::string out = fmt::format("cpu 1\n{}\n{}\n{} {} {} {}\n", d.vendor, d.modelName, d.family,
                                d.model, d.stepping, d.xcr0);
  for (const auto& a : d.leaves)
    out += fmt::format("{} {} {} {} {} {}\n", a.leaf, a.subleaf, a.eax, a.ebx, a.ecx, a.edx);
  return out;
}

std::optional<CpuDescription> parse(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  CpuDescription d;
  if (!std::getline(in, line) || line != "cpu 1" || !std::getline(in, d.vendor) ||
      !std::getline(in, d.modelName) || !std::getline(in, line))
    return std::nullopt;
  std::istringstream numbers(line);
  if (!(numbers >> d.family >> d.model >> d.stepping >> d.xcr0)) return std::nullopt;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    CpuidAnswer a;
    if (!(l >> a.leaf >> a.subleaf >> a.eax >> a.ebx >> a.ecx >> a.edx)) return std::nullopt;
    d.leaves.push_back(a);
  }
  if (d.leaves.empty()) return std::nullopt;
  return d;
}

CpuidAnswer* findMutable(std::vector<CpuidAnswer>& leaves, uint32_t leaf, uint32_t sub) {
  for (auto& a : leaves)
    if (a.leaf == leaf && a.subleaf == sub) return &a;
  return nullptr;
}

}  // namespace

CpuDescription describeThisCpuCached() {
  CpuDescription fresh = describeCpuFeatures();
  if (auto text = readBootCache("cpu")) {
    if (auto cached = parse(*text); cached && cached->vendor == fresh.vendor &&
                                    cached->xcr0 == fresh.xcr0) {
      bool agrees = true;
      for (const auto& a : fresh.leaves) {
        CpuidAnswer* c = findMutable(cached->leaves, a.leaf, a.subleaf);
        // Leaf 1's EBX holds the APIC id of the CPU that ran CPUID.
        uint32_t ebxMask = a.leaf == 1 ? 0x00ffffffu : ~0u;
        if (!c || c->eax != a.eax || (c->ebx & ebxMask) != (a.ebx & ebxMask) || c->ecx != a.ecx ||
            c->edx != a.edx) {
          agrees = false;
          break;
        }
        *c = a;
      }
      // Leaves the fresh set lacks must be absent from the cache too.
      for (auto [leaf, subleaf] : kFeatureLeaves)
        if (!find(fresh.leaves, leaf, subleaf) && find(cached->leaves, leaf, subleaf))
          agrees = false;
      if (agrees) return *cached;
    }
  }
  CpuDescription d = describeThisCpu();
  writeBootCache("cpu", serialize(d));
  return d;
}

std::vector<std::string> cpuDifferences(const CpuDescription& rec, const CpuDescription& here) {
  std::vector<std::string> out;
  if (rec.vendor != here.vendor)
    out.push_back(fmt::format("vendor {} (recorded) vs {} (here)", rec.vendor, here.vendor));
  if (rec.xcr0 != here.xcr0)
    out.push_back(
        fmt::format("XSAVE features XCR0 {:#x} (recorded) vs {:#x} (here)", rec.xcr0, here.xcr0));
  for (const auto& w : kFeatureWords) {
    const CpuidAnswer* a = find(rec.leaves, w.leaf, w.subleaf);
    const CpuidAnswer* b = find(here.leaves, w.leaf, w.subleaf);
    uint32_t va = a ? reg(*a, w.reg) & ~w.ignoreMask : 0;
    uint32_t vb = b ? reg(*b, w.reg) & ~w.ignoreMask : 0;
    if (va != vb) {
      uint32_t missing = va & ~vb, extra = vb & ~va;
      out.push_back(
          fmt::format("{}: recorded {:#010x}, here {:#010x} (missing bits {:#x}, extra bits {:#x})",
                      w.name, va, vb, missing, extra));
    }
  }
  return out;
}

}  // namespace rec
