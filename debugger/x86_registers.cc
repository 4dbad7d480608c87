#include "x86_registers.h"

#include <elf.h>
#include <fmt/format.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "gdb_protocol.h"

namespace rec::gdb {

namespace {

// Register numbers, in the order of the target description.
constexpr int kFirstSt = 24;   // st0-st7
constexpr int kFctrl = 32;     // fctrl fstat ftag fiseg fioff foseg fooff fop
constexpr int kFirstXmm = 40;  // xmm0-xmm15
constexpr int kMxcsr = 56;
constexpr int kOrigRax = 57;
constexpr int kFsBase = 58;
constexpr int kGsBase = 59;
constexpr int kFirstYmmHigh = 60;  // ymm0h-ymm15h
constexpr int kCount = 76;

constexpr size_t kXsaveYmmOffset = 576;  // YMM_Hi128 in the standard XSAVE layout
constexpr size_t kXsaveHeaderOffset = 512;

const char* const kGeneral[] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                                "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

uint64_t generalValue(const user_regs_struct& r, int regnum) {
  switch (regnum) {
    case 0:
      return r.rax;
    case 1:
      return r.rbx;
    case 2:
      return r.rcx;
    case 3:
      return r.rdx;
    case 4:
      return r.rsi;
    case 5:
      return r.rdi;
    case 6:
      return r.rbp;
    case 7:
      return r.rsp;
    case 8:
      return r.r8;
    case 9:
      return r.r9;
    case 10:
      return r.r10;
    case 11:
      return r.r11;
    case 12:
      return r.r12;
    case 13:
      return r.r13;
    case 14:
      return r.r14;
    case 15:
      return r.r15;
    case 16:
      return r.rip;
    case 17:
      return r.eflags;
    case 18:
      return r.cs;
    case 19:
      return r.ss;
    case 20:
      return r.ds;
    case 21:
      return r.es;
    case 22:
      return r.fs;
    case 23:
      return r.gs;
    case kOrigRax:
      return r.orig_rax;
    case kFsBase:
      return r.fs_base;
    case kGsBase:
      return r.gs_base;
    default:
      return 0;
  }
}

uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The x87 tag of an 80-bit register: 0 valid, 1 zero, 2 special.
int x87Tag(const uint8_t* reg) {
  unsigned exponent = (reg[9] & 0x7f) << 8 | reg[8];
  bool integer = reg[7] & 0x80;
  bool fractionZero = (load32(reg) | (load32(reg + 4) & 0x7fffffff)) == 0;
  if (exponent == 0x7fff) return 2;
  if (exponent == 0) return fractionZero && !integer ? 1 : 2;
  return integer ? 0 : 2;
}

// FXSAVE keeps one "not empty" bit per register; gdb shows the full tag word.
uint32_t fullTagWord(const std::array<uint8_t, 512>& fx) {
  uint8_t abridged = fx[4];
  unsigned top = (load16(&fx[2]) >> 11) & 7;
  uint32_t tags = 0;
  for (unsigned physical = 0; physical < 8; ++physical) {
    int tag = 3;  // empty
    if (abridged & (1u << physical)) {
      unsigned stackIndex = (physical + 8 - top) % 8;
      tag = x87Tag(&fx[32 + 16 * stackIndex]);
    }
    tags |= static_cast<uint32_t>(tag) << (2 * physical);
  }
  return tags;
}

std::string buildDescription() {
  std::string x = R"(<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<osabi>GNU/Linux</osabi>
<feature name="org.gnu.gdb.i386.core">
<flags id="i386_eflags" size="4">
<field name="" start="22" end="31"/>
<field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
<field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
<field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
<field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
<field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
<field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
<field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>
<field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>
<field name="ID" start="21" end="21"/>
</flags>
)";
  for (int i = 0; i < 16; ++i) {
    const char* type = i == 6 || i == 7 ? "data_ptr" : "int64";
    x += fmt::format("<reg name=\"{}\" bitsize=\"64\" type=\"{}\" regnum=\"{}\"/>\n", kGeneral[i],
                     type, i);
  }
  x += "<reg name=\"rip\" bitsize=\"64\" type=\"code_ptr\" regnum=\"16\"/>\n";
  x += "<reg name=\"eflags\" bitsize=\"32\" type=\"i386_eflags\" regnum=\"17\"/>\n";
  const char* segments[] = {"cs", "ss", "ds", "es", "fs", "gs"};
  for (int i = 0; i < 6; ++i)
    x += fmt::format("<reg name=\"{}\" bitsize=\"32\" type=\"int32\" regnum=\"{}\"/>\n",
                     segments[i], 18 + i);
  for (int i = 0; i < 8; ++i)
    x += fmt::format("<reg name=\"st{}\" bitsize=\"80\" type=\"i387_ext\" regnum=\"{}\"/>\n", i,
                     kFirstSt + i);
  const char* fpu[] = {"fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"};
  for (int i = 0; i < 8; ++i)
    x += fmt::format(
        "<reg name=\"{}\" bitsize=\"32\" type=\"int\" group=\"float\" regnum=\"{}\"/>\n", fpu[i],
        kFctrl + i);
  x += R"(</feature>
<feature name="org.gnu.gdb.i386.sse">
<vector id="v8bf16" type="bfloat16" count="8"/>
<vector id="v8h" type="ieee_half" count="8"/>
<vector id="v4f" type="ieee_single" count="4"/>
<vector id="v2d" type="ieee_double" count="2"/>
<vector id="v16i8" type="int8" count="16"/>
<vector id="v8i16" type="int16" count="8"/>
<vector id="v4i32" type="int32" count="4"/>
<vector id="v2i64" type="int64" count="2"/>
<union id="vec128">
<field name="v8_bfloat16" type="v8bf16"/><field name="v8_half" type="v8h"/>
<field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
<field name="uint128" type="uint128"/>
</union>
<flags id="i386_mxcsr" size="4">
<field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/>
<field name="ZE" start="2" end="2"/><field name="OE" start="3" end="3"/>
<field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
<field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/>
<field name="DM" start="8" end="8"/><field name="ZM" start="9" end="9"/>
<field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
<field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>
</flags>
)";
  for (int i = 0; i < 16; ++i)
    x += fmt::format("<reg name=\"xmm{}\" bitsize=\"128\" type=\"vec128\" regnum=\"{}\"/>\n", i,
                     kFirstXmm + i);
  x += fmt::format(
      "<reg name=\"mxcsr\" bitsize=\"32\" type=\"i386_mxcsr\" group=\"vector\" regnum=\"{}\"/>\n",
      kMxcsr);
  x += "</feature>\n<feature name=\"org.gnu.gdb.i386.linux\">\n";
  x += fmt::format(
      "<reg name=\"orig_rax\" bitsize=\"64\" type=\"int\" group=\"general\" regnum=\"{}\"/>\n",
      kOrigRax);
  x += "</feature>\n<feature name=\"org.gnu.gdb.i386.segments\">\n";
  x += fmt::format("<reg name=\"fs_base\" bitsize=\"64\" type=\"int\" regnum=\"{}\"/>\n", kFsBase);
  x += fmt::format("<reg name=\"gs_base\" bitsize=\"64\" type=\"int\" regnum=\"{}\"/>\n", kGsBase);
  x += "</feature>\n<feature name=\"org.gnu.gdb.i386.avx\">\n";
  for (int i = 0; i < 16; ++i)
    x += fmt::format("<reg name=\"ymm{}h\" bitsize=\"128\" type=\"uint128\" regnum=\"{}\"/>\n", i,
                     kFirstYmmHigh + i);
  x += "</feature>\n</target>\n";
  return x;
}

}  // namespace

