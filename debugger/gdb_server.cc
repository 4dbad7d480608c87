#include "gdb_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "scoped_fd.h"
#include "x86_registers.h"

namespace rec::dbg {

using gdb::fromHex;
using gdb::parseHexNumber;
using gdb::split;
using gdb::toHex;

namespace {

// Linux signal n -> gdb's number, for n = 1..31.
constexpr int kGdbSignal[32] = {0, 1,  2,  3,  4,  5,  6,  10, 8,  9,  30, 11, 31, 13, 14, 15,
                                0, 20, 19, 17, 18, 21, 22, 16, 24, 25, 26, 27, 28, 23, 32, 12};

std::string errorReply(std::string_view why) {
  // gdb prints the text of an "E." reply.
  return fmt::format("E.{}", why);
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// "offset,length" of a qXfer read.
std::optional<std::pair<uint64_t, uint64_t>> parseRange(std::string_view range) {
  auto parts = split(range, ',');
  if (parts.size() != 2) return std::nullopt;
  auto offset = parseHexNumber(parts[0]);
  auto length = parseHexNumber(parts[1]);
  if (!offset || !length) return std::nullopt;
  return std::make_pair(*offset, *length);
}

// A qXfer reply: 'l' for the last piece, 'm' when more follows.
std::string xferSlice(const std::string& data, uint64_t offset, uint64_t length) {
  if (offset >= data.size()) return "l";
  std::string piece = data.substr(offset, std::min<uint64_t>(length, data.size() - offset));
  return (offset + piece.size() >= data.size() ? "l" : "m") + piece;
}

std::string xmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// The struct stat of gdb's File-I/O protocol: big-endian fields.
std::string gdbStat(const struct stat& st) {
  std::string out;
  auto put = [&](uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
  };
  put(st.st_dev, 4);
  put(st.st_ino, 4);
  put(st.st_mode, 4);
  put(st.st_nlink, 4);
  put(st.st_uid, 4);
  put(st.st_gid, 4);
  put(st.st_rdev, 4);
  put(static_cast<uint64_t>(st.st_size), 8);
  put(static_cast<uint64_t>(st.st_blksize), 8);
  put(static_cast<uint64_t>(st.st_blocks), 8);
  put(static_cast<uint64_t>(st.st_atime), 4);
  put(static_cast<uint64_t>(st.st_mtime), 4);
  put(static_cast<uint64_t>(st.st_ctime), 4);
  return out;
}

}  // namespace

int gdbSignalFromHost(int signo) {
  if (signo > 0 && signo < 32) return kGdbSignal[signo];
  if (signo == 32) return 77;
  if (signo >= 33 && signo <= 63) return 45 + (signo - 33);
  if (signo == 64) return 78;
  return 0;
}

int hostSignalFromGdb(int signo) {
  for (int s = 1; s <= 64; ++s)
    if (gdbSignalFromHost(s) == signo) return s;
  return 0;
}

GdbServer::GdbServer(ConnectionSource& connections) : connections_(connections) {}

// ---------------------------------------------------------------------------
// Transport

bool GdbServer::receive(std::string& payload) {
  for (;;) {
    while (!pending_.empty()) {
      payload = std::move(pending_.front());
      pending_.pop_front();
      return true;
    }
    while (auto item = reader_.next()) {
      switch (item->kind) {
        case gdb::Received::Kind::Packet:
          if (!noAck_) connection_->write("+");
          payload = std::move(item->payload);
          return true;
        case gdb::Received::Kind::BadPacket:
          if (!noAck_) connection_->write("-");
          break;
        case gdb::Received::Kind::Nack:
          if (!lastSent_.empty()) connection_->write(lastSent_);
          break;
        case gdb::Received::Kind::Ack:
        case gdb::Received::Kind::Interrupt:  // already stopped
          break;
      }
    }
    char buffer[4096];
    size_t n = connection_->read(buffer, sizeof buffer);
    if (n == 0) return false;
    reader_.feed(std::string_view(buffer, n));
  }
}

void GdbServer::send(const std::string& payload) {
  lastSent_ = gdb::framePacket(payload);
  if (connection_) connection_->write(lastSent_);
}

void GdbServer::console(const std::string& text) {
  send("O" + toHex(text));
}

bool GdbServer::interruptRequested() {
  if (!connection_ || !connection_->readable()) return false;
  char buffer[256];
  size_t n = connection_->read(buffer, sizeof buffer);
  if (n == 0) {
    connection_.reset();  // gone: stop and wait for the next one
    return true;
  }
  reader_.feed(std::string_view(buffer, n));
  bool interrupt = false;
  // An interrupt byte asks to stop now; packets wait for the stop.
  while (auto item = reader_.next()) {
    if (item->kind == gdb::Received::Kind::Interrupt) {
      interrupt = true;
    } else if (item->kind == gdb::Received::Kind::Packet) {
      if (!noAck_) connection_->write("+");
      pending_.push_back(std::move(item->payload));
    }
  }
  return interrupt;
}

// ---------------------------------------------------------------------------
// Stops

Request GdbServer::stopped(const StopInfo& stop) {
  lastStop_ = stop;
  if (stop.tid) generalThread_ = resumeThread_ = stop.tid;
  killed_ = false;
  if (connection_ && waitingForStop_) {
    waitingForStop_ = false;
    send(stopReply(stop));
  }
  for (;;) {
    if (!connection_) {
      connection_ = connections_.next();
      if (!connection_) return Request{Request::Kind::Quit};
      reader_ = gdb::PacketReader();
      pending_.clear();
      noAck_ = false;
      waitingForStop_ = false;
      lastSent_.clear();
    }
    std::string payload;
    if (!receive(payload)) {
      connection_.reset();
      // gdb killed the program and went away: nothing left to debug.
      if (killed_) return Request{Request::Kind::Quit};
      continue;
    }
    request_.reset();
    std::optional<std::string> reply = handle(payload);
    if (request_ && afterRun_ &&
        (request_->kind == Request::Kind::Continue || request_->kind == Request::Kind::Step)) {
      // gdb's `run` resumes the program it thinks it started: rec's run
      // only moved in time, so it stops right there again.
      afterRun_ = false;
      request_.reset();
      StopInfo here = lastStop_;
      here.why = StopInfo::Why::Start;
      reply = stopReply(here, true);
    }
    if (request_) {
      afterRun_ = false;
      if (request_->kind == Request::Kind::Quit) {
        if (reply) send(*reply);
        return *request_;
      }
      if (request_->kind == Request::Kind::GotoEvent ||
          request_->kind == Request::Kind::GotoCheckpoint)
        afterRun_ = true;
      waitingForStop_ = true;
      return *request_;
    }
    if (reply) send(*reply);
    if (payload == "D" || startsWith(payload, "D;")) connection_.reset();  // detached
  }
}

std::string GdbServer::threadId(int tid) const {
  if (!multiprocess_) return fmt::format("{:x}", tid);
  int pid = timeline_ ? timeline_->debuggee() : tid;
  return fmt::format("p{:x}.{:x}", pid, tid);
}

// "p1.2", "2", "-1", "0", "p1.-1": the thread, 0 for any, -1 for all.
std::optional<int> GdbServer::parseThread(std::string_view text) const {
  if (startsWith(text, "p")) {
    auto dot = text.find('.');
    text = dot == std::string_view::npos ? std::string_view("-1") : text.substr(dot + 1);
  }
  if (text == "-1") return -1;
  auto value = parseHexNumber(text);
  if (!value || *value > 0x7fffffff) return std::nullopt;
  return static_cast<int>(*value);
}

int GdbServer::currentThread(bool forResume) const {
  int tid = forResume ? resumeThread_ : generalThread_;
  if (tid > 0 && timeline_->threadAlive(tid)) return tid;
  if (lastStop_.tid && timeline_->threadAlive(lastStop_.tid)) return lastStop_.tid;
  auto live = timeline_->threads();
  return live.empty() ? 0 : live.front();
}

std::string GdbServer::stopReply(const StopInfo& stop, bool plain) {
  int pid = timeline_->debuggee();
  std::string process = multiprocess_ ? fmt::format(";process:{:x}", pid) : "";
  if (stop.why == StopInfo::Why::Exited) {
    if (WIFSIGNALED(stop.waitStatus))
      return fmt::format("X{:02x}{}", gdbSignalFromHost(WTERMSIG(stop.waitStatus)), process);
    return fmt::format("W{:02x}{}", WEXITSTATUS(stop.waitStatus), process);
  }
  if (killed_) return fmt::format("X09{}", process);
  int signo = SIGTRAP;
  if (stop.why == StopInfo::Why::Signal) signo = stop.signo;
  if (stop.why == StopInfo::Why::Interrupted) signo = SIGINT;
  int tid = stop.tid ? stop.tid : currentThread(false);
  std::string out =
      fmt::format("T{:02x}thread:{};", plain ? 0 : gdbSignalFromHost(signo), threadId(tid));
  switch (stop.why) {
    case StopInfo::Why::Breakpoint:
      out += stop.hardware ? "hwbreak:;" : "swbreak:;";
      break;
    case StopInfo::Why::Watchpoint: {
      const char* kind = stop.watch.kind == WatchKind::Write  ? "watch"
                         : stop.watch.kind == WatchKind::Read ? "rwatch"
                                                              : "awatch";
      out += fmt::format("{}:{:x};", kind, stop.watchAddress);
      break;
    }
    case StopInfo::Why::HistoryStart:
      out += "replaylog:begin;";
      break;
    case StopInfo::Why::HistoryEnd:
      out += "replaylog:end;";
      break;
    case StopInfo::Why::Exec:
      if (execEvents_) out += fmt::format("exec:{};", toHex(timeline_->execPath()));
      break;
    default:
      break;
  }
  // The registers gdb reads first, saving a round trip.
  if (auto regs = timeline_->registers(tid)) {
    for (int r : {gdb::kRegRbp, gdb::kRegRsp, gdb::kRegRip})
      out += fmt::format("{:02x}:{};", r, *gdb::registerHex(*regs, r));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Packets

std::optional<std::string> GdbServer::handle(std::string_view p) {
  if (p.empty()) return "";
  if (startsWith(p, "qSupported")) {
    multiprocess_ = p.find("multiprocess+") != std::string_view::npos;
    execEvents_ = p.find("exec-events+") != std::string_view::npos;
    return fmt::format(
        "PacketSize={:x};QStartNoAckMode+;qXfer:features:read+;qXfer:auxv:read+;"
        "qXfer:exec-file:read+;qXfer:threads:read+;swbreak+;hwbreak+;ReverseContinue+;"
        "ReverseStep+;QPassSignals+;QThreadEvents+;vContSupported+;{}{}",
        gdb::kMaxPacketSize, multiprocess_ ? "multiprocess+;" : "",
        execEvents_ ? "exec-events+;" : "");
  }
  if (p == "QStartNoAckMode") {
    send("OK");
    noAck_ = true;
    return std::nullopt;
  }
  if (p == "!") return "OK";
  if (p == "?") return stopReply(lastStop_);
  if (p == "vMustReplyEmpty") return "";
  if (startsWith(p, "H")) {
    if (p.size() < 3) return "E01";
    auto tid = parseThread(p.substr(2));
    if (!tid) return "E01";
    if (p[1] == 'g')
      generalThread_ = *tid;
    else if (p[1] == 'c')
      resumeThread_ = *tid;
    else
      return "E01";
    return "OK";
  }
  if (startsWith(p, "T")) {
    auto tid = parseThread(p.substr(1));
    return tid && *tid > 0 && timeline_->threadAlive(*tid) ? "OK" : "E01";
  }
  if (p == "qC") return "QC" + threadId(currentThread(false));
  if (startsWith(p, "qAttached")) return "1";
  if (p == "qfThreadInfo") {
    std::string out = "m";
    for (int tid : timeline_->threads()) out += (out.size() > 1 ? "," : "") + threadId(tid);
    return out.size() > 1 ? out : "l";
  }
  if (p == "qsThreadInfo") return "l";
  if (p == "qTStatus" || p == "qOffsets" || startsWith(p, "qTfV") || startsWith(p, "qTfP"))
    return "";
  if (startsWith(p, "qSymbol")) return "OK";
  if (startsWith(p, "qXfer:")) {
    auto parts = split(p.substr(6), ':');
    if (parts.size() != 4 || parts[1] != "read") return "E00";
    return xferRead(parts[0], parts[2], parts[3]);
  }
  if (p == "g") {
    auto regs = timeline_->registers(currentThread(false));
    if (!regs) return "E01";
    return gdb::allRegistersHex(*regs);
  }
  if (startsWith(p, "p")) {
    auto regnum = parseHexNumber(p.substr(1));
    auto regs = timeline_->registers(currentThread(false));
    if (!regnum || !regs) return "E01";
    auto hex = gdb::registerHex(*regs, static_cast<int>(*regnum));
    return hex ? *hex : "E01";
  }
  if (startsWith(p, "P") && isOrigRaxReset(p))
    return "OK";  // gdb's `run` resets it; the replay must not follow
  if (startsWith(p, "P") || startsWith(p, "G"))
    return errorReply(
        "rec: registers cannot be changed in a replay (it would no longer be the recording)");
  if (startsWith(p, "m")) return readMemory(p.substr(1));
  if (startsWith(p, "M") || startsWith(p, "X"))
    return errorReply(
        "rec: memory cannot be changed in a replay (it would no longer be the recording)");
  if (startsWith(p, "Z")) return handleBreakpoint(p.substr(1), true);
  if (startsWith(p, "z")) return handleBreakpoint(p.substr(1), false);
  if (p == "vCont?") return "vCont;c;C;s;S";
  if (startsWith(p, "vCont;")) return handleVCont(p.substr(6));
  if (p == "c" || startsWith(p, "C")) {
    request_ = Request{Request::Kind::Continue};
    return std::nullopt;
  }
  if (p == "s" || startsWith(p, "S")) {
    request_ = Request{Request::Kind::Step, currentThread(true)};
    return std::nullopt;
  }
  if (p == "bc") {
    request_ = Request{Request::Kind::ReverseContinue};
    return std::nullopt;
  }
  if (p == "bs") {
    request_ = Request{Request::Kind::ReverseStep, currentThread(true)};
    return std::nullopt;
  }
  if (startsWith(p, "qRcmd,")) {
    auto bytes = fromHex(p.substr(6));
    if (!bytes) return "E01";
    return handleMonitor(std::string(bytes->begin(), bytes->end()));
  }
  if (startsWith(p, "vFile:")) return handleVFile(p.substr(6));
  if (startsWith(p, "vRun")) return handleRun(p);
  if (startsWith(p, "vKill") || p == "k") {
    // gdb forgets the process; rec keeps the replay, for `run` to restart.
    killed_ = true;
    if (p == "k") return std::nullopt;
    return "OK";
  }
  if (startsWith(p, "vAttach;")) {
    killed_ = false;
    return stopReply(lastStop_);
  }
  if (p == "D" || startsWith(p, "D;")) return "OK";
  if (startsWith(p, "QPassSignals:")) {
    std::set<int> pass;
    for (auto s : split(p.substr(13), ';')) {
      if (s.empty()) continue;
      auto n = parseHexNumber(s);
      if (!n) return "E01";
      if (int host = hostSignalFromGdb(static_cast<int>(*n))) pass.insert(host);
    }
    timeline_->setPassSignals(std::move(pass));
    return "OK";
  }
  if (startsWith(p, "QProgramSignals:") || startsWith(p, "QThreadEvents:") || p == "QNonStop:0" ||
      startsWith(p, "QDisableRandomization:") || startsWith(p, "QEnvironment") ||
      startsWith(p, "QSetWorkingDir:") || startsWith(p, "QStartupWithShell:"))
    return "OK";
  return "";
}

// P39=ffffffffffffffff: orig_rax set to -1 (gdb does it when it starts a
// program, so that a syscall is not restarted).
bool GdbServer::isOrigRaxReset(std::string_view p) {
  auto eq = p.find('=');
  if (eq == std::string_view::npos) return false;
  auto regnum = parseHexNumber(p.substr(1, eq - 1));
  return regnum && *regnum == static_cast<uint64_t>(gdb::kRegOrigRax) &&
         p.substr(eq + 1) == "ffffffffffffffff";
}

std::string GdbServer::readMemory(std::string_view args) {
  auto parts = split(args, ',');
  if (parts.size() != 2) return "E01";
  auto address = parseHexNumber(parts[0]);
  auto length = parseHexNumber(parts[1]);
  if (!address || !length) return "E01";
  size_t n = std::min<uint64_t>(*length, (gdb::kMaxPacketSize - 16) / 2);
  std::vector<uint8_t> buffer(n);
  size_t got = timeline_->readMemory(*address, buffer.data(), n);
  if (got == 0 && n > 0) return "E14";
  buffer.resize(got);
  return toHex(buffer);
}

std::string GdbServer::handleBreakpoint(std::string_view args, bool insert) {
  auto parts = split(args, ',');
  if (parts.size() < 3 || parts[0].size() != 1) return "E01";
  auto address = parseHexNumber(parts[1]);
  auto kind = parseHexNumber(parts[2].substr(0, parts[2].find(';')));
  if (!address || !kind) return "E01";
  char type = parts[0][0];
  switch (type) {
    case '0':
    case '1':
      if (insert) return timeline_->insertBreakpoint(*address, type == '1') ? "OK" : "E01";
      timeline_->removeBreakpoint(*address, type == '1');
      return "OK";
    case '2':
    case '3':
    case '4': {
      if (*kind == 0 || *kind > 64) return "E01";
      Watch w{*address, *kind,
              type == '2'   ? WatchKind::Write
              : type == '3' ? WatchKind::Read
                            : WatchKind::Access};
      if (insert) return timeline_->insertWatch(w) ? "OK" : "E01";
      timeline_->removeWatch(w);
      return "OK";
    }
    default:
      return "";
  }
}

std::optional<std::string> GdbServer::handleVCont(std::string_view actions) {
  // Each action: c, C sig, s, S sig, optionally :thread. A step of a thread
  // is what matters; everything else continues (the recorded schedule
  // decides who runs; other threads may stop us first).
  Request r{Request::Kind::Continue};
  for (auto action : split(actions, ';')) {
    if (action.empty()) return "E01";
    std::string_view thread;
    if (auto colon = action.find(':'); colon != std::string_view::npos) {
      thread = action.substr(colon + 1);
      action = action.substr(0, colon);
    }
    char kind = action[0];
    if (kind != 'c' && kind != 'C' && kind != 's' && kind != 'S') return "E01";
    if ((kind == 'C' || kind == 'S') && !parseHexNumber(action.substr(1))) return "E01";
    if (kind == 's' || kind == 'S') {
      int tid = currentThread(true);
      if (!thread.empty()) {
        auto parsed = parseThread(thread);
        if (!parsed) return "E01";
        if (*parsed > 0) tid = *parsed;
      }
      if (r.kind != Request::Kind::Step) r = Request{Request::Kind::Step, tid};
    }
  }
  request_ = r;
  return std::nullopt;
}

std::string GdbServer::xferRead(std::string_view object, std::string_view annex,
                                std::string_view rangeText) {
  auto range = parseRange(rangeText);
  if (!range) return "E01";
  auto [offset, length] = *range;
  length = std::min<uint64_t>(length, gdb::kMaxPacketSize - 16);
  if (object == "features") {
    if (annex != "target.xml") return "E00";
    return xferSlice(gdb::targetDescription(), offset, length);
  }
  if (object == "auxv") return xferSlice(timeline_->auxv(), offset, length);
  if (object == "exec-file") return xferSlice(timeline_->execPath(), offset, length);
  if (object == "threads") return xferSlice(threadsXml(), offset, length);
  return "";
}

std::string GdbServer::threadsXml() {
  std::string out = "<?xml version=\"1.0\"?>\n<threads>\n";
  for (int tid : timeline_->threads())
    out += fmt::format("<thread id=\"{}\" core=\"0\"/>\n", xmlEscape(threadId(tid)));
  return out + "</threads>\n";
}

std::optional<std::string> GdbServer::handleRun(std::string_view payload) {
  // vRun;filename;arg...: rec's `run` means "go back": no argument to the
  // program's start, N to event N, cN to checkpoint N.
  auto parts = split(payload, ';');
  Request r{Request::Kind::GotoEvent};
  r.event = 0;
  if (parts.size() >= 3 && !parts[2].empty()) {
    auto bytes = fromHex(parts[2]);
    if (!bytes) return "E01";
    std::string arg(bytes->begin(), bytes->end());
    try {
      if (!arg.empty() && arg[0] == 'c') {
        r.kind = Request::Kind::GotoCheckpoint;
        r.checkpoint = std::stoi(arg.substr(1));
        if (!timeline_->hasCheckpoint(r.checkpoint))
          return errorReply(fmt::format("rec: no checkpoint {}", r.checkpoint));
      } else {
        r.event = std::stoull(arg);
      }
    } catch (const std::exception&) {
      return errorReply(
          fmt::format("rec: run takes an event number or cN (a checkpoint), not '{}'", arg));
    }
  } else {
    r.event = 0;  // the start
  }
  killed_ = false;
  request_ = r;
  return std::nullopt;
}

std::string GdbServer::handleMonitor(const std::string& line) {
  std::string command = line;
  std::string arg;
  if (auto space = line.find(' '); space != std::string::npos) {
    command = line.substr(0, space);
    arg = line.substr(space + 1);
  }
  std::string out;
  if (command == "when") {
    const Moment& now = timeline_->now();
    out = fmt::format("Current event: {}\n", now.event);
    if (!now.path.empty()) out += fmt::format("(inside it: {})\n", describe(now));
  } else if (command == "checkpoint") {
    int id = timeline_->addCheckpoint();
    out = fmt::format("Checkpoint {} at {}\n", id, describe(timeline_->now()));
  } else if (command == "checkpoints") {
    out = timeline_->describeCheckpoints();
  } else if (command == "stats") {
    auto s = timeline_->checkpointStats();
    out = fmt::format(
        "{} automatic checkpoint(s), {} KiB of memory of their own; {} made, {} restored\n",
        s.count, s.privateBytes / 1024, s.created, s.restored);
  } else if (command == "help" || command.empty()) {
    out =
        "rec's commands (gdb's `monitor CMD`; rec's gdb also defines them as commands):\n"
        "  when             the current event (as `rec dump` numbers them)\n"
        "  checkpoint       remember this moment; `restart N` goes back to it\n"
        "  checkpoints      list them\n"
        "  stats            memory used by automatic checkpoints\n"
        "Moving: `run` (the start), `run N` (event N), `restart N` (checkpoint N);\n"
        "reverse-continue, reverse-step, reverse-next, reverse-stepi, reverse-finish.\n";
  } else {
    return errorReply(
        fmt::format("rec: unknown monitor command '{}' (try 'monitor help')", command));
  }
  console(out);
  return "OK";
}

std::string GdbServer::handleVFile(std::string_view p) {
  auto colon = p.find(':');
  std::string_view op = p.substr(0, colon);
  std::string_view args = colon == std::string_view::npos ? "" : p.substr(colon + 1);
  auto parts = split(args, ',');
  auto fail = [](int error) { return fmt::format("F-1,{:x}", error); };
  if (op == "setfs") return "F0";
  if (op == "open") {
    if (parts.size() < 2) return "E01";
    auto name = fromHex(parts[0]);
    auto flags = parseHexNumber(parts[1]);
    if (!name || !flags) return "E01";
    if (*flags != 0) return fail(EACCES);  // read-only: gdb's O_RDONLY is 0
    std::string path(name->begin(), name->end());
    if (startsWith(path, "/proc/")) path = timeline_->procPath(path);
    // What the recording had there, else (debug files, unchanged files) the
    // file on this machine.
    std::string local = timeline_->localFileFor(path);
    if (local.empty()) {
      char resolved[PATH_MAX];
      if (::realpath(path.c_str(), resolved)) local = timeline_->localFileFor(resolved);
    }
    if (local.empty()) local = path;
    if (files_.size() > 64) return fail(EMFILE);
    ScopedFd fd(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return fail(errno == ENOENT ? ENOENT : EACCES);
    int id = nextFile_++;
    files_[id] = std::move(fd);
    return fmt::format("F{:x}", id);
  }
  if (op == "close") {
    auto id = parts.empty() ? std::nullopt : parseHexNumber(parts[0]);
    if (!id || !files_.erase(static_cast<int>(*id))) return fail(EBADF);
    return "F0";
  }
  if (op == "pread" || op == "fstat") {
    auto id = parts.empty() ? std::nullopt : parseHexNumber(parts[0]);
    auto it = id ? files_.find(static_cast<int>(*id)) : files_.end();
    if (it == files_.end()) return fail(EBADF);
    const ScopedFd& fd = it->second;
    if (op == "fstat") {
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) return fail(EIO);
      std::string data = gdbStat(st);
      return fmt::format("F{:x};", data.size()) + data;
    }
    if (parts.size() != 3) return "E01";
    auto count = parseHexNumber(parts[1]);
    auto offset = parseHexNumber(parts[2]);
    if (!count || !offset) return "E01";
    std::string data(std::min<uint64_t>(*count, gdb::kMaxPacketSize / 2 - 64), '\0');
    ssize_t n = ::pread(fd.get(), data.data(), data.size(), static_cast<off_t>(*offset));
    if (n < 0) return fail(EIO);
    data.resize(static_cast<size_t>(n));
    return fmt::format("F{:x};", n) + data;
  }
  if (op == "readlink" || op == "unlink" || op == "pwrite") return fail(ENOSYS);
  return "";
}

}  // namespace rec::dbg
