// The x86-64 syscall table itself, one row per syscall number, in number
// order. Read a row like strace's syscallent.h: support level, argument kinds,
// flags, the memory the kernel writes, the hook for irregular calls, and a
// note that `rec syscalls` (and so docs/syscalls.md) shows.
//
// Support levels, in short (DESIGN.md has the long version):
//   passthrough  deterministic and private to the tracee: no stop at all
//   executed     shapes the address space or process tree: re-run on replay
//   emulated     recorded, then skipped on replay with result+memory injected
//   refused      rec cannot record it faithfully: ENOSYS so programs fall back
#include "syscall_table.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include <algorithm>
#include <initializer_list>
#include <stdexcept>

#include "syscall_numbers.h"

namespace rec::sys {
namespace {

using enum Arg;

// ---- Row builder -----------------------------------------------------------
// Each modifier returns a copy, so a row reads left to right and the whole
// table is built (and checked) at compile time.
struct Row {
  SyscallRow r;

  constexpr Row(int nr, std::string_view name, std::initializer_list<Arg> args, Support s) {
    if (args.size() > 6) throw std::logic_error("more than 6 arguments");
    r.number = nr;
    r.name = name;
    r.argCount = static_cast<uint8_t>(args.size());
    std::copy(args.begin(), args.end(), r.args.begin());
    r.support = s;
  }
  constexpr Row flags(uint16_t f) const {
    Row c = *this;
    c.r.flags |= f;
    return c;
  }
  constexpr Row blocks() const { return flags(kMayBlock); }
  constexpr Row fd() const { return flags(kReturnsFd); }
  constexpr Row buffered() const { return flags(kBuffered); }
  constexpr Row buffered(BufferFd fd) const {
    Row c = buffered();
    c.r.buffer.fd = fd;
    return c;
  }
  // Buffered only when argument `arg` is one of `values`.
  constexpr Row bufferedIfArg(BufferFd fd, int arg, std::initializer_list<int64_t> values) const {
    if (values.size() > 6) throw std::logic_error("more than 6 values");
    Row c = buffered(fd);
    c.r.buffer.arg = static_cast<int8_t>(arg);
    c.r.buffer.oneOf = true;
    c.r.buffer.count = static_cast<uint8_t>(values.size());
    std::copy(values.begin(), values.end(), c.r.buffer.values.begin());
    return c;
  }
  // Buffered when argument `arg`, less the bits `ignore`, is one of `values`
  // (a call that never blocks) or of `blocking` (one that may: made in the
  // buffer only under the task's desched event, else traced).
  constexpr Row bufferedIfArgMayBlock(BufferFd fd, int arg, int64_t ignore,
                                      std::initializer_list<int64_t> values,
                                      std::initializer_list<int64_t> blocking) const {
    if (values.size() + blocking.size() > 6) throw std::logic_error("more than 6 values");
    Row c = buffered(fd);
    c.r.buffer.arg = static_cast<int8_t>(arg);
    c.r.buffer.oneOf = true;
    c.r.buffer.count = static_cast<uint8_t>(values.size() + blocking.size());
    c.r.buffer.blockingFrom = static_cast<uint8_t>(values.size());
    c.r.buffer.ignoreBits = ignore;
    std::copy(values.begin(), values.end(), c.r.buffer.values.begin());
    std::copy(blocking.begin(), blocking.end(), c.r.buffer.values.begin() + values.size());
    return c;
  }
  // Buffered only when argument `arg` has none of the bits of `mask`.
  constexpr Row bufferedUnlessBits(BufferFd fd, int arg, int64_t mask) const {
    Row c = buffered(fd);
    c.r.buffer.arg = static_cast<int8_t>(arg);
    c.r.buffer.count = 1;
    c.r.buffer.values[0] = mask;
    return c;
  }
  constexpr Row hook(Hook h) const {
    Row c = *this;
    c.r.hook = h;
    return c;
  }
  constexpr Row waitsWithMask(uint8_t arg, WaitMask kind = WaitMask::Arg) const {
    Row c = *this;
    c.r.waitMask = kind;
    c.r.waitMaskArg = arg;
    return c;
  }
  constexpr Row why(std::string_view note) const {
    Row c = *this;
    c.r.note = note;
    return c;
  }
  constexpr Row out(OutParam o) const {
    Row c = *this;
    for (auto& slot : c.r.outs) {
      if (slot.kind == Out::None) {
        slot = o;
        return c;
      }
    }
    throw std::logic_error("more than 3 out params");
  }
  constexpr Row writesFd(FdWrite w) const {
    Row c = *this;
    c.r.fdWrite = w;
    return c;
  }
  constexpr Row out(OutParam a, OutParam b) const { return out(a).out(b); }
  constexpr Row out(OutParam a, OutParam b, OutParam c) const { return out(a).out(b).out(c); }
  constexpr operator SyscallRow() const { return r; }
};

constexpr Row emulated(int nr, std::string_view name, std::initializer_list<Arg> args) {
  return Row(nr, name, args, Support::Emulated);
}
constexpr Row executed(int nr, std::string_view name, std::initializer_list<Arg> args) {
  return Row(nr, name, args, Support::Executed);
}
constexpr Row passthrough(int nr, std::string_view name, std::initializer_list<Arg> args) {
  return Row(nr, name, args, Support::Passthrough);
}
constexpr Row refused(int nr, std::string_view name, std::initializer_list<Arg> args,
                      std::string_view note) {
  return Row(nr, name, args, Support::Refused).why(note);
}

// ---- Out params: (pointer argument, ...) -----------------------------------
constexpr OutParam fixed(uint8_t arg, uint32_t size) {
  return {arg, Out::Fixed, 0, size};
}
constexpr OutParam byResult(uint8_t arg) {
  return {arg, Out::ByResult, 0, 0};
}
constexpr OutParam byArg(uint8_t arg, uint8_t lenArg) {
  return {arg, Out::ByArg, lenArg, 0};
}
constexpr OutParam resultTimes(uint8_t arg, uint32_t elem) {
  return {arg, Out::ResultTimes, 0, elem};
}
constexpr OutParam argTimes(uint8_t arg, uint8_t countArg, uint32_t elem) {
  return {arg, Out::ArgTimes, countArg, elem};
}
// `cap` bounds the length read back (0: only the global cap); see LenPtr.
constexpr OutParam lenPtr(uint8_t arg, uint8_t lenArg, uint32_t cap = 0) {
  return {arg, Out::LenPtr, lenArg, cap};
}
constexpr OutParam iovec(uint8_t arg, uint8_t countArg) {
  return {arg, Out::Iovec, countArg, 0};
}
constexpr OutParam msghdr(uint8_t arg) {
  return {arg, Out::Msghdr, 0, 0};
}
constexpr OutParam ioctlSize(uint8_t arg) {
  return {arg, Out::IoctlSize, 0, 0};
}
constexpr OutParam cstring(uint8_t arg, uint8_t lenArg) {
  return {arg, Out::CString, lenArg, 0};
}

// ---- Writes to an fd: (fd argument, data, ...) -------------------------------
constexpr FdWrite buffer(uint8_t fd, uint8_t buf, Offset at = Offset::Position, uint8_t off = 0) {
  return {Data::Buffer, fd, buf, 0, at, off};
}
constexpr FdWrite iovecs(uint8_t fd, uint8_t iov, uint8_t count, Offset at = Offset::Position,
                         uint8_t off = 0) {
  return {Data::Iovec, fd, iov, count, at, off};
}
constexpr FdWrite byKernel(uint8_t fd, Offset at = Offset::Position, uint8_t off = 0) {
  return {Data::Kernel, fd, 0, 0, at, off};
}

// x86-64 kernel ABI sizes.
constexpr uint32_t kStat = 144, kStatx = 256, kStatfs = 120, kTimespec = 16, kTimeval = 16,
                   kTimezone = 8, kItimerval = 32, kItimerspec = 32, kRusage = 144, kTms = 32,
                   kUtsname = 390, kSysinfo = 112, kRlimit = 16, kSiginfo = 128, kPollfd = 8,
                   kEpollEvent = 12, kSockaddrStorage = 128, kTimex = 208, kMqAttr = 64,
                   kUstat = 32, kCachestat = 40, kUserDesc = 16;

// Shared notes.
constexpr std::string_view kRemoved =
    "removed from or never implemented by Linux: the kernel itself returns ENOSYS";
constexpr std::string_view kAio =
    "Linux AIO: the kernel completes requests into user buffers asynchronously, outside any "
    "syscall rec could record; glibc's POSIX AIO uses threads instead";
constexpr std::string_view kModules =
    "loads or unloads kernel code: nothing a replay could reproduce";
constexpr std::string_view kKexec = "replaces the running kernel";
constexpr std::string_view kIoUring =
    "io_uring: completions bypass syscalls (the kernel writes the shared rings directly); "
    "programs fall back to read/write";
constexpr std::string_view kSignalSend =
    "sends a signal at record; on replay nothing is sent, the recorded delivery is injected";
constexpr std::string_view kPortIo =
    "grants x86 port I/O: in/out instructions talk to hardware rec cannot record";
constexpr std::string_view kUprobe =
    "issued only by the kernel's uprobe trampoline, and the kernel exempts it from seccomp "
    "filters, so it never stops";
constexpr std::string_view kSysvCtl =
    "output size depends on cmd (IPC_STAT/IPC_INFO/..., computed in outputRanges)";

// clang-format off
constexpr SyscallRow kTable[] = {
  emulated(SYS_read, "read", {Fd, Ptr, Size}).blocks().out(byResult(1)).buffered(BufferFd::Stream),
  emulated(SYS_write, "write", {Fd, Ptr, Size}).blocks().writesFd(buffer(0, 1)).buffered(BufferFd::Stream),
  emulated(SYS_open, "open", {Path, OpenFlags, Mode}).blocks().fd()
      .why("may block on a FIFO"),
  emulated(SYS_close, "close", {Fd}).hook(Hook::Close).buffered(BufferFd::Close),
  emulated(SYS_stat, "stat", {Path, Ptr}).out(fixed(1, kStat)).buffered(),
  emulated(SYS_fstat, "fstat", {Fd, Ptr}).out(fixed(1, kStat)).buffered(),
  emulated(SYS_lstat, "lstat", {Path, Ptr}).out(fixed(1, kStat)).buffered(),
  emulated(SYS_poll, "poll", {Ptr, Uint, Int}).blocks().out(argTimes(0, 1, kPollfd)),
  emulated(SYS_lseek, "lseek", {Fd, Int, Whence}).buffered(),
  executed(SYS_mmap, "mmap", {Ptr, Size, Prot, MapFlags, Fd, Hex}).hook(Hook::Mmap)
      .buffered(BufferFd::MmapAnon)
      .why("file contents are stored in the trace and mapped from there on replay"),
  passthrough(SYS_mprotect, "mprotect", {Ptr, Size, Prot}),
  passthrough(SYS_munmap, "munmap", {Ptr, Size}),
  executed(SYS_brk, "brk", {Ptr}).hook(Hook::Brk).buffered(BufferFd::Brk),
  passthrough(SYS_rt_sigaction, "rt_sigaction", {Signal, Ptr, Ptr, Size}),
  executed(SYS_rt_sigprocmask, "rt_sigprocmask", {Int, Ptr, Ptr, Size}).hook(Hook::SigMask)
      .buffered(BufferFd::SigMask)
      .why("the recorder follows whether the signal a trapped rdtsc raises is blocked: the "
           "kernel's forced fault unblocks it and resets its handler, which rec restores"),
  passthrough(SYS_rt_sigreturn, "rt_sigreturn", {}).flags(kNeverReturns),
  emulated(SYS_ioctl, "ioctl", {Fd, Ioctl, Hex}).blocks().hook(Hook::Ioctl).out(ioctlSize(2))
      // isatty() on a file: ENOTTY, nothing written, never blocks
      .bufferedIfArg(BufferFd::Quiet, 1, {TCGETS, TIOCGWINSZ})
      .why("output size from known requests (termios, winsize, FIONREAD...), else _IOC_SIZE"),
  emulated(SYS_pread64, "pread64", {Fd, Ptr, Size, Int}).out(byResult(1)).buffered(),
  emulated(SYS_pwrite64, "pwrite64", {Fd, Ptr, Size, Int}).writesFd(buffer(0, 1, Offset::Arg, 3)).buffered(),
  emulated(SYS_readv, "readv", {Fd, Ptr, Int}).blocks().out(iovec(1, 2)).buffered(BufferFd::Stream),
  emulated(SYS_writev, "writev", {Fd, Ptr, Int}).blocks().writesFd(iovecs(0, 1, 2))
      .buffered(BufferFd::Stream),
  emulated(SYS_access, "access", {Path, Int}).buffered(),
  emulated(SYS_pipe, "pipe", {Ptr}).out(fixed(0, 8)).flags(kReturnsFdPair),
  emulated(SYS_select, "select", {Int, Ptr, Ptr, Ptr, Ptr}).blocks().hook(Hook::Select),
  emulated(SYS_sched_yield, "sched_yield", {}).flags(kYields)
      .why("a scheduling point for rec's own scheduler"),
  executed(SYS_mremap, "mremap", {Ptr, Size, Size, Hex, Ptr}).hook(Hook::Mremap),
  passthrough(SYS_msync, "msync", {Ptr, Size, Hex}),
  emulated(SYS_mincore, "mincore", {Ptr, Size, Ptr})
      .why("page residency differs run to run: (len+4095)/4096 bytes of vec recorded"),
  passthrough(SYS_madvise, "madvise", {Ptr, Size, Int}),
  emulated(SYS_shmget, "shmget", {Int, Size, Hex}),
  executed(SYS_shmat, "shmat", {Int, Ptr, Hex}).hook(Hook::ShmAt)
      .why("maps a segment: replay maps memory at the recorded address"),
  emulated(SYS_shmctl, "shmctl", {Int, Int, Ptr}).why(kSysvCtl),
  emulated(SYS_dup, "dup", {Fd}).hook(Hook::Dup).fd(),
  emulated(SYS_dup2, "dup2", {Fd, Fd}).hook(Hook::Dup).fd(),
  executed(SYS_pause, "pause", {}).blocks().hook(Hook::SigSuspend)
      .why("waits for a signal: replay runs it and supplies the recorded signal"),
  emulated(SYS_nanosleep, "nanosleep", {Ptr, Ptr}).blocks().out(fixed(1, kTimespec)),
  emulated(SYS_getitimer, "getitimer", {Int, Ptr}).out(fixed(1, kItimerval)),
  emulated(SYS_alarm, "alarm", {Uint}).why("the SIGALRM it arms is recorded as an asynchronous signal"),
  emulated(SYS_setitimer, "setitimer", {Int, Ptr, Ptr}).out(fixed(2, kItimerval))
      .why("timer signals are recorded as asynchronous signals"),
  emulated(SYS_getpid, "getpid", {}).why("replay runs under other ids: the recorded id is returned").buffered(),
  emulated(SYS_sendfile, "sendfile", {Fd, Fd, Ptr, Size}).blocks().out(fixed(2, 8))
      .writesFd(byKernel(0)),
  emulated(SYS_socket, "socket", {Socket, Socket, Int}).fd(),
  emulated(SYS_connect, "connect", {Fd, Ptr, Size}).blocks(),
  emulated(SYS_accept, "accept", {Fd, Ptr, Ptr}).blocks().fd()
      .out(lenPtr(1, 2, kSockaddrStorage), fixed(2, 4)),
  // send()/recv(): no address (the buffer records only the bytes at buf)
  emulated(SYS_sendto, "sendto", {Fd, Ptr, Size, Hex, Ptr, Size}).blocks()
      .bufferedIfArg(BufferFd::SocketMsg, 4, {0}),
  emulated(SYS_recvfrom, "recvfrom", {Fd, Ptr, Size, Hex, Ptr, Ptr}).blocks()
      .out(byResult(1), lenPtr(4, 5, kSockaddrStorage), fixed(5, 4))
      .bufferedIfArg(BufferFd::SocketMsg, 4, {0}),
  emulated(SYS_sendmsg, "sendmsg", {Fd, Ptr, Hex}).blocks(),
  emulated(SYS_recvmsg, "recvmsg", {Fd, Ptr, Hex}).blocks().out(msghdr(1)),
  emulated(SYS_shutdown, "shutdown", {Fd, Int}),
  emulated(SYS_bind, "bind", {Fd, Ptr, Size}),
  emulated(SYS_listen, "listen", {Fd, Int}),
  emulated(SYS_getsockname, "getsockname", {Fd, Ptr, Ptr})
      .out(lenPtr(1, 2, kSockaddrStorage), fixed(2, 4)),
  emulated(SYS_getpeername, "getpeername", {Fd, Ptr, Ptr})
      .out(lenPtr(1, 2, kSockaddrStorage), fixed(2, 4)),
  emulated(SYS_socketpair, "socketpair", {Socket, Socket, Int, Ptr}).out(fixed(3, 8))
      .flags(kReturnsFdPair),
  emulated(SYS_setsockopt, "setsockopt", {Fd, Int, Int, Ptr, Size}),
  emulated(SYS_getsockopt, "getsockopt", {Fd, Int, Int, Ptr, Ptr}).out(lenPtr(3, 4), fixed(4, 4)),
  executed(SYS_clone, "clone", {CloneFlags, Ptr, Ptr, Ptr, Hex}).blocks().hook(Hook::Clone)
      .flags(kResultFromTrace).why("new task; the program sees the recorded tid"),
  executed(SYS_fork, "fork", {}).hook(Hook::Clone).flags(kResultFromTrace)
      .why("new process; the program sees the recorded pid"),
  executed(SYS_vfork, "vfork", {}).blocks().hook(Hook::Clone).flags(kResultFromTrace)
      .why("new process; the parent waits for the child's exec or exit"),
  executed(SYS_execve, "execve", {Path, Ptr, Ptr}).hook(Hook::Execve)
      .buffered(BufferFd::ExecMissing)
      .why("executable and interpreter are stored in the trace"),
  passthrough(SYS_exit, "exit", {Int}).hook(Hook::Exit).flags(kNeverReturns),
  emulated(SYS_wait4, "wait4", {Pid, Ptr, Hex, Ptr}).blocks().hook(Hook::Wait)
      .out(fixed(1, 4), fixed(3, kRusage)),
  emulated(SYS_kill, "kill", {Pid, Signal}).why(kSignalSend),
  emulated(SYS_uname, "uname", {Ptr}).out(fixed(0, kUtsname)).buffered(),
  emulated(SYS_semget, "semget", {Int, Int, Hex}),
  emulated(SYS_semop, "semop", {Int, Ptr, Size}).blocks(),
  emulated(SYS_semctl, "semctl", {Int, Int, Int, Hex})
      .why("output size depends on cmd; GETALL's array is sized by the set (IPC_STAT by rec)"),
  executed(SYS_shmdt, "shmdt", {Ptr}).hook(Hook::ShmDt).why("unmaps a segment"),
  emulated(SYS_msgget, "msgget", {Int, Hex}),
  emulated(SYS_msgsnd, "msgsnd", {Int, Ptr, Size, Hex}).blocks(),
  emulated(SYS_msgrcv, "msgrcv", {Int, Ptr, Size, Int, Hex}).blocks()
      .why("mtype plus result bytes of mtext recorded"),
  emulated(SYS_msgctl, "msgctl", {Int, Int, Ptr}).why(kSysvCtl),
  emulated(SYS_fcntl, "fcntl", {Fd, Fcntl, Hex}).blocks().hook(Hook::Fcntl)
      .bufferedIfArg(BufferFd::NotOutput, 1,
                     {F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_DUPFD_CLOEXEC})  // never block
      .why("F_SETLKW may block; F_GETLK & co write a struct flock"),
  emulated(SYS_flock, "flock", {Fd, Int}).blocks(),
  emulated(SYS_fsync, "fsync", {Fd}),
  emulated(SYS_fdatasync, "fdatasync", {Fd}),
  emulated(SYS_truncate, "truncate", {Path, Int}).flags(kResizesFile),
  emulated(SYS_ftruncate, "ftruncate", {Fd, Int}).flags(kResizesFile),
  emulated(SYS_getdents, "getdents", {Fd, Ptr, Size}).out(byResult(1)),
  emulated(SYS_getcwd, "getcwd", {Ptr, Size}).out(cstring(0, 1)).buffered(),
  emulated(SYS_chdir, "chdir", {Path}),
  emulated(SYS_fchdir, "fchdir", {Fd}),
  emulated(SYS_rename, "rename", {Path, Path}),
  emulated(SYS_mkdir, "mkdir", {Path, Mode}),
  emulated(SYS_rmdir, "rmdir", {Path}),
  emulated(SYS_creat, "creat", {Path, Mode}).fd(),
  emulated(SYS_link, "link", {Path, Path}),
  emulated(SYS_unlink, "unlink", {Path}),
  emulated(SYS_symlink, "symlink", {Path, Path}),
  emulated(SYS_readlink, "readlink", {Path, Ptr, Size}).out(byResult(1)).buffered(),
  emulated(SYS_chmod, "chmod", {Path, Mode}),
  emulated(SYS_fchmod, "fchmod", {Fd, Mode}),
  emulated(SYS_chown, "chown", {Path, Int, Int}),
  emulated(SYS_fchown, "fchown", {Fd, Int, Int}),
  emulated(SYS_lchown, "lchown", {Path, Int, Int}),
  emulated(SYS_umask, "umask", {Mode}),
  emulated(SYS_gettimeofday, "gettimeofday", {Ptr, Ptr})
      .out(fixed(0, kTimeval), fixed(1, kTimezone))
      .hook(Hook::TimeAtEntry),
  emulated(SYS_getrlimit, "getrlimit", {Int, Ptr}).out(fixed(1, kRlimit)),
  emulated(SYS_getrusage, "getrusage", {Int, Ptr}).out(fixed(1, kRusage)).buffered(),
  emulated(SYS_sysinfo, "sysinfo", {Ptr}).out(fixed(0, kSysinfo)).buffered(),
  emulated(SYS_times, "times", {Ptr}).out(fixed(0, kTms)).buffered(),
  emulated(SYS_ptrace, "ptrace", {Int, Pid, Ptr, Ptr}).hook(Hook::Ptrace)
      .why("rec is the kernel's tracer of every task: it plays the tracer's part between tracees "
           "(docs/ptrace-emulation.md)"),
  emulated(SYS_getuid, "getuid", {}).buffered(),
  emulated(SYS_syslog, "syslog", {Int, Ptr, Int}).out(byResult(1)),
  emulated(SYS_getgid, "getgid", {}).buffered(),
  emulated(SYS_setuid, "setuid", {Int}),
  emulated(SYS_setgid, "setgid", {Int}),
  emulated(SYS_geteuid, "geteuid", {}).buffered(),
  emulated(SYS_getegid, "getegid", {}).buffered(),
  emulated(SYS_setpgid, "setpgid", {Pid, Pid}),
  emulated(SYS_getppid, "getppid", {}),
  emulated(SYS_getpgrp, "getpgrp", {}).buffered(),
  emulated(SYS_setsid, "setsid", {}),
  emulated(SYS_setreuid, "setreuid", {Int, Int}),
  emulated(SYS_setregid, "setregid", {Int, Int}),
  emulated(SYS_getgroups, "getgroups", {Int, Ptr}).out(resultTimes(1, 4)),
  emulated(SYS_setgroups, "setgroups", {Int, Ptr}),
  emulated(SYS_setresuid, "setresuid", {Int, Int, Int}),
  emulated(SYS_getresuid, "getresuid", {Ptr, Ptr, Ptr}).out(fixed(0, 4), fixed(1, 4), fixed(2, 4)),
  emulated(SYS_setresgid, "setresgid", {Int, Int, Int}),
  emulated(SYS_getresgid, "getresgid", {Ptr, Ptr, Ptr}).out(fixed(0, 4), fixed(1, 4), fixed(2, 4)),
  emulated(SYS_getpgid, "getpgid", {Pid}).buffered(),
  emulated(SYS_setfsuid, "setfsuid", {Int}),
  emulated(SYS_setfsgid, "setfsgid", {Int}),
  emulated(SYS_getsid, "getsid", {Pid}).buffered(),
  emulated(SYS_capget, "capget", {Ptr, Ptr}).flags(kOutputsOnError)
      .why("writes the header's version (also when failing) and one or two data structs by it"),
  emulated(SYS_capset, "capset", {Ptr, Ptr}),
  emulated(SYS_rt_sigpending, "rt_sigpending", {Ptr, Size}).out(byArg(0, 1)),
  emulated(SYS_rt_sigtimedwait, "rt_sigtimedwait", {Ptr, Ptr, Ptr, Size}).blocks()
      .out(fixed(1, kSiginfo)),
  emulated(SYS_rt_sigqueueinfo, "rt_sigqueueinfo", {Pid, Signal, Ptr}).why(kSignalSend),
  executed(SYS_rt_sigsuspend, "rt_sigsuspend", {Ptr, Size}).blocks().hook(Hook::SigSuspend)
      .waitsWithMask(0)
      .why("waits with a temporary mask: replay runs it and supplies the recorded signal"),
  passthrough(SYS_sigaltstack, "sigaltstack", {Ptr, Ptr}),
  emulated(SYS_utime, "utime", {Path, Ptr}),
  emulated(SYS_mknod, "mknod", {Path, Mode, Hex}),
  refused(SYS_uselib, "uselib", {Path},
          "a.out shared-library loader; kernels are built without CONFIG_USELIB (ENOSYS)"),
  executed(SYS_personality, "personality", {Hex}).flags(kResultFromTrace)
      .why("changes how later mmaps and execs lay out memory; the replayer may run with "
           "another persona, so the recorded result is returned"),
  emulated(SYS_ustat, "ustat", {Hex, Ptr}).out(fixed(1, kUstat)),
  emulated(SYS_statfs, "statfs", {Path, Ptr}).out(fixed(1, kStatfs)),
  emulated(SYS_fstatfs, "fstatfs", {Fd, Ptr}).out(fixed(1, kStatfs)),
  emulated(SYS_sysfs, "sysfs", {Int, Hex, Hex}).why("option 2 writes a filesystem name"),
  emulated(SYS_getpriority, "getpriority", {Int, Int}),
  emulated(SYS_setpriority, "setpriority", {Int, Int, Int}),
  emulated(SYS_sched_setparam, "sched_setparam", {Pid, Ptr}),
  emulated(SYS_sched_getparam, "sched_getparam", {Pid, Ptr}).out(fixed(1, 4)),
  emulated(SYS_sched_setscheduler, "sched_setscheduler", {Pid, Int, Ptr}),
  emulated(SYS_sched_getscheduler, "sched_getscheduler", {Pid}),
  emulated(SYS_sched_get_priority_max, "sched_get_priority_max", {Int}),
  emulated(SYS_sched_get_priority_min, "sched_get_priority_min", {Int}),
  emulated(SYS_sched_rr_get_interval, "sched_rr_get_interval", {Pid, Ptr})
      .out(fixed(1, kTimespec)),
  passthrough(SYS_mlock, "mlock", {Ptr, Size}),
  passthrough(SYS_munlock, "munlock", {Ptr, Size}),
  passthrough(SYS_mlockall, "mlockall", {Hex}),
  passthrough(SYS_munlockall, "munlockall", {}),
  emulated(SYS_vhangup, "vhangup", {}),
  executed(SYS_modify_ldt, "modify_ldt", {Int, Ptr, Size}).out(byResult(1))
      .why("LDT segments (Wine, 16-bit code) are task state: re-executed so they exist on replay"),
  emulated(SYS_pivot_root, "pivot_root", {Path, Path}),
  refused(SYS__sysctl, "_sysctl", {Ptr}, "removed in Linux 5.5: the kernel itself returns ENOSYS"),
  emulated(SYS_prctl, "prctl", {Prctl, Hex, Hex, Hex, Hex}).hook(Hook::Prctl)
      .why("PR_GET_NAME & co write memory; PR_SET_TSC/PR_SET_SECCOMP need the hook's care"),
  passthrough(SYS_arch_prctl, "arch_prctl", {Hex, Ptr}),
  emulated(SYS_adjtimex, "adjtimex", {Ptr}).out(fixed(0, kTimex)),
  emulated(SYS_setrlimit, "setrlimit", {Int, Ptr}).hook(Hook::Rlimit)
      .why("RLIMIT_STACK and RLIMIT_DATA decide where a program faults: applied on replay too"),
  emulated(SYS_chroot, "chroot", {Path}),
  emulated(SYS_sync, "sync", {}),
  emulated(SYS_acct, "acct", {Path}),
  emulated(SYS_settimeofday, "settimeofday", {Ptr, Ptr}),
  emulated(SYS_mount, "mount", {Path, Path, Str, Hex, Ptr}),
  emulated(SYS_umount2, "umount2", {Path, Hex}),
  emulated(SYS_swapon, "swapon", {Path, Hex}),
  emulated(SYS_swapoff, "swapoff", {Path}),
  emulated(SYS_reboot, "reboot", {Hex, Hex, Hex, Ptr}),
  emulated(SYS_sethostname, "sethostname", {Str, Size}),
  emulated(SYS_setdomainname, "setdomainname", {Str, Size}),
  refused(SYS_iopl, "iopl", {Int}, kPortIo),
  refused(SYS_ioperm, "ioperm", {Hex, Hex, Int}, kPortIo),
  refused(SYS_create_module, "create_module", {Str, Size}, kRemoved),
  refused(SYS_init_module, "init_module", {Ptr, Size, Str}, kModules),
  refused(SYS_delete_module, "delete_module", {Str, Hex}, kModules),
  refused(SYS_get_kernel_syms, "get_kernel_syms", {Ptr}, kRemoved),
  refused(SYS_query_module, "query_module", {Str, Int, Ptr, Size, Ptr}, kRemoved),
  emulated(SYS_quotactl, "quotactl", {Hex, Path, Int, Ptr})
      .why("Q_GETQUOTA/Q_GETINFO/Q_GETFMT/Q_GETNEXTQUOTA outputs captured; XFS ones are not"),
  refused(SYS_nfsservctl, "nfsservctl", {Int, Ptr, Ptr}, "removed in Linux 3.1: ENOSYS"),
  refused(SYS_getpmsg, "getpmsg", {}, kRemoved),
  refused(SYS_putpmsg, "putpmsg", {}, kRemoved),
  refused(SYS_afs_syscall, "afs_syscall", {}, kRemoved),
  refused(SYS_tuxcall, "tuxcall", {}, kRemoved),
  refused(SYS_security, "security", {}, kRemoved),
  emulated(SYS_gettid, "gettid", {}),
  emulated(SYS_readahead, "readahead", {Fd, Int, Size}),
  emulated(SYS_setxattr, "setxattr", {Path, Str, Ptr, Size, Hex}),
  emulated(SYS_lsetxattr, "lsetxattr", {Path, Str, Ptr, Size, Hex}),
  emulated(SYS_fsetxattr, "fsetxattr", {Fd, Str, Ptr, Size, Hex}),
  emulated(SYS_getxattr, "getxattr", {Path, Str, Ptr, Size}).out(byResult(2)).buffered(),
  emulated(SYS_lgetxattr, "lgetxattr", {Path, Str, Ptr, Size}).out(byResult(2)).buffered(),
  emulated(SYS_fgetxattr, "fgetxattr", {Fd, Str, Ptr, Size}).out(byResult(2)),
  emulated(SYS_listxattr, "listxattr", {Path, Ptr, Size}).out(byResult(1)),
  emulated(SYS_llistxattr, "llistxattr", {Path, Ptr, Size}).out(byResult(1)),
  emulated(SYS_flistxattr, "flistxattr", {Fd, Ptr, Size}).out(byResult(1)),
  emulated(SYS_removexattr, "removexattr", {Path, Str}),
  emulated(SYS_lremovexattr, "lremovexattr", {Path, Str}),
  emulated(SYS_fremovexattr, "fremovexattr", {Fd, Str}),
  emulated(SYS_tkill, "tkill", {Pid, Signal}).why(kSignalSend),
  emulated(SYS_time, "time", {Ptr}).out(fixed(0, 8)).hook(Hook::TimeAtEntry),
  // FUTEX_WAKE(_BITSET) never blocks and writes nothing: buffered. A waiter
  // it wakes is blocked in a traced wait (rec sees its exit stop as for any
  // blocked call); replay emulates both sides, the real wake is not needed.
  // FUTEX_WAIT(_BITSET) writes nothing either: buffered under the task's
  // desched event (a wait that blocks is redone traced), private or not,
  // with either clock.
  emulated(SYS_futex, "futex", {Ptr, FutexOp, Int, Ptr, Ptr, Hex}).blocks().hook(Hook::Futex)
      .bufferedIfArgMayBlock(BufferFd::Default, 1, FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME,
                             {FUTEX_WAKE, FUTEX_WAKE_BITSET}, {FUTEX_WAIT, FUTEX_WAIT_BITSET})
      .why("PI and WAKE_OP operations write the futex words, computed in outputRanges"),
  emulated(SYS_sched_setaffinity, "sched_setaffinity", {Pid, Size, Ptr}).hook(Hook::Affinity)
      .why("answered by rec for the program's tasks: it must not undo rec's own CPU pinning"),
  emulated(SYS_sched_getaffinity, "sched_getaffinity", {Pid, Size, Ptr}).out(byResult(2))
      .hook(Hook::Affinity),
  executed(SYS_set_thread_area, "set_thread_area", {Ptr}).out(fixed(0, kUserDesc))
      .why("installs a GDT TLS descriptor (32-bit code in a 64-bit process): task state, re-executed"),
  refused(SYS_io_setup, "io_setup", {Uint, Ptr}, kAio),
  refused(SYS_io_destroy, "io_destroy", {Hex}, kAio),
  refused(SYS_io_getevents, "io_getevents", {Hex, Int, Int, Ptr, Ptr}, kAio),
  refused(SYS_io_submit, "io_submit", {Hex, Int, Ptr}, kAio),
  refused(SYS_io_cancel, "io_cancel", {Hex, Ptr, Ptr}, kAio),
  executed(SYS_get_thread_area, "get_thread_area", {Ptr}).out(fixed(0, kUserDesc))
      .why("reads what set_thread_area installed"),
  refused(SYS_lookup_dcookie, "lookup_dcookie", {Hex, Ptr, Size},
          "removed with oprofile in Linux 6.8: the kernel itself returns ENOSYS"),
  emulated(SYS_epoll_create, "epoll_create", {Int}).fd(),
  refused(SYS_epoll_ctl_old, "epoll_ctl_old", {}, kRemoved),
  refused(SYS_epoll_wait_old, "epoll_wait_old", {}, kRemoved),
  refused(SYS_remap_file_pages, "remap_file_pages", {Ptr, Size, Prot, Size, Hex},
          "deprecated nonlinear file mappings; replay maps file contents privately, so it "
          "cannot be re-executed"),
  emulated(SYS_getdents64, "getdents64", {Fd, Ptr, Size}).out(byResult(1)).buffered(),
  executed(SYS_set_tid_address, "set_tid_address", {Ptr}).flags(kResultFromTrace)
      .buffered(BufferFd::Again)
      .why("the kernel clears the word at thread exit; the program sees the recorded tid"),
  emulated(SYS_restart_syscall, "restart_syscall", {}).blocks()
      .why("continues an interrupted call (nanosleep, poll, futex...): recorded as that call"),
  emulated(SYS_semtimedop, "semtimedop", {Int, Ptr, Size, Ptr}).blocks(),
  emulated(SYS_fadvise64, "fadvise64", {Fd, Int, Size, Int}),
  emulated(SYS_timer_create, "timer_create", {Clock, Ptr, Ptr}).out(fixed(2, 4))
      .why("timer signals are recorded as asynchronous signals"),
  emulated(SYS_timer_settime, "timer_settime", {Int, Hex, Ptr, Ptr}).out(fixed(3, kItimerspec)),
  emulated(SYS_timer_gettime, "timer_gettime", {Int, Ptr}).out(fixed(1, kItimerspec)),
  emulated(SYS_timer_getoverrun, "timer_getoverrun", {Int}),
  emulated(SYS_timer_delete, "timer_delete", {Int}),
  emulated(SYS_clock_settime, "clock_settime", {Clock, Ptr}),
  emulated(SYS_clock_gettime, "clock_gettime", {Clock, Ptr})
      .out(fixed(1, kTimespec))
      .hook(Hook::TimeAtEntry)
      .why("also answered inside the program by rec's time shim, which stands in for the vDSO"),
  emulated(SYS_clock_getres, "clock_getres", {Clock, Ptr}).out(fixed(1, kTimespec)),
  emulated(SYS_clock_nanosleep, "clock_nanosleep", {Clock, Hex, Ptr, Ptr}).blocks()
      .out(fixed(3, kTimespec)),
  passthrough(SYS_exit_group, "exit_group", {Int}).hook(Hook::Exit).flags(kNeverReturns),
  emulated(SYS_epoll_wait, "epoll_wait", {Fd, Ptr, Int, Int}).blocks()
      .out(resultTimes(1, kEpollEvent)),
  emulated(SYS_epoll_ctl, "epoll_ctl", {Fd, Int, Fd, Ptr}),
  emulated(SYS_tgkill, "tgkill", {Pid, Pid, Signal}).why(kSignalSend),
  emulated(SYS_utimes, "utimes", {Path, Ptr}),
  refused(SYS_vserver, "vserver", {}, kRemoved),
  emulated(SYS_mbind, "mbind", {Ptr, Size, Int, Ptr, Uint, Hex})
      .why("NUMA placement only: not applied on replay"),
  emulated(SYS_set_mempolicy, "set_mempolicy", {Int, Ptr, Uint}),
  emulated(SYS_get_mempolicy, "get_mempolicy", {Ptr, Ptr, Uint, Ptr, Hex}).out(fixed(0, 4))
      .why("nodemask size from maxnode, computed in outputRanges"),
  emulated(SYS_mq_open, "mq_open", {Str, OpenFlags, Mode, Ptr}).fd(),
  emulated(SYS_mq_unlink, "mq_unlink", {Str}),
  emulated(SYS_mq_timedsend, "mq_timedsend", {Fd, Ptr, Size, Uint, Ptr}).blocks(),
  emulated(SYS_mq_timedreceive, "mq_timedreceive", {Fd, Ptr, Size, Ptr, Ptr}).blocks()
      .out(byResult(1), fixed(3, 4)),
  emulated(SYS_mq_notify, "mq_notify", {Fd, Ptr}),
  emulated(SYS_mq_getsetattr, "mq_getsetattr", {Fd, Ptr, Ptr}).out(fixed(2, kMqAttr)),
  refused(SYS_kexec_load, "kexec_load", {Hex, Uint, Ptr, Hex}, kKexec),
  emulated(SYS_waitid, "waitid", {Int, Pid, Ptr, Hex, Ptr}).blocks().hook(Hook::Wait)
      .flags(kOutputsOnError)
      .out(fixed(2, kSiginfo), fixed(4, kRusage))
      .why("the kernel fills in the siginfo even when the call fails"),
  emulated(SYS_add_key, "add_key", {Str, Str, Ptr, Size, Int}),
  emulated(SYS_request_key, "request_key", {Str, Str, Str, Int}),
  emulated(SYS_keyctl, "keyctl", {Int, Hex, Hex, Hex, Hex})
      .why("KEYCTL_READ/DESCRIBE/GET_SECURITY buffers captured"),
  emulated(SYS_ioprio_set, "ioprio_set", {Int, Int, Int}),
  emulated(SYS_ioprio_get, "ioprio_get", {Int, Int}),
  emulated(SYS_inotify_init, "inotify_init", {}).fd(),
  emulated(SYS_inotify_add_watch, "inotify_add_watch", {Fd, Path, Hex}),
  emulated(SYS_inotify_rm_watch, "inotify_rm_watch", {Fd, Int}),
  emulated(SYS_migrate_pages, "migrate_pages", {Pid, Uint, Ptr, Ptr}),
  emulated(SYS_openat, "openat", {DirFd, Path, OpenFlags, Mode}).blocks().fd()
      // not when it creates or truncates a file (020000000: O_TMPFILE without O_DIRECTORY)
      .bufferedUnlessBits(BufferFd::PathOpen, 2, O_CREAT | O_TRUNC | 020000000)
      .why("may block on a FIFO"),
  emulated(SYS_mkdirat, "mkdirat", {DirFd, Path, Mode}),
  emulated(SYS_mknodat, "mknodat", {DirFd, Path, Mode, Hex}),
  emulated(SYS_fchownat, "fchownat", {DirFd, Path, Int, Int, AtFlags}),
  emulated(SYS_futimesat, "futimesat", {DirFd, Path, Ptr}),
  emulated(SYS_newfstatat, "newfstatat", {DirFd, Path, Ptr, AtFlags}).out(fixed(2, kStat)).buffered(),
  emulated(SYS_unlinkat, "unlinkat", {DirFd, Path, AtFlags}),
  emulated(SYS_renameat, "renameat", {DirFd, Path, DirFd, Path}),
  emulated(SYS_linkat, "linkat", {DirFd, Path, DirFd, Path, AtFlags}),
  emulated(SYS_symlinkat, "symlinkat", {Path, DirFd, Path}),
  emulated(SYS_readlinkat, "readlinkat", {DirFd, Path, Ptr, Size}).out(byResult(2)).buffered(),
  emulated(SYS_fchmodat, "fchmodat", {DirFd, Path, Mode}),
  emulated(SYS_faccessat, "faccessat", {DirFd, Path, Int}).buffered(),
  emulated(SYS_pselect6, "pselect6", {Int, Ptr, Ptr, Ptr, Ptr, Ptr}).blocks().hook(Hook::Select)
      .waitsWithMask(5, WaitMask::PairPtr),
  emulated(SYS_ppoll, "ppoll", {Ptr, Uint, Ptr, Ptr, Size}).blocks().waitsWithMask(3)
      .out(argTimes(0, 1, kPollfd), fixed(2, kTimespec)),
  emulated(SYS_unshare, "unshare", {CloneFlags}).hook(Hook::Unshare),
  passthrough(SYS_set_robust_list, "set_robust_list", {Ptr, Size}),
  passthrough(SYS_get_robust_list, "get_robust_list", {Pid, Ptr, Ptr}),
  emulated(SYS_splice, "splice", {Fd, Ptr, Fd, Ptr, Size, Hex}).blocks()
      .out(fixed(1, 8), fixed(3, 8)).writesFd(byKernel(2, Offset::Ptr, 3)),
  emulated(SYS_tee, "tee", {Fd, Fd, Size, Hex}).blocks().writesFd(byKernel(1)),
  emulated(SYS_sync_file_range, "sync_file_range", {Fd, Int, Int, Hex}),
  emulated(SYS_vmsplice, "vmsplice", {Fd, Ptr, Uint, Hex}).blocks().out(iovec(1, 2))
      .why("gifting pages to a pipe is recorded as a copy"),
  emulated(SYS_move_pages, "move_pages", {Pid, Uint, Ptr, Ptr, Ptr, Hex}).out(argTimes(4, 1, 4)),
  emulated(SYS_utimensat, "utimensat", {DirFd, Path, Ptr, AtFlags}),
  emulated(SYS_epoll_pwait, "epoll_pwait", {Fd, Ptr, Int, Int, Ptr, Size}).blocks().waitsWithMask(4)
      .out(resultTimes(1, kEpollEvent)),
  emulated(SYS_signalfd, "signalfd", {Fd, Ptr, Size}).fd(),
  emulated(SYS_timerfd_create, "timerfd_create", {Clock, OpenFlags}).fd(),
  emulated(SYS_eventfd, "eventfd", {Uint}).fd(),
  emulated(SYS_fallocate, "fallocate", {Fd, Hex, Int, Int}).flags(kResizesFile | kZeroesRange),
  emulated(SYS_timerfd_settime, "timerfd_settime", {Fd, Hex, Ptr, Ptr}).out(fixed(3, kItimerspec)),
  emulated(SYS_timerfd_gettime, "timerfd_gettime", {Fd, Ptr}).out(fixed(1, kItimerspec)),
  emulated(SYS_accept4, "accept4", {Fd, Ptr, Ptr, OpenFlags}).blocks().fd()
      .out(lenPtr(1, 2, kSockaddrStorage), fixed(2, 4)),
  emulated(SYS_signalfd4, "signalfd4", {Fd, Ptr, Size, OpenFlags}).fd(),
  emulated(SYS_eventfd2, "eventfd2", {Uint, OpenFlags}).fd(),
  emulated(SYS_epoll_create1, "epoll_create1", {OpenFlags}).fd(),
  emulated(SYS_dup3, "dup3", {Fd, Fd, OpenFlags}).hook(Hook::Dup).fd(),
  emulated(SYS_pipe2, "pipe2", {Ptr, OpenFlags}).out(fixed(0, 8)).flags(kReturnsFdPair),
  emulated(SYS_inotify_init1, "inotify_init1", {OpenFlags}).fd(),
  emulated(SYS_preadv, "preadv", {Fd, Ptr, Int, Int, Int}).out(iovec(1, 2)).buffered(),
  emulated(SYS_pwritev, "pwritev", {Fd, Ptr, Int, Int, Int}).writesFd(iovecs(0, 1, 2, Offset::Arg, 3))
      .buffered(),
  emulated(SYS_rt_tgsigqueueinfo, "rt_tgsigqueueinfo", {Pid, Pid, Signal, Ptr}).why(kSignalSend),
  emulated(SYS_perf_event_open, "perf_event_open", {Ptr, Pid, Int, Fd, Hex}).fd()
      .why("counters are read with read(), which is recorded; their ring buffers cannot be "
           "mapped (mmap fails with ENODEV): the kernel fills them outside any syscall"),
  emulated(SYS_recvmmsg, "recvmmsg", {Fd, Ptr, Uint, Hex, Ptr}).blocks().hook(Hook::Recvmmsg),
  emulated(SYS_fanotify_init, "fanotify_init", {Hex, OpenFlags}).fd(),
  emulated(SYS_fanotify_mark, "fanotify_mark", {Fd, Hex, Hex, DirFd, Path}),
  emulated(SYS_prlimit64, "prlimit64", {Pid, Int, Ptr, Ptr}).out(fixed(3, kRlimit))
      .hook(Hook::Rlimit)
      .bufferedIfArg(BufferFd::Default, 2, {0})  // a read: no new limit (replay applies none)
      .why("RLIMIT_STACK and RLIMIT_DATA decide where a program faults: applied on replay too"),
  emulated(SYS_name_to_handle_at, "name_to_handle_at", {DirFd, Path, Ptr, Ptr, AtFlags})
      .why("handle size read back from the handle; mount id 4 or 8 bytes by flags"),
  emulated(SYS_open_by_handle_at, "open_by_handle_at", {Fd, Ptr, OpenFlags}).blocks().fd(),
  emulated(SYS_clock_adjtime, "clock_adjtime", {Clock, Ptr}).out(fixed(1, kTimex)),
  emulated(SYS_syncfs, "syncfs", {Fd}),
  emulated(SYS_sendmmsg, "sendmmsg", {Fd, Ptr, Uint, Hex}).blocks().hook(Hook::Sendmmsg),
  emulated(SYS_setns, "setns", {Fd, CloneFlags}),
  emulated(SYS_getcpu, "getcpu", {Ptr, Ptr, Ptr}).out(fixed(0, 4), fixed(1, 4)),
  emulated(SYS_process_vm_readv, "process_vm_readv", {Pid, Ptr, Uint, Ptr, Uint, Hex})
      .out(iovec(1, 2)),
  emulated(SYS_process_vm_writev, "process_vm_writev", {Pid, Ptr, Uint, Ptr, Uint, Hex})
      .out(iovec(3, 4)).hook(Hook::OwnMemory)
      .why("into the caller's own process, or another recorded one (replay writes that "
           "process's memory); a process rec does not record: ENOSYS"),
  emulated(SYS_kcmp, "kcmp", {Pid, Pid, Int, Hex, Hex}),
  refused(SYS_finit_module, "finit_module", {Fd, Str, Hex}, kModules),
  emulated(SYS_sched_setattr, "sched_setattr", {Pid, Ptr, Hex}),
  emulated(SYS_sched_getattr, "sched_getattr", {Pid, Ptr, Uint, Hex}).out(byArg(1, 2)),
  emulated(SYS_renameat2, "renameat2", {DirFd, Path, DirFd, Path, Hex}),
  emulated(SYS_seccomp, "seccomp", {Int, Hex, Ptr}).hook(Hook::Seccomp)
      .why("rec installs a program's filter itself, in record and replay, behind an exemption "
           "for its own syscalls; strict mode becomes the equivalent filter"),
  emulated(SYS_getrandom, "getrandom", {Ptr, Size, Hex}).out(byResult(0)),
  emulated(SYS_memfd_create, "memfd_create", {Str, Hex}).fd(),
  refused(SYS_kexec_file_load, "kexec_file_load", {Fd, Fd, Size, Str, Hex}, kKexec),
  refused(SYS_bpf, "bpf", {Int, Ptr, Size},
          "eBPF maps and programs live in the kernel and change outside any recorded syscall"),
  executed(SYS_execveat, "execveat", {DirFd, Path, Ptr, Ptr, AtFlags}).hook(Hook::Execve)
      .why("executable and interpreter are stored in the trace"),
  refused(SYS_userfaultfd, "userfaultfd", {OpenFlags},
          "page faults are resolved through a fd by another thread: memory is filled outside "
          "any syscall of the faulting task"),
  emulated(SYS_membarrier, "membarrier", {Int, Hex, Int}),
  passthrough(SYS_mlock2, "mlock2", {Ptr, Size, Hex}),
  emulated(SYS_copy_file_range, "copy_file_range", {Fd, Ptr, Fd, Ptr, Size, Hex})
      .out(fixed(1, 8), fixed(3, 8)).writesFd(byKernel(2, Offset::Ptr, 3)),
  // (buffered on files only; RWF_* flags up to RWF_DONTCACHE, which change
  // nothing the buffer relies on there; newer ones stay traced)
  emulated(SYS_preadv2, "preadv2", {Fd, Ptr, Int, Int, Int, Hex}).out(iovec(1, 2))
      .bufferedUnlessBits(BufferFd::Default, 5, ~int64_t{0xff}),
  emulated(SYS_pwritev2, "pwritev2", {Fd, Ptr, Int, Int, Int, Hex})
      .writesFd(iovecs(0, 1, 2, Offset::Arg, 3)).bufferedUnlessBits(BufferFd::Default, 5, ~int64_t{0xff}),
  passthrough(SYS_pkey_mprotect, "pkey_mprotect", {Ptr, Size, Prot, Int}),
  passthrough(SYS_pkey_alloc, "pkey_alloc", {Hex, Hex}),
  passthrough(SYS_pkey_free, "pkey_free", {Int}),
  emulated(SYS_statx, "statx", {DirFd, Path, AtFlags, Hex, Ptr}).out(fixed(4, kStatx)).buffered(),
  refused(SYS_io_pgetevents, "io_pgetevents", {Hex, Int, Int, Ptr, Ptr, Ptr}, kAio),
  refused(SYS_rseq, "rseq", {Ptr, Uint, Hex, Hex},
          "the kernel writes cpu_id into the rseq area at every preemption, outside any "
          "syscall; glibc falls back when registration fails"),
  passthrough(SYS_uretprobe, "uretprobe", {}).why(kUprobe),
  passthrough(SYS_uprobe, "uprobe", {}).why(kUprobe),
  emulated(SYS_pidfd_send_signal, "pidfd_send_signal", {Fd, Signal, Ptr, Hex}).why(kSignalSend),
  refused(SYS_io_uring_setup, "io_uring_setup", {Uint, Ptr}, kIoUring),
  refused(SYS_io_uring_enter, "io_uring_enter", {Fd, Uint, Uint, Hex, Ptr, Size}, kIoUring),
  refused(SYS_io_uring_register, "io_uring_register", {Fd, Uint, Ptr, Uint}, kIoUring),
  emulated(SYS_open_tree, "open_tree", {DirFd, Path, Hex}).fd(),
  emulated(SYS_move_mount, "move_mount", {DirFd, Path, DirFd, Path, Hex}),
  emulated(SYS_fsopen, "fsopen", {Str, Hex}).fd(),
  emulated(SYS_fsconfig, "fsconfig", {Fd, Int, Str, Ptr, Int}),
  emulated(SYS_fsmount, "fsmount", {Fd, Hex, Hex}).fd(),
  emulated(SYS_fspick, "fspick", {DirFd, Path, Hex}).fd(),
  emulated(SYS_pidfd_open, "pidfd_open", {Pid, Hex}).fd(),
  refused(SYS_clone3, "clone3", {Ptr, Size},
          "glibc falls back to clone, which rec supports; clone3's argument struct is not "
          "handled yet"),
  emulated(SYS_close_range, "close_range", {Fd, Fd, Hex}).hook(Hook::Close),
  emulated(SYS_openat2, "openat2", {DirFd, Path, Ptr, Size}).blocks().fd()
      .why("may block on a FIFO"),
  emulated(SYS_pidfd_getfd, "pidfd_getfd", {Fd, Fd, Hex}).hook(Hook::PidfdGetfd).fd(),
  emulated(SYS_faccessat2, "faccessat2", {DirFd, Path, Int, AtFlags}).buffered(),
  emulated(SYS_process_madvise, "process_madvise", {Fd, Ptr, Size, Int, Hex})
      .why("advice only (MADV_COLD/PAGEOUT...): not applied on replay"),
  emulated(SYS_epoll_pwait2, "epoll_pwait2", {Fd, Ptr, Int, Ptr, Ptr, Size}).blocks().waitsWithMask(4)
      .out(resultTimes(1, kEpollEvent)),
  emulated(SYS_mount_setattr, "mount_setattr", {DirFd, Path, AtFlags, Ptr, Size}),
  emulated(SYS_quotactl_fd, "quotactl_fd", {Fd, Hex, Int, Ptr})
      .why("Q_GETQUOTA/Q_GETINFO/Q_GETFMT/Q_GETNEXTQUOTA outputs captured; XFS ones are not"),
  emulated(SYS_landlock_create_ruleset, "landlock_create_ruleset", {Ptr, Size, Hex}).fd(),
  emulated(SYS_landlock_add_rule, "landlock_add_rule", {Fd, Int, Ptr, Hex}),
  emulated(SYS_landlock_restrict_self, "landlock_restrict_self", {Fd, Hex})
      .why("the sandbox acts at record only; its refusals are in the trace"),
  refused(SYS_memfd_secret, "memfd_secret", {Hex},
          "its pages are removed from the kernel's direct map, so rec cannot read them"),
  emulated(SYS_process_mrelease, "process_mrelease", {Fd, Hex}),
  emulated(SYS_futex_waitv, "futex_waitv", {Ptr, Uint, Hex, Ptr, Clock}).blocks()
      .hook(Hook::Futex),
  emulated(SYS_set_mempolicy_home_node, "set_mempolicy_home_node", {Ptr, Size, Int, Hex}),
  emulated(SYS_cachestat, "cachestat", {Fd, Ptr, Ptr, Hex}).out(fixed(2, kCachestat)),
  emulated(SYS_fchmodat2, "fchmodat2", {DirFd, Path, Mode, AtFlags}),
  executed(SYS_map_shadow_stack, "map_shadow_stack", {Ptr, Size, Hex})
      .why("creates a mapping: re-executed so the address space matches"),
  emulated(SYS_futex_wake, "futex_wake", {Ptr, Hex, Int, Hex}).hook(Hook::Futex),
  emulated(SYS_futex_wait, "futex_wait", {Ptr, Hex, Hex, Hex, Ptr, Clock}).blocks()
      .hook(Hook::Futex),
  emulated(SYS_futex_requeue, "futex_requeue", {Ptr, Hex, Int, Int}).hook(Hook::Futex),
  emulated(SYS_statmount, "statmount", {Ptr, Ptr, Size, Hex})
      .why("output size read back from the struct's size field"),
  emulated(SYS_listmount, "listmount", {Ptr, Ptr, Size, Hex}).out(resultTimes(1, 8)),
  emulated(SYS_lsm_get_self_attr, "lsm_get_self_attr", {Int, Ptr, Ptr, Hex})
      .out(lenPtr(1, 2), fixed(2, 4)),
  emulated(SYS_lsm_set_self_attr, "lsm_set_self_attr", {Int, Ptr, Size, Hex}),
  emulated(SYS_lsm_list_modules, "lsm_list_modules", {Ptr, Ptr, Hex})
      .out(lenPtr(0, 1), fixed(1, 4)),
  executed(SYS_mseal, "mseal", {Ptr, Size, Hex})
      .why("seals mappings against later changes: re-executed so replay fails the same calls"),
  emulated(SYS_setxattrat, "setxattrat", {DirFd, Path, AtFlags, Str, Ptr, Size}),
  emulated(SYS_getxattrat, "getxattrat", {DirFd, Path, AtFlags, Str, Ptr, Size})
      .why("value buffer found through struct xattr_args"),
  emulated(SYS_listxattrat, "listxattrat", {DirFd, Path, AtFlags, Ptr, Size}).out(byResult(3)),
  emulated(SYS_removexattrat, "removexattrat", {DirFd, Path, AtFlags, Str}),
  emulated(SYS_open_tree_attr, "open_tree_attr", {DirFd, Path, Hex, Ptr, Size}).fd(),
  emulated(SYS_file_getattr, "file_getattr", {DirFd, Path, Ptr, Size, AtFlags}).out(byArg(2, 3)),
  emulated(SYS_file_setattr, "file_setattr", {DirFd, Path, Ptr, Size, AtFlags}),
};
// clang-format on

constexpr bool sortedUnique() {
  for (size_t i = 1; i < std::size(kTable); ++i) {
    if (kTable[i - 1].number >= kTable[i].number) return false;
  }
  return kTable[std::size(kTable) - 1].number < kMaxSyscall;
}
static_assert(sortedUnique(), "rows must be in strictly increasing syscall-number order");

struct Index {
  std::array<const SyscallRow*, kMaxSyscall> byNumber{};
  Index() {
    for (const SyscallRow& row : kTable) byNumber[row.number] = &row;
  }
};

const Index& index() {
  static const Index idx;
  return idx;
}

}  // namespace

std::span<const SyscallRow> allSyscalls() {
  return kTable;
}

bool bufferRuleAllows(const SyscallRow& row, const std::array<uint64_t, 6>& args) {
  const BufferRule& r = row.buffer;
  if (r.arg < 0) return true;
  if (r.arg >= 6) return false;
  auto v = static_cast<int64_t>(args[static_cast<size_t>(r.arg)]);
  if (!r.oneOf) return (v & r.values[0]) == 0;
  v &= ~r.ignoreBits;  // (as the buffer's rule_allows; the calls that may block match too)
  for (unsigned i = 0; i < r.count && i < r.values.size(); ++i)
    if (r.values[i] == v) return true;
  return false;
}

const SyscallRow* findSyscall(int nr) {
  if (nr < 0 || nr >= kMaxSyscall) return nullptr;
  return index().byNumber[nr];
}

const SyscallRow* findSyscall(std::string_view name) {
  for (const SyscallRow& row : kTable) {
    if (row.name == name) return &row;
  }
  return nullptr;
}

namespace {
struct CompatPair {
  int nr32;
  int nr64;
};
// i386 numbers (arch/x86/entry/syscalls/syscall_32.tbl) and their twins.
constexpr CompatPair kCompat[] = {
    {1, SYS_exit},
    {3, SYS_read},
    {4, SYS_write},
    {6, SYS_close},
    {20, SYS_getpid},
    {24, SYS_getuid},
    {37, SYS_kill},
    {45, SYS_brk},
    {47, SYS_getgid},
    {64, SYS_getppid},
    {158, SYS_sched_yield},
    {199, SYS_getuid},
    {200, SYS_getgid},
    {201, SYS_geteuid},
    {202, SYS_getegid},
    {224, SYS_gettid},
    {238, SYS_tkill},
    {243, SYS_set_thread_area},
    {244, SYS_get_thread_area},
    {252, SYS_exit_group},
    {270, SYS_tgkill},
};
}  // namespace

const SyscallRow* findCompatSyscall(int nr32) {
  for (const CompatPair& p : kCompat)
    if (p.nr32 == nr32) return findSyscall(p.nr64);
  return nullptr;
}

int compatNumber(int nr64) {
  for (const CompatPair& p : kCompat)
    if (p.nr64 == nr64) return p.nr32;
  return -1;
}

uint64_t cloneFlags(int nr, uint64_t arg0) {
  if (nr == SYS_clone) return arg0;
  if (nr == SYS_vfork) return CLONE_VM | CLONE_VFORK;
  return 0;
}

std::optional<uint64_t> waitMaskAddress(const SyscallRow& row, const std::array<uint64_t, 6>& args,
                                        MemoryReader& mem) {
  uint64_t at = args[row.waitMaskArg];
  switch (row.waitMask) {
    case WaitMask::None:
      return std::nullopt;
    case WaitMask::Arg:
      break;
    case WaitMask::PairPtr: {
      uint64_t pair[2] = {0, 0};
      if (at == 0 || mem.read(at, pair, sizeof pair) != sizeof pair) return std::nullopt;
      at = pair[0];
      break;
    }
  }
  return at != 0 ? std::optional<uint64_t>(at) : std::nullopt;
}

std::vector<int> stringArgs(const SyscallRow& row) {
  std::vector<int> out;
  for (int i = 0; i < row.argCount; ++i) {
    if (row.args[i] == Arg::Path || row.args[i] == Arg::Str) out.push_back(i);
  }
  return out;
}

}  // namespace rec::sys
