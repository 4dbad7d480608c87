// `rec replay -d` / `rec replay --gdb-port N`: serves the replay to gdb on
// localhost, and with -d starts gdb itself, with an init file rec writes
// (the connection and rec's commands: when, checkpoint, restart, goto).
#pragma once

#include <string>
#include <vector>

#include "checkpoint.h"
#include "timeline.h"

namespace rec::dbg {

struct DebugOptions {
  std::string tracePath;
  bool force = false;
  bool verbose = false;
  bool launchGdb = false;  // -d: start gdb; else serve and wait for connections
  int port = 0;            // 0: any free port (with -d)
  std::string gdb = "gdb";
  std::vector<std::string> gdbArgs;  // passed to gdb after rec's init file
  int debuggee = 0;                  // -p / --onfork: recorded pid
  TimelineOptions::Start start = TimelineOptions::Start::Beginning;
  uint64_t startEvent = 0;
  CheckpointPolicy checkpoints;
};

// Runs the debugging session; returns rec's exit status (gdb's, with -d).
int runDebugger(const DebugOptions& options);

// The gdb commands rec's init file defines (also printed for --gdb-port).
std::string gdbInitScript(int port);

}  // namespace rec::dbg
