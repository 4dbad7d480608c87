#include "task_state.h"

#include <cpuid.h>
#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "process_maps.h"
#include "scoped_fd.h"

namespace rec {

namespace {

struct NamedRegister {
  const char* name;
  size_t offset;
};

#define REG(name) \
  { #name, offsetof(user_regs_struct, name) }
// The order a report names them in: where the task is, then the rest.
constexpr NamedRegister kRegisters[] = {
    REG(rip), REG(rsp), REG(rax), REG(rbx),      REG(rcx),    REG(rdx),     REG(rsi),
    REG(rdi), REG(rbp), REG(r8),  REG(r9),       REG(r10),    REG(r11),     REG(r12),
    REG(r13), REG(r14), REG(r15), REG(orig_rax), REG(eflags), REG(fs_base), REG(gs_base),
    REG(cs),  REG(ss),  REG(ds),  REG(es),       REG(fs),     REG(gs),
};
#undef REG

constexpr uint64_t kFlagsIgnored = 0x10000 | 0x100;  // RF, TF

uint64_t field(const user_regs_struct& r, size_t offset) {
  uint64_t v;
  std::memcpy(&v, reinterpret_cast<const char*>(&r) + offset, sizeof v);
  return v;
}

constexpr uint64_t kPage = 4096;

bool allZero(const uint8_t* p, size_t n) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < n / 8; ++i)
    if (w[i]) return false;
  return true;
}

// Feeds non-zero pages, in address order, into per-block hashes.
class BlockHasher {
 public:
  BlockHasher() : state_(XXH3_createState()) {}
  ~BlockHasher() { XXH3_freeState(state_); }
  BlockHasher(const BlockHasher&) = delete;
  BlockHasher& operator=(const BlockHasher&) = delete;

  // Bytes hashed as zeros wherever they lie (sorted or not, any alignment).
  void mask(std::span<const AddressRange> masked) { masked_ = masked; }

  void page(uint64_t address, const uint8_t* data, DigestStats& stats) {
    stats.bytesRead += kPage;
    for (const AddressRange& m : masked_) {
      if (m.end <= address || m.start >= address + kPage) continue;
      if (data != maskedCopy_) {
        std::memcpy(maskedCopy_, data, kPage);
        data = maskedCopy_;
      }
      uint64_t from = std::max(m.start, address), to = std::min(m.end, address + kPage);
      std::memset(maskedCopy_ + (from - address), 0, to - from);
    }
    if (allZero(data, kPage)) return;
    if (!dumpDir_.empty()) dumpPage(address, data);
    uint64_t block = address & ~(kDigestBlock - 1);
    if (!open_ || block != current_.start) {
      finishBlock();
      current_ = BlockDigest{block, 0, 0};
      XXH3_64bits_reset(state_);
      open_ = true;
    }
    XXH3_64bits_update(state_, &address, sizeof address);
    XXH3_64bits_update(state_, data, kPage);
    ++current_.pages;
    ++stats.pagesHashed;
  }

  // REC_DIGEST_DUMP=DIR (for debugging rec): every digest's pages go to
  // DIR/N/ADDRESS, N counting this process's digests, so that the pages of
  // a recording's and a replay's digest can be compared with cmp.
  void dumpTo(std::string dir) { dumpDir_ = std::move(dir); }
  void dumpPage(uint64_t address, const uint8_t* data) {
    std::string path = fmt::format("{}/{:x}", dumpDir_, address);
    if (FILE* f = std::fopen(path.c_str(), "w")) {
      std::fwrite(data, 1, kPage, f);
      std::fclose(f);
    }
  }

  MemoryDigest finish() {
    finishBlock();
    // Shared mappings are read apart from private ones but blocks stay in
    // address order; merge the rare block split between the two kinds.
    std::sort(out_.blocks.begin(), out_.blocks.end(),
              [](const BlockDigest& a, const BlockDigest& b) { return a.start < b.start; });
    return std::move(out_);
  }

