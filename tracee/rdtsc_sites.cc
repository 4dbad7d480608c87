#include "rdtsc_sites.h"

#include <capstone/capstone.h>
#include <dwarf.h>  // DW_EH_PE_*: header only, from libdw-dev
#include <elf.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "scoped_fd.h"
#include "task.h"

namespace rec {

namespace {

constexpr uint8_t kUd2[3] = {0x0f, 0x0b, 0x90};  // the NOP pads RDTSCP's third byte
constexpr uint64_t kMaxFunctionScan = 1 << 20;   // farther from a known start: leave alone

template <class T>
std::optional<T> readAt(std::span<const uint8_t> elf, uint64_t offset) {
  if (offset > elf.size() || elf.size() - offset < sizeof(T)) return std::nullopt;
  T value;
  std::memcpy(&value, elf.data() + offset, sizeof(T));
  return value;
}

struct CodeSegment {
  uint64_t offset;  // in the file
  uint64_t size;    // bytes present in the file
  uint64_t vaddr;
};

// Reads a fixed-size DWARF pointer encoding (the forms .eh_frame_hdr uses).
std::optional<int64_t> readEncoded(std::span<const uint8_t> elf, uint64_t& at, uint8_t enc) {
  switch (enc & 0x0f) {
    case DW_EH_PE_udata2:
    case DW_EH_PE_sdata2: {
      auto v = readAt<int16_t>(elf, at);
      at += 2;
      if (!v) return std::nullopt;
      return (enc & 0x0f) == DW_EH_PE_udata2 ? static_cast<uint16_t>(*v) : *v;
    }
    case DW_EH_PE_udata4:
    case DW_EH_PE_sdata4: {
      auto v = readAt<int32_t>(elf, at);
      at += 4;
      if (!v) return std::nullopt;
      return (enc & 0x0f) == DW_EH_PE_udata4 ? static_cast<uint32_t>(*v) : *v;
    }
    case DW_EH_PE_absptr:
    case DW_EH_PE_udata8:
    case DW_EH_PE_sdata8: {
      auto v = readAt<int64_t>(elf, at);
      at += 8;
      return v;
    }
    default:
      return std::nullopt;
  }
}

// Function start addresses from the binary-search table of .eh_frame_hdr
// (every function with unwind info, which GCC emits by default on x86-64).
void ehFrameStarts(std::span<const uint8_t> elf, const Elf64_Phdr& hdr,
                   std::vector<uint64_t>& starts) {
  uint64_t at = hdr.p_offset;
  auto version = readAt<uint8_t>(elf, at);
  auto framePtrEnc = readAt<uint8_t>(elf, at + 1);
  auto countEnc = readAt<uint8_t>(elf, at + 2);
  auto tableEnc = readAt<uint8_t>(elf, at + 3);
  // Only the table form linkers write: datarel sdata4 pairs.
  if (!version || *version != 1 || !tableEnc || *tableEnc != (DW_EH_PE_datarel | DW_EH_PE_sdata4))
    return;
  at += 4;
  if (!readEncoded(elf, at, *framePtrEnc)) return;
  auto count = readEncoded(elf, at, *countEnc);
  if (!count || *count < 0 || static_cast<uint64_t>(*count) > elf.size() / 8) return;
  for (int64_t i = 0; i < *count; ++i) {
    auto initial = readAt<int32_t>(elf, at + static_cast<uint64_t>(i) * 8);
    if (!initial) return;
    starts.push_back(hdr.p_vaddr + static_cast<uint64_t>(static_cast<int64_t>(*initial)));
  }
}

// Function symbols of .symtab and .dynsym, for code without unwind tables.
void symbolStarts(std::span<const uint8_t> elf, const Elf64_Ehdr& eh,
                  std::vector<uint64_t>& starts) {
  if (eh.e_shentsize != sizeof(Elf64_Shdr)) return;
  for (unsigned i = 0; i < eh.e_shnum; ++i) {
    auto sh = readAt<Elf64_Shdr>(elf, eh.e_shoff + uint64_t{i} * sizeof(Elf64_Shdr));
    if (!sh) return;
    if (sh->sh_type != SHT_SYMTAB && sh->sh_type != SHT_DYNSYM) continue;
    if (sh->sh_offset > elf.size() || sh->sh_size > elf.size() - sh->sh_offset) continue;
    for (uint64_t s = 0; s + sizeof(Elf64_Sym) <= sh->sh_size; s += sizeof(Elf64_Sym)) {
      auto sym = readAt<Elf64_Sym>(elf, sh->sh_offset + s);
      if (sym && ELF64_ST_TYPE(sym->st_info) == STT_FUNC && sym->st_value != 0)
        starts.push_back(sym->st_value);
    }
  }
}

struct Disassembler {
  csh handle = 0;
  bool ok = cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK;
  ~Disassembler() {
    if (ok) cs_close(&handle);
  }
};

// Whether an instruction starts exactly at `target` when decoding linearly
// from `from` (both in the segment), and which one it is.
std::optional<TscInstruction> instructionAt(std::span<const uint8_t> elf, const CodeSegment& seg,
                                            uint64_t from, uint64_t target) {
  static thread_local Disassembler cs;
  if (!cs.ok) return std::nullopt;
  const uint8_t* code = elf.data() + seg.offset + (from - seg.vaddr);
  size_t size = seg.size - (from - seg.vaddr);
  uint64_t address = from;
  cs_insn* insn = cs_malloc(cs.handle);
  std::optional<TscInstruction> found;
  while (address < target && cs_disasm_iter(cs.handle, &code, &size, &address, insn)) {
  }
  if (address == target && cs_disasm_iter(cs.handle, &code, &size, &address, insn)) {
    if (insn->id == X86_INS_RDTSC) found = TscInstruction::Rdtsc;
    if (insn->id == X86_INS_RDTSCP) found = TscInstruction::Rdtscp;
  }
  cs_free(insn, 1);
  return found;
}

std::vector<uint8_t> readWholeFile(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_size <= 0) return {};
  std::vector<uint8_t> out(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd.get(), out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n <= 0) return {};
    done += static_cast<size_t>(n);
  }
  return out;
}

}  // namespace

