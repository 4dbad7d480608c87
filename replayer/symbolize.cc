#include "symbolize.h"

#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>

#include "process_maps.h"

namespace rec {

namespace {

constexpr std::string_view kMemfd = "/memfd:rec:", kDeleted = " (deleted)";

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
      *elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
      *fileName = ::strdup(file.c_str());
      return fd;
    }
  }
  return dwfl_linux_proc_find_elf(module, userdata, name, base, fileName, elf);
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
  Dwfl_Callbacks callbacks{};
  callbacks.find_elf = findElf;
  callbacks.find_debuginfo = dwfl_standard_find_debuginfo;
  callbacks.debuginfo_path = &debuginfoPath;
  Dwfl* dwfl = dwfl_begin(&callbacks);
  std::string symbol;
  if (dwfl) {
    if (dwfl_linux_proc_report(dwfl, pid) == 0 && dwfl_report_end(dwfl, nullptr, nullptr) == 0) {
      if (Dwfl_Module* module = dwfl_addrmodule(dwfl, address)) {
        GElf_Off offset = 0;
        GElf_Sym sym;
        if (const char* name =
                dwfl_module_addrinfo(module, address, &offset, &sym, nullptr, nullptr, nullptr))
          symbol = fmt::format("{}+{:#x}", name, offset);
      }
    }
    dwfl_end(dwfl);
  }
  gFileFor = nullptr;
  if (symbol.empty() && where.empty()) return fmt::format("{:#x}", address);
  if (symbol.empty()) return fmt::format("{:#x} in {}", address, where);
  return fmt::format("{:#x} ({} in {})", address, symbol, where.empty() ? "?" : where);
}

}  // namespace rec
