// The rec command line.
#include <fmt/format.h>
#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <set>

#include "commands.h"
#include "debug_command.h"
#include "errors.h"
#include "exit_codes.h"
#include "record_session.h"
#include "replay_session.h"
#include "spawn.h"
#include "trace_file.h"
#include "trace_paths.h"
#include "until_failure.h"

namespace {

int statusToExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return rec::kExitInternal;
}

// Ends rec once its work is done and the trace is closed: what is left
// (the session's tasks, maps, buffers and mappings, the command line's
// options) the kernel frees anyway, faster than their destructors would.
[[noreturn]] void exitNow(int code) {
  std::fflush(nullptr);
  ::_exit(code);
}

void onStopRequest(int signo) {
  rec::gRecordStopRequested = signo;
}

struct RecordFlags {
  bool untilFailure = false;
  int maxRuns = 1000;
  std::string maxTime, timeout, failOutput;
  bool failExit = false, failSignal = false;
  bool chaos = false;
  uint64_t chaosSeed = 0;
  bool checkMemory = false;
};

std::chrono::milliseconds durationOption(const std::string& name, const std::string& value) {
  if (value.empty()) return std::chrono::milliseconds(0);
  auto d = rec::parseDuration(value);
  if (!d)
    throw rec::RecError(
        rec::kExitUsage,
        fmt::format("rec: {} takes a duration like 30s, 500ms or 5m, not '{}'", name, value));
  return *d;
}

int record(std::vector<std::string> command, std::string output, bool verbose,
           const RecordFlags& flags) {
  // Ctrl-C reaches the program through the terminal; rec itself stays to
  // finish the trace. SIGTERM/SIGHUP end the recording but keep the trace.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGQUIT, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = onStopRequest;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  // A program writing to a closed pipe gets its own SIGPIPE; rec must not die of it.
  ::signal(SIGPIPE, SIG_IGN);

  // Fail fast on a missing program before creating a trace file.
  rec::resolveProgram(command.at(0));
  rec::ChaosOptions chaos{flags.chaos, flags.chaosSeed};
  if (flags.untilFailure) {
    rec::UntilFailureOptions u;
    u.command = command;
    u.output = output;
    u.maxRuns = flags.maxRuns;
    u.maxTime = durationOption("--max-time", flags.maxTime);
    u.timeout = durationOption("--timeout", flags.timeout);
    u.failOnExit = flags.failExit;
    u.failOnSignal = flags.failSignal;
    if (!flags.failOutput.empty()) u.failOutput = flags.failOutput;
    u.chaos = chaos;
    u.verbose = verbose;
    return rec::runUntilFailure(u);
  }
  bool defaultLocation = output.empty();
  if (defaultLocation) output = rec::newTracePath(command.at(0));
  rec::RecordOptions options;
  options.command = command;
  options.tracePath = output;
  options.verbose = verbose;
  options.timeout = durationOption("--timeout", flags.timeout);
  options.chaos = chaos;
  options.checkMemory = flags.checkMemory;
  rec::RecordSession session(options);
  int status = session.run();
  if (defaultLocation) rec::updateLatestLink(output);
  if (verbose) fmt::print(stderr, "rec: trace written to {}\n", output);
  if (flags.chaos) fmt::print(stderr, "rec: chaos scheduling, seed {}\n", session.chaosSeed());
  if (session.timedOut()) exitNow(rec::kExitTimedOut);
  // Interrupted: the trace is complete; say how rec itself was stopped.
  if (rec::gRecordStopRequested) exitNow(128 + rec::gRecordStopRequested);
  exitNow(statusToExitCode(status));
}

struct DebugFlags {
  bool debug = false;
  int port = -1;
  uint64_t gotoEvent = 0;
  bool gotoSet = false;
  bool atEnd = false;
  int process = 0;
  int onFork = 0;
  std::string gdb = "gdb";
  std::vector<std::string> gdbArgs;
  bool noCheckpoints = false;
  std::optional<int64_t> checkpointIntervalMs;
  std::optional<size_t> maxCheckpoints;
};

