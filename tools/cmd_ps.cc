// `rec ps`: the process tree of a trace, rebuilt from the task-creating
// syscalls, with each process's command line, exit status and event count.
#include <sched.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "trace_command.h"

namespace rec {
namespace {

constexpr int kSysClone = 56;
constexpr int kSysFork = 57;
constexpr int kSysVfork = 58;
constexpr int kSysClone3 = 435;

enum class Creation { Initial, Process, Thread, Clone3, Unknown };

struct Task {
  Creation creation = Creation::Unknown;
  int32_t creator = 0;
  uint64_t order = 0;                 // first appearance, for stable output
  std::string argv;                   // command line it runs (inherited until it execs)
  uint64_t lastExec = 0;              // event index + 1 of its last exec; 0 = none
  std::optional<int32_t> exitStatus;  // exit of the whole process seen by this task
  uint64_t events = 0;
  int32_t process = 0;  // resolved tgid
};

}  // namespace

int runPs(const PsOptions& options) {
  return cli::withTrace(options.tracePath, [&](format::TraceReader& reader) {
    std::map<int32_t, Task> tasks;
    uint64_t order = 0;
    auto task = [&](int32_t tid) -> Task& {
      auto [it, inserted] = tasks.try_emplace(tid);
      if (inserted) it->second.order = order++;
      return it->second;
    };
    const std::string headerArgv = cli::commandLine(reader.header().getArgv());

    while (auto e = reader.nextEvent()) {
      uint64_t index = reader.nextEventIndex() - 1;
      Task& t = task(e->getTid());
      if (tasks.size() == 1 && t.events == 0) {
        t.creation = Creation::Initial;
        t.argv = headerArgv;
      }
      ++t.events;
      // A vfork child is announced by its parent's SyscallEnter, and may exec
      // before the parent's syscall event arrives.
      int nr = -1, newTask = 0;
      uint64_t flags = 0;
      if (e->isSyscall() && e->getSyscall().getResult() >= 0) {
        auto s = e->getSyscall();
        nr = s.getNumber();
        newTask = s.getNewTask();
        flags = s.getArgs().size() > 0 ? s.getArgs()[0] : 0;
      } else if (e->isSyscallEnter()) {
        nr = e->getSyscallEnter().getNumber();
        newTask = e->getSyscallEnter().getNewTask();
        flags = CLONE_VFORK;
      }
      if (newTask > 0 &&
          (nr == kSysClone || nr == kSysFork || nr == kSysVfork || nr == kSysClone3)) {
        Task& child = task(newTask);
        if (child.creator == 0) {
          child.creator = e->getTid();
          if (child.lastExec == 0) child.argv = tasks[e->getTid()].argv;
          if (nr == kSysClone3) {
            child.creation = Creation::Clone3;  // flags live in memory; decided below
          } else if (nr == kSysClone && (flags & CLONE_THREAD)) {
            child.creation = Creation::Thread;
          } else {
            child.creation = Creation::Process;
          }
        }
      }
      if (e->isExec()) {
        std::string argv = cli::commandLine(e->getExec().getArgv());
        t.argv = argv.empty() ? sys::quoted(e->getExec().getFilename().cStr()) : argv;
        t.lastExec = index + 1;
      } else if (e->isExit() && !e->getExit().getThreadOnly()) {
        t.exitStatus = e->getExit().getWaitStatus();
      }
    }

    // Creation order: a creator always appears before what it created.
    std::vector<std::pair<int32_t, Task*>> ordered;
    for (auto& [tid, t] : tasks) ordered.emplace_back(tid, &t);
    std::sort(ordered.begin(), ordered.end(),
              [](auto& a, auto& b) { return a.second->order < b.second->order; });
    for (auto& [tid, t] : ordered) {
      bool ownProcess = true;
      if (t->creation == Creation::Thread) {
        ownProcess = false;
      } else if (t->creation == Creation::Clone3) {
        // glibc uses clone3 for threads and for posix_spawn; only the latter execs.
        ownProcess = t->lastExec != 0;
      }
      auto creator = tasks.find(t->creator);
      t->process = (ownProcess || creator == tasks.end()) ? tid : creator->second.process;
    }

    struct Row {
      uint64_t order;
      std::string pid, ppid, exit, events, command;
      uint64_t lastExec = 0;
      uint64_t eventCount = 0;
    };
    std::map<int32_t, Row> processes;
    for (auto& [tid, t] : ordered) {
      Row& row = processes[t->process];
      Task& leader = tasks[t->process];
      if (t->process == tid) {
        row.order = t->order;
        row.pid = std::to_string(tid);
        auto creator = tasks.find(t->creator);
        row.ppid = t->creation == Creation::Initial ? "-"
                   : creator == tasks.end()         ? "?"
                                                    : std::to_string(creator->second.process);
        row.command = leader.argv;
        row.lastExec = leader.lastExec;
      } else if (t->lastExec > row.lastExec) {
        row.command = t->argv;  // exec from a non-leader thread
        row.lastExec = t->lastExec;
      }
      row.eventCount += t->events;
      if (t->exitStatus && (row.exit.empty() || t->process == tid)) {
        row.exit = cli::describeWaitStatus(*t->exitStatus);
      }
    }

    std::vector<Row> rows;
    for (auto& [pid, row] : processes) {
      if (row.exit.empty()) row.exit = reader.complete() ? "?" : "- (cut short)";
      row.events = std::to_string(row.eventCount);
      if (row.command.empty()) row.command = "?";
      rows.push_back(row);
    }
    std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.order < b.order; });

    Row heading{0, "PID", "PPID", "EXIT", "EVENTS", "COMMAND"};
    size_t wPid = heading.pid.size(), wPpid = heading.ppid.size(), wExit = heading.exit.size(),
           wEvents = heading.events.size();
    for (auto& r : rows) {
      wPid = std::max(wPid, r.pid.size());
      wPpid = std::max(wPpid, r.ppid.size());
      wExit = std::max(wExit, r.exit.size());
      wEvents = std::max(wEvents, r.events.size());
    }
    auto print = [&](const Row& r) {
      auto right = [](const std::string& s, size_t w) {
        return std::string(w - s.size(), ' ') + s;
      };
      auto left = [](const std::string& s, size_t w) { return s + std::string(w - s.size(), ' '); };
      std::cout << right(r.pid, wPid) << "  " << right(r.ppid, wPpid) << "  "
                << right(r.events, wEvents) << "  " << left(r.exit, wExit) << "  " << r.command
                << '\n';
    };
    print(heading);
    for (auto& r : rows) print(r);
    cli::noteIfCutShort(reader, options.tracePath);
    return 0;
  });
}

}  // namespace rec
