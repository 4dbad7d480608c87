// `rec info`: a summary of a trace: what was recorded, where, and how big.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "commands.h"
#include "trace_command.h"

namespace rec {
namespace {

// "2024-05-01 12:34:56.789 UTC".
std::string utcTime(int64_t ns) {
  time_t seconds = static_cast<time_t>(ns / 1000000000);
  int64_t ms = (ns % 1000000000) / 1000000;
  if (ms < 0) {
    ms += 1000;
    --seconds;
  }
  struct tm tm;
  if (gmtime_r(&seconds, &tm) == nullptr) return "unknown";
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03lld UTC", static_cast<long long>(ms));
  return buf;
}

std::string text(capnp::Text::Reader t) {
  return std::string(t.cStr(), t.size());
}

}  // namespace

int runInfo(const InfoOptions& options) {
  return cli::withTrace(options.tracePath, [&](format::TraceReader& reader) {
    auto header = reader.header();
    auto stats = reader.stats();

    // Counts the footer may not have (cut short) come from the events.
    std::set<int32_t> tids;
    uint64_t signals = 0, buffered = 0;
    int32_t initialTid = 0;
    std::optional<int32_t> initialExit;
    while (auto e = reader.nextEvent()) {
      if (tids.empty()) initialTid = e->getTid();
      tids.insert(e->getTid());
      if (e->isSignal()) ++signals;
      if (e->isBufferedSyscalls()) buffered += e->getBufferedSyscalls().getCount();
      if (e->isExit() && e->getTid() == initialTid && !e->getExit().getThreadOnly()) {
        initialExit = e->getExit().getWaitStatus();
      }
    }

    std::vector<std::pair<std::string, std::string>> rows;
    auto add = [&](std::string key, std::string value) {
      rows.emplace_back(std::move(key), std::move(value));
    };
    add("trace", options.tracePath);
    add("status", reader.complete() ? "complete" : "cut short: " + reader.cutShortReason());
    add("program", text(header.getExecutable()));
    add("argv", cli::commandLine(header.getArgv()));
    add("cwd", text(header.getCwd()));
    add("recorded by", "rec " + text(header.getRecVersion()));
    add("start time", utcTime(header.getStartTimeNs()));
    auto footer = reader.footer();
    if (footer) {
      char buf[64];
      double seconds = static_cast<double>(footer->getEndTimeNs() - header.getStartTimeNs()) / 1e9;
      std::snprintf(buf, sizeof buf, "%.3f s", seconds);
      add("duration", buf);
    } else {
      add("duration", "unknown (cut short)");
    }
    add("host", text(header.getHostname()));
    add("kernel", text(header.getKernelRelease()));
    auto cpu = header.getCpu();
    add("cpu", text(cpu.getVendor()) + ", " + text(cpu.getModelName()) + " (family " +
                   std::to_string(cpu.getFamily()) + ", model " + std::to_string(cpu.getModel()) +
                   ", stepping " + std::to_string(cpu.getStepping()) + ")");
    add("rdtsc", header.getRdtscPatched() ? "patched to UD2 (this machine ignored PR_SET_TSC)"
                                          : "trapped (PR_SET_TSC)");
    add("vdso", header.getTimeShim() ? "rec's time shim (clock reads recorded without a stop)"
                                     : "hidden (clock reads are syscalls)");
    add("syscalls", header.getSyscallBuffer()
                        ? "syscall buffer on (common file syscalls without a stop)"
                        : "every one stops (syscall buffer off)");
    if (header.getChaosSeed() != 0) add("chaos seed", std::to_string(header.getChaosSeed()));
    add("tasks", std::to_string(tids.size()));
    add("events", std::to_string(stats.eventCount));
    if (header.getSyscallBuffer())
      add("buffered calls", std::to_string(buffered) + " (made without a stop)");
    add("signals", std::to_string(signals));
    if (footer) {
      add("exit status", cli::describeWaitStatus(footer->getExitStatus()) +
                             (footer->getInterruptedByUser() ? " (recording interrupted)" : ""));
    } else if (initialExit) {
      add("exit status", cli::describeWaitStatus(*initialExit));
    } else {
      add("exit status", "unknown (cut short)");
    }
    add("file blobs", std::to_string(stats.blobCount) + ", " + cli::humanBytes(stats.blobBytes));
    add("compressed", cli::humanBytes(stats.compressedBytes));
    add("uncompressed", cli::humanBytes(stats.uncompressedBytes));
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.2fx",
                  stats.compressedBytes ? static_cast<double>(stats.uncompressedBytes) /
                                              static_cast<double>(stats.compressedBytes)
                                        : 0.0);
    add("ratio", ratio);
    add("file size", cli::humanBytes(stats.fileBytes));

    size_t width = 0;
    for (auto& [key, value] : rows) width = std::max(width, key.size());
    for (auto& [key, value] : rows) {
      std::cout << key << ':' << std::string(width - key.size() + 1, ' ') << value << '\n';
    }
    std::cout.flush();
    return 0;
  });
}

}  // namespace rec
