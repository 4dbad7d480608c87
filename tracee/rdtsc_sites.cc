#include "rdtsc_sites.h"

#include <capstone/capstone.h>
#include <dwarf.h>  // DW_EH_PE_*: header only, from libdw-dev
#include <elf.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "cache_dir.h"
#include "code_patch.h"
#include "file_mapping.h"
#include "boot_cache.h"
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

// Decodes a segment linearly from a function start, resuming where it
// stopped when the next candidate lies further on in the same function (a
// large function with many candidates is decoded once, not once each).
class LinearDecoder {
 public:
  LinearDecoder(std::span<const uint8_t> elf, const CodeSegment& seg) : elf_(elf), seg_(seg) {
    ok_ = cs_open(CS_ARCH_X86, CS_MODE_64, &handle_) == CS_ERR_OK;
    if (ok_) insn_ = cs_malloc(handle_);
  }
  ~LinearDecoder() {
    if (insn_) cs_free(insn_, 1);
    if (ok_) cs_close(&handle_);
  }
  LinearDecoder(const LinearDecoder&) = delete;
  LinearDecoder& operator=(const LinearDecoder&) = delete;

  // The instruction starting exactly at `target` when decoding from the
  // function start `from`; nullopt when no instruction starts there or it is
  // neither RDTSC nor RDTSCP.
  std::optional<TscInstruction> at(uint64_t from, uint64_t target) {
    if (!ok_) return std::nullopt;
    if (from != from_ || address_ > target) {
      from_ = from;
      address_ = from;
      code_ = elf_.data() + seg_.offset + (from - seg_.vaddr);
      size_ = seg_.size - (from - seg_.vaddr);
    }
    while (address_ < target && cs_disasm_iter(handle_, &code_, &size_, &address_, insn_)) {
    }
    if (address_ != target || !cs_disasm_iter(handle_, &code_, &size_, &address_, insn_))
      return std::nullopt;
    if (insn_->id == X86_INS_RDTSC) return TscInstruction::Rdtsc;
    if (insn_->id == X86_INS_RDTSCP) return TscInstruction::Rdtscp;
    return std::nullopt;
  }

 private:
  std::span<const uint8_t> elf_;
  CodeSegment seg_;
  csh handle_ = 0;
  bool ok_ = false;
  cs_insn* insn_ = nullptr;
  uint64_t from_ = ~uint64_t{0};
  uint64_t address_ = 0;
  const uint8_t* code_ = nullptr;
  size_t size_ = 0;
};

}  // namespace

bool rdtscTrapsHere() {
  static const bool traps = [] {
    // A testing aid: behave as on a machine that ignores PR_SET_TSC.
    if (const char* mode = std::getenv("REC_RDTSC"); mode && std::string_view(mode) == "patch")
      return false;
    // The answer holds until the machine reboots.
    if (auto known = readBootCache("rdtsc-traps"); known && (*known == "1" || *known == "0"))
      return *known == "1";
    // vfork: the child only sets its own TSC mode and runs one instruction,
    // and copying rec's page tables for a fork cost more than the probe.
    // The child shares rec's memory, and the dumpable flag is the memory's:
    // put back after the probe (a non-dumpable rec could not PTRACE_SEIZE
    // its CLONE_VM child without CAP_SYS_PTRACE: no recording as non-root).
    const int dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    pid_t child = ::vfork();
    if (child < 0) return true;  // cannot tell; trapping is the common case
    if (child == 0) {
      // The probe dies of SIGSEGV where RDTSC traps: no core file of it in
      // the user's directory (not dumpable covers piped core patterns too).
      rlimit noCore{0, 0};
      ::setrlimit(RLIMIT_CORE, &noCore);
      ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
      ::prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0);
      uint32_t lo, hi;
      asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
      ::_exit(0);
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (dumpable > 0) ::prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
    const bool traps = WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
    writeBootCache("rdtsc-traps", traps ? "1" : "0");
    return traps;
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
    LinearDecoder decoder(elf, seg);
    // Candidates in address order: every 0f 31 and 0f 01 f9 (memmem is fast).
    const uint8_t* bytes = elf.data() + seg.offset;
    std::vector<uint64_t> candidates;
    for (std::string_view pattern :
         {std::string_view("\x0f\x31", 2), std::string_view("\x0f\x01\xf9", 3)}) {
      const uint8_t* p = bytes;
      const uint8_t* end = bytes + seg.size;
      while (const void* hit =
                 ::memmem(p, static_cast<size_t>(end - p), pattern.data(), pattern.size())) {
        auto at = static_cast<const uint8_t*>(hit);
        candidates.push_back(static_cast<uint64_t>(at - bytes));
        p = at + 1;
      }
    }
    std::sort(candidates.begin(), candidates.end());
    uint64_t targetsOf = ~uint64_t{0};
    std::vector<uint64_t> targets;
    for (uint64_t i : candidates) {
      uint64_t vaddr = seg.vaddr + i;
      auto next = std::upper_bound(starts.begin(), starts.end(), vaddr);
      if (next == starts.begin()) continue;
      uint64_t from = *(next - 1);
      if (from < seg.vaddr || vaddr - from > kMaxFunctionScan) continue;
      auto kind = decoder.at(from, vaddr);
      if (!kind) continue;
      RdtscSite site{seg.offset + i, *kind, 0};
      // The jump over it: whole instructions after it that can run in a
      // slot, none of them a target of a branch in the function (the next
      // known start ends it).
      const size_t length = *kind == TscInstruction::Rdtscp ? 3 : 2;
      const uint64_t end =
          std::min(seg.vaddr + seg.size, next == starts.end() ? seg.vaddr + seg.size : *next);
      if (vaddr + length < end && end - from <= kMaxFunctionScan) {
        std::span<const uint8_t> after(bytes + i + length, end - (vaddr + length));
        if (auto moved = moveCode(after, vaddr + length, kJumpSize - length, vaddr + length);
            moved && moved->size() < 64) {
          if (targetsOf != from) {
            targets = branchTargets(
                std::span<const uint8_t>(bytes + (from - seg.vaddr), end - from), from);
            std::sort(targets.begin(), targets.end());
            targetsOf = from;
          }
          auto t = std::upper_bound(targets.begin(), targets.end(), vaddr);
          if (t == targets.end() || *t >= vaddr + length + moved->size())
            site.moveLength = static_cast<uint8_t>(moved->size());
        }
      }
      sites.push_back(site);
    }
  }
  return sites;
}