 private:
  void finishBlock() {
    if (!open_) return;
    current_.hash = XXH3_64bits_digest(state_);
    if (!out_.blocks.empty() && out_.blocks.back().start == current_.start) {
      // The same block again (after an excluded range or another mapping):
      // chain the hashes, order-dependent as the pages are.
      BlockDigest& b = out_.blocks.back();
      uint64_t pair[2] = {b.hash, current_.hash};
      b.hash = XXH3_64bits(pair, sizeof pair);
      b.pages += current_.pages;
    } else {
      out_.blocks.push_back(current_);
    }
    open_ = false;
  }

  XXH3_state_t* state_;
  std::span<const AddressRange> masked_;
  alignas(8) uint8_t maskedCopy_[kPage];
  std::string dumpDir_;
  BlockDigest current_;
  bool open_ = false;
  MemoryDigest out_;
};

// [start, end) minus the excluded ranges, in order.
std::vector<AddressRange> subtract(uint64_t start, uint64_t end,
                                   std::span<const AddressRange> excluded) {
  std::vector<AddressRange> out{{start, end}};
  for (const AddressRange& x : excluded) {
    std::vector<AddressRange> next;
    for (const AddressRange& r : out) {
      if (x.end <= r.start || x.start >= r.end) {
        next.push_back(r);
        continue;
      }
      if (x.start > r.start) next.push_back({r.start, x.start});
      if (x.end < r.end) next.push_back({x.end, r.end});
    }
    out = std::move(next);
  }
  return out;
}

constexpr size_t kReadChunk = 256 * kPage;

// Private memory: the pages pagemap shows as written (anonymous or swapped),
// read from the process.
void digestPrivate(pid_t tid, int pagemap, AddressRange range, BlockHasher& hasher,
                   DigestStats& stats, std::vector<uint8_t>& buffer) {
  constexpr uint64_t kPresent = 1ull << 63, kSwapped = 1ull << 62, kFileOrShared = 1ull << 61;
  constexpr size_t kEntries = 4096;
  uint64_t entries[kEntries];
  for (uint64_t at = range.start; at < range.end;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kEntries, (range.end - at) / kPage));
    ssize_t got = ::pread(pagemap, entries, n * 8, static_cast<off_t>(at / kPage * 8));
    if (got != static_cast<ssize_t>(n * 8)) {
      // No pagemap: read every page.
      std::fill(entries, entries + n, kPresent);
    }
    for (size_t i = 0; i < n;) {
      auto written = [&](size_t k) {
        return (entries[k] & kSwapped) ||
               ((entries[k] & kPresent) && !(entries[k] & kFileOrShared));
      };
      if (!written(i)) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < n && written(j) && (j - i) * kPage < kReadChunk) ++j;
      uint64_t address = at + i * kPage;
      size_t bytes = (j - i) * kPage;
      iovec local{buffer.data(), bytes};
      iovec remote{reinterpret_cast<void*>(address), bytes};
      ssize_t r = ::process_vm_readv(tid, &local, 1, &remote, 1, 0);
      size_t ok = r > 0 ? static_cast<size_t>(r) / kPage * kPage : 0;
      // What cannot be read (a page that went away) counts as zeros.
      std::memset(buffer.data() + ok, 0, bytes - ok);
      for (size_t k = 0; k < j - i; ++k)
        hasher.page(address + k * kPage, buffer.data() + k * kPage, stats);
      i = j;
    }
    at += n * kPage;
  }
}

