// rec dump / info / ps on good, cut-short, garbage and missing traces.
#include <capnp/message.h>
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>

#include "commands.h"
#include "exit_codes.h"
#include "temp_dir.h"
#include "trace_file.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Output {
  int status;
  std::string out;
  std::string err;
};

// Runs fn with fds 1 and 2 redirected to files, as a command's output really
// goes through them (std::cout and stdio alike).
Output capture(const TempDir& dir, const std::function<int()>& fn) {
  std::string outPath = dir.file("stdout"), errPath = dir.file("stderr");
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  int savedOut = dup(1), savedErr = dup(2);
  int outFd = open(outPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int errFd = open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE((savedOut >= 0 && savedErr >= 0 && outFd >= 0 && errFd >= 0));
  dup2(outFd, 1);
  dup2(errFd, 2);
  close(outFd);
  close(errFd);
  int status = -1;
  try {
    status = fn();
  } catch (...) {
    status = -2;
  }
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  dup2(savedOut, 1);
  dup2(savedErr, 2);
  close(savedOut);
  close(savedErr);
  return Output{status, slurp(outPath), slurp(errPath)};
}

// A small process tree: 100 execs, clones thread 101 and forks 102, which
// execs /bin/echo and exits 3; 100 exits 0.
void writeSampleTrace(const std::string& path, bool finish) {
  capnp::MallocMessageBuilder header;
  auto h = header.initRoot<rec::schema::Header>();
  h.setExecutable("/bin/sh");
  auto argv = h.initArgv(3);
  argv.set(0, "sh");
  argv.set(1, "-c");
  argv.set(2, "echo hi");
  h.setCwd("/home/me");
  h.setStartTimeNs(1700000000000000000);
  h.setKernelRelease("6.1.0-test");
  h.setRecVersion("0.1.0");
  h.getCpu().setVendor("GenuineIntel");
  h.getCpu().setModelName("Test CPU");
  auto writer = rec::format::TraceWriter::create(path, header);

  std::vector<std::byte> exe(1000, std::byte{0x90});
  auto exeHash = writer->writeBlob(exe, "/bin/sh");
  auto event = [&](int32_t tid, auto fill) {
    capnp::MallocMessageBuilder m;
    auto e = m.initRoot<rec::schema::Event>();
    e.setTid(tid);
    fill(e);
    writer->writeEvent(m);
  };
  event(100, [&](rec::schema::Event::Builder e) {
    auto x = e.initExec();
    x.setFilename("/bin/sh");
    auto b = exeHash.bytes();
    x.setExeBlob(kj::arrayPtr(reinterpret_cast<const kj::byte*>(b.data()), 16));
    x.initMappings(2);
    x.setStackImage(kj::heapArray<kj::byte>(64));
    auto a = x.initArgv(3);
    a.set(0, "sh");
    a.set(1, "-c");
    a.set(2, "echo hi");
  });
  event(100, [](rec::schema::Event::Builder e) {
    auto s = e.initSyscall();
    s.setNumber(0);  // read
    auto args = s.initArgs(6);
    args.set(0, 0);
    args.set(1, 0x1000);
    args.set(2, 16);
    s.setResult(5);
    auto w = s.initWrites(1)[0];
    w.setAddress(0x1000);
    w.setData(kj::StringPtr("hello").asBytes());
  });
  event(100, [](rec::schema::Event::Builder e) {
    auto s = e.initSyscall();
    s.setNumber(56);  // clone(CLONE_VM|CLONE_THREAD|...)
    auto args = s.initArgs(6);
    args.set(0, 0x3d0f00);
    s.setResult(101);
    s.setNewTask(101);
  });
  event(101, [](rec::schema::Event::Builder e) { e.initRdtsc().setValue(0x1234); });
  event(100, [](rec::schema::Event::Builder e) {
    auto s = e.initSyscall();
    s.setNumber(57);  // fork
    s.initArgs(6);
    s.setResult(102);
    s.setNewTask(102);
  });
  event(102, [](rec::schema::Event::Builder e) {
    auto x = e.initExec();
    x.setFilename("/bin/echo");
    auto a = x.initArgv(2);
    a.set(0, "echo");
    a.set(1, "hi there");
  });
  event(101, [](rec::schema::Event::Builder e) { e.initSyscallEnter().setNumber(0); });
  event(102, [](rec::schema::Event::Builder e) {
    auto s = e.initSignal();
    s.setSigno(11);
    s.setSynchronous(true);
    s.setIp(0x401234);
  });
  event(102, [](rec::schema::Event::Builder e) { e.initExit().setWaitStatus(3 << 8); });
  event(100, [](rec::schema::Event::Builder e) {
    auto s = e.initSyscall();
    s.setNumber(9999);  // not a syscall
    s.initArgs(6).set(0, 0xabc);
    s.setResult(-38);
  });
  event(101, [](rec::schema::Event::Builder e) {
    auto x = e.initExit();
    x.setThreadOnly(true);
  });
  event(100, [](rec::schema::Event::Builder e) { e.initExit().setWaitStatus(0); });
  if (finish) {
    capnp::MallocMessageBuilder footer;
    auto f = footer.initRoot<rec::schema::Footer>();
    f.setEndTimeNs(1700000002500000000);
    f.setExitStatus(0);
    writer->finish(footer);
  }
}

}  // namespace

