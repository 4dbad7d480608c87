#include "symbolize.h"

#include <elfutils/libdwfl.h>

#include <fmt/format.h>

#include "process_maps.h"

namespace rec {

std::string describeCodeAddress(pid_t pid, uint64_t address) {
  std::string where;
  for (const auto& m : readMaps(pid))
    if (address >= m.start && address < m.end) where = m.path;

  static char* debuginfoPath = nullptr;
  Dwfl_Callbacks callbacks{};
  callbacks.find_elf = dwfl_linux_proc_find_elf;
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
  if (symbol.empty() && where.empty()) return fmt::format("{:#x}", address);
  if (symbol.empty()) return fmt::format("{:#x} in {}", address, where);
  return fmt::format("{:#x} ({} in {})", address, symbol, where.empty() ? "?" : where);
}

}  // namespace rec
