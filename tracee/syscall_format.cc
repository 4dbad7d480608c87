// strace-like rendering of syscalls for `rec dump` and divergence reports:
// flag decoding per argument kind, string escaping, errno and signal names.
#include <cstdio>
#include <cstring>
#include <string>

#include "ioctl_table.h"
#include "syscall_table.h"

namespace rec::sys {
namespace {

struct Flag {
  uint64_t bit;
  std::string_view name;
};

std::string hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return v == 0 ? "0" : buf;
}

// "A|B|0x40" from the known bits; `zero` when v == 0.
std::string flags(uint64_t v, std::initializer_list<Flag> known, std::string_view zero = "0") {
  if (v == 0) return std::string(zero);
  std::string out;
  for (const Flag& f : known) {
    if (f.bit && (v & f.bit) == f.bit) {
      if (!out.empty()) out += '|';
      out += f.name;
      v &= ~f.bit;
    }
  }
  if (v) {
    if (!out.empty()) out += '|';
    out += hex(v);
  }
  return out;
}

// Exact-match lookup, number when unknown.
std::string named(int64_t v, std::initializer_list<Flag> known) {
  for (const Flag& f : known) {
    if (static_cast<int64_t>(f.bit) == v) return std::string(f.name);
  }
  return std::to_string(v);
}

}  // namespace

std::string quoted(std::string_view s, size_t limit) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < limit; ++i) {
    unsigned char c = s[i];
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  if (s.size() > limit) out += "...";
  return out;
}

