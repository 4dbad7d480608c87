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

// Human-readable differences that can change what a program does (feature
// bits, XSAVE state); empty when replay on this CPU is safe.
std::vector<std::string> cpuDifferences(const CpuDescription& recorded, const CpuDescription& here);

}  // namespace rec
