#include "predecessors.h"

#include <capstone/capstone.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>

#include "file_mapping.h"
#include "process_maps.h"
#include "rdtsc_sites.h"

namespace rec::dbg {

namespace {

constexpr uint64_t kMaxFunctionBytes = 256 << 10;

struct Capstone {
  csh handle = 0;
  bool ok = false;
  Capstone() {
    ok = cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK;
    if (ok) cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);
  }
  ~Capstone() {
    if (ok) cs_close(&handle);
  }
};

Capstone& capstone() {
  static Capstone cs;
  return cs;
}

}  // namespace

const std::vector<uint64_t>& CodeAnalyzer::startsOf(const std::string& mapFile, uint64_t key) {
  auto it = starts_.find(key);
  if (it != starts_.end()) return it->second;
  std::vector<uint64_t> starts;
  // Unreadable: no function boundaries known there.
  FileMapping file = FileMapping::open(mapFile);
  if (!file.empty()) starts = functionStartOffsets(file.u8());
  return starts_[key] = std::move(starts);
}

std::optional<std::pair<uint64_t, uint64_t>> CodeAnalyzer::functionAround(Task& task, uint64_t ip) {
  for (const auto& m : readMaps(task.tid())) {
    if (ip < m.start || ip >= m.end || !(m.prot & 1 /*PROT_READ*/)) continue;
    if (m.inode == 0) return std::nullopt;
    // The mapped file itself, whatever its name (a memfd of the trace's
    // copy, or the original).
    std::string mapFile = fmt::format("/proc/{}/map_files/{:x}-{:x}", task.tid(), m.start, m.end);
    const auto& starts = startsOf(mapFile, m.inode ^ (m.offset << 1));
    uint64_t offset = ip - m.start + m.offset;
    auto next = std::upper_bound(starts.begin(), starts.end(), offset);
    if (next == starts.begin()) return std::nullopt;
    uint64_t startOffset = *(next - 1);
    if (startOffset < m.offset) return std::nullopt;
    uint64_t start = m.start + (startOffset - m.offset);
    uint64_t end = next == starts.end() ? m.end : std::min(m.end, m.start + (*next - m.offset));
    if (end - start > kMaxFunctionBytes) end = start + kMaxFunctionBytes;
    if (ip < start || ip >= end) return std::nullopt;
    return std::make_pair(start, end);
  }
  return std::nullopt;
}

std::vector<CodeAnalyzer::Insn> CodeAnalyzer::decode(Task& task, uint64_t start, uint64_t end) {
  std::vector<Insn> out;
  Capstone& cs = capstone();
  if (!cs.ok || end <= start) return out;
  std::vector<uint8_t> code(end - start);
  code.resize(task.read(start, code.data(), code.size()));
  const uint8_t* p = code.data();
  size_t size = code.size();
  uint64_t address = start;
  cs_insn* insn = cs_malloc(cs.handle);
  while (size > 0) {
    if (!cs_disasm_iter(cs.handle, &p, &size, &address, insn)) {
      // Data or padding: skip a byte and resynchronise.
      ++p;
      --size;
      ++address;
      continue;
    }
    Insn d{};
    d.address = insn->address;
    d.size = static_cast<uint8_t>(insn->size);
    const cs_x86& x86 = insn->detail->x86;
    bool jump = cs_insn_group(cs.handle, insn, CS_GRP_JUMP);
    d.isCall = cs_insn_group(cs.handle, insn, CS_GRP_CALL);
    d.isRet = cs_insn_group(cs.handle, insn, CS_GRP_RET);
    bool unconditional = insn->id == X86_INS_JMP || insn->id == X86_INS_LJMP;
    d.fallsThrough =
        !(unconditional || d.isRet || insn->id == X86_INS_UD2 || insn->id == X86_INS_HLT);
    if ((jump || d.isCall) && x86.op_count == 1) {
      const cs_x86_op& op = x86.operands[0];
      if (op.type == X86_OP_IMM) d.target = static_cast<uint64_t>(op.imm);
      if (op.type == X86_OP_MEM && op.mem.base == X86_REG_RIP && op.mem.index == X86_REG_INVALID)
        d.ripPointer = insn->address + insn->size + static_cast<uint64_t>(op.mem.disp);
    }
    out.push_back(d);
  }
  cs_free(insn, 1);
  return out;
}

std::optional<uint64_t> CodeAnalyzer::instructionBefore(Task& task, uint64_t ip) {
  auto fn = functionAround(task, ip);
  if (!fn) return std::nullopt;
  for (const Insn& i : decode(task, fn->first, ip))
    if (i.address + i.size == ip) return i.address;
  return std::nullopt;
}

std::set<uint64_t> CodeAnalyzer::predecessorCandidates(Task& task, uint64_t ip,
                                                       std::optional<uint64_t> returnAddress) {
  std::set<uint64_t> out;
  auto fn = functionAround(task, ip);
  if (!fn) return out;
  auto insns = decode(task, fn->first, fn->second);
  const Insn* before = nullptr;
  for (const Insn& i : insns) {
    if (i.address + i.size == ip) before = &i;
    if (i.target && *i.target == ip && !i.isCall) out.insert(i.address);
  }
  if (before && before->fallsThrough && !before->isCall) out.insert(before->address);
  if (before && before->isCall) {
    // ip is where a call returns: the callee's `ret`s ran just before.
    std::optional<uint64_t> callee = before->target;
    if (callee) {
      // Through a PLT stub: `[endbr64;] [bnd] jmp qword [rip + GOT]`.
      auto stub = decode(task, *callee, *callee + 16);
      for (const Insn& i : stub) {
        if (i.ripPointer && !i.fallsThrough) {
          uint64_t real = 0;
          if (task.read(*i.ripPointer, &real, 8) == 8) callee = real;
          break;
        }
        if (i.size != 4) break;  // only endbr64 may come first
      }
      if (auto target = functionAround(task, *callee))
        for (const Insn& i : decode(task, target->first, target->second))
          if (i.isRet) out.insert(i.address);
    }
  }
  if (ip == fn->first && returnAddress) {
    // A function's first instruction: the call that came here.
    if (auto caller = instructionBefore(task, *returnAddress)) out.insert(*caller);
  }
  out.erase(ip);
  return out;
}

}  // namespace rec::dbg