namespace {

std::string openFlags(uint64_t v) {
  static constexpr std::string_view kAccess[] = {"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"};
  std::string out(kAccess[v & 3]);
  // Kernel values (octal); glibc defines O_LARGEFILE as 0 on x86-64.
  std::string rest = flags(v & ~3ull,
                           {{020200000, "O_TMPFILE"},
                            {04010000, "O_SYNC"},
                            {0100, "O_CREAT"},
                            {0200, "O_EXCL"},
                            {0400, "O_NOCTTY"},
                            {01000, "O_TRUNC"},
                            {02000, "O_APPEND"},
                            {04000, "O_NONBLOCK"},
                            {010000, "O_DSYNC"},
                            {020000, "O_ASYNC"},
                            {040000, "O_DIRECT"},
                            {0100000, "O_LARGEFILE"},
                            {0200000, "O_DIRECTORY"},
                            {0400000, "O_NOFOLLOW"},
                            {01000000, "O_NOATIME"},
                            {02000000, "O_CLOEXEC"},
                            {010000000, "O_PATH"}},
                           "");
  if (!rest.empty()) out += "|" + rest;
  return out;
}

std::string mapFlags(uint64_t v) {
  static constexpr std::string_view kType[] = {"0", "MAP_SHARED", "MAP_PRIVATE",
                                               "MAP_SHARED_VALIDATE"};
  std::string out(kType[v & 3]);
  std::string rest = flags(v & ~3ull,
                           {{0x10, "MAP_FIXED"},
                            {0x20, "MAP_ANONYMOUS"},
                            {0x40, "MAP_32BIT"},
                            {0x100, "MAP_GROWSDOWN"},
                            {0x800, "MAP_DENYWRITE"},
                            {0x1000, "MAP_EXECUTABLE"},
                            {0x2000, "MAP_LOCKED"},
                            {0x4000, "MAP_NORESERVE"},
                            {0x8000, "MAP_POPULATE"},
                            {0x10000, "MAP_NONBLOCK"},
                            {0x20000, "MAP_STACK"},
                            {0x40000, "MAP_HUGETLB"},
                            {0x80000, "MAP_SYNC"},
                            {0x100000, "MAP_FIXED_NOREPLACE"}},
                           "");
  if (!rest.empty()) out += "|" + rest;
  return out;
}

std::string cloneFlags(uint64_t v) {
  std::string out = flags(v & ~0xffull,
                          {{0x100, "CLONE_VM"},
                           {0x200, "CLONE_FS"},
                           {0x400, "CLONE_FILES"},
                           {0x800, "CLONE_SIGHAND"},
                           {0x1000, "CLONE_PIDFD"},
                           {0x2000, "CLONE_PTRACE"},
                           {0x4000, "CLONE_VFORK"},
                           {0x8000, "CLONE_PARENT"},
                           {0x10000, "CLONE_THREAD"},
                           {0x20000, "CLONE_NEWNS"},
                           {0x40000, "CLONE_SYSVSEM"},
                           {0x80000, "CLONE_SETTLS"},
                           {0x100000, "CLONE_PARENT_SETTID"},
                           {0x200000, "CLONE_CHILD_CLEARTID"},
                           {0x400000, "CLONE_DETACHED"},
                           {0x800000, "CLONE_UNTRACED"},
                           {0x1000000, "CLONE_CHILD_SETTID"},
                           {0x2000000, "CLONE_NEWCGROUP"},
                           {0x4000000, "CLONE_NEWUTS"},
                           {0x8000000, "CLONE_NEWIPC"},
                           {0x10000000, "CLONE_NEWUSER"},
                           {0x20000000, "CLONE_NEWPID"},
                           {0x40000000, "CLONE_NEWNET"},
                           {0x80000000, "CLONE_IO"}},
                          "");
  if (int sig = v & 0xff) {
    std::string_view name = signalName(sig);
    if (!out.empty()) out += '|';
    out += name.empty() ? std::to_string(sig) : std::string(name);
  }
  return out.empty() ? "0" : out;
}

std::string futexOp(uint64_t v) {
  static constexpr std::string_view kCmds[] = {
      "FUTEX_WAIT",           "FUTEX_WAKE",        "FUTEX_FD",          "FUTEX_REQUEUE",
      "FUTEX_CMP_REQUEUE",    "FUTEX_WAKE_OP",     "FUTEX_LOCK_PI",     "FUTEX_UNLOCK_PI",
      "FUTEX_TRYLOCK_PI",     "FUTEX_WAIT_BITSET", "FUTEX_WAKE_BITSET", "FUTEX_WAIT_REQUEUE_PI",
      "FUTEX_CMP_REQUEUE_PI", "FUTEX_LOCK_PI2"};
  uint64_t cmd = v & 127;
  if (cmd >= std::size(kCmds) || (v & ~(127ull | 128 | 256))) return hex(v);
  std::string out(kCmds[cmd]);
  if (v & 128) out += "_PRIVATE";
  if (v & 256) out += "|FUTEX_CLOCK_REALTIME";
  return out;
}

std::string atFlags(const SyscallRow& row, uint64_t v) {
  // 0x200 means AT_REMOVEDIR for unlinkat and AT_EACCESS for the access calls.
  std::string_view x200 = row.name == "unlinkat" ? "AT_REMOVEDIR" : "AT_EACCESS";
  return flags(v, {{0x100, "AT_SYMLINK_NOFOLLOW"},
                   {0x200, x200},
                   {0x400, "AT_SYMLINK_FOLLOW"},
                   {0x800, "AT_NO_AUTOMOUNT"},
                   {0x1000, "AT_EMPTY_PATH"},
                   {0x2000, "AT_STATX_FORCE_SYNC"},
                   {0x4000, "AT_STATX_DONT_SYNC"},
                   {0x8000, "AT_RECURSIVE"}});
}

std::string fcntlCmd(int64_t v) {
  return named(v, {{0, "F_DUPFD"},
                   {1, "F_GETFD"},
                   {2, "F_SETFD"},
                   {3, "F_GETFL"},
                   {4, "F_SETFL"},
                   {5, "F_GETLK"},
                   {6, "F_SETLK"},
                   {7, "F_SETLKW"},
                   {8, "F_SETOWN"},
                   {9, "F_GETOWN"},
                   {10, "F_SETSIG"},
                   {11, "F_GETSIG"},
                   {15, "F_SETOWN_EX"},
                   {16, "F_GETOWN_EX"},
                   {17, "F_GETOWNER_UIDS"},
                   {36, "F_OFD_GETLK"},
                   {37, "F_OFD_SETLK"},
                   {38, "F_OFD_SETLKW"},
                   {1024, "F_SETLEASE"},
                   {1025, "F_GETLEASE"},
                   {1026, "F_NOTIFY"},
                   {1027, "F_DUPFD_QUERY"},
                   {1030, "F_DUPFD_CLOEXEC"},
                   {1031, "F_SETPIPE_SZ"},
                   {1032, "F_GETPIPE_SZ"},
                   {1033, "F_ADD_SEALS"},
                   {1034, "F_GET_SEALS"},
                   {1035, "F_GET_RW_HINT"},
                   {1036, "F_SET_RW_HINT"},
                   {1037, "F_GET_FILE_RW_HINT"},
                   {1038, "F_SET_FILE_RW_HINT"}});
}

std::string prctlOption(int64_t v) {
  return named(v, {{1, "PR_SET_PDEATHSIG"},
                   {2, "PR_GET_PDEATHSIG"},
                   {3, "PR_GET_DUMPABLE"},
                   {4, "PR_SET_DUMPABLE"},
                   {5, "PR_GET_UNALIGN"},
                   {6, "PR_SET_UNALIGN"},
                   {7, "PR_GET_KEEPCAPS"},
                   {8, "PR_SET_KEEPCAPS"},
                   {15, "PR_SET_NAME"},
                   {16, "PR_GET_NAME"},
                   {21, "PR_GET_SECCOMP"},
                   {22, "PR_SET_SECCOMP"},
                   {23, "PR_CAPBSET_READ"},
                   {24, "PR_CAPBSET_DROP"},
                   {25, "PR_GET_TSC"},
                   {26, "PR_SET_TSC"},
                   {27, "PR_GET_SECUREBITS"},
                   {28, "PR_SET_SECUREBITS"},
                   {29, "PR_SET_TIMERSLACK"},
                   {30, "PR_GET_TIMERSLACK"},
                   {35, "PR_SET_MM"},
                   {36, "PR_SET_CHILD_SUBREAPER"},
                   {37, "PR_GET_CHILD_SUBREAPER"},
                   {38, "PR_SET_NO_NEW_PRIVS"},
                   {39, "PR_GET_NO_NEW_PRIVS"},
                   {40, "PR_GET_TID_ADDRESS"},
                   {41, "PR_SET_THP_DISABLE"},
                   {42, "PR_GET_THP_DISABLE"},
                   {47, "PR_CAP_AMBIENT"},
                   {52, "PR_GET_SPECULATION_CTRL"},
                   {53, "PR_SET_SPECULATION_CTRL"},
                   {65, "PR_SET_MDWE"},
                   {66, "PR_GET_MDWE"},
                   {0x59616d61, "PR_SET_PTRACER"},
                   {0x53564d41, "PR_SET_VMA"},
                   {0x41555856, "PR_GET_AUXV"}});
}

std::string ioctlRequest(uint64_t v) {
  uint32_t req = static_cast<uint32_t>(v);
  if (const IoctlRow* known = findIoctl(req)) return std::string(known->name);
  uint32_t dir = req >> 30;
  if (dir == 0) return hex(req);
  static constexpr std::string_view kDir[] = {"_IOC_NONE", "_IOC_WRITE", "_IOC_READ",
                                              "_IOC_READ|_IOC_WRITE"};
  char buf[96];
  snprintf(buf, sizeof buf, "_IOC(%s, %#x, %#x, %#x)", kDir[dir].data(), (req >> 8) & 0xff,
           req & 0xff, (req >> 16) & 0x3fff);
  return buf;
}

std::string socketArg(int index, uint64_t v) {
  if (index == 0) {
    return named(static_cast<int>(v), {{1, "AF_UNIX"},
                                       {2, "AF_INET"},
                                       {10, "AF_INET6"},
                                       {16, "AF_NETLINK"},
                                       {17, "AF_PACKET"},
                                       {40, "AF_VSOCK"}});
  }
  std::string out = named(v & 0xf, {{1, "SOCK_STREAM"},
                                    {2, "SOCK_DGRAM"},
                                    {3, "SOCK_RAW"},
                                    {4, "SOCK_RDM"},
                                    {5, "SOCK_SEQPACKET"},
                                    {10, "SOCK_PACKET"}});
  std::string rest = flags(v & ~0xfull, {{04000, "SOCK_NONBLOCK"}, {02000000, "SOCK_CLOEXEC"}}, "");
  return rest.empty() ? out : out + "|" + rest;
}

std::string formatArg(const SyscallRow& row, int i, uint64_t v,
                      std::span<const std::string> strings, size_t& nextString) {
  int64_t s = static_cast<int64_t>(v);
  int32_t s32 = static_cast<int32_t>(v);
  switch (row.args[i]) {
    case Arg::None:
      return "";
    case Arg::Int:
      return std::to_string(s);
    case Arg::Uint:
    case Arg::Size:
      return std::to_string(v);
    case Arg::Hex:
      return hex(v);
    case Arg::Ptr:
      return v == 0 ? "NULL" : hex(v);
    case Arg::Fd:
    case Arg::Pid:
      return std::to_string(s32);
    case Arg::DirFd:
      return s32 == -100 ? "AT_FDCWD" : std::to_string(s32);
    case Arg::Path:
    case Arg::Str: {
      if (nextString < strings.size()) {
        const std::string& str = strings[nextString++];
        size_t limit = row.args[i] == Arg::Path ? kPathMax : kStringMax;
        return v == 0 ? "NULL" : quoted(str, limit);
      }
      return v == 0 ? "NULL" : hex(v);
    }
    case Arg::OpenFlags:
      return openFlags(v);
    case Arg::Mode: {
      char buf[24];
      snprintf(buf, sizeof buf, "0%llo", static_cast<unsigned long long>(v));
      return v == 0 ? "0" : buf;
    }
    case Arg::Prot:
      return flags(v,
                   {{1, "PROT_READ"},
                    {2, "PROT_WRITE"},
                    {4, "PROT_EXEC"},
                    {8, "PROT_SEM"},
                    {0x01000000, "PROT_GROWSDOWN"},
                    {0x02000000, "PROT_GROWSUP"}},
                   "PROT_NONE");
    case Arg::MapFlags:
      return mapFlags(v);
    case Arg::Signal: {
      std::string_view name = signalName(s32);
      return name.empty() ? std::to_string(s32) : std::string(name);
    }
    case Arg::Clock:
      return named(s32, {{0, "CLOCK_REALTIME"},
                         {1, "CLOCK_MONOTONIC"},
                         {2, "CLOCK_PROCESS_CPUTIME_ID"},
                         {3, "CLOCK_THREAD_CPUTIME_ID"},
                         {4, "CLOCK_MONOTONIC_RAW"},
                         {5, "CLOCK_REALTIME_COARSE"},
                         {6, "CLOCK_MONOTONIC_COARSE"},
                         {7, "CLOCK_BOOTTIME"},
                         {8, "CLOCK_REALTIME_ALARM"},
                         {9, "CLOCK_BOOTTIME_ALARM"},
                         {11, "CLOCK_TAI"}});
    case Arg::FutexOp:
      return futexOp(v);
    case Arg::Whence:
      return named(
          s32,
          {{0, "SEEK_SET"}, {1, "SEEK_CUR"}, {2, "SEEK_END"}, {3, "SEEK_DATA"}, {4, "SEEK_HOLE"}});
    case Arg::Ioctl:
      return ioctlRequest(v);
    case Arg::AtFlags:
      return atFlags(row, v);
    case Arg::CloneFlags:
      return cloneFlags(v);
    case Arg::Fcntl:
      return fcntlCmd(s32);
    case Arg::Prctl:
      return prctlOption(s32);
    case Arg::Socket:
      return socketArg(i, v);
  }
  return hex(v);
}

}  // namespace

