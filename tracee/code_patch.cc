#include "code_patch.h"

#include <capstone/capstone.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>

namespace rec {

namespace {

constexpr uint64_t kArithmeticFlags = 0xcd5;  // CF PF AF ZF SF DF OF

// At most this many memory words are checked in the program.
constexpr size_t kMaxMemoryChecks = kMaxPointWords;
// The data page: what the full check compares with (the pre-check's values
// are immediates in its code), and its own stack.
constexpr size_t kExpectedRegs = 0;        // 16 registers, x86 encoding order (rsp is read)
constexpr size_t kExpectedFlags = 16 * 8;  // eflags & kArithmeticFlags
constexpr size_t kSavedRsp = 17 * 8;       // the program's rsp
constexpr size_t kSavedRcx = kSavedRsp + 8;  // the pre-check's scratch registers
constexpr size_t kSavedRdx = kSavedRcx + 8;
constexpr size_t kExpectedStack = 512;  // up to kPointStackBytes of the program's stack
constexpr size_t kExpectedXmm = kExpectedStack + kPointStackBytes;  // xmm0-15 as recorded
constexpr size_t kLiveXmm = kExpectedXmm + kXmmBytes;               // the program's, stored
constexpr size_t kStackTop = kPageSize;                             // the check's own stack
static_assert(kSavedRdx + 8 <= kExpectedStack);
static_assert(kLiveXmm + kXmmBytes + 512 <= kStackTop);

// One decoded instruction, owned.
struct Insn {
  uint64_t address = 0;
  std::vector<uint8_t> bytes;
  bool relativeBranch = false;  // jmp/jcc rel
  bool conditional = false;
  uint8_t condition = 0;  // jcc: the low nibble of its opcode
  uint64_t target = 0;
  bool ripRelative = false;  // memory operand relative to rip
  uint8_t dispOffset = 0;
  bool endsFlow = false;  // jmp, ret, indirect jmp: nothing falls through
  bool loop = false;      // `loop rel8` on rcx: copied as a decrement and a rel32 jump
  bool stop = false;      // cannot run from a copy: depends on its address, or traps
  bool padding = false;   // nop (any length) or int3: what compilers put between functions
  size_t size() const { return bytes.size(); }
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

// Decodes `code`, whose first byte is at `address`, one instruction at a
// time, in capstone's instruction storage (freed with it).
class Disassembly {
 public:
  Disassembly(const CapstoneHandle& cs, std::span<const uint8_t> code, uint64_t address)
      : handle_(cs.handle),
        next_(code.data()),
        left_(code.size()),
        address_(address),
        insn_(cs.ok ? cs_malloc(cs.handle) : nullptr) {}
  ~Disassembly() {
    if (insn_) cs_free(insn_, 1);
  }
  Disassembly(const Disassembly&) = delete;
  Disassembly& operator=(const Disassembly&) = delete;

  // The next instruction; nullptr at the end, or where the bytes decode to none.
  const cs_insn* next() {
    return insn_ && cs_disasm_iter(handle_, &next_, &left_, &address_, insn_) ? insn_ : nullptr;
  }