TEST_CASE("trace commands: missing trace", "[commands]") {
  TempDir dir("rec-commands");
  std::string missing = dir.file("nope.rec");
  for (auto run : std::vector<std::function<int()>>{[&] {
                                                      return rec::runDump({missing, false, false});
                                                    },
                                                    [&] { return rec::runInfo({missing}); },
                                                    [&] { return rec::runPs({missing}); }}) {
    Output o = capture(dir, run);
    CHECK(o.status == rec::kExitNoTrace);
    CHECK(o.err == "rec: cannot open trace '" + missing + "': No such file or directory\n");
    CHECK(o.out.empty());
  }
}

TEST_CASE("trace commands: garbage file", "[commands]") {
  TempDir dir("rec-commands");
  std::string garbage = dir.file("garbage.rec");
  std::ofstream(garbage) << "this is not a trace at all, just some text\n";
  for (auto run : std::vector<std::function<int()>>{[&] {
                                                      return rec::runDump({garbage, true, false});
                                                    },
                                                    [&] { return rec::runInfo({garbage}); },
                                                    [&] { return rec::runPs({garbage}); }}) {
    Output o = capture(dir, run);
    CHECK(o.status == rec::kExitBadTrace);
    CHECK(o.err.rfind("rec: " + garbage + ": not a rec trace", 0) == 0);
  }
}