// A shared mapping: its file's data (holes skipped), through
// /proc/TID/map_files, so pages this process never touched count too.
bool digestShared(pid_t tid, const MapEntry& m, AddressRange range, BlockHasher& hasher,
                  DigestStats& stats, std::vector<uint8_t>& buffer) {
  ScopedFd fd(::open(fmt::format("/proc/{}/map_files/{:x}-{:x}", tid, m.start, m.end).c_str(),
                     O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  off_t first = static_cast<off_t>(m.offset + (range.start - m.start));
  off_t last = static_cast<off_t>(m.offset + (range.end - m.start));
  off_t at = first;
  while (at < last) {
    off_t data = ::lseek(fd.get(), at, SEEK_DATA);
    if (data < 0 || data >= last) break;  // ENXIO: no data after `at`
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    if (hole < 0 || hole > last) hole = last;
    data &= ~static_cast<off_t>(kPage - 1);
    while (data < hole) {
      size_t want =
          static_cast<size_t>(std::min<off_t>(static_cast<off_t>(kReadChunk), hole - data));
      want = (want + kPage - 1) / kPage * kPage;
      ssize_t r = ::pread(fd.get(), buffer.data(), want, data);
      if (r <= 0) break;
      size_t got = (static_cast<size_t>(r) + kPage - 1) / kPage * kPage;
      std::memset(buffer.data() + r, 0, got - static_cast<size_t>(r));  // past EOF: zeros
      for (size_t k = 0; k < got; k += kPage) {
        uint64_t address = m.start + static_cast<uint64_t>(data - static_cast<off_t>(m.offset)) + k;
        if (address < range.end) hasher.page(address, buffer.data() + k, stats);
      }
      data += static_cast<off_t>(got);
    }
    at = std::max(hole, data);
  }
  return true;
}

bool hashed(const MapEntry& m) {
  if (!(m.prot & PROT_WRITE)) return false;
  return m.path != "[vvar]" && m.path != "[vsyscall]" && m.path != "[vvar_vclock]";
}

// Offset and size of XSAVE component `i` in the standard format (CPUID is
// a trap to the hypervisor in a VM: asked once).
std::pair<uint32_t, uint32_t> componentLayout(unsigned i) {
  static const auto layouts = [] {
    std::array<std::pair<uint32_t, uint32_t>, 64> out{};
    for (unsigned c = 2; c < 64; ++c) {
      unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
      __cpuid_count(0xd, c, eax, ebx, ecx, edx);
      out[c] = {ebx, eax};
    }
    return out;
  }();
  return layouts[i];
}

std::string componentRegister(unsigned component, uint32_t at) {
  switch (component) {
    case 2:
      return fmt::format("ymm{} upper half", at / 16);
    case 5:
      return fmt::format("k{}", at / 8);
    case 6:
      return fmt::format("zmm{} upper half", at / 32);
    case 7:
      return fmt::format("zmm{}", 16 + at / 64);
    case 9:
      return "pkru";
    default:
      return fmt::format("extended state component {} byte {}", component, at);
  }
}

std::string legacyRegister(size_t at) {
  if (at < 2) return "x87 control word";
  if (at < 4) return "x87 status word";
  if (at < 6) return "x87 tag word";
  if (at < 8) return "x87 last opcode";
  if (at < 16) return "x87 last instruction pointer";
  if (at < 24) return "x87 last data pointer";
  if (at < 28) return "mxcsr";
  if (at < 32) return "mxcsr mask";
  if (at < 160) return fmt::format("st{}", (at - 32) / 16);
  if (at < 416) return fmt::format("xmm{}", (at - 160) / 16);
  return fmt::format("legacy area byte {}", at);
}

}  // namespace

std::optional<std::string> registerDifference(const user_regs_struct& recorded,
                                              const user_regs_struct& now) {
  for (const NamedRegister& r : kRegisters) {
    uint64_t a = field(recorded, r.offset), b = field(now, r.offset);
    if (std::string_view(r.name) == "eflags") {
      a &= ~kFlagsIgnored;
      b &= ~kFlagsIgnored;
    }
    if (a != b) return fmt::format("{} = {:#x} (recorded {:#x})", r.name, b, a);
  }
  return std::nullopt;
}

user_regs_struct predictSyscallEntry(const user_regs_struct& previous, int number,
                                     const std::array<uint64_t, 6>& args, uint64_t ip) {
  user_regs_struct r = previous;
  r.orig_rax = static_cast<uint64_t>(static_cast<int64_t>(number));
  r.rax = static_cast<uint64_t>(-ENOSYS);
  r.rdi = args[0];
  r.rsi = args[1];
  r.rdx = args[2];
  r.r10 = args[3];
  r.r8 = args[4];
  r.r9 = args[5];
  r.rip = ip;
  r.rcx = ip;        // syscall saves the return address in rcx
  r.r11 = r.eflags;  // and the flags in r11
  return r;
}

namespace {
constexpr size_t kRegisterCount = sizeof(user_regs_struct) / sizeof(uint64_t);
static_assert(kRegisterCount <= 32);
}  // namespace

RegisterDelta registerDelta(const user_regs_struct& predicted, const user_regs_struct& actual) {
  RegisterDelta d;
  for (size_t i = 0; i < kRegisterCount; ++i) {
    uint64_t p = field(predicted, i * 8), a = field(actual, i * 8);
    if (p == a) continue;
    d.mask |= 1u << i;
    d.values.push_back(a);  // (XOR with the prediction compressed worse: values recur)
  }
  return d;
}

user_regs_struct applyRegisterDelta(user_regs_struct predicted, const RegisterDelta& delta) {
  size_t next = 0;
  for (size_t i = 0; i < kRegisterCount && next < delta.values.size(); ++i) {
    if (!(delta.mask & (1u << i))) continue;
    std::memcpy(reinterpret_cast<char*>(&predicted) + i * 8, &delta.values[next++], 8);
  }
  return predicted;
}

namespace {
// The largest XSAVE area this CPU can need (CPUID leaf 0xD: ECX); over
// 10 KiB with AMX. PTRACE_SETREGSET refuses anything shorter than the
// kernel's full size, so reads must not truncate.
size_t xsaveAreaSize() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(0xd, 0, &eax, &ebx, &ecx, &edx)) return 4096;
  return std::max<size_t>(ecx, 4096);
}
}  // namespace

