#include "debug_command.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "errors.h"
#include "exit_codes.h"
#include "gdb_server.h"
#include "scoped_fd.h"

namespace rec::dbg {

namespace {

class SocketConnection : public Connection {
 public:
  explicit SocketConnection(int fd) : fd_(fd) {}
  size_t read(char* buffer, size_t size) override {
    for (;;) {
      ssize_t n = ::read(fd_.get(), buffer, size);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) return 0;
    }
  }
  bool write(std::string_view bytes) override {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  bool readable() override {
    pollfd p{fd_.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

 private:
  ScopedFd fd_;
};

class Listener : public ConnectionSource {
 public:
  Listener(int fd, bool once) : fd_(fd), once_(once) {}
  std::unique_ptr<Connection> next() override {
    if (once_ && used_) return nullptr;
    used_ = true;
    for (;;) {
      int fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        throwErrno(kExitInternal, "rec: accepting gdb's connection");
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return std::make_unique<SocketConnection>(fd);
    }
  }

 private:
  ScopedFd fd_;
  bool once_;
  bool used_ = false;
};

// A socket listening on 127.0.0.1:port (0: any); returns it and the port.
std::pair<int, int> listenOn(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throwErrno(kExitInternal, "rec: socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    throw RecError(kExitUsage,
                   fmt::format("rec: cannot listen on 127.0.0.1:{}: {}", port, std::strerror(err)));
  }
  if (::listen(fd, 4) != 0) throwErrno(kExitInternal, "rec: listen");
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return {fd, ntohs(addr.sin_port)};
}

}  // namespace

std::string gdbInitScript(int port) {
  // rec's commands go to the server as `monitor` commands; moving in time
  // goes through `run` so that gdb forgets what it knew of the old state.
  // gdb has its own `checkpoint` and `restart` (for live forks): rec's
  // replace them.
  return fmt::format(R"(set confirm off
define when
  monitor when
end
document when
Print the current event number of the replay (as `rec dump` numbers them).
end
define checkpoint
  monitor checkpoint
end
document checkpoint
Remember this moment of the replay; `restart N` comes back to it.
end
define restart
  run c$arg0
end
document restart
Go back (or forward) to checkpoint N.
end
define goto
  run $arg0
end
document goto
Go to event N of the recording (before it is applied).
end
# rec may need seconds to answer while it replays (gdb gives up after 2)
set remotetimeout 60
target extended-remote 127.0.0.1:{}
set confirm on
)",
                     port);
}

int runDebugger(const DebugOptions& options) {
  auto [listenFd, port] = listenOn(options.port);
  Listener listener(listenFd, options.launchGdb);
  GdbServer server(listener);
  TimelineOptions t;
  t.tracePath = options.tracePath;
  t.force = options.force;
  t.debuggee = options.debuggee;
  t.start = options.start;
  t.startEvent = options.startEvent;
  t.checkpoints = options.checkpoints;
  // Opening the trace here reports a bad trace or process before gdb runs.
  Timeline timeline(t, server);
  server.setTimeline(timeline);

  if (options.launchGdb) {
    char dir[] = "/tmp/rec-gdb-XXXXXX";
    if (!::mkdtemp(dir)) throwErrno(kExitInternal, "rec: mkdtemp");
    std::string init = std::string(dir) + "/init.gdb";
    std::ofstream(init) << gdbInitScript(port);
    // gdb runs in the process the shell waits for, with the terminal; rec
    // serves from a child (so rec's waits never meet gdb), which ends with
    // gdb's connection.
    pid_t child = ::fork();
    if (child < 0) throwErrno(kExitInternal, "rec: fork");
    if (child > 0) {
      ::close(listenFd);
      std::vector<std::string> args = {options.gdb, "-q", "-x", init};
      args.insert(args.end(), options.gdbArgs.begin(), options.gdbArgs.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      fmt::print(stderr, "rec: cannot run {}: {}\n", options.gdb, std::strerror(errno));
      ::kill(child, SIGTERM);
      std::_Exit(kExitNotFound);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    ::signal(SIGINT, SIG_IGN);  // ^C is gdb's: it reaches rec as a packet
    int status = kExitInternal;
    try {
      status = timeline.run();
    } catch (const RecError& e) {
      fmt::print(stderr, "{}\n", e.what());
      status = e.exitCode();
    }
    ::unlink(init.c_str());
    ::rmdir(dir);
    std::_Exit(status);
  }
  fmt::print(stderr,
             "rec: gdb server on 127.0.0.1:{}; connect with: gdb -ex 'set remotetimeout 60' -ex "
             "'target extended-remote "
             "127.0.0.1:{}'\n",
             port, port);
  return timeline.run();
}

}  // namespace rec::dbg
