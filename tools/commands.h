// The rec subcommands. tools/main.cc parses the command line with CLI11 and
// calls one of these; each returns the process exit status.
#pragma once

#include <string>
#include <vector>

namespace rec {

struct DumpOptions {
  std::string tracePath;
  bool json = false;
  bool showWrites = false;  // hexdump of captured memory
};
int runDump(const DumpOptions& options);

struct InfoOptions {
  std::string tracePath;
};
int runInfo(const InfoOptions& options);

struct PsOptions {
  std::string tracePath;
};
int runPs(const PsOptions& options);

struct SyscallsOptions {
  bool markdown = false;  // the README's compatibility list
};
int runSyscalls(const SyscallsOptions& options);

}  // namespace rec