std::string formatCall(const SyscallRow& row, const std::array<uint64_t, 6>& args,
                       std::span<const std::string> strings) {
  std::string out(row.name);
  out += '(';
  size_t nextString = 0;
  for (int i = 0; i < row.argCount; ++i) {
    if (i) out += ", ";
    out += formatArg(row, i, args[i], strings, nextString);
  }
  out += ')';
  return out;
}

std::string formatResult(const SyscallRow& row, int64_t result) {
  if (result >= -516 && result <= -512) {
    // Kernel-internal restart codes: the program never sees them (strace's "?").
    static constexpr std::string_view kRestart[] = {
        "ERESTARTSYS (To be restarted if SA_RESTART is set)", "ERESTARTNOINTR (To be restarted)",
        "ERESTARTNOHAND (To be restarted if no handler)", "ENOIOCTLCMD (Unknown ioctl command)",
        "ERESTART_RESTARTBLOCK (Interrupted by signal)"};
    return "? " + std::string(kRestart[-512 - result]);
  }
  if (result < 0 && result >= -4095) {
    int err = static_cast<int>(-result);
    std::string_view name = errnoName(err);
    std::string out = "-1 " + (name.empty() ? "errno " + std::to_string(err) : std::string(name));
    return out + " (" + strerror(err) + ")";
  }
  switch (row.hook) {
    case Hook::Mmap:
    case Hook::Mremap:
    case Hook::Brk:
    case Hook::ShmAt:
      return hex(static_cast<uint64_t>(result));
    default:
      return std::to_string(result);
  }
}

