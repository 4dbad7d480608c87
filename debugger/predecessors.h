// Which instructions may have executed right before the one at an address:
// what going back one instruction (gdb's reverse-stepi) tries first.
//
// Without a branch counter, the instruction before a state is found by
// replaying up to it with breakpoints at a few candidate addresses and
// single-stepping once from each arrival there: the candidate whose step
// lands on the state is its predecessor. The candidates come from decoding
// the function around the address (function starts from .eh_frame_hdr and
// symbol tables, tracee/rdtsc_sites.h): the instruction that ends there
// (when it can fall through), the direct jumps to it in that function, the
// call that entered the function (from the return address on the stack,
// at a function's first instruction), and the `ret`s of the function that
// the preceding `call` called (through a PLT stub if need be). When none
// fits (an indirect jump, a tail call), the debugger single-steps from the
// last arrival it knows before the state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "task.h"

namespace rec::dbg {

class CodeAnalyzer {
 public:
  // Candidate predecessors of the instruction at `ip` in `task`'s address
  // space. `returnAddress`: the word at the stack pointer, when the state
  // is known (used when ip starts a function).
  std::set<uint64_t> predecessorCandidates(Task& task, uint64_t ip,
                                           std::optional<uint64_t> returnAddress);
  // The instruction that ends exactly at `ip` in its function, if any.
  std::optional<uint64_t> instructionBefore(Task& task, uint64_t ip);

 private:
  struct Insn {
    uint64_t address;
    uint8_t size;
    bool fallsThrough;  // not jmp / ret / ud2 / hlt
    bool isCall;
    bool isRet;
    std::optional<uint64_t> target;      // direct jump or call
    std::optional<uint64_t> ripPointer;  // jmp qword [rip+disp]: where the target is stored
  };
  // The [start, end) of the function containing ip, or nullopt.
  std::optional<std::pair<uint64_t, uint64_t>> functionAround(Task& task, uint64_t ip);
  std::vector<Insn> decode(Task& task, uint64_t start, uint64_t end);
  const std::vector<uint64_t>& startsOf(const std::string& mapFile, uint64_t key);

  std::map<uint64_t, std::vector<uint64_t>> starts_;  // by file identity: start offsets
};

}  // namespace rec::dbg
