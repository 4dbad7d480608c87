// RDTSC on machines that do not trap it.
//
// rec makes RDTSC/RDTSCP fault (prctl PR_SET_TSC) so that it can record the
// counter and replay it. Some hypervisors ignore that setting: on Firecracker
// guests on AMD EPYC the prctl succeeds and RDTSC still runs. There rec finds
// the RDTSC/RDTSCP instructions in each executable file mapping and writes UD2
// over them (two bytes, padded with a NOP for RDTSCP), so each one raises
// SIGILL at its own address, which record and replay treat as the trapped
// instruction. Instruction boundaries come from disassembling from the nearest
// function start (.eh_frame_hdr, symbol tables), so the bytes 0f 31 inside
// another instruction are never touched. Not covered: code without unwind
// tables or symbols, and code generated at run time (JITs).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace rec {

class Task;

// Whether RDTSC faults under PR_SET_TSC here (probed once, in a child).
bool rdtscTrapsHere();

enum class TscInstruction : uint8_t { Rdtsc, Rdtscp };

struct RdtscSite {
  uint64_t fileOffset;
  TscInstruction kind;
  // The bytes after the instruction that a 5-byte jump over it would cover
  // and that can run elsewhere (whole instructions, no branch, none a branch
  // in the function targets): the site is patched into a jump to a slot
  // that asks rec's shim (docs/syscall-buffer.md "RDTSC without a stop").
  // 0: no such patch.
  uint8_t moveLength = 0;
};

// The RDTSC/RDTSCP instructions in the executable segments of an ELF file's
// contents, by file offset. Empty for anything that is not a 64-bit ELF.
std::vector<RdtscSite> findRdtscSites(std::span<const uint8_t> elf);

// File offsets of the function starts in an ELF file's executable segments
// (from .eh_frame_hdr and the symbol tables), sorted; empty for anything
// that is not a 64-bit x86 ELF file. (The debugger decodes whole functions
// from these to find which instructions can precede another.)
std::vector<uint64_t> functionStartOffsets(std::span<const uint8_t> elf);

// The sites of a file (contents read from `readPath`, `key` its content
// hash), cached in rec's cache directory.
const std::vector<RdtscSite>& rdtscSitesOf(const std::string& key, const std::string& readPath);

// Patches the sites of the files a program maps, and recognises them when
// they fault. Record and replay patch the same files the same way.
class RdtscPatcher {
 public:
  // Writes UD2 over each site of the file (contents read from `readPath`;
  // `key` is its content hash, under which its sites are cached) that lies
  // inside [start, end), mapped from file offset `offset`.
  void patchMapping(Task& task, const std::string& key, const std::string& readPath, uint64_t start,
                    uint64_t end, uint64_t offset);
  // The instruction that was at ip, when ip is a site that still holds UD2.
  std::optional<TscInstruction> siteAt(Task& task, uint64_t ip) const;
  // A UD2 rec wrote elsewhere for the instruction (an rdtsc slot's fallback).
  void noteSite(uint64_t address, TscInstruction kind) { patched_[address] = kind; }

 private:
  std::unordered_map<uint64_t, TscInstruction> patched_;  // address -> original
};

}  // namespace rec