std::vector<uint8_t> readExtendedRegisters(pid_t tid) {
  static const size_t size = xsaveAreaSize();
  static thread_local std::unique_ptr<uint8_t[]> buffer(new uint8_t[size]);
  iovec iov{buffer.get(), size};
  if (::ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0) return {};
  return std::vector<uint8_t>(buffer.get(), buffer.get() + iov.iov_len);
}

std::optional<std::string> extendedRegisterDifference(std::span<const uint8_t> recorded,
                                                      std::span<const uint8_t> now) {
  constexpr size_t kLegacyCompared = 416;  // up to xmm15; the rest is reserved
  constexpr size_t kHeaderEnd = 576;       // legacy area 512 + XSAVE header 64
  if (recorded.size() != now.size())
    return fmt::format("the extended register area is {} bytes, recorded {}", now.size(),
                       recorded.size());
  size_t legacy = std::min(kLegacyCompared, recorded.size());
  for (size_t i = 0; i < legacy; ++i)
    if (recorded[i] != now[i]) return legacyRegister(i);
  for (unsigned component = 2; component < 64; ++component) {
    auto [offset, size] = componentLayout(component);
    if (size == 0 || offset < kHeaderEnd || offset + size > recorded.size()) continue;
    for (uint32_t i = 0; i < size; ++i)
      if (recorded[offset + i] != now[offset + i]) return componentRegister(component, i);
  }
  return std::nullopt;
}

namespace {
MemoryDigest digestWithin(pid_t tid, std::span<const AddressRange> excluded, DigestStats* stats,
                          AddressRange within, std::span<const AddressRange> masked) {
  DigestStats local;
  DigestStats& s = stats ? *stats : local;
  BlockHasher hasher;
  hasher.mask(masked);
  if (static const char* dump = std::getenv("REC_DIGEST_DUMP"); dump && *dump) {
    static int digests = 0;
    std::string dir = fmt::format("{}/{}", dump, digests++);
    ::mkdir(dir.c_str(), 0755);
    hasher.dumpTo(dir);
  }
  static thread_local std::vector<uint8_t> buffer(kReadChunk);  // reused: no 1 MiB memset per call
  ScopedFd pagemap(::open(fmt::format("/proc/{}/pagemap", tid).c_str(), O_RDONLY | O_CLOEXEC));
  for (const MapEntry& m : readMaps(tid)) {
    if (!hashed(m)) continue;
    uint64_t start = std::max(m.start, within.start), end = std::min(m.end, within.end);
    if (start >= end) continue;
    for (AddressRange range : subtract(start, end, excluded)) {
      if (m.shared && digestShared(tid, m, range, hasher, s, buffer)) continue;
      digestPrivate(tid, pagemap.get(), range, hasher, s, buffer);
    }
  }
  return hasher.finish();
}

}  // namespace

AddressRange deadStackBelow(pid_t tid, uint64_t rsp) {
  const uint64_t end = (rsp - 128) & ~(kPage - 1);
  for (const MapEntry& m : readMaps(tid))
    if (rsp >= m.start && rsp < m.end) return {m.start, std::max(m.start, end)};
  return {};
}

