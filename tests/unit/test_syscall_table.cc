// The syscall table: completeness against this machine's kernel headers,
// internal consistency, the memory ranges each kind of out param yields, and
// the strace-like rendering.
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "syscall_table.h"

using namespace rec::sys;

namespace {

// Tracee memory as a few buffers at chosen addresses; reads stop at a gap.
class FakeMemory : public MemoryReader {
 public:
  void map(uint64_t addr, std::vector<uint8_t> bytes) { regions_[addr] = std::move(bytes); }
  void map(uint64_t addr, size_t len) { map(addr, std::vector<uint8_t>(len)); }
  template <typename T>
  void put(uint64_t addr, const T& value) {
    for (auto& [base, bytes] : regions_) {
      if (addr >= base && addr + sizeof value <= base + bytes.size()) {
        std::memcpy(bytes.data() + (addr - base), &value, sizeof value);
        return;
      }
    }
    FAIL("put outside mapped memory");
  }
  size_t read(uint64_t addr, void* buf, size_t len) override {
    size_t done = 0;
    while (done < len) {
      auto it = regions_.upper_bound(addr + done);
      if (it == regions_.begin()) break;
      --it;
      uint64_t off = addr + done - it->first;
      if (off >= it->second.size()) break;
      size_t n = std::min(len - done, it->second.size() - off);
      std::memcpy(static_cast<uint8_t*>(buf) + done, it->second.data() + off, n);
      done += n;
    }
    return done;
  }