int replay(std::string trace, bool force, bool verbose, bool check, const DebugFlags& d) {
  ::signal(SIGPIPE, SIG_IGN);
  if (trace.empty()) trace = rec::latestTracePath();
  bool debugging = d.debug || d.port >= 0;
  if (!debugging) {
    if (d.gotoSet || d.atEnd || d.process || d.onFork)
      throw rec::RecError(rec::kExitUsage,
                          "rec: -g, -e, -p and --onfork need -d or --gdb-port (a debugger)");
    rec::ReplaySession session({trace, force, verbose, check});
    // run() has ended and reaped every task it started.
    exitNow(session.run());
  }
  if (check)
    throw rec::RecError(rec::kExitUsage,
                        "rec: --check replays without a debugger: drop -d/--gdb-port");
  if (d.process && d.onFork)
    throw rec::RecError(rec::kExitUsage, "rec: -p and --onfork name one process: give one");
  if ((d.gotoSet ? 1 : 0) + (d.atEnd ? 1 : 0) + (d.onFork ? 1 : 0) > 1)
    throw rec::RecError(rec::kExitUsage,
                        "rec: -g, -e and --onfork each say where to start: give one");
  rec::dbg::DebugOptions o;
  o.tracePath = trace;
  o.force = force;
  o.verbose = verbose;
  o.launchGdb = d.debug;
  o.port = d.port >= 0 ? d.port : 0;
  o.gdb = d.gdb;
  o.gdbArgs = d.gdbArgs;
  o.debuggee = d.process ? d.process : d.onFork;
  if (d.gotoSet) {
    o.start = rec::dbg::TimelineOptions::Start::AtEvent;
    o.startEvent = d.gotoEvent;
  } else if (d.atEnd) {
    o.start = rec::dbg::TimelineOptions::Start::AtEnd;
  } else if (d.onFork) {
    o.start = rec::dbg::TimelineOptions::Start::AtFork;
  }
  o.checkpoints.enabled = !d.noCheckpoints;
  if (d.checkpointIntervalMs)
    o.checkpoints.interval = std::chrono::milliseconds(*d.checkpointIntervalMs);
  if (d.maxCheckpoints) o.checkpoints.maxCount = *d.maxCheckpoints;
  return rec::dbg::runDebugger(o);
}

}  // namespace

