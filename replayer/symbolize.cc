#include "symbolize.h"

#include <dlfcn.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <type_traits>

#include "process_maps.h"

namespace rec {

namespace {

constexpr std::string_view kMemfd = "/memfd:rec:", kDeleted = " (deleted)";

// libdw (with libelf, zlib, lzma, bzip2) is loaded only when a divergence
// report needs a symbol: linked normally, loading it cost every rec run
// several milliseconds of start-up.
struct LibDw {
  decltype(&dwfl_begin) begin = nullptr;
  decltype(&dwfl_end) end = nullptr;
  decltype(&dwfl_linux_proc_report) procReport = nullptr;
  decltype(&dwfl_report_end) reportEnd = nullptr;
  decltype(&dwfl_addrmodule) addrModule = nullptr;
  decltype(&dwfl_module_addrinfo) addrInfo = nullptr;
  decltype(&dwfl_linux_proc_find_elf) procFindElf = nullptr;
  decltype(&dwfl_standard_find_debuginfo) findDebuginfo = nullptr;
  decltype(&elf_begin) elfBegin = nullptr;

  static const LibDw* get() {
    static const LibDw lib = [] {
      LibDw l;
      void* handle = ::dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
      if (!handle) return l;
      auto bind = [&](auto& fn, const char* name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(handle, name));
        return fn != nullptr;
      };
      bool ok =
          bind(l.begin, "dwfl_begin") && bind(l.end, "dwfl_end") &&
          bind(l.procReport, "dwfl_linux_proc_report") && bind(l.reportEnd, "dwfl_report_end") &&
          bind(l.addrModule, "dwfl_addrmodule") && bind(l.addrInfo, "dwfl_module_addrinfo") &&
          bind(l.procFindElf, "dwfl_linux_proc_find_elf") &&
          bind(l.findDebuginfo, "dwfl_standard_find_debuginfo") && bind(l.elfBegin, "elf_begin");
      if (!ok) l.begin = nullptr;
      return l;
    }();
    return lib.begin ? &lib : nullptr;
  }
};

// libdwfl looks modules up by the path in /proc/PID/maps; a memfd's path
// cannot be opened, so resolve it to the blob rec holds for it.
const std::function<std::string(const std::string&)>* gFileFor = nullptr;

std::string recordedPath(std::string path) {
  if (path.starts_with(kMemfd)) path.erase(0, kMemfd.size());
  if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

int findElf(Dwfl_Module* module, void** userdata, const char* name, Dwarf_Addr base,
            char** fileName, Elf** elf) {
  if (gFileFor && name && std::string_view(name).starts_with(kMemfd)) {
    std::string file = (*gFileFor)(recordedPath(name));
    int fd = file.empty() ? -1 : ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      *elf = LibDw::get()->elfBegin(fd, ELF_C_READ_MMAP, nullptr);
      *fileName = ::strdup(file.c_str());
      return fd;
    }
  }
  return LibDw::get()->procFindElf(module, userdata, name, base, fileName, elf);
}

}  // namespace

std::string describeCodeAddress(pid_t pid, uint64_t address,
                                const std::function<std::string(const std::string&)>& fileFor) {
  gFileFor = &fileFor;
  std::string where;
  for (const auto& m : readMaps(pid))
    if (address >= m.start && address < m.end) where = m.path;
  where = recordedPath(where);

  static char* debuginfoPath = nullptr;
  std::string symbol;
  if (const LibDw* dw = LibDw::get()) {
    Dwfl_Callbacks callbacks{};
    callbacks.find_elf = findElf;
    callbacks.find_debuginfo = dw->findDebuginfo;
    callbacks.debuginfo_path = &debuginfoPath;
    if (Dwfl* dwfl = dw->begin(&callbacks)) {
      if (dw->procReport(dwfl, pid) == 0 && dw->reportEnd(dwfl, nullptr, nullptr) == 0) {
        if (Dwfl_Module* module = dw->addrModule(dwfl, address)) {
          GElf_Off offset = 0;
          GElf_Sym sym;
          if (const char* name =
                  dw->addrInfo(module, address, &offset, &sym, nullptr, nullptr, nullptr))
            symbol = fmt::format("{}+{:#x}", name, offset);
        }
      }
      dw->end(dwfl);
    }
  }
  gFileFor = nullptr;
  if (symbol.empty() && where.empty()) return fmt::format("{:#x}", address);
  if (symbol.empty()) return fmt::format("{:#x} in {}", address, where);
  return fmt::format("{:#x} ({} in {})", address, symbol, where.empty() ? "?" : where);
}

}  // namespace rec