RegisterFile readRegisterFile(Task& task, const Registers& general) {
  RegisterFile out;
  out.gp = general.raw();
  std::vector<uint8_t> xsave(4096);
  iovec iov{xsave.data(), xsave.size()};
  if (::ptrace(PTRACE_GETREGSET, task.tid(), reinterpret_cast<void*>(NT_X86_XSTATE), &iov) == 0 &&
      iov.iov_len >= kXsaveHeaderOffset) {
    std::memcpy(out.fxsave.data(), xsave.data(), out.fxsave.size());
    if (iov.iov_len >= kXsaveYmmOffset + out.ymmHigh.size()) {
      uint64_t present;
      std::memcpy(&present, &xsave[kXsaveHeaderOffset], 8);
      out.haveAvx = true;
      if (present & 4)  // else the AVX state is in its initial state: zero
        std::memcpy(out.ymmHigh.data(), &xsave[kXsaveYmmOffset], out.ymmHigh.size());
    }
  } else {
    user_fpregs_struct fp{};
    if (::ptrace(PTRACE_GETFPREGS, task.tid(), nullptr, &fp) == 0)
      std::memcpy(out.fxsave.data(), &fp, std::min(sizeof fp, out.fxsave.size()));
  }
  return out;
}

const std::string& targetDescription() {
  static const std::string description = buildDescription();
  return description;
}

int registerCount() {
  return kCount;
}

std::optional<std::string> registerHex(const RegisterFile& regs, int regnum) {
  const auto& fx = regs.fxsave;
  if (regnum < 0 || regnum >= kCount) return std::nullopt;
  if (regnum < 17 || regnum == kOrigRax || regnum == kFsBase || regnum == kGsBase)
    return littleEndianHex(generalValue(regs.gp, regnum), 8);
  if (regnum < kFirstSt) return littleEndianHex(generalValue(regs.gp, regnum), 4);
  if (regnum < kFctrl) {
    const uint8_t* st = &fx[32 + 16 * (regnum - kFirstSt)];
    return toHex(std::span<const uint8_t>(st, 10));
  }
  if (regnum < kFirstXmm) {
    uint32_t v = 0;
    switch (regnum - kFctrl) {
      case 0:
        v = load16(&fx[0]);
        break;  // fctrl
      case 1:
        v = load16(&fx[2]);
        break;  // fstat
      case 2:
        v = fullTagWord(fx);
        break;  // ftag
      case 3:
        v = load32(&fx[12]);
        break;  // fiseg: FIP bits 32-63
      case 4:
        v = load32(&fx[8]);
        break;  // fioff
      case 5:
        v = load32(&fx[20]);
        break;  // foseg: FDP bits 32-63
      case 6:
        v = load32(&fx[16]);
        break;  // fooff
      case 7:
        v = load16(&fx[6]) & 0x7ff;
        break;  // fop
    }
    return littleEndianHex(v, 4);
  }
  if (regnum < kMxcsr)
    return toHex(std::span<const uint8_t>(&fx[160 + 16 * (regnum - kFirstXmm)], 16));
  if (regnum == kMxcsr) return littleEndianHex(load32(&fx[24]), 4);
  // ymm upper halves
  if (!regs.haveAvx) return std::string(32, 'x');
  return toHex(std::span<const uint8_t>(&regs.ymmHigh[16 * (regnum - kFirstYmmHigh)], 16));
}

std::string allRegistersHex(const RegisterFile& regs) {
  std::string out;
  for (int i = 0; i < kCount; ++i) out += *registerHex(regs, i);
  return out;
}

}  // namespace rec::gdb
