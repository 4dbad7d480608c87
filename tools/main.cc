// The rec command line.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fmt/format.h>

#include "commands.h"
#include "errors.h"
#include "exit_codes.h"
#include "record_session.h"
#include "replay_session.h"
#include "spawn.h"
#include "trace_file.h"
#include "trace_paths.h"

namespace {

int statusToExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return rec::kExitInternal;
}

void onStopRequest(int signo) { rec::gRecordStopRequested = signo; }

int record(std::vector<std::string> command, std::string output, bool verbose) {
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
  bool defaultLocation = output.empty();
  if (defaultLocation) output = rec::newTracePath(command.at(0));
  rec::RecordOptions options{command, output, verbose};
  rec::RecordSession session(options);
  int status = session.run();
  if (defaultLocation) rec::updateLatestLink(output);
  if (verbose) fmt::print(stderr, "rec: trace written to {}\n", output);
  // Interrupted: the trace is complete; say how rec itself was stopped.
  if (rec::gRecordStopRequested) return 128 + rec::gRecordStopRequested;
  return statusToExitCode(status);
}

int replay(std::string trace, bool force, bool verbose) {
  ::signal(SIGPIPE, SIG_IGN);
  if (trace.empty()) trace = rec::latestTracePath();
  rec::ReplaySession session({trace, force, verbose});
  return session.run();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rec: record a program's execution once, replay it exactly, anywhere."};
  app.require_subcommand(1);
  app.set_version_flag("--version", REC_VERSION);

  bool verbose = false;
  std::string output;
  std::vector<std::string> command;
  auto* recordCmd = app.add_subcommand("record", "Run PROGRAM and record its execution");
  recordCmd->add_option("-o,--output", output, "Trace file (default: $REC_TRACE_DIR/<program>-<N>)");
  recordCmd->add_flag("-v,--verbose", verbose, "Say what rec is doing on stderr");
  recordCmd->footer("Usage: rec record [OPTIONS] [--] PROGRAM [ARGS...]");

  std::string trace;
  bool force = false;
  auto* replayCmd = app.add_subcommand("replay", "Re-execute a recording exactly");
  replayCmd->add_option("trace", trace, "Trace file (default: the latest recording)");
  replayCmd->add_flag("--force", force, "Replay even on a CPU that differs from the recording's");
  replayCmd->add_flag("-v,--verbose", verbose, "Say what rec is doing on stderr");

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
      if (args[i] == "-o" || args[i] == "--output") ++i;
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
      return record(command, output, verbose);
    }
    if (*replayCmd) return replay(trace, force, verbose);
    if (*dumpCmd) return rec::runDump(dump);
    if (*infoCmd) return rec::runInfo(info);
    if (*psCmd) return rec::runPs(ps);
    if (*syscallsCmd) return rec::runSyscalls(syscalls);
  } catch (const rec::RecError& e) {
    std::string msg = e.what();
    fmt::print(stderr, "{}{}\n", msg.rfind("rec:", 0) == 0 ? "" : "rec: ", msg);
    return e.exitCode();
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