AddressRange deadStackInRspPage(pid_t tid, uint64_t rsp) {
  const AddressRange whole = deadStackBelow(tid, rsp);
  if (whole.end == 0 || rsp < 128 || whole.end >= rsp - 128) return {};
  return {whole.end, rsp - 128};
}

AddressRange staleXsaveInRedZone(std::span<const uint8_t> bytes, uint64_t redZone) {
  constexpr uint64_t kCompacted = uint64_t{1} << 63;
  constexpr uint64_t kSse = 2;
  const uint64_t end = redZone + bytes.size();
  for (uint64_t header = (redZone + 63) & ~uint64_t{63}; header + 16 <= end; header += 64) {
    uint64_t xstateBv, xcompBv;
    std::memcpy(&xstateBv, &bytes[header - redZone], 8);
    std::memcpy(&xcompBv, &bytes[header - redZone + 8], 8);
    const uint64_t components = xcompBv & ~kCompacted;
    if (!(xcompBv & kCompacted) || !(components & kSse) || components >> 20 ||
        (xstateBv & ~components))
      continue;
    const uint64_t reservedEnd = std::min(end, header + 64);
    auto reserved = bytes.subspan(header + 16 - redZone, reservedEnd - header - 16);
    if (!std::all_of(reserved.begin(), reserved.end(), [](uint8_t b) { return b == 0; })) continue;
    return {header, end};
  }
  return {};
}

MemoryDigest digestMemory(pid_t tid, std::span<const AddressRange> excluded, DigestStats* stats,
                          std::span<const AddressRange> masked) {
  return digestWithin(tid, excluded, stats, {0, ~uint64_t{0}}, masked);
}

BlockDigest digestBlock(pid_t tid, std::span<const AddressRange> excluded, uint64_t start,
                        std::span<const AddressRange> masked) {
  MemoryDigest d = digestWithin(tid, excluded, nullptr, {start, start + kDigestBlock}, masked);
  for (const BlockDigest& b : d.blocks)
    if (b.start == start) return b;
  return BlockDigest{start, 0, 0};
}

std::optional<uint64_t> firstDifferingBlock(const MemoryDigest& recorded, const MemoryDigest& now) {
  size_t i = 0, j = 0;
  while (i < recorded.blocks.size() || j < now.blocks.size()) {
    const BlockDigest* r = i < recorded.blocks.size() ? &recorded.blocks[i] : nullptr;
    const BlockDigest* n = j < now.blocks.size() ? &now.blocks[j] : nullptr;
    if (r && n && r->start == n->start) {
      if (!(*r == *n)) return r->start;
      ++i, ++j;
    } else {
      return r && (!n || r->start < n->start) ? r->start : n->start;
    }
  }
  return std::nullopt;
}

std::optional<std::string> memoryDifference(const MemoryDigest& recorded, const MemoryDigest& now,
                                            pid_t tid) {
  size_t i = 0, j = 0;
  std::optional<BlockDigest> a, b;
  while (i < recorded.blocks.size() || j < now.blocks.size()) {
    const BlockDigest* r = i < recorded.blocks.size() ? &recorded.blocks[i] : nullptr;
    const BlockDigest* n = j < now.blocks.size() ? &now.blocks[j] : nullptr;
    if (r && n && r->start == n->start) {
      if (!(*r == *n)) {
        a = *r;
        b = *n;
        break;
      }
      ++i, ++j;
    } else if (r && (!n || r->start < n->start)) {
      a = *r;
      b = BlockDigest{r->start, 0, 0};
      break;
    } else {
      a = BlockDigest{n->start, 0, 0};
      b = *n;
      break;
    }
  }
  if (!a) return std::nullopt;
  std::string where;
  for (const MapEntry& m : readMaps(tid)) {
    if (m.end <= a->start || m.start >= a->start + kDigestBlock || !hashed(m)) continue;
    where += fmt::format("{}{:#x}-{:#x} {}", where.empty() ? "" : ", ", m.start, m.end,
                         m.path.empty() ? "[anonymous]" : m.path);
  }
  return fmt::format("memory in the 1 MiB at {:#x} ({}) differs: {} non-zero pages, recorded {}",
                     a->start, where.empty() ? "no writable mapping now" : where, b->pages,
                     a->pages);
}

}  // namespace rec