bool rdtscTrapsHere() {
  static const bool traps = [] {
    // A testing aid: behave as on a machine that ignores PR_SET_TSC.
    if (const char* mode = std::getenv("REC_RDTSC"); mode && std::string_view(mode) == "patch")
      return false;
    pid_t child = ::fork();
    if (child < 0) return true;  // cannot tell; trapping is the common case
    if (child == 0) {
      ::prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0);
      uint32_t lo, hi;
      asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
      ::_exit(0);
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
  }();
  return traps;
}

std::vector<RdtscSite> findRdtscSites(std::span<const uint8_t> elf) {
  std::vector<RdtscSite> sites;
  auto eh = readAt<Elf64_Ehdr>(elf, 0);
  if (!eh || std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
      eh->e_phentsize != sizeof(Elf64_Phdr))
    return sites;
  std::vector<CodeSegment> code;
  std::vector<uint64_t> starts;
  for (unsigned i = 0; i < eh->e_phnum; ++i) {
    auto ph = readAt<Elf64_Phdr>(elf, eh->e_phoff + uint64_t{i} * sizeof(Elf64_Phdr));
    if (!ph) return sites;
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && ph->p_offset <= elf.size())
      code.push_back(
          {ph->p_offset, std::min<uint64_t>(ph->p_filesz, elf.size() - ph->p_offset), ph->p_vaddr});
    if (ph->p_type == PT_GNU_EH_FRAME) ehFrameStarts(elf, *ph, starts);
  }
  symbolStarts(elf, *eh, starts);
  std::sort(starts.begin(), starts.end());

  for (const CodeSegment& seg : code) {
    const uint8_t* bytes = elf.data() + seg.offset;
    for (uint64_t i = 0; i + 1 < seg.size; ++i) {
      if (bytes[i] != 0x0f) continue;
      bool rdtsc = bytes[i + 1] == 0x31;
      bool rdtscp = i + 2 < seg.size && bytes[i + 1] == 0x01 && bytes[i + 2] == 0xf9;
      if (!rdtsc && !rdtscp) continue;
      uint64_t vaddr = seg.vaddr + i;
      auto next = std::upper_bound(starts.begin(), starts.end(), vaddr);
      if (next == starts.begin()) continue;
      uint64_t from = *(next - 1);
      if (from < seg.vaddr || vaddr - from > kMaxFunctionScan) continue;
      if (auto kind = instructionAt(elf, seg, from, vaddr))
        sites.push_back({seg.offset + i, *kind});
    }
  }
  return sites;
}

const std::vector<RdtscSite>& RdtscPatcher::sitesOf(const std::string& key,
                                                    const std::string& readPath) {
  auto it = byFile_.find(key);
  if (it == byFile_.end()) it = byFile_.emplace(key, findRdtscSites(readWholeFile(readPath))).first;
  return it->second;
}

void RdtscPatcher::patchMapping(Task& task, const std::string& key, const std::string& readPath,
                                uint64_t start, uint64_t end, uint64_t offset) {
  // A new mapping replaces whatever was patched there before.
  std::erase_if(patched_, [&](const auto& p) { return p.first >= start && p.first < end; });
  for (const RdtscSite& site : sitesOf(key, readPath)) {
    size_t length = site.kind == TscInstruction::Rdtscp ? 3 : 2;
    if (site.fileOffset < offset || site.fileOffset + length > offset + (end - start)) continue;
    uint64_t address = start + (site.fileOffset - offset);
    task.write(address, kUd2, length);
    patched_[address] = site.kind;
  }
}

std::optional<TscInstruction> RdtscPatcher::siteAt(Task& task, uint64_t ip) const {
  auto it = patched_.find(ip);
  if (it == patched_.end()) return std::nullopt;
  uint8_t bytes[2] = {};
  if (task.read(ip, bytes, sizeof bytes) != sizeof bytes || bytes[0] != kUd2[0] ||
      bytes[1] != kUd2[1])
    return std::nullopt;
  return it->second;
}

}  // namespace rec
