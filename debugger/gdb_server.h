// The gdb remote serial protocol server over a Timeline: answers gdb's
// packets at each stop (registers, memory, threads, files, breakpoints,
// rec's monitor commands) until gdb asks to move on, forwards or backwards.
//
// gdb may change nothing: writes to registers and memory (and so inferior
// function calls) get an error reply saying why, and the replay is never
// touched by them. Bad packets get an error reply or `-`; nothing gdb sends
// can crash the server or end the replay.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "gdb_protocol.h"
#include "scoped_fd.h"
#include "timeline.h"

namespace rec::dbg {

// A byte stream to gdb (a socket; a pipe pair in tests).
class Connection {
 public:
  virtual ~Connection() = default;
  // Blocks for some bytes; 0 at end of stream.
  virtual size_t read(char* buffer, size_t size) = 0;
  virtual bool write(std::string_view bytes) = 0;
  // Whether bytes are waiting (does not block).
  virtual bool readable() = 0;
};

// Where connections come from: one socket accepted after another.
class ConnectionSource {
 public:
  virtual ~ConnectionSource() = default;
  // The next connection; nullptr when there will be none (rec launched gdb
  // and it is gone).
  virtual std::unique_ptr<Connection> next() = 0;
};

class GdbServer : public StopHandler {
 public:
  explicit GdbServer(ConnectionSource& connections);
  void setTimeline(Timeline& timeline) { timeline_ = &timeline; }

  Request stopped(const StopInfo& stop) override;
  bool interruptRequested() override;

  // For tests of the protocol layer: handles one packet's payload and
  // returns the reply ("" = unsupported). Resume packets return nullopt
  // (they are answered by a stop reply later).
  std::optional<std::string> handle(std::string_view payload);
  std::optional<Request> pendingRequest() const { return request_; }

 private:
  bool receive(std::string& payload);  // false: connection gone
  void send(const std::string& payload);
  void console(const std::string& text);
  // `plain`: no signal (gdb prints "Program stopped.").
  std::string stopReply(const StopInfo& stop, bool plain = false);
  static bool isOrigRaxReset(std::string_view packet);
  std::string threadId(int tid) const;
  std::optional<int> parseThread(std::string_view text) const;
  int currentThread(bool forResume) const;
  std::string xferRead(std::string_view object, std::string_view annex, std::string_view range);
  std::string threadsXml();
  std::string handleMonitor(const std::string& command);
  std::string handleVFile(std::string_view payload);
  std::optional<std::string> handleVCont(std::string_view actions);
  std::string handleBreakpoint(std::string_view payload, bool insert);
  std::optional<std::string> handleRun(std::string_view payload);
  std::string readMemory(std::string_view args);

  ConnectionSource& connections_;
  std::unique_ptr<Connection> connection_;
  Timeline* timeline_ = nullptr;
  gdb::PacketReader reader_;
  std::deque<std::string> pending_;  // packets that came while the replay ran
  bool noAck_ = false;
  bool multiprocess_ = false;
  bool execEvents_ = false;
  bool waitingForStop_ = false;  // gdb sent a resume: the next stop is its reply
  bool killed_ = false;          // gdb killed the process (extended mode): it is gone for gdb
  bool afterRun_ = false;        // moved by `run`: gdb's next resume is its own, not the user's
  StopInfo lastStop_;
  int generalThread_ = 0;  // Hg
  int resumeThread_ = 0;   // Hc
  std::optional<Request> request_;
  std::string lastSent_;
  std::map<int, ScopedFd> files_;  // vFile descriptors: gdb's fd -> open local file
  int nextFile_ = 1;
};

// gdb's signal numbers (include/gdb/signals.def) from Linux's, and back.
int gdbSignalFromHost(int signo);
int hostSignalFromGdb(int signo);

}  // namespace rec::dbg
