// outputRanges(): which tracee memory a completed syscall wrote, from the
// row's OutParams plus the few hooks and irregular calls whose output size
// depends on a command argument. The recorder copies exactly these ranges
// into the trace; the replayer writes them back.
#include <sys/sem.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>

#include "ioctl_table.h"
#include "syscall_numbers.h"
#include "syscall_table.h"

namespace rec::sys {
namespace {

// No single syscall output is this large in practice; a bigger computed size
// means garbage arguments, and recording it would blow up the trace.
constexpr uint64_t kMaxRange = 64ull << 20;
constexpr uint64_t kPage = 4096;
constexpr size_t kMaxIovecs = 1024;  // UIO_MAXIOV
constexpr uint64_t kSemMsl = 32000;  // SEMMSL: semaphores per set at most
constexpr uint64_t kMsghdrSize = 56, kMmsghdrSize = 64, kIovecSize = 16;

// Kernel-internal restart codes that a tracer sees at syscall exit.
constexpr int64_t kErestartsys = -512, kErestartRestartblock = -516;

class Ranges {
 public:
  explicit Ranges(MemoryReader& mem) : mem_(mem) {}

  void add(uint64_t addr, uint64_t len) {
    if (addr == 0 || len == 0) return;
    len = std::min(len, kMaxRange);
    if (addr + len < addr) len = ~addr;  // wraps past the top of the address space
    // Not probed here: the recorder reads each range in bulk anyway, and a
    // read stops short at an unmapped page by itself.
    out_.push_back({addr, len});
  }
  std::vector<MemRange> take() { return std::move(out_); }

  template <typename T>
  bool load(uint64_t addr, T& value) {
    if (addr == 0) return false;
    return mem_.read(addr, &value, sizeof value) == sizeof value;
  }