TEST_CASE("rec dump", "[commands]") {
  TempDir dir("rec-commands");
  std::string path = dir.file("t.rec");
  writeSampleTrace(path, true);

  Output o = capture(dir, [&] { return rec::runDump({path, false, false}); });
  CHECK(o.status == 0);
  CHECK(o.err.empty());
  CHECK_THAT(o.out,
             Catch::StartsWith(
                 "#0 [100] execve(\"/bin/sh\") -> 2 mappings, stack 64 bytes\n#1 [100] read("));
  CHECK_THAT(o.out, Catch::Contains(" = 5 (5 bytes captured)\n"));
  CHECK_THAT(o.out, Catch::Contains("#3 [101] rdtsc = 0x1234\n"));
  CHECK_THAT(o.out, Catch::Contains("#6 [101] <... read entered, blocked>\n"));
  CHECK_THAT(o.out,
             Catch::Contains("#7 [102] --- SIGSEGV delivered (synchronous) at 0x401234 ---\n"));
  CHECK_THAT(o.out, Catch::Contains("#8 [102] +++ exited with 3 +++\n"));
  CHECK_THAT(o.out,
             Catch::Contains("#9 [100] syscall_9999(0xabc, 0x0, 0x0, 0x0, 0x0, 0x0) = -1 ENOSYS"));
  CHECK_THAT(o.out, Catch::EndsWith("#11 [100] +++ exited with 0 +++\n"));

  Output writes = capture(dir, [&] { return rec::runDump({path, false, true}); });
  CHECK_THAT(writes.out, Catch::Contains("0x1000, 5 bytes:\n      0000  68 65 6c 6c 6f"));
  CHECK_THAT(writes.out, Catch::Contains("hello\n"));

  Output json = capture(dir, [&] { return rec::runDump({path, true, false}); });
  CHECK(json.status == 0);
  CHECK_THAT(json.out, Catch::StartsWith("{\"index\":0,\"tid\":100,\"exec\":{"));
  CHECK_THAT(json.out, Catch::Contains("{\"index\":3,\"tid\":101,\"rdtsc\":{\"value\":\"4660\""));
  CHECK(std::count(json.out.begin(), json.out.end(), '\n') == 12);
}

TEST_CASE("rec info", "[commands]") {
  TempDir dir("rec-commands");
  std::string path = dir.file("t.rec");
  writeSampleTrace(path, true);
  Output o = capture(dir, [&] { return rec::runInfo({path}); });
  CHECK(o.status == 0);
  CHECK_THAT(o.out, Catch::Contains("status:       complete\n"));
  CHECK_THAT(o.out, Catch::Contains("argv:         sh -c 'echo hi'\n"));
  CHECK_THAT(o.out, Catch::Contains("start time:   2023-11-14 22:13:20.000 UTC\n"));
  CHECK_THAT(o.out, Catch::Contains("duration:     2.500 s\n"));
  CHECK_THAT(o.out, Catch::Contains("tasks:        3\n"));
  CHECK_THAT(o.out, Catch::Contains("events:       12\n"));
  CHECK_THAT(o.out, Catch::Contains("signals:      1\n"));
  CHECK_THAT(o.out, Catch::Contains("exit status:  exited with 0\n"));
  CHECK_THAT(o.out, Catch::Contains("file blobs:   1, "));
  CHECK_THAT(o.out, Catch::Contains("Test CPU (family 0, model 0, stepping 0)"));
}

TEST_CASE("rec ps", "[commands]") {
  TempDir dir("rec-commands");
  std::string path = dir.file("t.rec");
  writeSampleTrace(path, true);
  Output o = capture(dir, [&] { return rec::runPs({path}); });
  CHECK(o.status == 0);
  CHECK(o.out ==
        "PID  PPID  EVENTS  EXIT           COMMAND\n"
        "100     -       9  exited with 0  sh -c 'echo hi'\n"
        "102   100       3  exited with 3  echo 'hi there'\n");
}

TEST_CASE("trace commands on a cut-short trace", "[commands]") {
  TempDir dir("rec-commands");
  std::string path = dir.file("cut.rec");
  writeSampleTrace(path, false);
  // Chop the last chunk in half, as a killed recorder might leave it.
  auto size = fs::file_size(path);
  fs::resize_file(path, size - 10);

  Output dump = capture(dir, [&] { return rec::runDump({path, false, false}); });
  CHECK(dump.status == 0);
  CHECK_THAT(dump.err, Catch::Contains("is cut short: cut short at byte"));

  Output info = capture(dir, [&] { return rec::runInfo({path}); });
  CHECK(info.status == 0);
  CHECK_THAT(info.out, Catch::Contains("status:       cut short: "));
  CHECK_THAT(info.out, Catch::Contains("duration:     unknown (cut short)\n"));

  Output ps = capture(dir, [&] { return rec::runPs({path}); });
  CHECK(ps.status == 0);
  CHECK_THAT(ps.out, Catch::StartsWith("PID"));
}
