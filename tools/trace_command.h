// Helpers shared by the trace-inspection commands (dump, info, ps): opening a
// trace with the documented exit codes, and small text formatters.
#pragma once

#include <kj/exception.h>
#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "exit_codes.h"
#include "syscall_table.h"
#include "trace_file.h"

namespace rec::cli {

// Opens path and runs body(reader). Maps failures to rec's exit codes and
// one-line messages on stderr; body's own output stays on stdout.
template <typename Body>
int withTrace(const std::string& path, Body&& body) {
  try {
    auto reader = format::TraceReader::open(path);
    return body(*reader);
  } catch (const format::TraceOpenError& e) {
    std::cout.flush();
    std::cerr << "rec: cannot open trace '" << path << "': " << std::strerror(e.error()) << "\n";
    return kExitNoTrace;
  } catch (const format::FormatError& e) {
    std::cout.flush();
    std::cerr << "rec: " << e.what() << "\n";
    return kExitBadTrace;
  } catch (const kj::Exception& e) {
    // The reader validates messages, so this means a reader bug or a trace
    // written by a broken rec; still a bad trace, not a crash.
    std::cout.flush();
    std::cerr << "rec: " << path << ": malformed message: " << e.getDescription().cStr() << "\n";
    return kExitBadTrace;
  }
}

// After listing a trace's events: says on stderr when the recording was cut short.
inline void noteIfCutShort(const format::TraceReader& reader, const std::string& path) {
  std::cout.flush();
  if (!reader.complete())
    std::cerr << "rec: trace " << path << " is cut short: " << reader.cutShortReason() << "\n";
}

inline std::string signalText(int signo) {
  std::string_view name = sys::signalName(signo);
  if (!name.empty()) return std::string(name);
  return "signal " + std::to_string(signo);
}

// "exited with 3", "killed by SIGSEGV (core dumped)".
inline std::string describeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by " + signalText(WTERMSIG(status)) +
           (WCOREDUMP(status) ? " (core dumped)" : "");
  }
  return "wait status " + std::to_string(status);
}

// Quotes an argument for display the way a shell would need it.
inline std::string shellQuote(std::string_view arg) {
  bool plain = !arg.empty();
  for (char c : arg) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("-_./=:,+@%", c))) {
      plain = false;
    }
  }
  if (plain) return std::string(arg);
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

template <typename TextList>
std::string commandLine(TextList argv) {
  std::string out;
  for (auto a : argv) {
    if (!out.empty()) out += ' ';
    out += shellQuote(std::string_view(a.cStr(), a.size()));
  }
  return out;
}

// "12.3 MiB (12898765 bytes)".
inline std::string humanBytes(uint64_t n) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return std::to_string(n) + " bytes";
  double v = static_cast<double>(n);
  int unit = -1;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f %s (%llu bytes)", v, kUnits[unit],
                static_cast<unsigned long long>(n));
  return buf;
}

}  // namespace rec::cli