 private:
  MemoryReader& mem_;
  std::vector<MemRange> out_;
};

// `total` bytes spread over the iovec array at `iov` in order.
void addIovecs(Ranges& r, uint64_t iov, uint64_t count, uint64_t total) {
  count = std::min<uint64_t>(count, kMaxIovecs);
  for (uint64_t i = 0; i < count && total > 0; ++i) {
    uint64_t vec[2];
    if (!r.load(iov + i * kIovecSize, vec)) break;
    uint64_t n = std::min(vec[1], total);
    r.add(vec[0], n);
    total -= n;
  }
}

// A struct msghdr the kernel filled in: the name, `dataBytes` of iov data,
// the control buffer, and the msghdr itself (namelen/controllen/flags).
void addMsghdr(Ranges& r, uint64_t msg, uint64_t dataBytes) {
  struct {
    uint64_t name;
    uint32_t namelen, pad;
    uint64_t iov, iovlen, control, controllen;
    int32_t flags, pad2;
  } m;
  static_assert(sizeof m == kMsghdrSize);
  if (!r.load(msg, m)) return;
  r.add(msg, kMsghdrSize);
  r.add(m.name, std::min<uint64_t>(m.namelen, 128));
  addIovecs(r, m.iov, m.iovlen, dataBytes);
  r.add(m.control, m.controllen);
}

uint64_t fdSetBytes(uint64_t nfds) {
  nfds = std::min<uint64_t>(nfds, 1u << 20);
  return (nfds + 63) / 64 * 8;
}

void ioctlOutputs(Ranges& r, const std::array<uint64_t, 6>& a) {
  uint32_t request = static_cast<uint32_t>(a[1]);
  const IoctlRow* known = findIoctl(request);
  if (!known) {
    uint32_t dir = request >> 30, size = (request >> 16) & 0x3fff;
    if (dir & 2) r.add(a[2], size);  // _IOC_READ: the kernel writes to userspace
    return;
  }
  switch (known->kind) {
    case IoctlOut::Fixed:
      r.add(a[2], known->size);
      break;
    case IoctlOut::Fiemap: {
      // struct fiemap: ..., u32 fm_mapped_extents at 20, u32 fm_extent_count at 24
      uint32_t mapped = 0, room = 0;
      r.load(a[2] + 20, mapped);
      r.load(a[2] + 24, room);
      r.add(a[2], 32 + uint64_t{std::min(mapped, room)} * 56);
      break;
    }
    case IoctlOut::Ifconf: {
      // struct ifconf { int ifc_len; void* ifc_buf; }: the length as filled in
      int32_t len = 0;
      uint64_t buf = 0;
      r.add(a[2], 16);
      if (r.load(a[2], len) && r.load(a[2] + 8, buf) && len > 0) r.add(buf, uint64_t(len));
      break;
    }
  }
}

void fcntlOutputs(Ranges& r, const std::array<uint64_t, 6>& a) {
  switch (static_cast<int>(a[1])) {
    case 5:             // F_GETLK
    case 36:            // F_OFD_GETLK
      r.add(a[2], 32);  // struct flock
      break;
    case 16:    // F_GETOWN_EX
    case 1035:  // F_GET_RW_HINT
    case 1037:  // F_GET_FILE_RW_HINT
      r.add(a[2], 8);
      break;
  }
}

void prctlOutputs(Ranges& r, const std::array<uint64_t, 6>& a, int64_t result) {
  // clang-format off
  switch (a[0]) {
    case 16: r.add(a[1], 16); break;  // PR_GET_NAME
    case 40: r.add(a[1], 8); break;   // PR_GET_TID_ADDRESS
    case 2:                           // PR_GET_PDEATHSIG
    case 5:                           // PR_GET_UNALIGN
    case 9:                           // PR_GET_FPEMU
    case 11:                          // PR_GET_FPEXC
    case 19:                          // PR_GET_ENDIAN
    case 25:                          // PR_GET_TSC
    case 37:                          // PR_GET_CHILD_SUBREAPER
      r.add(a[1], 4);
      break;
    case 0x41555856:  // PR_GET_AUXV: result is the full size, at most arg2 copied
      r.add(a[1], std::min<uint64_t>(result, a[2]));
      break;
    case 35:                           // PR_SET_MM
      if (a[1] == 15) r.add(a[2], 4);  // PR_SET_MM_MAP_SIZE
      break;
  }
  // clang-format on
}

// What an (emulated) ptrace request writes through its data argument.
void ptraceOutputs(Ranges& r, const std::array<uint64_t, 6>& a) {
  // clang-format off
  switch (a[0]) {
    case 1: case 2: case 3:  // PTRACE_PEEKTEXT, PEEKDATA, PEEKUSER: the word read
    case 0x4201:             // PTRACE_GETEVENTMSG
      r.add(a[3], 8);
      break;
    case 12: r.add(a[3], 27 * 8); break;        // PTRACE_GETREGS: user_regs_struct
    case 14: r.add(a[3], 512); break;           // PTRACE_GETFPREGS: user_fpregs_struct
    case 0x4202: r.add(a[3], 128); break;       // PTRACE_GETSIGINFO
    case 30:                                    // PTRACE_ARCH_PRCTL: ARCH_GET_FS/GS
      if (a[3] == 0x1003 || a[3] == 0x1004) r.add(a[2], 8);
      break;
    case 0x4204: {                              // PTRACE_GETREGSET: the iovec and its buffer
      uint64_t iov[2] = {0, 0};
      if (!r.load(a[3], iov)) break;
      r.add(a[3], 16);
      r.add(iov[0], iov[1]);
      break;
    }
  }
  // clang-format on
}

void futexOutputs(Ranges& r, int nr, const std::array<uint64_t, 6>& a) {
  if (nr != SYS_futex) return;
  switch (a[1] & 127) {  // FUTEX_CMD_MASK
    case 5:              // FUTEX_WAKE_OP: *uaddr2 op= oparg
      r.add(a[4], 4);
      break;
    case 6:   // FUTEX_LOCK_PI
    case 7:   // FUTEX_UNLOCK_PI
    case 8:   // FUTEX_TRYLOCK_PI
    case 13:  // FUTEX_LOCK_PI2
      r.add(a[0], 4);
      break;
    case 11:  // FUTEX_WAIT_REQUEUE_PI
    case 12:  // FUTEX_CMP_REQUEUE_PI
      r.add(a[0], 4);
      r.add(a[4], 4);
      break;
  }
}

void recvmmsgOutputs(Ranges& r, const std::array<uint64_t, 6>& a, int64_t result) {
  for (int64_t i = 0; i < result && i < static_cast<int64_t>(kMaxIovecs); ++i) {
    uint64_t entry = a[1] + i * kMmsghdrSize;
    uint32_t len = 0;
    if (!r.load(entry + kMsghdrSize, len)) break;
    addMsghdr(r, entry, len);
    r.add(entry + kMsghdrSize, 4);
  }
  r.add(a[4], 16);  // the remaining timeout is written back
}

// Bytes a command of a SysV IPC *ctl or quotactl writes through its buffer.
uint64_t commandOutputSize(int nr, uint32_t cmd) {
  struct Entry {
    int nr;
    uint32_t cmd;
    uint32_t size;
  };
  // clang-format off
  static constexpr Entry kSizes[] = {
    {SYS_shmctl, 2, 112},  {SYS_shmctl, 13, 112}, {SYS_shmctl, 15, 112},  // *_STAT: shmid64_ds
    {SYS_shmctl, 3, 72},                                                  // IPC_INFO: shminfo64
    {SYS_shmctl, 14, 48},                                                 // SHM_INFO: shm_info
    {SYS_semctl, 2, 104},  {SYS_semctl, 18, 104}, {SYS_semctl, 20, 104},  // *_STAT: semid64_ds
    {SYS_semctl, 3, 40},   {SYS_semctl, 19, 40},                          // *_INFO: seminfo
    {SYS_msgctl, 2, 120},  {SYS_msgctl, 11, 120}, {SYS_msgctl, 13, 120},  // *_STAT: msqid64_ds
    {SYS_msgctl, 3, 32},   {SYS_msgctl, 12, 32},                          // *_INFO: msginfo
    {SYS_quotactl, 0x800004, 4},   // Q_GETFMT
    {SYS_quotactl, 0x800005, 24},  // Q_GETINFO: if_dqinfo
    {SYS_quotactl, 0x800007, 72},  // Q_GETQUOTA: if_dqblk
    {SYS_quotactl, 0x800009, 72},  // Q_GETNEXTQUOTA: if_nextdqblk
  };
  // clang-format on
  for (const Entry& e : kSizes) {
    if (e.nr == nr && e.cmd == cmd) return e.size;
  }
  return 0;
}

// Calls whose output size depends on a command or on memory, and which need
// no hook otherwise.
void irregularOutputs(Ranges& r, int nr, const std::array<uint64_t, 6>& a, int64_t result) {
  switch (nr) {
    case SYS_mincore:
      r.add(a[2], (std::min(a[1], kMaxRange * kPage) + kPage - 1) / kPage);
      break;
    case SYS_msgrcv:
      r.add(a[1], 8 + result);  // long mtype, then mtext
      break;
    case SYS_shmctl:
    case SYS_msgctl:
      r.add(a[2], commandOutputSize(nr, a[1] & 0xff));  // cmd without IPC_64
      break;
    case SYS_semctl:
      if ((a[2] & 0xff) == 13) {  // GETALL: an unsigned short per semaphore of the set
        // The set's size is not among the arguments; rec shares the
        // program's IPC namespace (unless it unshared one), so it asks itself.
        semid_ds ds{};
        if (::semctl(static_cast<int>(a[0]), 0, IPC_STAT, &ds) == 0)
          r.add(a[3], uint64_t{ds.sem_nsems} * 2);
        else
          r.add(a[3], kSemMsl * 2);  // the most a set can have
        break;
      }
      r.add(a[3], commandOutputSize(nr, a[2] & 0xff));
      break;
    case SYS_capget: {
      // The header's version, which the kernel writes when it is not one it
      // knows (then failing with EINVAL), and one or two data structs by it.
      r.add(a[0], 4);
      uint32_t version = 0;
      r.load(a[0], version);
      r.add(a[1], version == 0x19980330 ? 12 : 24);  // _LINUX_CAPABILITY_VERSION_1: one struct
      break;
    }
    case SYS_sysfs:
      if (a[0] == 2) {
        char name[256];
        size_t n = 0;
        while (n < sizeof name && r.load(a[2] + n, name[n]) && name[n] != 0) ++n;
        r.add(a[2], n + 1);
      }
      break;
    case SYS_quotactl:
      r.add(a[3], commandOutputSize(nr, static_cast<uint32_t>(a[0]) >> 8));
      break;
    case SYS_quotactl_fd:
      r.add(a[3], commandOutputSize(SYS_quotactl, static_cast<uint32_t>(a[1]) >> 8));
      break;
    case SYS_get_mempolicy:
      if (a[2] > 0) r.add(a[1], (a[2] - 1 + 63) / 64 * 8);
      break;
    case SYS_keyctl:
      if (a[0] == 6 || a[0] == 11 || a[0] == 17) {  // DESCRIBE, READ, GET_SECURITY
        r.add(a[2], std::min<uint64_t>(result, a[3]));
      }
      break;
    case SYS_name_to_handle_at: {
      uint32_t bytes = 0;
      if (r.load(a[2], bytes)) r.add(a[2], 8 + std::min<uint32_t>(bytes, 128));
      r.add(a[3], (a[4] & 0x001) ? 8 : 4);  // AT_HANDLE_MNT_ID_UNIQUE: u64 mount id
      break;
    }
    case SYS_statmount: {  // the struct starts with the size the kernel filled
      uint32_t size = 0;
      if (r.load(a[1], size)) r.add(a[1], std::min<uint64_t>(size, a[2]));
      break;
    }
    case SYS_getxattrat: {  // struct xattr_args { u64 value; u32 size; u32 flags; }
      uint64_t value = 0;
      if (r.load(a[4], value)) r.add(value, result);
      break;
    }
  }
}

void addOut(Ranges& r, const OutParam& o, const std::array<uint64_t, 6>& a, int64_t result) {
  uint64_t ptr = a[o.arg];
  uint64_t res = result > 0 ? static_cast<uint64_t>(result) : 0;
  switch (o.kind) {
    case Out::None:
      break;
    case Out::Fixed:
      r.add(ptr, o.size);
      break;
    case Out::ByResult:
      r.add(ptr, res);
      break;
    case Out::ByArg:
      r.add(ptr, a[o.lenArg]);
      break;
    case Out::ResultTimes:
      r.add(ptr, std::min(res, kMaxRange) * o.size);
      break;
    case Out::ArgTimes:
      r.add(ptr, std::min(a[o.lenArg], kMaxRange) * o.size);
      break;
    case Out::LenPtr: {
      uint32_t len = 0;
      if (!r.load(a[o.lenArg], len)) break;
      r.add(ptr, o.size ? std::min(len, o.size) : len);
      break;
    }
    case Out::Iovec:
      addIovecs(r, ptr, a[o.lenArg], res);
      break;
    case Out::Msghdr:
      addMsghdr(r, ptr, res);
      break;
    case Out::IoctlSize: {
      uint32_t request = static_cast<uint32_t>(a[1]);
      if ((request >> 30) & 2) r.add(ptr, (request >> 16) & 0x3fff);
      break;
    }
    case Out::CString: {
      uint64_t cap = a[o.lenArg];
      if (res > 0) {
        r.add(ptr, std::min(res, cap));
        break;
      }
      uint64_t n = 0;
      char c = 1;
      while (n < cap && n < 4096 && r.load(ptr + n, c) && c != 0) ++n;
      r.add(ptr, std::min(n + 1, cap));
      break;
    }
  }
}

bool interrupted(int64_t result) {
  return result == -4 /* EINTR */ || (result <= kErestartsys && result >= kErestartRestartblock);
}

}  // namespace

std::vector<MemRange> outputRanges(const SyscallRow& row, const std::array<uint64_t, 6>& args,
                                   int64_t result, MemoryReader& mem) {
  Ranges r(mem);
  bool failed = result < 0 && result >= -4095;
  if (failed && result == -7 /* E2BIG */) {
    // Extensible structs too large for this kernel: the size it knows is
    // written back (offset of `size` in struct sched_attr / perf_event_attr).
    if (row.number == SYS_sched_setattr) r.add(args[1], 4);
    if (row.number == SYS_perf_event_open) r.add(args[0] + 4, 4);
  }
  if (failed && !(row.flags & kOutputsOnError)) {
    // A failed call writes nothing, except that an interrupted sleep or
    // select/ppoll reports the time left.
    if (!interrupted(result)) return r.take();
    switch (row.number) {
      case SYS_nanosleep:
        r.add(args[1], 16);
        break;
      case SYS_clock_nanosleep:
        r.add(args[3], 16);
        break;
      case SYS_select:
        r.add(args[4], 16);
        break;
      case SYS_pselect6:
      case SYS_ppoll:
        r.add(args[row.number == SYS_ppoll ? 2 : 4], 16);
        break;
    }
    return r.take();
  }

  switch (row.hook) {
    case Hook::Ioctl:
      ioctlOutputs(r, args);
      return r.take();  // replaces the generic IoctlSize out param
    case Hook::Fcntl:
      fcntlOutputs(r, args);
      break;
    case Hook::Prctl:
      prctlOutputs(r, args, result);
      break;
    case Hook::Futex:
      futexOutputs(r, row.number, args);
      break;
    case Hook::Ptrace:
      ptraceOutputs(r, args);
      break;
    case Hook::Select: {
      uint64_t bytes = fdSetBytes(args[0]);
      for (int i = 1; i <= 3; ++i) r.add(args[i], bytes);
      r.add(args[4], 16);  // select: timeval, pselect6: timespec; both 16 and both updated
      break;
    }
    case Hook::Recvmmsg:
      recvmmsgOutputs(r, args, result);
      break;
    case Hook::Sendmmsg:
      for (int64_t i = 0; i < result && i < static_cast<int64_t>(kMaxIovecs); ++i) {
        r.add(args[1] + i * kMmsghdrSize + kMsghdrSize, 4);  // msg_len
      }
      break;
    case Hook::Clone:
      // Parent side: CLONE_PARENT_SETTID / CLONE_PIDFD store through parent_tid.
      if (row.number == SYS_clone && result > 0 && (args[0] & (0x00100000 | 0x1000))) {
        r.add(args[2], 4);
      }
      break;
    default:
      break;
  }
  irregularOutputs(r, row.number, args, result);
  for (const OutParam& o : row.outs) addOut(r, o, args, result);
  return r.take();
}

std::vector<MemRange> pendingOutputRanges(const SyscallRow& row,
                                          const std::array<uint64_t, 6>& args, MemoryReader& mem) {
  // The largest result: the count argument nearest after a by-result
  // output's pointer (read's size, epoll_wait's maxevents), else before it.
  uint64_t most = 0;
  bool bounded = true;
  for (const OutParam& o : row.outs) {
    if (o.kind != Out::ByResult && o.kind != Out::ResultTimes && o.kind != Out::Iovec &&
        o.kind != Out::Msghdr)
      continue;
    auto isCount = [&](int i) {
      return row.args[i] == Arg::Size || row.args[i] == Arg::Int || row.args[i] == Arg::Uint;
    };
    int count = -1;
    for (int i = o.arg + 1; i < row.argCount && count < 0; ++i)
      if (isCount(i)) count = i;
    for (int i = o.arg - 1; i >= 0 && count < 0; --i)
      if (isCount(i)) count = i;
    if (count < 0 || o.kind == Out::Iovec || o.kind == Out::Msghdr)
      bounded = false;
    else
      most = std::max(most, args[count]);
  }
  if (!bounded) most = kMaxRange;
  std::vector<MemRange> out =
      outputRanges(row, args, static_cast<int64_t>(std::min(most, kMaxRange)), mem);
  for (const MemRange& r : outputRanges(row, args, kErestartsys, mem)) out.push_back(r);
  return out;
}

}  // namespace rec::sys
