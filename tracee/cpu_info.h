// What replay needs to know about the CPU: CPUID cannot be trapped on these
// machines, so the answers seen at record time are stored in the trace and
// compared before replay.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rec {

struct CpuidAnswer {
  uint32_t leaf, subleaf, eax, ebx, ecx, edx;
};

struct CpuDescription {
  std::string vendor;
  std::string modelName;
  uint32_t family = 0, model = 0, stepping = 0;
  uint64_t xcr0 = 0;
  std::vector<CpuidAnswer> leaves;
};

CpuDescription describeThisCpu();

// Only what cpuDifferences() compares: the vendor, XCR0 and the leaves that
// hold the feature words (6 CPUID instructions instead of ~45, each a trap
// to the hypervisor in a VM).
CpuDescription describeCpuFeatures();

// describeThisCpu(), from rec's per-boot cache (tracee/boot_cache.h) when
// this boot has been described already. The leaves describeCpuFeatures()
// reads are read afresh every time, and the cache is used only when they
// agree with it; it is written again otherwise.
CpuDescription describeThisCpuCached();

// Human-readable differences that can change what a program does (feature
// bits, XSAVE state); empty when replay on this CPU is safe.
std::vector<std::string> cpuDifferences(const CpuDescription& recorded, const CpuDescription& here);

}  // namespace rec