std::vector<uint64_t> functionStartOffsets(std::span<const uint8_t> elf) {
  std::vector<uint64_t> out;
  auto eh = readAt<Elf64_Ehdr>(elf, 0);
  if (!eh || std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
      eh->e_phentsize != sizeof(Elf64_Phdr))
    return out;
  std::vector<Elf64_Phdr> loads;
  std::vector<uint64_t> starts;
  for (unsigned i = 0; i < eh->e_phnum; ++i) {
    auto ph = readAt<Elf64_Phdr>(elf, eh->e_phoff + uint64_t{i} * sizeof(Elf64_Phdr));
    if (!ph) return out;
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) loads.push_back(*ph);
    if (ph->p_type == PT_GNU_EH_FRAME) ehFrameStarts(elf, *ph, starts);
  }
  symbolStarts(elf, *eh, starts);
  for (uint64_t vaddr : starts)
    for (const auto& ph : loads)
      if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_filesz)
        out.push_back(ph.p_offset + (vaddr - ph.p_vaddr));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Cached as one 64-bit word a site, file offset << 8 | move length << 1 |
// is-RDTSCP; the file is named by the content hash, so an entry never goes
// stale.
const std::vector<RdtscSite>& rdtscSitesOf(const std::string& key, const std::string& readPath) {
  static std::map<std::string, std::vector<RdtscSite>> byFile;
  static const std::string cacheDirectory = cacheDir("rdtsc-sites-v2");
  auto it = byFile.find(key);
  if (it != byFile.end()) return it->second;
  std::string cached = cacheDirectory.empty() ? "" : cacheDirectory + "/" + key;
  std::vector<RdtscSite> sites;
  std::vector<uint64_t> entry;
  if (!cached.empty()) {
    ScopedFd fd(::open(cached.c_str(), O_RDONLY | O_CLOEXEC));
    uint64_t words[512];
    ssize_t n;
    while (fd.valid() && (n = ::read(fd.get(), words, sizeof words)) > 0)
      entry.insert(entry.end(), words, words + n / 8);
  }
  if (!entry.empty()) {
    for (uint64_t word : entry)
      sites.push_back({word >> 8, (word & 1) ? TscInstruction::Rdtscp : TscInstruction::Rdtsc,
                       static_cast<uint8_t>((word >> 1) & 0x7f)});
  } else {
    sites = findRdtscSites(FileMapping::open(readPath).u8());
    std::vector<uint64_t> words;
    for (const RdtscSite& s : sites)
      words.push_back(s.fileOffset << 8 | uint64_t{s.moveLength} << 1 |
                      (s.kind == TscInstruction::Rdtscp ? 1 : 0));
    // An empty list is stored as one word that names no site (offset 0 is
    // the ELF magic), so that "no sites" is cached too.
    if (words.empty()) words.push_back(0);
    if (!cached.empty()) {
      std::string temp = cached + ".tmp-" + std::to_string(::getpid());
      ScopedFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      size_t bytes = words.size() * 8;
      if (fd.valid() && ::write(fd.get(), words.data(), bytes) == static_cast<ssize_t>(bytes))
        ::rename(temp.c_str(), cached.c_str());
      else
        ::unlink(temp.c_str());
    }
  }
  std::erase_if(sites, [](const RdtscSite& s) { return s.fileOffset == 0; });
  return byFile.emplace(key, std::move(sites)).first->second;
}

void RdtscPatcher::patchMapping(Task& task, const std::string& key, const std::string& readPath,
                                uint64_t start, uint64_t end, uint64_t offset) {
  // A new mapping replaces whatever was patched there before.
  std::erase_if(patched_, [&](const auto& p) { return p.first >= start && p.first < end; });
  for (const RdtscSite& site : rdtscSitesOf(key, readPath)) {
    size_t length = site.kind == TscInstruction::Rdtscp ? 3 : 2;
    if (site.fileOffset < offset || site.fileOffset + length > offset + (end - start)) continue;
    uint64_t address = start + (site.fileOffset - offset);
    task.writeForced(address, kUd2, length);
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