int main(int argc, char** argv) {
  // Event chunks, capnp segments and file blobs are large, short-lived
  // buffers: keep them in the heap for reuse instead of an mmap and a page
  // fault per 4 KiB every time (page faults are dear in VMs).
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  CLI::App app{"rec: record a program's execution once, replay it exactly, anywhere."};
  app.require_subcommand(1);
  app.set_version_flag("--version", REC_VERSION);

  bool verbose = false;
  std::string output;
  std::vector<std::string> command;
  auto* recordCmd = app.add_subcommand("record", "Run PROGRAM and record its execution");
  recordCmd->add_option("-o,--output", output,
                        "Trace file (default: $REC_TRACE_DIR/<program>-<N>)");
  recordCmd->add_flag("-v,--verbose", verbose, "Say what rec is doing on stderr");
  RecordFlags recordFlags;
  recordCmd->add_flag("--until-failure", recordFlags.untilFailure,
                      "Record again and again; keep the first failing run's trace");
  recordCmd->add_option("--max-runs", recordFlags.maxRuns,
                        "With --until-failure: at most N runs (default 1000)");
  recordCmd->add_option("--max-time", recordFlags.maxTime,
                        "With --until-failure: stop after DURATION (30s, 5m, ...)");
  recordCmd->add_flag("--fail-exit", recordFlags.failExit,
                      "A non-zero exit is a failure (default with no other --fail-*)");
  recordCmd->add_flag("--fail-signal", recordFlags.failSignal,
                      "Death by a signal is a failure (default with no other --fail-*)");
  recordCmd->add_option("--fail-output", recordFlags.failOutput,
                        "Output (stdout or stderr) matching REGEX is a failure");
  recordCmd->add_option(
      "--timeout", recordFlags.timeout,
      "Kill the program after DURATION; with --until-failure a hang is a failure");
  recordCmd->add_flag("--chaos", recordFlags.chaos,
                      "Perturb scheduling to surface races (seed printed and stored)");
  recordCmd->add_option("--chaos-seed", recordFlags.chaosSeed, "Seed for --chaos");
  recordCmd->add_flag("--check-memory", recordFlags.checkMemory,
                      "Store a digest of the program's memory at every event, for replay to "
                      "check (slow; see docs/exactness.md)");
  recordCmd->footer("Usage: rec record [OPTIONS] [--] PROGRAM [ARGS...]");

  std::string trace;
  bool force = false;
  bool check = false;
  DebugFlags debugFlags;
  // `rec debug` is `rec replay -d`: the two share every option.
  auto addReplayOptions = [&](CLI::App* cmd) {
    cmd->add_option("trace", trace, "Trace file (default: the latest recording)");
    cmd->add_flag("--force", force, "Replay even on a CPU that differs from the recording's");
    cmd->add_flag("-v,--verbose", verbose, "Say what rec is doing on stderr");
    cmd->add_flag("--check", check,
                  "Demand memory digests at every event (a trace recorded with "
                  "--check-memory) and check them");
    cmd->add_option("-s,--gdb-port", debugFlags.port,
                    "Serve the replay to gdb on 127.0.0.1:PORT (target extended-remote)")
        ->check(CLI::Range(0, 65535));
    cmd->add_option("-g,--goto", debugFlags.gotoEvent,
                    "With a debugger: start at event N (as rec dump numbers them)")
        ->each([&](const std::string&) { debugFlags.gotoSet = true; });
    cmd->add_flag("-e,--end", debugFlags.atEnd,
                  "With a debugger: start at the end (where the program exits or crashes)");
    cmd->add_option("-p,--process", debugFlags.process,
                    "With a debugger: debug process PID (recorded pid, see rec ps), from its "
                    "exec");
    cmd->add_option("--onfork", debugFlags.onFork,
                    "With a debugger: debug process PID from its creation");
    cmd->add_option("--gdb", debugFlags.gdb, "The gdb to run with -d (default: gdb)");
    cmd->add_option("--gdb-arg", debugFlags.gdbArgs,
                    "An argument for gdb with -d (repeat: --gdb-arg=-batch --gdb-arg=-x ...)")
        ->allow_extra_args(false);
    cmd->add_flag("--no-checkpoints", debugFlags.noCheckpoints,
                  "With a debugger: no automatic checkpoints (going back replays from the "
                  "start)");
    cmd->add_option("--checkpoint-interval", debugFlags.checkpointIntervalMs,
                    "With a debugger: replay time in ms between automatic checkpoints "
                    "(default 200)")
        ->check(CLI::Range(int64_t{0}, int64_t{3600000}));
    cmd->add_option("--max-checkpoints", debugFlags.maxCheckpoints,
                    "With a debugger: automatic checkpoints kept at most (default 24)")
        ->check(CLI::Range(size_t{2}, size_t{10000}));
  };
  auto* replayCmd = app.add_subcommand("replay", "Re-execute a recording exactly");
  addReplayOptions(replayCmd);
  replayCmd->add_flag("-d,--debug", debugFlags.debug,
                      "Debug the replay with gdb (started by rec, at the program's first "
                      "instruction)");
  auto* debugCmd =
      app.add_subcommand("debug", "Debug a replay with gdb (the same as rec replay -d)");
  addReplayOptions(debugCmd);

  rec::DumpOptions dump;
  auto* dumpCmd = app.add_subcommand("dump", "List the events of a trace");
  dumpCmd->add_option("trace", dump.tracePath, "Trace file")->required();
  dumpCmd->add_flag("--json", dump.json, "One JSON object per event");
  dumpCmd->add_flag("--show-writes", dump.showWrites, "Hexdump the memory each syscall wrote");

  rec::InfoOptions info;
  auto* infoCmd = app.add_subcommand("info", "Describe a trace");
  infoCmd->add_option("trace", info.tracePath, "Trace file")->required();

  rec::PsOptions ps;
  auto* psCmd = app.add_subcommand("ps", "List the processes of a trace");
  psCmd->add_option("trace", ps.tracePath, "Trace file")->required();

  rec::SyscallsOptions syscalls;
  auto* syscallsCmd = app.add_subcommand("syscalls", "Show how rec handles each syscall");
  syscallsCmd->add_flag("--markdown", syscalls.markdown, "Markdown, as in docs/syscalls.md");

  // Everything from PROGRAM on belongs to the program, options included, so
  // `rec record` options are split off before CLI11 sees the command line.
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "record") {
    size_t i = 1;
    for (; i < args.size(); ++i) {
      if (args[i] == "--") {
        command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
        break;
      }
      if (args[i].empty() || args[i][0] != '-') {
        command.assign(args.begin() + static_cast<long>(i), args.end());
        break;
      }
      static const std::set<std::string> kTakesValue = {
          "-o",        "--output",    "--max-runs", "--max-time", "--fail-output",
          "--timeout", "--chaos-seed"};
      if (kTakesValue.count(args[i])) ++i;
    }
    args.resize(std::min(i, args.size()));
  }
  std::reverse(args.begin(), args.end());

  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return rec::kExitUsage;
  }

  try {
    if (*recordCmd) {
      if (command.empty()) {
        fmt::print(stderr, "rec: record needs a PROGRAM\n");
        return rec::kExitUsage;
      }
      if (recordFlags.chaosSeed) recordFlags.chaos = true;
      return record(command, output, verbose, recordFlags);
    }
    if (*replayCmd) return replay(trace, force, verbose, check, debugFlags);
    if (*debugCmd) {
      debugFlags.debug = true;
      return replay(trace, force, verbose, check, debugFlags);
    }
    if (*dumpCmd) return rec::runDump(dump);
    if (*infoCmd) return rec::runInfo(info);
    if (*psCmd) return rec::runPs(ps);
    if (*syscallsCmd) return rec::runSyscalls(syscalls);
  } catch (const rec::RecError& e) {
    std::string msg = e.what();
    fmt::print(stderr, "{}{}\n", msg.rfind("rec:", 0) == 0 ? "" : "rec: ", msg);
    return e.exitCode();
  } catch (const rec::format::TraceWriteError& e) {
    fmt::print(stderr, "rec: {}\n", e.what());
    return rec::kExitIoError;
  } catch (const rec::format::TraceOpenError& e) {
    fmt::print(stderr, "rec: {}\n", e.what());
    return rec::kExitNoTrace;
  } catch (const rec::format::FormatError& e) {
    fmt::print(stderr, "rec: {}\n", e.what());
    return rec::kExitBadTrace;
  } catch (const std::exception& e) {
    fmt::print(stderr, "rec: internal error: {}\n", e.what());
    return rec::kExitInternal;
  }
  return rec::kExitUsage;
}