std::string_view errnoName(int err) {
  static constexpr std::string_view kNames[] = {"",
                                                "EPERM",
                                                "ENOENT",
                                                "ESRCH",
                                                "EINTR",
                                                "EIO",
                                                "ENXIO",
                                                "E2BIG",
                                                "ENOEXEC",
                                                "EBADF",
                                                "ECHILD",
                                                "EAGAIN",
                                                "ENOMEM",
                                                "EACCES",
                                                "EFAULT",
                                                "ENOTBLK",
                                                "EBUSY",
                                                "EEXIST",
                                                "EXDEV",
                                                "ENODEV",
                                                "ENOTDIR",
                                                "EISDIR",
                                                "EINVAL",
                                                "ENFILE",
                                                "EMFILE",
                                                "ENOTTY",
                                                "ETXTBSY",
                                                "EFBIG",
                                                "ENOSPC",
                                                "ESPIPE",
                                                "EROFS",
                                                "EMLINK",
                                                "EPIPE",
                                                "EDOM",
                                                "ERANGE",
                                                "EDEADLK",
                                                "ENAMETOOLONG",
                                                "ENOLCK",
                                                "ENOSYS",
                                                "ENOTEMPTY",
                                                "ELOOP",
                                                "",
                                                "ENOMSG",
                                                "EIDRM",
                                                "ECHRNG",
                                                "EL2NSYNC",
                                                "EL3HLT",
                                                "EL3RST",
                                                "ELNRNG",
                                                "EUNATCH",
                                                "ENOCSI",
                                                "EL2HLT",
                                                "EBADE",
                                                "EBADR",
                                                "EXFULL",
                                                "ENOANO",
                                                "EBADRQC",
                                                "EBADSLT",
                                                "",
                                                "EBFONT",
                                                "ENOSTR",
                                                "ENODATA",
                                                "ETIME",
                                                "ENOSR",
                                                "ENONET",
                                                "ENOPKG",
                                                "EREMOTE",
                                                "ENOLINK",
                                                "EADV",
                                                "ESRMNT",
                                                "ECOMM",
                                                "EPROTO",
                                                "EMULTIHOP",
                                                "EDOTDOT",
                                                "EBADMSG",
                                                "EOVERFLOW",
                                                "ENOTUNIQ",
                                                "EBADFD",
                                                "EREMCHG",
                                                "ELIBACC",
                                                "ELIBBAD",
                                                "ELIBSCN",
                                                "ELIBMAX",
                                                "ELIBEXEC",
                                                "EILSEQ",
                                                "ERESTART",
                                                "ESTRPIPE",
                                                "EUSERS",
                                                "ENOTSOCK",
                                                "EDESTADDRREQ",
                                                "EMSGSIZE",
                                                "EPROTOTYPE",
                                                "ENOPROTOOPT",
                                                "EPROTONOSUPPORT",
                                                "ESOCKTNOSUPPORT",
                                                "EOPNOTSUPP",
                                                "EPFNOSUPPORT",
                                                "EAFNOSUPPORT",
                                                "EADDRINUSE",
                                                "EADDRNOTAVAIL",
                                                "ENETDOWN",
                                                "ENETUNREACH",
                                                "ENETRESET",
                                                "ECONNABORTED",
                                                "ECONNRESET",
                                                "ENOBUFS",
                                                "EISCONN",
                                                "ENOTCONN",
                                                "ESHUTDOWN",
                                                "ETOOMANYREFS",
                                                "ETIMEDOUT",
                                                "ECONNREFUSED",
                                                "EHOSTDOWN",
                                                "EHOSTUNREACH",
                                                "EALREADY",
                                                "EINPROGRESS",
                                                "ESTALE",
                                                "EUCLEAN",
                                                "ENOTNAM",
                                                "ENAVAIL",
                                                "EISNAM",
                                                "EREMOTEIO",
                                                "EDQUOT",
                                                "ENOMEDIUM",
                                                "EMEDIUMTYPE",
                                                "ECANCELED",
                                                "ENOKEY",
                                                "EKEYEXPIRED",
                                                "EKEYREVOKED",
                                                "EKEYREJECTED",
                                                "EOWNERDEAD",
                                                "ENOTRECOVERABLE",
                                                "ERFKILL",
                                                "EHWPOISON"};
  static_assert(std::size(kNames) == 134);
  if (err > 0 && err < static_cast<int>(std::size(kNames))) return kNames[err];
  switch (err) {
    case 512:
      return "ERESTARTSYS";
    case 513:
      return "ERESTARTNOINTR";
    case 514:
      return "ERESTARTNOHAND";
    case 515:
      return "ENOIOCTLCMD";
    case 516:
      return "ERESTART_RESTARTBLOCK";
  }
  return "";
}

