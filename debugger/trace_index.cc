#include "trace_index.h"

#include <sched.h>
#include <sys/syscall.h>

#include "syscall_table.h"

namespace rec::dbg {

TraceIndex::TraceIndex(format::TraceReader& reader) {
  reader.rewind();
  std::map<int, int> liveThreads;  // pid -> threads alive
  for (;;) {
    uint64_t index = reader.nextEventIndex();
    auto event = reader.nextEvent();
    if (!event) break;
    eventCount_ = index + 1;
    int tid = event->getTid();
    if (index == 0) {
      initialPid_ = tid;
      processes_[tid].pid = tid;
      processOf_[tid] = tid;
      liveThreads[tid] = 1;
    }
    int pid = processOf(tid);
    auto created = [&](int child, bool thread) {
      if (thread) {
        processOf_[child] = pid;
        liveThreads[pid]++;
      } else {
        processOf_[child] = child;
        ProcessInfo& p = processes_[child];
        p.pid = child;
        p.created = index;
        liveThreads[child] = 1;
      }
    };
    switch (event->which()) {
      case schema::Event::SYSCALL: {
        auto s = event->getSyscall();
        if (s.getNewTask() != 0 && !processOf_.count(s.getNewTask())) {
          uint64_t flags = sys::cloneFlags(s.getNumber(), s.getArgs().size() ? s.getArgs()[0] : 0);
          created(s.getNewTask(), flags & CLONE_THREAD);
        }
        break;
      }
      case schema::Event::SYSCALL_ENTER: {
        auto s = event->getSyscallEnter();
        if (s.getNewTask() != 0 && !processOf_.count(s.getNewTask()))
          created(s.getNewTask(), false);  // vfork-like: a new process
        break;
      }
      case schema::Event::EXEC: {
        if (pid) processes_[pid].execs.push_back(index);
        auto e = event->getExec();
        if (e.getBecomesTid() != 0 && e.getBecomesTid() != tid) {
          // The other threads ended; the exec'ing one goes on as the leader.
          liveThreads[pid] = 1;
        }
        break;
      }
      case schema::Event::SIGNAL:
        if (pid) {
          processes_[pid].lastSignal = index;
          processes_[pid].lastSigno = event->getSignal().getSigno();
        }
        break;
      case schema::Event::EXIT: {
        if (!pid) break;
        if (tid == pid) processes_[pid].waitStatus = event->getExit().getWaitStatus();
        if (--liveThreads[pid] <= 0) processes_[pid].exited = index;
        break;
      }
      default:
        break;
    }
  }
  reader.rewind();
}

const ProcessInfo* TraceIndex::process(int pid) const {
  auto it = processes_.find(pid);
  return it == processes_.end() ? nullptr : &it->second;
}

int TraceIndex::processOf(int tid) const {
  auto it = processOf_.find(tid);
  return it == processOf_.end() ? 0 : it->second;
}

}  // namespace rec::dbg