 private:
  csh handle_;
  const uint8_t* next_;
  size_t left_;
  uint64_t address_;
  cs_insn* insn_;
};

// The instruction at `address`, from `code` which starts at `codeStart`.
std::optional<Insn> decodeAt(std::span<const uint8_t> code, uint64_t codeStart, uint64_t address) {
  CapstoneHandle& cs = capstone();
  if (!cs.ok || address < codeStart || address >= codeStart + code.size()) return std::nullopt;
  Disassembly disassembly(cs, code.subspan(address - codeStart), address);
  std::optional<Insn> out;
  if (const cs_insn* insn = disassembly.next()) {
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
    // `loop` (rcx form) has only a rel8 target; its copy becomes
    // instructions that reach anywhere (see copy in buildTrampoline).
    d.loop = insn->id == X86_INS_LOOP && d.bytes.size() == 2 && d.bytes[0] == 0xe2;
    d.padding = insn->id == X86_INS_NOP || insn->id == X86_INS_INT3;
    switch (d.loop ? unsigned{X86_INS_INVALID} : insn->id) {
      case X86_INS_LOOP:
      case X86_INS_LOOPE:
      case X86_INS_LOOPNE:
      case X86_INS_JCXZ:
      case X86_INS_JECXZ:
      case X86_INS_JRCXZ:
      case X86_INS_SYSCALL:
      case X86_INS_SYSENTER:
      case X86_INS_INT3:
      case X86_INS_UD2:
      case X86_INS_HLT:
      case X86_INS_RDTSC:
      case X86_INS_RDTSCP:
      case X86_INS_XBEGIN:
        d.stop = true;
        break;
      default:
        break;
    }
    if (cs_insn_group(cs.handle, insn, CS_GRP_CALL) || cs_insn_group(cs.handle, insn, CS_GRP_INT) ||
        cs_insn_group(cs.handle, insn, CS_GRP_IRET))
      d.stop = true;
    if (d.loop) {
      d.relativeBranch = true;
      d.conditional = true;
      d.target = static_cast<uint64_t>(x86.operands[0].imm);
    } else if (jump && relative) {
      d.relativeBranch = true;
      d.conditional = insn->id != X86_INS_JMP;
      d.condition = x86.opcode[0] == 0x0f ? x86.opcode[1] & 0x0f : x86.opcode[0] & 0x0f;
      d.target = static_cast<uint64_t>(x86.operands[0].imm);
      d.endsFlow = !d.conditional;
    } else if (jump || cs_insn_group(cs.handle, insn, CS_GRP_RET)) {
      d.endsFlow = true;  // indirect jmp or ret
    }
    if (d.ripRelative && !d.dispOffset) d.stop = true;  // cannot be moved
    out = std::move(d);
  }
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

// The 16 general registers in x86 encoding order.
uint64_t regByNumber(const user_regs_struct& r, int n) {
  const unsigned long long values[16] = {r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
                                         r.r8,  r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15};
  return values[n];
}

// Machine code at a known address, with labels for forward branches.
class Assembler {
 public:
  explicit Assembler(uint64_t base) : base_(base) {}
  uint64_t here() const { return base_ + out_.size(); }
  std::vector<uint8_t>& bytes() { return out_; }

  int label() {
    labels_.push_back(0);
    return static_cast<int>(labels_.size() - 1);
  }
  void bind(int l) { labels_[l] = here(); }
  uint64_t address(int l) const { return labels_[l]; }

  void emit(std::initializer_list<uint8_t> b) { out_.insert(out_.end(), b); }
  void emit(const std::vector<uint8_t>& b) { out_.insert(out_.end(), b.begin(), b.end()); }
  // A rel32 field to `l`, measured from the end of the field (all uses here
  // end their instruction with it).
  void rel32(int l) {
    fixups_.push_back({out_.size(), l});
    put32(out_, 0);
  }
  // disp32 to an absolute address, ending the instruction.
  bool ripDisp(uint64_t target) {
    int64_t d = static_cast<int64_t>(target) - static_cast<int64_t>(here() + 4);
    if (!fitsInt32(d)) return false;
    put32(out_, static_cast<uint32_t>(d));
    return true;
  }
  void jmp(int l) {
    emit({0xe9});
    rel32(l);
  }
  void jcc(uint8_t condition, int l) {
    emit({0x0f, static_cast<uint8_t>(0x80 | condition)});
    rel32(l);
  }
  // jmp *0(%rip); .quad target
  void absoluteJump(uint64_t target) {
    emit({0xff, 0x25, 0, 0, 0, 0});
    put64(out_, target);
  }
  bool resolve() {
    for (auto [at, l] : fixups_) {
      if (!labels_[l]) return false;
      int64_t d = static_cast<int64_t>(labels_[l]) - static_cast<int64_t>(base_ + at + 4);
      if (!fitsInt32(d)) return false;
      uint32_t v = static_cast<uint32_t>(d);
      std::memcpy(out_.data() + at, &v, 4);
    }
    return true;
  }

 private:
  uint64_t base_;
  std::vector<uint8_t> out_;
  std::vector<uint64_t> labels_;
  std::vector<std::pair<size_t, int>> fixups_;
};

constexpr uint8_t kJne = 0x5;

// The general registers but rsp, those most likely to differ first (x86
// numbering).
constexpr int kCheckOrder[15] = {0, 1, 2, 6, 7, 8, 9, 10, 11, 3, 5, 12, 13, 14, 15};

// A load the check makes of the program's memory, [start, end), and the
// label a fault there goes on at (rec moves the task: not the program's fault).
struct LoadSite {
  uint64_t start, end;
  int miss;
};

// The in-process check: a flag-free pre-check of the general registers
// but rsp and of the memory words, then, on its own stack, rsp, the flags,
// xmm0-15 and the stack against the data page. Falls into int3 on a
// match, else jumps to `fastMiss` (the pre-check missed: rcx and rdx to
// restore) or `miss` (the full check missed).
bool emitCheck(Assembler& a, uint64_t data, const uint64_t (&expectedRegs)[16],
               std::span<const MemoryCheck> memory, bool xmm, size_t stackQwords, int fastMiss,
               int miss, int stackFaultMiss, std::vector<LoadSite>& loads) {
  bool ok = true;
  // Pre-check without touching the flags: most passes of a loop differ in
  // a general register or a word it writes, and pushfq/popfq cost more than
  // the loop's body. Each value V: rcx = V - expected (lea), jrcxz on
  // equality. rcx and rdx are borrowed and put back.
  a.emit({0x48, 0x89, 0x0d});  // mov %rcx, savedRcx(%rip)
  ok &= a.ripDisp(data + kSavedRcx);
  a.emit({0x48, 0x89, 0x15});  // mov %rdx, savedRdx(%rip)
  ok &= a.ripDisp(data + kSavedRdx);
  auto missUnlessZero = [&] {
    a.emit({0xe3, 0x05});  // jrcxz over the jump
    a.jmp(fastMiss);
  };
  for (int n : kCheckOrder) {
    if (n == 1) continue;  // rcx below
    a.emit({0x48, 0xb9});            // movabs $-expected, %rcx
    put64(a.bytes(), uint64_t{0} - expectedRegs[n]);
    // lea (%rcx,R,1), %rcx
    a.emit({static_cast<uint8_t>(0x48 | (n >= 8 ? 0x02 : 0)), 0x8d, 0x0c,
            static_cast<uint8_t>(((n & 7) << 3) | 0x01)});
    missUnlessZero();
  }
  // rcx itself, from savedRcx.
  a.emit({0x48, 0x8b, 0x15});  // mov savedRcx(%rip), %rdx
  ok &= a.ripDisp(data + kSavedRcx);
  a.emit({0x48, 0xb9});  // movabs $-expected, %rcx
  put64(a.bytes(), uint64_t{0} - expectedRegs[1]);
  a.emit({0x48, 0x8d, 0x0c, 0x11});  // lea (%rcx,%rdx,1), %rcx
  missUnlessZero();
  for (const MemoryCheck& word : memory) {
    a.emit({0x48, 0xb9});  // movabs $address, %rcx
    put64(a.bytes(), word.address);
    uint64_t load = a.here();
    a.emit({0x48, 0x8b, 0x09});  // mov (%rcx), %rcx
    loads.push_back({load, a.here(), fastMiss});
    a.emit({0x48, 0xba});  // movabs $-expected, %rdx
    put64(a.bytes(), uint64_t{0} - word.value);
    a.emit({0x48, 0x8d, 0x0c, 0x11});  // lea (%rcx,%rdx,1), %rcx
    missUnlessZero();
  }
  a.emit({0x48, 0x8b, 0x0d});  // mov savedRcx(%rip), %rcx
  ok &= a.ripDisp(data + kSavedRcx);
  a.emit({0x48, 0x8b, 0x15});  // mov savedRdx(%rip), %rdx
  ok &= a.ripDisp(data + kSavedRdx);
  // The full check, on its own stack.
  a.emit({0x48, 0x89, 0x25});  // mov %rsp, saved(%rip)
  ok &= a.ripDisp(data + kSavedRsp);
  a.emit({0x48, 0x8d, 0x25});  // lea stackTop(%rip), %rsp
  ok &= a.ripDisp(data + kStackTop);
  a.emit({0x9c});  // pushfq
  // cmp %reg, expected(%rip); the registers most likely to differ first.
  auto cmpReg = [&](int n, uint64_t at) {
    a.emit({static_cast<uint8_t>(0x48 | (n >= 8 ? 0x04 : 0)), 0x39,
            static_cast<uint8_t>(((n & 7) << 3) | 0x05)});
    ok &= a.ripDisp(at);
  };
  // The other general registers and the words passed the pre-check.
  // The program's rsp, as saved.
  a.emit({0x50, 0x48, 0x8b, 0x05});  // push %rax; mov saved(%rip), %rax
  ok &= a.ripDisp(data + kSavedRsp);
  cmpReg(0, data + kExpectedRegs + 4 * 8);
  a.emit({0x58});  // pop %rax (flags untouched)
  a.jcc(kJne, miss);
  a.emit({0x50,                            // push %rax
          0x48, 0x8b, 0x44, 0x24, 0x08,    // mov 8(%rsp),%rax: the flags pushed
          0x25, 0xd5, 0x0c, 0x00, 0x00});  // and $0xcd5,%eax
  cmpReg(0, data + kExpectedFlags);
  a.emit({0x58});
  a.jcc(kJne, miss);
  if (xmm) {
    // The vector registers: stored into the data page (nothing of the
    // program's changes), then compared whole with the recorded ones.
    a.emit({0x56, 0x57, 0x51});  // push %rsi; push %rdi; push %rcx
    a.emit({0x48, 0x8d, 0x35});  // lea live(%rip), %rsi
    ok &= a.ripDisp(data + kLiveXmm);
    for (uint8_t n = 0; n < 16; ++n) {
      a.emit({0xf3});                        // movdqu %xmmN, 16*N(%rsi)
      if (n >= 8) a.emit({0x44});            // REX.R
      a.emit({0x0f, 0x7f, static_cast<uint8_t>(0x86 | ((n & 7) << 3))});
      put32(a.bytes(), n * 16u);
    }
    a.emit({0x48, 0x8d, 0x3d});  // lea expected(%rip), %rdi
    ok &= a.ripDisp(data + kExpectedXmm);
    a.emit({0xb9});  // mov $qwords, %ecx
    put32(a.bytes(), static_cast<uint32_t>(kXmmBytes / 8));
    a.emit({0xfc});              // cld (popfq gives the program its direction flag back)
    a.emit({0xf3, 0x48, 0xa7});  // repe cmpsq
    a.emit({0x59, 0x5f, 0x5e});  // pop %rcx; pop %rdi; pop %rsi (flags untouched)
    a.jcc(kJne, miss);
  }
  if (stackQwords) {
    a.emit({0x56, 0x57, 0x51});  // push %rsi; push %rdi; push %rcx
    a.emit({0x48, 0x8b, 0x35});  // mov saved(%rip), %rsi: the program's rsp
    ok &= a.ripDisp(data + kSavedRsp);
    a.emit({0x48, 0x8d, 0x3d});  // lea expected(%rip), %rdi
    ok &= a.ripDisp(data + kExpectedStack);
    a.emit({0xb9});  // mov $qwords, %ecx
    put32(a.bytes(), static_cast<uint32_t>(stackQwords));
    a.emit({0xfc});  // cld (popfq gives the program its direction flag back)
    uint64_t load = a.here();
    a.emit({0xf3, 0x48, 0xa7});  // repe cmpsq
    loads.push_back({load, a.here(), stackFaultMiss});
    a.emit({0x59, 0x5f, 0x5e});  // pop %rcx; pop %rdi; pop %rsi (flags untouched)
    a.jcc(kJne, miss);
  }
  a.emit({0x9d});              // popfq
  a.emit({0x48, 0x8b, 0x25});  // mov saved(%rip), %rsp
  ok &= a.ripDisp(data + kSavedRsp);
  a.emit({0xcc});  // int3
  return ok;
}

}  // namespace

bool jumpPatchable(std::span<const uint8_t> code, uint64_t ip) {
  auto d = decodeAt(code, ip, ip);
  return d && !d->stop && d->size() >= kJumpSize;
}

size_t repStringLength(std::span<const uint8_t> code) {
  bool rep = false;
  size_t i = 0;
  // Legacy prefixes in any order, then at most one REX byte.
  for (; i < code.size(); ++i) {
    uint8_t b = code[i];
    if (b == 0xf2 || b == 0xf3)
      rep = true;
    else if (b != 0x66 && b != 0x67 && b != 0x26 && b != 0x2e && b != 0x36 && b != 0x3e &&
             b != 0x64 && b != 0x65)
      break;
  }
  if (i < code.size() && (code[i] & 0xf0) == 0x40) ++i;
  if (!rep || i >= code.size()) return 0;
  uint8_t op = code[i];
  bool string = (op >= 0xa4 && op <= 0xa7) ||
                (op >= 0xaa && op <= 0xaf) ||  // movs cmps stos lods scas
                (op >= 0x6c && op <= 0x6f);    // ins outs
  return string ? i + 1 : 0;
}

bool relocatable(std::span<const uint8_t> code, uint64_t ip) {
  auto d = decodeAt(code, ip, ip);
  return d && !d->stop;
}

std::optional<uint64_t> Trampoline::originalOf(uint64_t copyIp) const {
  for (auto [copy, original] : moved)
    if (copy == copyIp) return original;
  return std::nullopt;
}

std::optional<uint64_t> Trampoline::copyOf(uint64_t original) const {
  for (auto [copy, from] : moved)
    if (from == original) return copy;
  return std::nullopt;
}

std::optional<uint64_t> Trampoline::faultMissFor(uint64_t ip) const {
  for (const FaultSite& site : loads)
    if (ip >= site.start && ip < site.end) return site.missIp;
  return std::nullopt;
}

std::optional<Trampoline> buildTrampoline(uint64_t pageAddress, uint64_t ip,
                                          std::span<const uint8_t> code, uint64_t codeStart,
                                          PointEntry entry, const user_regs_struct& expected,
                                          std::span<const MemoryCheck> memory,
                                          std::span<const uint8_t> stack,
                                          std::span<const uint8_t> xmm, bool jumpOver) {
  // The code to copy: [regionStart, ip) before the check, [ip, regionEnd) after.
  std::vector<Insn> before, after;
  uint64_t regionEnd = ip;
  bool fallsOut = true;  // the last copied instruction falls through to regionEnd
  auto first = decodeAt(code, codeStart, ip);
  if (!first || first->stop) return std::nullopt;
  if (entry == PointEntry::Jump) {
    if (first->size() < kJumpSize) return std::nullopt;
    after.push_back(*first);
    regionEnd = ip + first->size();
    fallsOut = !first->endsFlow;
  } else {
    // Forward from ip until something that cannot be copied, the end of
    // the flow, or the window.
    uint64_t at = ip;
    while (at < ip + kRegionForward) {
      auto d = decodeAt(code, codeStart, at);
      if (!d || d->stop) break;
      at += d->size();
      after.push_back(*d);
      if (d->endsFlow) break;
    }
    regionEnd = at;
    fallsOut = !after.back().endsFlow;
    // Backward to the start of the loop ip is in, if it is one: the earliest
    // branch target before ip from which decoding reaches ip exactly and
    // copies nothing that cannot run elsewhere (a nearer target when a call
    // lies between: an outer loop's start may not do, its inner loop's will).
    uint64_t regionStart = ip;
    for (int round = 0; round < 4; ++round) {
      std::set<uint64_t> targets;
      auto consider = [&](const Insn& d) {
        if (d.relativeBranch && d.target < regionStart && d.target + kRegionBack >= ip &&
            d.target >= codeStart)
          targets.insert(d.target);
      };
      for (const Insn& d : before) consider(d);
      for (const Insn& d : after) consider(d);
      std::vector<Insn> more;
      uint64_t earliest = regionStart;
      for (uint64_t target : targets) {
        more.clear();
        uint64_t a = target;
        bool ok = true;
        while (a < regionStart) {
          auto d = decodeAt(code, codeStart, a);
          if (!d || d->stop) {
            ok = false;
            break;
          }
          a += d->size();
          more.push_back(*d);
        }
        if (ok && a == regionStart) {
          earliest = target;
          break;
        }
      }
      if (earliest == regionStart) break;
      more.insert(more.end(), before.begin(), before.end());
      before = std::move(more);
      regionStart = earliest;
    }
  }

  Trampoline t;
  uint64_t data = pageAddress + kPageSize;
  t.data.assign(kPageSize, 0);
  for (int n = 0; n < 16; ++n) {
    uint64_t v = regByNumber(expected, n);
    std::memcpy(t.data.data() + kExpectedRegs + n * 8, &v, 8);
  }
  uint64_t flags = expected.eflags & kArithmeticFlags;
  std::memcpy(t.data.data() + kExpectedFlags, &flags, 8);
  if (memory.size() > kMaxMemoryChecks) memory = memory.first(kMaxMemoryChecks);
  const size_t stackQwords = std::min(stack.size(), kPointStackBytes) / 8;
  if (stackQwords) std::memcpy(t.data.data() + kExpectedStack, stack.data(), stackQwords * 8);
  const bool checkXmm = xmm.size() == kXmmBytes;
  if (checkXmm) std::memcpy(t.data.data() + kExpectedXmm, xmm.data(), kXmmBytes);

  Assembler a(pageAddress);
  int check = a.label(), miss = a.label(), fastMiss = a.label(), stackFaultMiss = a.label();
  std::map<uint64_t, int> copyOf;  // original address -> label of its copy
  for (const Insn& d : before) copyOf[d.address] = a.label();
  for (const Insn& d : after) copyOf[d.address] = a.label();
  std::map<uint64_t, int> stubs;  // targets outside the copy -> absolute jumps
  auto targetLabel = [&](uint64_t target) {
    if (target == ip) return check;
    if (auto it = copyOf.find(target); it != copyOf.end()) return it->second;
    auto [it, fresh] = stubs.try_emplace(target, 0);
    if (fresh) it->second = a.label();
    return it->second;
  };
  auto copy = [&](const Insn& d) -> bool {
    a.bind(copyOf[d.address]);
    t.moved.push_back({a.here(), d.address});
    if (d.loop) {
      // lea -1(%rcx),%rcx (rcx counts down, the flags stay, as under
      // `loop`); jrcxz over the jump; jmp target.
      a.emit({0x48, 0x8d, 0x49, 0xff, 0xe3, 0x05});
      a.jmp(targetLabel(d.target));
      return true;
    }
    if (d.relativeBranch) {
      if (d.conditional)
        a.jcc(d.condition, targetLabel(d.target));
      else
        a.jmp(targetLabel(d.target));
      return true;
    }
    size_t start = a.bytes().size();
    uint64_t newAddress = a.here();
    a.emit(d.bytes);
    if (d.ripRelative) {
      int32_t disp;
      std::memcpy(&disp, d.bytes.data() + d.dispOffset, 4);
      int64_t moved =
          int64_t{disp} + static_cast<int64_t>(d.address) - static_cast<int64_t>(newAddress);
      if (!fitsInt32(moved)) return false;
      int32_t newDisp = static_cast<int32_t>(moved);
      std::memcpy(a.bytes().data() + start + d.dispOffset, &newDisp, 4);
    }
    return true;
  };

  bool ok = true;
  for (const Insn& d : before) ok &= copy(d);
  a.bind(check);
  t.checkIp = a.here();
  uint64_t expectedRegs[16];
  for (int n = 0; n < 16; ++n) expectedRegs[n] = regByNumber(expected, n);
  std::vector<LoadSite> loads;
  ok &= emitCheck(a, data, expectedRegs, memory, checkXmm, stackQwords, fastMiss, miss,
                  stackFaultMiss, loads);
  t.trapIp = a.here();
  t.resumeIp = a.here();  // X's copy follows the int3
  for (const Insn& d : after) ok &= copy(d);
  if (fallsOut) a.absoluteJump(regionEnd);
  // Miss: the program's flags and stack back, then X's instructions.
  a.bind(miss);
  a.emit({0x9d, 0x48, 0x8b, 0x25});  // popfq; mov saved(%rip), %rsp
  ok &= a.ripDisp(data + kSavedRsp);
  a.jmp(copyOf[ip]);
  a.bind(fastMiss);
  a.emit({0x48, 0x8b, 0x0d});  // mov savedRcx(%rip), %rcx
  ok &= a.ripDisp(data + kSavedRcx);
  a.emit({0x48, 0x8b, 0x15});  // mov savedRdx(%rip), %rdx
  ok &= a.ripDisp(data + kSavedRdx);
  a.jmp(copyOf[ip]);
  // The stack comparison faulted: %rsi, %rdi, %rcx are on the stack.
  a.bind(stackFaultMiss);
  a.emit({0x59, 0x5f, 0x5e});
  a.jmp(miss);
  for (auto [target, l] : stubs) {
    a.bind(l);
    a.absoluteJump(target);
  }
  if (!ok || !a.resolve() || a.bytes().size() > kPageSize) return std::nullopt;
  // jumpOver: the instructions the jump's bytes reach, [ip, coverEnd).
  uint64_t coverEnd = ip;
  if (entry == PointEntry::DebugRegister && jumpOver) {
    std::set<uint64_t> starts;
    for (const Insn& d : after) {
      if (d.address >= ip + kJumpSize) break;
      starts.insert(d.address);
      coverEnd = d.address + d.size();
    }
    // All of them copied, and the copy falls out (or jumps out) past them
    // only: stubs are the copy's exits.
    bool fits = coverEnd >= ip + kJumpSize && regionEnd >= coverEnd;
    for (const auto& [target, l] : stubs) fits &= target <= ip || target >= coverEnd;
    // No branch of the copy into the middle of one of them.
    for (const std::vector<Insn>* list : {&before, &after})
      for (const Insn& d : *list)
        if (d.relativeBranch && d.target > ip && d.target < coverEnd) fits &= starts.count(d.target) > 0;
    if (fits) {
      for (uint64_t start : starts)
        if (start != ip) t.guards.push_back(start);
    } else {
      coverEnd = ip;
    }
  }
  for (const LoadSite& load : loads) t.loads.push_back({load.start, load.end, a.address(load.miss)});
  t.code = std::move(a.bytes());

  if (entry == PointEntry::Jump) {
    int64_t rel = static_cast<int64_t>(t.checkIp) - static_cast<int64_t>(ip + kJumpSize);
    if (!fitsInt32(rel)) return std::nullopt;
    t.jump = {0xe9};
    put32(t.jump, static_cast<uint32_t>(static_cast<int32_t>(rel)));
    while (t.jump.size() < first->size()) t.jump.push_back(0x90);  // never executed
  } else if (coverEnd > ip) {
    int64_t rel = static_cast<int64_t>(t.checkIp) - static_cast<int64_t>(ip + kJumpSize);
    if (fitsInt32(rel)) {
      t.jump = {0xe9};
      put32(t.jump, static_cast<uint32_t>(static_cast<int32_t>(rel)));
      // The rest of the last instruction covered: reached only by a jump into
      // the middle of an instruction, which then traps instead of sliding on.
      while (t.jump.size() < coverEnd - ip) t.jump.push_back(0xcc);
    } else {
      t.guards.clear();
    }
  }
  return t;
}

std::vector<uint64_t> memoryWrittenBy(std::span<const uint8_t> code, uint64_t ip,
                                      const user_regs_struct& regs) {
  CapstoneHandle& cs = capstone();
  std::vector<uint64_t> out;
  if (!cs.ok) return out;
  Disassembly disassembly(cs, code, ip);
  if (const cs_insn* insn = disassembly.next()) {
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
  return out;
}

std::optional<std::vector<uint8_t>> moveCode(std::span<const uint8_t> code, uint64_t ip,
                                             size_t minLength, uint64_t to) {
  std::vector<uint8_t> out;
  while (out.size() < minLength) {
    const uint64_t at = ip + out.size();
    auto d = decodeAt(code, ip, at);
    if (!d || d->stop || d->relativeBranch || d->endsFlow || d->loop) return std::nullopt;
    std::vector<uint8_t> bytes = d->bytes;
    if (d->ripRelative) {
      if (!d->dispOffset || d->dispOffset + 4u > bytes.size()) return std::nullopt;
      int32_t disp = 0;
      std::memcpy(&disp, bytes.data() + d->dispOffset, 4);
      const int64_t moved = int64_t{disp} + static_cast<int64_t>(at) -
                            static_cast<int64_t>(to + out.size());
      if (!fitsInt32(moved)) return std::nullopt;
      const int32_t v = static_cast<int32_t>(moved);
      std::memcpy(bytes.data() + d->dispOffset, &v, 4);
    }
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  return out;
}

std::vector<uint64_t> branchTargets(std::span<const uint8_t> code, uint64_t ip) {
  std::vector<uint64_t> out;
  CapstoneHandle& cs = capstone();
  if (!cs.ok) return out;
  Disassembly disassembly(cs, code, ip);
  while (const cs_insn* insn = disassembly.next()) {
    const cs_x86& x86 = insn->detail->x86;
    const bool branch = cs_insn_group(cs.handle, insn, CS_GRP_BRANCH_RELATIVE) ||
                        (cs_insn_group(cs.handle, insn, CS_GRP_CALL) && x86.op_count == 1 &&
                         x86.operands[0].type == X86_OP_IMM);
    if (branch && x86.op_count >= 1 && x86.operands[0].type == X86_OP_IMM)
      out.push_back(static_cast<uint64_t>(x86.operands[0].imm));
  }
  return out;
}

size_t instructionLength(std::span<const uint8_t> code, uint64_t ip) {
  auto d = decodeAt(code, ip, ip);
  return d ? d->size() : 0;
}

size_t paddingLength(std::span<const uint8_t> code, uint64_t ip) {
  auto d = decodeAt(code, ip, ip);
  return d && d->padding ? d->size() : 0;
}

}  // namespace rec