std::string_view signalName(int signo) {
  static constexpr std::string_view kNames[] = {
      "",          "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",   "SIGTRAP", "SIGABRT", "SIGBUS",
      "SIGFPE",    "SIGKILL", "SIGUSR1",   "SIGSEGV", "SIGUSR2",  "SIGPIPE", "SIGALRM", "SIGTERM",
      "SIGSTKFLT", "SIGCHLD", "SIGCONT",   "SIGSTOP", "SIGTSTP",  "SIGTTIN", "SIGTTOU", "SIGURG",
      "SIGXCPU",   "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO",   "SIGPWR",  "SIGSYS"};
  // Real-time signals: the kernel's SIGRTMIN is 32 (glibc reserves 32-34).
  static const auto kRealtime = [] {
    std::array<std::string, 33> names;
    names[0] = "SIGRTMIN";
    for (int i = 1; i < 33; ++i) names[i] = "SIGRT_" + std::to_string(i);
    return names;
  }();
  if (signo > 0 && signo < static_cast<int>(std::size(kNames))) return kNames[signo];
  if (signo >= 32 && signo <= 64) return kRealtime[signo - 32];
  return "";
}

std::string_view supportName(Support s) {
  switch (s) {
    case Support::Passthrough:
      return "passthrough";
    case Support::Emulated:
      return "emulated";
    case Support::Executed:
      return "executed";
    case Support::Refused:
      return "refused";
  }
  return "";
}

}  // namespace rec::sys