 private:
  std::map<uint64_t, std::vector<uint8_t>> regions_;
};

const SyscallRow& row(std::string_view name) {
  const SyscallRow* r = findSyscall(name);
  REQUIRE(r != nullptr);
  return *r;
}

std::vector<MemRange> ranges(std::string_view name, std::array<uint64_t, 6> args, int64_t result,
                             MemoryReader& mem) {
  return outputRanges(row(name), args, result, mem);
}

bool has(const std::vector<MemRange>& rs, uint64_t addr, uint64_t len) {
  for (const auto& r : rs) {
    if (r.addr == addr && r.len == len) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("every syscall in the system's unistd_64.h has a row with its name") {
  std::ifstream header("/usr/include/x86_64-linux-gnu/asm/unistd_64.h");
  if (!header) {
    WARN("unistd_64.h not installed: skipped");
    return;
  }
  std::regex define(R"(#define\s+__NR_(\w+)\s+(\d+))");
  std::string line;
  int seen = 0;
  while (std::getline(header, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, define)) continue;
    int nr = std::stoi(m[2]);
    INFO(m[1] << " = " << nr);
    const SyscallRow* r = findSyscall(nr);
    REQUIRE(r != nullptr);
    CHECK(r->name == m[1].str());
    CHECK(findSyscall(m[1].str()) == r);
    ++seen;
  }
  CHECK(seen > 350);
}

TEST_CASE("rows cover 0..336 and 424..469 without gaps, ordered, unique") {
  auto rows = allSyscalls();
  std::set<int> numbers;
  std::set<std::string_view> names;
  for (size_t i = 0; i < rows.size(); ++i) {
    CHECK(numbers.insert(rows[i].number).second);
    CHECK(names.insert(rows[i].name).second);
    if (i) CHECK(rows[i - 1].number < rows[i].number);
  }
  for (int nr = 0; nr <= 336; ++nr) CHECK(numbers.count(nr));
  for (int nr = 424; nr <= 469; ++nr) CHECK(numbers.count(nr));
  CHECK(numbers.size() == 337 + 46);
  CHECK(findSyscall(337) == nullptr);
  CHECK(findSyscall(-1) == nullptr);
  CHECK(findSyscall(kMaxSyscall) == nullptr);
  CHECK(findSyscall("no_such_call") == nullptr);
  CHECK(findSyscall(SYS_openat)->name == "openat");
  CHECK(findSyscall("mseal")->number == 462);
}

TEST_CASE("rows are internally consistent") {
  for (const SyscallRow& r : allSyscalls()) {
    INFO(r.name);
    REQUIRE(r.argCount <= 6);
    for (int i = 0; i < 6; ++i) CHECK((r.args[i] != Arg::None) == (i < r.argCount));
    if (r.support == Support::Refused) CHECK(!r.note.empty());
    if (r.flags & kResultFromTrace) CHECK(r.support == Support::Executed);
    if (r.support == Support::Passthrough) CHECK(!r.traced());
    for (const OutParam& o : r.outs) {
      if (o.kind == Out::None) continue;
      CHECK(o.arg < r.argCount);
      CHECK(r.args[o.arg] == (o.kind == Out::IoctlSize ? Arg::Hex : Arg::Ptr));
      switch (o.kind) {
        case Out::ByArg:
        case Out::ArgTimes:
        case Out::LenPtr:
        case Out::Iovec:
        case Out::CString:
          CHECK(o.lenArg < r.argCount);
          CHECK(o.lenArg != o.arg);
          break;
        case Out::Fixed:
        case Out::ResultTimes:
          CHECK(o.size > 0);
          break;
        default:
          break;
      }
    }
  }
}

// The syscall buffer's pipe and socket rules (docs/syscall-buffer.md):
// calls of the (fd, buf, len, ...) or (fd, iov, count) shape, whose one
// output is the bytes read at buf or over the iovecs; send/recv only without an address (what recvfrom writes
// there is not in the buffer's entry).
TEST_CASE("buffered pipe and socket rows") {
  std::set<std::string> stream;
  for (const SyscallRow& r : allSyscalls()) {
    if (!(r.flags & kBuffered)) continue;
    if (r.buffer.fd != BufferFd::Stream && r.buffer.fd != BufferFd::SocketMsg) continue;
    INFO(r.name);
    stream.insert(std::string(r.name));
    CHECK(r.args[0] == Arg::Fd);
    CHECK(r.args[1] == Arg::Ptr);
    if (r.outs[0].kind == Out::Iovec || r.fdWrite.data == Data::Iovec) {
      // readv/writev: (fd, iov, count)
      CHECK((r.outs[0].kind == Out::None ||
             (r.outs[0].arg == 1 && r.outs[0].lenArg == 2)));
      CHECK((r.fdWrite.data == Data::None ||
             (r.fdWrite.dataArg == 1 && r.fdWrite.countArg == 2)));
    } else {
      CHECK(r.args[2] == Arg::Size);
      CHECK((r.outs[0].kind == Out::None ||
             (r.outs[0].kind == Out::ByResult && r.outs[0].arg == 1)));
    }
    if (r.buffer.fd == BufferFd::SocketMsg) {
      CHECK(r.buffer.arg == 4);
      CHECK(r.buffer.oneOf);
      CHECK(r.buffer.count == 1);
      CHECK(r.buffer.values[0] == 0);
    } else {
      for (size_t i = 1; i < r.outs.size(); ++i) CHECK(r.outs[i].kind == Out::None);
    }
  }
  CHECK(stream ==
        std::set<std::string>{"read", "write", "readv", "writev", "recvfrom", "sendto"});
}

TEST_CASE("support levels follow the classification rules") {
  std::set<std::string_view> passthrough = {
      "mprotect",        "munmap",       "madvise",     "mlock",         "munlock",
      "mlockall",        "munlockall",   "mlock2",      "msync",         "rt_sigaction",
      "rt_sigreturn",    "sigaltstack", "arch_prctl",    "set_robust_list",
      "get_robust_list", "exit",         "exit_group",  "pkey_mprotect", "pkey_alloc",
      "pkey_free",       "uretprobe",    "uprobe"};
  for (const SyscallRow& r : allSyscalls()) {
    INFO(r.name);
    CHECK((r.support == Support::Passthrough) == (passthrough.count(r.name) == 1));
  }
  for (auto name : {"mmap", "mremap", "brk", "execve", "execveat", "clone", "fork", "vfork",
                    "shmat", "shmdt", "rt_sigsuspend", "pause", "set_tid_address",
                    "rt_sigprocmask"}) {
    INFO(name);
    CHECK(row(name).support == Support::Executed);
  }
  for (auto name : {"io_uring_setup", "io_uring_enter", "io_uring_register", "clone3", "rseq",
                    "bpf", "userfaultfd", "io_setup", "io_submit", "init_module", "kexec_load"}) {
    INFO(name);
    CHECK(row(name).support == Support::Refused);
  }
  // process_vm_writev: into the caller itself (another process: refused at entry).
  // ptrace: between tracees, answered by the recorder (docs/ptrace-emulation.md).
  for (auto name : {"getpid", "gettid", "read", "write", "getrandom", "kill", "futex", "ioctl",
                    "perf_event_open", "process_vm_writev", "ptrace"}) {
    INFO(name);
    CHECK(row(name).support == Support::Emulated);
  }
  CHECK(row("clone").flags & kResultFromTrace);
  CHECK(row("read").mayBlock());
  CHECK(row("futex").mayBlock());
  CHECK(row("wait4").mayBlock());
  CHECK_FALSE(row("pread64").mayBlock());
  CHECK(row("mmap").hook == Hook::Mmap);
  CHECK(row("ptrace").hook == Hook::Ptrace);
  CHECK(row("wait4").hook == Hook::Wait);
  CHECK(row("writev").fdWrite.data == Data::Iovec);
  CHECK(row("sendfile").fdWrite.data == Data::Kernel);
  CHECK(row("sched_yield").flags & kYields);
  CHECK(row("dup2").hook == Hook::Dup);
  CHECK(row("openat").flags & kReturnsFd);
  CHECK(row("exit_group").flags & kNeverReturns);
}

TEST_CASE("outputRanges: result-sized, fixed and counted out params") {
  FakeMemory mem;
  mem.map(0x1000, 4096);
  SECTION("read writes result bytes") {
    auto rs = ranges("read", {3, 0x1000, 4096}, 100, mem);
    REQUIRE(rs.size() == 1);
    CHECK(has(rs, 0x1000, 100));
    CHECK(ranges("read", {3, 0x1000, 4096}, 0, mem).empty());
  }
  SECTION("a failed call writes nothing") {
    CHECK(ranges("read", {3, 0x1000, 4096}, -11, mem).empty());
    CHECK(ranges("stat", {0x1000, 0x1000}, -2, mem).empty());
  }
  SECTION("stat writes a 144-byte struct stat") {
    auto rs = ranges("stat", {0x1000, 0x1100}, 0, mem);
    REQUIRE(rs.size() == 1);
    CHECK(has(rs, 0x1100, 144));
  }
  SECTION("NULL out pointers are skipped") {
    CHECK(ranges("time", {0}, 1700000000, mem).empty());
    auto rs = ranges("wait4", {0xffffffffffffffff, 0x1000, 0, 0}, 42, mem);
    REQUIRE(rs.size() == 1);
    CHECK(has(rs, 0x1000, 4));
  }
  SECTION("poll writes nfds pollfds") {
    auto rs = ranges("poll", {0x1000, 3, 100}, 1, mem);
    REQUIRE(rs.size() == 1);
    CHECK(has(rs, 0x1000, 24));
  }
  SECTION("epoll_wait writes result events of 12 bytes") {
    CHECK(has(ranges("epoll_wait", {5, 0x1000, 64, 100}, 2, mem), 0x1000, 24));
  }
  SECTION("ranges are not probed: reading them stops at unmapped memory by itself") {
    auto rs = ranges("read", {3, 0x1f00, 4096}, 4096, mem);
    REQUIRE(rs.size() == 1);
    CHECK(has(rs, 0x1f00, 4096));
    CHECK(ranges("read", {3, 0, 16}, 16, mem).empty());  // NULL is never written
  }
  SECTION("an interrupted nanosleep reports the time left") {
    auto rs = ranges("nanosleep", {0x1000, 0x1100}, -516, mem);
    REQUIRE(rs.size() == 1);
    CHECK(has(rs, 0x1100, 16));
    CHECK(ranges("nanosleep", {0x1000, 0x1100}, 0, mem).size() == 1);
  }
}

TEST_CASE("pendingOutputRanges: what a blocked call may still write") {
  FakeMemory mem;
  mem.map(0x1000, 4096);
  // Its count arguments bound the by-result outputs.
  CHECK(has(pendingOutputRanges(row("read"), {3, 0x1000, 300}, mem), 0x1000, 300));
  CHECK(has(pendingOutputRanges(row("epoll_wait"), {5, 0x1000, 64, 100}, mem), 0x1000, 64 * 12));
  // The time left, written when the call times out or is interrupted.
  CHECK(has(pendingOutputRanges(row("pselect6"), {0, 0, 0, 0, 0x1100, 0}, mem), 0x1100, 16));
  CHECK(has(pendingOutputRanges(row("nanosleep"), {0x1000, 0x1100}, mem), 0x1100, 16));
  // A futex wait writes nothing.
  CHECK(pendingOutputRanges(row("futex"), {0x1000, 0, 0, 0, 0, 0}, mem).empty());
}

TEST_CASE("outputRanges: iovecs, msghdr and length pointers") {
  FakeMemory mem;
  mem.map(0x1000, 4096);   // iovec arrays, msghdrs, lengths
  mem.map(0x10000, 4096);  // buffers
  SECTION("readv spreads result bytes over the iovecs") {
    mem.put<uint64_t>(0x1000, 0x10000);
    mem.put<uint64_t>(0x1008, 10);
    mem.put<uint64_t>(0x1010, 0x10100);
    mem.put<uint64_t>(0x1018, 100);
    mem.put<uint64_t>(0x1020, 0x10200);
    mem.put<uint64_t>(0x1028, 100);
    auto rs = ranges("readv", {3, 0x1000, 3}, 50, mem);
    REQUIRE(rs.size() == 2);
    CHECK(has(rs, 0x10000, 10));
    CHECK(has(rs, 0x10100, 40));
  }
  SECTION("recvmsg writes name, iov data, control and the msghdr") {
    uint64_t msg = 0x1000;
    mem.put<uint64_t>(msg + 0, 0x10000);   // msg_name
    mem.put<uint32_t>(msg + 8, 16);        // msg_namelen after the call
    mem.put<uint64_t>(msg + 16, 0x1100);   // msg_iov
    mem.put<uint64_t>(msg + 24, 1);        // msg_iovlen
    mem.put<uint64_t>(msg + 32, 0x10800);  // msg_control
    mem.put<uint64_t>(msg + 40, 24);       // msg_controllen after the call
    mem.put<uint64_t>(0x1100, 0x10400);
    mem.put<uint64_t>(0x1108, 1024);
    auto rs = ranges("recvmsg", {3, msg, 0}, 300, mem);
    CHECK(rs.size() == 4);
    CHECK(has(rs, msg, 56));
    CHECK(has(rs, 0x10000, 16));
    CHECK(has(rs, 0x10400, 300));
    CHECK(has(rs, 0x10800, 24));
  }
  SECTION("accept writes the address by the length after the call, and the length") {
    mem.put<uint32_t>(0x1000, 16);
    auto rs = ranges("accept", {3, 0x10000, 0x1000}, 4, mem);
    REQUIRE(rs.size() == 2);
    CHECK(has(rs, 0x10000, 16));
    CHECK(has(rs, 0x1000, 4));
  }
  SECTION("a socket address length is capped at sockaddr_storage") {
    mem.put<uint32_t>(0x1000, 1000);
    CHECK(has(ranges("getpeername", {3, 0x10000, 0x1000}, 0, mem), 0x10000, 128));
  }
  SECTION("recvfrom: data, address and its length") {
    mem.put<uint32_t>(0x1000, 110);
    auto rs = ranges("recvfrom", {3, 0x10000, 2048, 0, 0x10800, 0x1000}, 7, mem);
    REQUIRE(rs.size() == 3);
    CHECK(has(rs, 0x10000, 7));
    CHECK(has(rs, 0x10800, 110));
  }
}

TEST_CASE("outputRanges: hooks") {
  FakeMemory mem;
  mem.map(0x1000, 4096);
  SECTION("ioctl TIOCGWINSZ writes a struct winsize") {
    auto rs = ranges("ioctl", {1, TIOCGWINSZ, 0x1000}, 0, mem);
    REQUIRE(rs.size() == 1);
    CHECK(has(rs, 0x1000, 8));
  }
  SECTION("ioctl TCGETS writes the kernel's 36-byte termios") {
    CHECK(has(ranges("ioctl", {0, TCGETS, 0x1000}, 0, mem), 0x1000, 36));
  }
  SECTION("an _IOR request writes _IOC_SIZE bytes, an _IOW one nothing") {
    auto rs = ranges("ioctl", {3, _IOR('x', 7, char[40]), 0x1000}, 0, mem);
    REQUIRE(rs.size() == 1);
    CHECK(has(rs, 0x1000, 40));
    CHECK(ranges("ioctl", {3, _IOW('x', 7, char[40]), 0x1000}, 0, mem).empty());
    CHECK(ranges("ioctl", {3, FIONBIO, 0x1000}, 0, mem).empty());
  }
  SECTION("fcntl F_GETLK writes a struct flock") {
    CHECK(has(ranges("fcntl", {3, 5, 0x1000}, 0, mem), 0x1000, 32));
    CHECK(ranges("fcntl", {3, 1, 0x1000}, 1, mem).empty());
  }
  SECTION("ptrace requests write what they read, sized by request") {
    CHECK(has(ranges("ptrace", {2 /* PEEKDATA */, 42, 0x2000, 0x1000}, 0, mem), 0x1000, 8));
    CHECK(has(ranges("ptrace", {12 /* GETREGS */, 42, 0, 0x1000}, 0, mem), 0x1000, 216));
    CHECK(has(ranges("ptrace", {0x4202 /* GETSIGINFO */, 42, 0, 0x1000}, 0, mem), 0x1000, 128));
    CHECK(ranges("ptrace", {5 /* POKEDATA */, 42, 0x2000, 0x1000}, 0, mem).empty());
    CHECK(ranges("ptrace", {7 /* CONT */, 42, 0, 9}, 0, mem).empty());
  }
  SECTION("prctl PR_GET_NAME writes 16 bytes") {
    CHECK(has(ranges("prctl", {16, 0x1000, 0, 0, 0}, 0, mem), 0x1000, 16));
  }
  SECTION("select writes the fd sets and the timeout") {
    auto rs = ranges("select", {65, 0x1000, 0, 0x1100, 0x1200}, 1, mem);
    REQUIRE(rs.size() == 3);
    CHECK(has(rs, 0x1000, 16));
    CHECK(has(rs, 0x1100, 16));
    CHECK(has(rs, 0x1200, 16));
  }
  SECTION("sendmmsg writes msg_len of the sent entries") {
    auto rs = ranges("sendmmsg", {3, 0x1000, 4, 0}, 2, mem);
    REQUIRE(rs.size() == 2);
    CHECK(has(rs, 0x1000 + 56, 4));
    CHECK(has(rs, 0x1000 + 64 + 56, 4));
  }
  SECTION("mincore writes a byte per page") {
    CHECK(has(ranges("mincore", {0x7f0000000000, 3 * 4096 + 1, 0x1000}, 0, mem), 0x1000, 4));
  }
}

TEST_CASE("formatCall renders strace-like calls") {
  std::array<std::string, 1> path = {"/etc/passwd"};
  CHECK(formatCall(row("openat"), {static_cast<uint64_t>(-100), 0x1000, 02000000, 0}, path) ==
        "openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY|O_CLOEXEC, 0)");
  CHECK(formatCall(row("mmap"), {0, 8192, 3, 0x22, static_cast<uint64_t>(-1), 0}, {}) ==
        "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)");
  CHECK(formatCall(row("kill"), {1234, 9}, {}) == "kill(1234, SIGKILL)");
  CHECK(formatCall(row("futex"), {0x1000, 128, 1, 0, 0, 0}, {}) ==
        "futex(0x1000, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0)");
  CHECK(formatCall(row("clone"), {0x1200000 | 17, 0, 0, 0x2000, 0}, {}) ==
        "clone(CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, NULL, NULL, 0x2000, 0)");
  CHECK(formatCall(row("lseek"), {3, 0, 2}, {}) == "lseek(3, 0, SEEK_END)");
  CHECK(formatCall(row("getpid"), {}, {}) == "getpid()");
  // Paths print whole, however long (users grep dumps for them); other
  // strings are cut at kStringMax bytes.
  std::array<std::string, 1> longPath = {std::string(300, 'a')};
  CHECK(formatCall(row("unlink"), {0x1000}, longPath) == "unlink(\"" + longPath[0] + "\")");
  std::array<std::string, 1> longName = {std::string(100, 'h')};
  CHECK(formatCall(row("sethostname"), {0x1000, 100}, longName) ==
        "sethostname(\"" + std::string(kStringMax, 'h') + "\"..., 100)");
  std::array<std::string, 1> escaped = {"a\"b\n\x01"};
  CHECK(formatCall(row("unlink"), {0x1000}, escaped) == "unlink(\"a\\\"b\\n\\x01\")");
}

TEST_CASE("formatResult and names") {
  CHECK(formatResult(row("read"), 42) == "42");
  CHECK(formatResult(row("openat"), -2) == "-1 ENOENT (No such file or directory)");
  CHECK(formatResult(row("mmap"), 0x7f0000001000) == "0x7f0000001000");
  CHECK(formatResult(row("mmap"), -12) == "-1 ENOMEM (Cannot allocate memory)");
  CHECK(formatResult(row("nanosleep"), -516).find("ERESTART_RESTARTBLOCK") != std::string::npos);
  CHECK(formatResult(row("read"), -512).find("ERESTARTSYS") != std::string::npos);
  CHECK(errnoName(38) == "ENOSYS");
  CHECK(errnoName(133) == "EHWPOISON");
  CHECK(errnoName(9999).empty());
  CHECK(signalName(11) == "SIGSEGV");
  CHECK(signalName(34) == "SIGRT_2");
  CHECK(signalName(0).empty());
  CHECK(supportName(Support::Refused) == "refused");
  CHECK(stringArgs(row("renameat")) == std::vector<int>{1, 3});
  CHECK(stringArgs(row("read")).empty());
}

TEST_CASE("waiting calls name the signal mask they install") {
  FakeMemory mem;
  mem.map(0x1000, 16);
  mem.put(0x1000, uint64_t{0x2000});  // pselect6's {sigset_t*, size}
  mem.put(0x1008, uint64_t{8});
  CHECK(waitMaskAddress(row("rt_sigsuspend"), {0x3000, 8}, mem) == 0x3000);
  CHECK(waitMaskAddress(row("ppoll"), {0, 0, 0, 0x4000, 8}, mem) == 0x4000);
  CHECK_FALSE(waitMaskAddress(row("ppoll"), {0, 0, 0, 0, 8}, mem));
  CHECK(waitMaskAddress(row("epoll_pwait"), {3, 0, 1, -1ull, 0x5000, 8}, mem) == 0x5000);
  CHECK(waitMaskAddress(row("epoll_pwait2"), {3, 0, 1, 0, 0x6000, 8}, mem) == 0x6000);
  CHECK(waitMaskAddress(row("pselect6"), {1, 0, 0, 0, 0, 0x1000}, mem) == 0x2000);
  CHECK_FALSE(waitMaskAddress(row("pselect6"), {1, 0, 0, 0, 0, 0x9000}, mem));  // unreadable
  CHECK_FALSE(waitMaskAddress(row("poll"), {0x3000, 1, 0}, mem));
}
