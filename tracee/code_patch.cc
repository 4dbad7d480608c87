#include "code_patch.h"

#include <capstone/capstone.h>

#include <cstring>
#include <memory>

namespace rec {

namespace {

constexpr uint64_t kArithmeticFlags = 0xcd5;  // CF PF AF ZF SF DF OF
constexpr size_t kDataSize = 256;             // expected values, then code

// One decoded instruction, owned.
struct Insn {
  uint64_t address;
  std::vector<uint8_t> bytes;
  bool relativeBranch = false;  // jmp/jcc rel
  bool conditional = false;
  uint64_t target = 0;
  bool ripRelative = false;  // memory operand relative to rip
  uint8_t dispOffset = 0;
  bool endsFlow = false;   // ret, indirect jmp: nothing falls through
  bool forbidden = false;  // cannot run from elsewhere
};

struct CapstoneHandle {
  csh handle = 0;
  bool ok = false;
  CapstoneHandle() {
    ok = cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK;
    if (ok) cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);
  }
  ~CapstoneHandle() {
    if (ok) cs_close(&handle);
  }
};

CapstoneHandle& capstone() {
  static thread_local CapstoneHandle cs;
  return cs;
}

std::vector<Insn> decode(std::span<const uint8_t> code, uint64_t ip, size_t minBytes) {
  CapstoneHandle& cs = capstone();
  std::vector<Insn> out;
  if (!cs.ok) return out;
  const uint8_t* p = code.data();
  size_t size = code.size();
  uint64_t address = ip;
  size_t total = 0;
  cs_insn* insn = cs_malloc(cs.handle);
  while (total < minBytes && cs_disasm_iter(cs.handle, &p, &size, &address, insn)) {
    Insn d;
    d.address = insn->address;
    d.bytes.assign(insn->bytes, insn->bytes + insn->size);
    const cs_detail* detail = insn->detail;
    const cs_x86& x86 = detail->x86;
    for (uint8_t i = 0; i < x86.op_count; ++i)
      if (x86.operands[i].type == X86_OP_MEM && x86.operands[i].mem.base == X86_REG_RIP)
        d.ripRelative = true;
    d.dispOffset = x86.encoding.disp_offset;
    bool jump = cs_insn_group(cs.handle, insn, CS_GRP_JUMP);
    bool relative = cs_insn_group(cs.handle, insn, CS_GRP_BRANCH_RELATIVE);
    switch (insn->id) {
      case X86_INS_LOOP:
      case X86_INS_LOOPE:
      case X86_INS_LOOPNE:
      case X86_INS_JCXZ:
      case X86_INS_JECXZ:
      case X86_INS_JRCXZ:
        d.forbidden = true;
        break;
      default:
        break;
    }
    if (cs_insn_group(cs.handle, insn, CS_GRP_CALL) || cs_insn_group(cs.handle, insn, CS_GRP_INT) ||
        cs_insn_group(cs.handle, insn, CS_GRP_IRET) || insn->id == X86_INS_SYSCALL ||
        insn->id == X86_INS_SYSENTER || insn->id == X86_INS_INT3 || insn->id == X86_INS_UD2)
      d.forbidden = true;
    if (jump && relative) {
      d.relativeBranch = true;
      d.conditional = insn->id != X86_INS_JMP;
      d.target = static_cast<uint64_t>(x86.operands[0].imm);
    } else if (jump || cs_insn_group(cs.handle, insn, CS_GRP_RET)) {
      d.endsFlow = true;  // indirect jmp or ret
    }
    total += insn->size;
    out.push_back(std::move(d));
  }
  cs_free(insn, 1);
  if (total < minBytes) out.clear();
  return out;
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

bool fitsInt32(int64_t v) {
  return v >= INT32_MIN && v <= INT32_MAX;
}

// jmp *0(%rip); .quad target
void absoluteJump(std::vector<uint8_t>& code, uint64_t target) {
  const uint8_t jmp[] = {0xff, 0x25, 0, 0, 0, 0};
  code.insert(code.end(), jmp, jmp + sizeof jmp);
  put64(code, target);
}

// The 16 general registers in x86 encoding order.
uint64_t regByNumber(const user_regs_struct& r, int n) {
  const unsigned long long values[16] = {r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
                                         r.r8,  r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15};
  return values[n];
}

}  // namespace

std::optional<size_t> patchableLength(std::span<const uint8_t> code, uint64_t ip) {
  std::vector<Insn> insns = decode(code, ip, kJumpSize);
  if (insns.empty()) return std::nullopt;
  size_t length = 0;
  for (size_t i = 0; i < insns.size(); ++i) {
    const Insn& d = insns[i];
    bool last = i + 1 == insns.size();
    if (d.forbidden) return std::nullopt;
    if ((d.relativeBranch || d.endsFlow) && !last) return std::nullopt;
    length += d.bytes.size();
  }
  return length;
}

std::optional<Trampoline> buildTrampoline(uint64_t pageAddress, uint64_t ip,
                                          std::span<const uint8_t> code, size_t length,
                                          const user_regs_struct& expected,
                                          std::span<const MemoryCheck> memory) {
  std::vector<Insn> insns = decode(code, ip, length);
  if (insns.empty()) return std::nullopt;
  Trampoline t;
  t.page.assign(kDataSize, 0);
  // Expected values: the 16 registers (rsp as the trampoline sees it, after
  // moving below the red zone and pushing the flags), then the flags.
  constexpr uint64_t kStackShift = 128 + 8;
  for (int n = 0; n < 16; ++n) {
    uint64_t v = regByNumber(expected, n);
    if (n == 4) v -= kStackShift;
    std::memcpy(t.page.data() + n * 8, &v, 8);
  }
  uint64_t flags = expected.eflags & kArithmeticFlags;
  std::memcpy(t.page.data() + 16 * 8, &flags, 8);
  constexpr size_t kMaxMemoryChecks = 8;
  if (memory.size() > kMaxMemoryChecks) memory = memory.first(kMaxMemoryChecks);
  for (size_t i = 0; i < memory.size(); ++i)
    std::memcpy(t.page.data() + (17 + i) * 8, &memory[i].value, 8);

  std::vector<uint8_t> c;  // code, placed at pageAddress + kDataSize
  auto here = [&] { return pageAddress + kDataSize + c.size(); };
  std::vector<size_t> missFixups;  // rel32 fields to point at the miss path
  auto jneMiss = [&] {
    c.push_back(0x0f);
    c.push_back(0x85);
    missFixups.push_back(c.size());
    put32(c, 0);
  };
  // cmp %reg, data(%rip)
  auto cmpReg = [&](int n, uint64_t dataOffset) {
    c.push_back(static_cast<uint8_t>(0x48 | (n >= 8 ? 0x04 : 0)));
    c.push_back(0x39);
    c.push_back(static_cast<uint8_t>(((n & 7) << 3) | 0x05));
    uint64_t next = here() + 4;
    put32(c, static_cast<uint32_t>(static_cast<int64_t>(pageAddress + dataOffset) -
                                   static_cast<int64_t>(next)));
  };
  const uint8_t below[] = {0x48, 0x8d, 0x64, 0x24, 0x80};          // lea -0x80(%rsp),%rsp
  const uint8_t back[] = {0x48, 0x8d, 0xa4, 0x24, 0x80, 0, 0, 0};  // lea 0x80(%rsp),%rsp
  c.insert(c.end(), below, below + sizeof below);
  c.push_back(0x9c);  // pushfq
  // The registers most likely to differ between iterations come first.
  const int order[16] = {0, 1, 2, 6, 7, 8, 9, 10, 11, 3, 5, 12, 13, 14, 15, 4};
  for (int n : order) {
    cmpReg(n, static_cast<uint64_t>(n) * 8);
    jneMiss();
  }
  const uint8_t flagsCheck[] = {0x50,                           // push %rax
                                0x48, 0x8b, 0x44, 0x24, 0x08,   // mov 8(%rsp),%rax
                                0x25, 0xd5, 0x0c, 0x00, 0x00};  // and $0xcd5,%eax
  c.insert(c.end(), flagsCheck, flagsCheck + sizeof flagsCheck);
  cmpReg(0, 16 * 8);
  c.push_back(0x58);  // pop %rax (flags untouched)
  jneMiss();
  for (size_t i = 0; i < memory.size(); ++i) {
    c.push_back(0x50);  // push %rax
    c.push_back(0x48);  // movabs $address,%rax
    c.push_back(0xb8);
    put64(c, memory[i].address);
    const uint8_t load[] = {0x48, 0x8b, 0x00};  // mov (%rax),%rax
    c.insert(c.end(), load, load + sizeof load);
    cmpReg(0, (17 + i) * 8);
    c.push_back(0x58);  // pop %rax
    jneMiss();
  }
  // Match: restore and trap.
  c.push_back(0x9d);  // popfq
  c.insert(c.end(), back, back + sizeof back);
  c.push_back(0xcc);  // int3
  t.trapIp = here();
  // Miss: restore, run the displaced instructions, go on after them.
  size_t miss = c.size();
  for (size_t at : missFixups) {
    int32_t rel = static_cast<int32_t>(miss - (at + 4));
    std::memcpy(c.data() + at, &rel, 4);
  }
  c.push_back(0x9d);
  c.insert(c.end(), back, back + sizeof back);
  bool fallsThrough = true;
  for (const Insn& d : insns) {
    if (d.relativeBranch) {
      uint64_t fallthrough = d.address + d.bytes.size();
      if (d.conditional) {
        // jcc over the fall-through jump to the taken one. The condition is
        // the low nibble of the opcode (0x7X short, 0x0F 0x8X near).
        uint8_t cc = d.bytes[0] == 0x0f ? d.bytes[1] & 0x0f : d.bytes[0] & 0x0f;
        const uint8_t jcc[] = {0x0f, static_cast<uint8_t>(0x80 | cc), 14, 0, 0, 0};
        c.insert(c.end(), jcc, jcc + sizeof jcc);
        absoluteJump(c, fallthrough);
      }
      absoluteJump(c, d.target);
      fallsThrough = false;
      break;
    }
    size_t start = c.size();
    uint64_t newAddress = here();
    c.insert(c.end(), d.bytes.begin(), d.bytes.end());
    if (d.ripRelative) {
      if (!d.dispOffset) return std::nullopt;
      int32_t disp;
      std::memcpy(&disp, d.bytes.data() + d.dispOffset, 4);
      int64_t moved =
          int64_t{disp} + static_cast<int64_t>(d.address) - static_cast<int64_t>(newAddress);
      if (!fitsInt32(moved)) return std::nullopt;
      int32_t newDisp = static_cast<int32_t>(moved);
      std::memcpy(c.data() + start + d.dispOffset, &newDisp, 4);
    }
    if (d.endsFlow) fallsThrough = false;
  }
  if (fallsThrough) absoluteJump(c, ip + length);
  if (kDataSize + c.size() > kTrampolineSize) return std::nullopt;
  t.page.insert(t.page.end(), c.begin(), c.end());

  int64_t rel =
      static_cast<int64_t>(pageAddress + kDataSize) - static_cast<int64_t>(ip + kJumpSize);
  if (!fitsInt32(rel)) return std::nullopt;
  t.jump = {0xe9};
  put32(t.jump, static_cast<uint32_t>(static_cast<int32_t>(rel)));
  while (t.jump.size() < length) t.jump.push_back(0x90);  // never executed
  return t;
}

std::vector<uint64_t> memoryWrittenBy(std::span<const uint8_t> code, uint64_t ip,
                                      const user_regs_struct& regs) {
  CapstoneHandle& cs = capstone();
  std::vector<uint64_t> out;
  if (!cs.ok) return out;
  const uint8_t* p = code.data();
  size_t size = code.size();
  uint64_t address = ip;
  cs_insn* insn = cs_malloc(cs.handle);
  if (cs_disasm_iter(cs.handle, &p, &size, &address, insn)) {
    const cs_x86& x86 = insn->detail->x86;
    auto value = [&](x86_reg r) -> uint64_t {
      switch (r) {
        case X86_REG_RAX:
          return regs.rax;
        case X86_REG_RBX:
          return regs.rbx;
        case X86_REG_RCX:
          return regs.rcx;
        case X86_REG_RDX:
          return regs.rdx;
        case X86_REG_RSI:
          return regs.rsi;
        case X86_REG_RDI:
          return regs.rdi;
        case X86_REG_RBP:
          return regs.rbp;
        case X86_REG_RSP:
          return regs.rsp;
        case X86_REG_R8:
          return regs.r8;
        case X86_REG_R9:
          return regs.r9;
        case X86_REG_R10:
          return regs.r10;
        case X86_REG_R11:
          return regs.r11;
        case X86_REG_R12:
          return regs.r12;
        case X86_REG_R13:
          return regs.r13;
        case X86_REG_R14:
          return regs.r14;
        case X86_REG_R15:
          return regs.r15;
        case X86_REG_RIP:
          return ip + insn->size;
        default:
          return 0;
      }
    };
    for (uint8_t i = 0; i < x86.op_count; ++i) {
      const cs_x86_op& op = x86.operands[i];
      if (op.type != X86_OP_MEM || !(op.access & CS_AC_WRITE)) continue;
      uint64_t a = value(op.mem.base) + value(op.mem.index) * static_cast<uint64_t>(op.mem.scale) +
                   static_cast<uint64_t>(op.mem.disp);
      if (op.mem.segment == X86_REG_FS) a += regs.fs_base;
      if (op.mem.segment == X86_REG_GS) a += regs.gs_base;
      out.push_back(a & ~uint64_t{7});  // the aligned word holding it
    }
  }
  cs_free(insn, 1);
  return out;
}

size_t instructionLength(std::span<const uint8_t> code, uint64_t ip) {
  std::vector<Insn> insns = decode(code, ip, 1);
  return insns.empty() ? 0 : insns[0].bytes.size();
}

}  // namespace rec
