#include "until_failure.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <thread>

#include "errors.h"
#include "exit_codes.h"
#include "scoped_fd.h"
#include "trace_paths.h"

namespace rec {

namespace {

using Clock = std::chrono::steady_clock;

// Collects a run's stdout and stderr (bounded) while it is recorded.
class OutputCapture {
 public:
  static constexpr size_t kLimit = 16 << 20;

  OutputCapture() {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
      throwErrno(kExitInternal, "rec: pipe");
    outRead_.reset(out[0]);
    outWrite_.reset(out[1]);
    errRead_.reset(err[0]);
    errWrite_.reset(err[1]);
    reader_ = std::thread([this] { drain(); });
  }
  ~OutputCapture() {
    closeWriters();
    if (reader_.joinable()) reader_.join();
  }
  int stdoutFd() const { return outWrite_.get(); }
  int stderrFd() const { return errWrite_.get(); }
  // Once the program is gone: waits for everything it wrote.
  const std::string& finish() {
    closeWriters();
    if (reader_.joinable()) reader_.join();
    return text_;
  }

 private:
  void closeWriters() {
    outWrite_.reset();
    errWrite_.reset();
  }
  void drain() {
    pollfd fds[2] = {{outRead_.get(), POLLIN, 0}, {errRead_.get(), POLLIN, 0}};
    int open = 2;
    char buf[65536];
    while (open > 0) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      for (auto& p : fds) {
        if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::read(p.fd, buf, sizeof buf);
        if (n <= 0) {
          if (n < 0 && errno == EINTR) continue;
          p.fd = -1;
          --open;
          continue;
        }
        if (text_.size() < kLimit) text_.append(buf, static_cast<size_t>(n));
      }
    }
  }

  ScopedFd outRead_, outWrite_, errRead_, errWrite_;
  std::thread reader_;
  std::string text_;
};

std::string describeStatus(int status, bool timedOut) {
  if (timedOut) return "killed after the timeout";
  if (WIFEXITED(status)) return fmt::format("exit {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return "?";
}

// Like grep: the pattern is tried on each line, so ^ and $ anchor lines.
bool anyLineMatches(const std::string& text, const std::regex& pattern) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (std::regex_search(text.begin() + static_cast<long>(start),
                          text.begin() + static_cast<long>(end), pattern))
      return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

std::optional<std::chrono::milliseconds> parseDuration(const std::string& text) {
  size_t used = 0;
  double value;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = text.substr(used);
  double ms;
  if (unit.empty() || unit == "s")
    ms = value * 1000;
  else if (unit == "ms")
    ms = value;
  else if (unit == "m")
    ms = value * 60'000;
  else if (unit == "h")
    ms = value * 3'600'000;
  else
    return std::nullopt;
  if (ms < 0) return std::nullopt;
  return std::chrono::milliseconds(static_cast<long long>(ms));
}

int runUntilFailure(const UntilFailureOptions& o) {
  std::optional<std::regex> outputPattern;
  if (o.failOutput) {
    try {
      outputPattern.emplace(*o.failOutput, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw RecError(kExitUsage, fmt::format("rec: bad --fail-output pattern: {}", e.what()));
    }
  }
  bool failOnExit = o.failOnExit || (!o.failOnSignal && !o.failOutput);
  bool failOnSignal = o.failOnSignal || (!o.failOnExit && !o.failOutput);

  std::string finalPath = o.output.empty() ? newTracePath(o.command.at(0)) : o.output;
  std::string runPath = finalPath + ".running";
  auto start = Clock::now();
  int runs = 0;
  for (; runs < o.maxRuns; ++runs) {
    if (o.maxTime.count() > 0 && Clock::now() - start >= o.maxTime) break;
    if (gRecordStopRequested) break;
    auto runStart = Clock::now();
    OutputCapture capture;
    RecordOptions record;
    record.command = o.command;
    record.tracePath = runPath;
    record.verbose = o.verbose;
    record.stdoutFd = capture.stdoutFd();
    record.stderrFd = capture.stderrFd();
    record.timeout = o.timeout;
    record.chaos = o.chaos;
    record.chaos.seed = 0;  // a new seed every run
    RecordSession session(record);
    int status = session.run();
    const std::string& output = capture.finish();
    double seconds = std::chrono::duration<double>(Clock::now() - runStart).count();

    std::string why;
    if (session.timedOut())
      why = "hung";
    else if (failOnExit && WIFEXITED(status) && WEXITSTATUS(status) != 0)
      why = "non-zero exit";
    else if (failOnSignal && WIFSIGNALED(status))
      why = "died of a signal";
    else if (outputPattern && anyLineMatches(output, *outputPattern))
      why = "output matched";
    std::string chaos = o.chaos.enabled ? fmt::format(", chaos seed {}", session.chaosSeed()) : "";
    if (why.empty()) {
      fmt::print(stderr, "rec: run {}: passed ({}, {:.2f} s{})\n", runs + 1,
                 describeStatus(status, false), seconds, chaos);
      ::unlink(runPath.c_str());
      continue;
    }
    ++runs;
    fmt::print(stderr, "rec: run {}: FAILED: {} ({}, {:.2f} s{})\n", runs, why,
               describeStatus(status, session.timedOut()), seconds, chaos);
    if (::rename(runPath.c_str(), finalPath.c_str()) != 0)
      throwErrno(kExitIoError, fmt::format("rec: cannot keep the trace as {}", finalPath));
    if (o.output.empty()) updateLatestLink(finalPath);
    double total = std::chrono::duration<double>(Clock::now() - start).count();
    fmt::print(stderr, "rec: {} run{}, 1 failure, {:.1f} s; failing run kept in {}\n", runs,
               runs == 1 ? "" : "s", total, finalPath);
    fmt::print(stderr, "rec: reproduce it with: rec replay {}\n", finalPath);
    return 1;
  }
  ::unlink(runPath.c_str());
  if (o.output.empty()) ::unlink(finalPath.c_str());  // the reserved name
  double total = std::chrono::duration<double>(Clock::now() - start).count();
  fmt::print(stderr, "rec: {} run{}, no failure, {:.1f} s; no trace kept\n", runs,
             runs == 1 ? "" : "s", total);
  return 0;
}

}  // namespace rec
