// The registers of an x86-64 thread as gdb sees them: the target
// description rec sends (qXfer:features:read:target.xml: the core
// registers, x87, SSE, Linux's orig_rax, fs_base/gs_base and the upper
// halves of the AVX registers) and their values in gdb's order and byte
// order, read with PTRACE_GETREGS and PTRACE_GETREGSET(NT_X86_XSTATE).
#pragma once

#include <sys/user.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "task.h"

namespace rec::gdb {

// One thread's registers.
struct RegisterFile {
  user_regs_struct gp{};
  std::array<uint8_t, 512> fxsave{};   // the FXSAVE image: x87, MXCSR, xmm0-15
  std::array<uint8_t, 256> ymmHigh{};  // bits 128-255 of ymm0-15
  bool haveAvx = false;                // the CPU has AVX (and ymmHigh is valid)
};

// Reads the x87/SSE/AVX state of `task`; `general` are its general
// registers as the program sees them (ReplaySession::visibleRegisters).
RegisterFile readRegisterFile(Task& task, const Registers& general);

// The target description (one XML document with every feature inline).
const std::string& targetDescription();

// Number of registers in the description (regnums 0 .. count-1).
int registerCount();

// One register's value in hex, target byte order; nullopt for an unknown
// regnum.
std::optional<std::string> registerHex(const RegisterFile& regs, int regnum);

// All registers in regnum order (the `g` packet).
std::string allRegistersHex(const RegisterFile& regs);

// Regnums gdb needs by name.
inline constexpr int kRegRip = 16;
inline constexpr int kRegRsp = 7;
inline constexpr int kRegRbp = 6;
inline constexpr int kRegOrigRax = 57;

}  // namespace rec::gdb
