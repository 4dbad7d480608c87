// The x86-64 syscall table: one declarative row per syscall number the
// kernel defines. Recorder, replayer, the seccomp filter, `rec dump` and
// `rec syscalls` (and through it the README's compatibility list) are all
// generic over this table; irregular syscalls name a Hook that the recorder
// and replayer implement.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rec::sys {

// How an argument is shown by `rec dump` (and compared on replay).
enum class Arg : uint8_t {
  None,        // argument not used
  Int,         // signed decimal
  Uint,        // unsigned decimal
  Hex,         // 0x...
  Ptr,         // address, NULL when 0
  Fd,          // file descriptor
  DirFd,       // AT_FDCWD or fd
  Path,        // NUL-terminated path string the program passes in
  Str,         // other NUL-terminated input string
  Size,        // byte count
  OpenFlags,   // O_*
  Mode,        // octal
  Prot,        // PROT_*
  MapFlags,    // MAP_*
  Signal,      // SIGxxx
  Pid,         // process/thread id
  Clock,       // CLOCK_*
  FutexOp,     // FUTEX_*
  Whence,      // SEEK_*
  Ioctl,       // ioctl request, decoded as _IOC(...) or by name
  AtFlags,     // AT_*
  CloneFlags,  // CLONE_*
  Fcntl,       // F_*
  Prctl,       // PR_*
  Socket,      // AF_*/SOCK_* pair shown as ints
};

// Where a syscall runs on replay.
enum class Support : uint8_t {
  Passthrough,  // deterministic and private to the tracee: runs natively in record and replay, no
                // stop
  Emulated,     // recorded at record time; on replay skipped and its result and memory injected
  Executed,     // recorded, and executed again on replay because it shapes the address space
                // or process tree; result compared (or replaced, see kResultFromTrace)
  Refused,  // rec cannot record it faithfully: fails with ENOSYS at record time so programs fall
            // back
};

// How many bytes the kernel writes through an output pointer argument.
enum class Out : uint8_t {
  None,
  Fixed,        // `size` bytes
  ByResult,     // result bytes (when result > 0)
  ByArg,        // value of argument `lenArg` bytes
  ResultTimes,  // result * `size` bytes (e.g. epoll_wait events)
  ArgTimes,     // argument `lenArg` * `size` bytes (e.g. poll's pollfd array)
  LenPtr,       // *(u32*)arg[lenArg] bytes after the call, at most the value before (sockaddr +
                // socklen_t)
  Iovec,        // iovec array at arg, count at arg `lenArg`, result bytes spread over it
  Msghdr,       // struct msghdr at arg: name, iov (by result), control, and the msghdr itself
  IoctlSize,    // ioctl: _IOC_SIZE(request) bytes when _IOC_DIR has _IOC_READ
  CString,      // NUL-terminated string of at most `lenArg` arg bytes (getcwd: result bytes)
};

struct OutParam {
  uint8_t arg = 0;  // which argument holds the pointer
  Out kind = Out::None;
  uint8_t lenArg = 0;  // argument index used by ByArg/ArgTimes/LenPtr/Iovec
  uint32_t size = 0;   // bytes for Fixed, element size for ResultTimes/ArgTimes
};

// A call that writes to a file descriptor: where its bytes come from and
// where in the file they land. Replay shows what the program writes to its
// stdout/stderr (Buffer, Iovec); data the kernel moves by itself (Kernel)
// cannot be shown and is refused there.
enum class Data : uint8_t {
  None,    // writes to no fd
  Buffer,  // result bytes of the buffer at `dataArg`
  Iovec,   // result bytes spread over the iovec array at `dataArg`, `countArg` entries
  Kernel,  // copied by the kernel from another fd (sendfile, splice, ...)
};
enum class Offset : uint8_t {
  Position,  // at the file position (advanced by the call)
  Arg,       // at the offset in argument `offsetArg` (pwritev2: -1 means the position)
  Ptr,       // at the loff_t that argument `offsetArg` points to; NULL: the position
};
struct FdWrite {
  Data data = Data::None;
  uint8_t fdArg = 0;
  uint8_t dataArg = 0;
  uint8_t countArg = 0;
  Offset offset = Offset::Position;
  uint8_t offsetArg = 0;
};

// Irregular syscalls: the recorder/replayer implement each one by name.
enum class Hook : uint8_t {
  None,
  Mmap,    // file-backed mappings are stored as blobs and remapped on replay
  Mremap,  // replay forces the recorded destination
  Brk,
  Execve,  // exec: capture blobs, initial stack and registers
  Clone,   // fork/vfork/clone: new task
  Ioctl,   // output size from a small table of known requests, else _IOC
  Fcntl,   // F_GETLK & co write a struct flock; F_DUPFD tracks stdout aliases
  Prctl,   // a few options write memory (PR_GET_NAME, ...)
  Futex,
  SigSuspend,  // waits with a temporary mask: executed on replay with the signal supplied
  Dup,         // dup/dup2/dup3: tracks which fds alias the program's stdout/stderr
  Close,
  Select,  // fd_sets in/out, size from nfds
  Recvmmsg,
  Sendmmsg,
  ShmAt,  // System V shared memory: replayed as a shared memfd per segment
  ShmDt,
  Exit,
  TimeAtEntry,  // answered by the recorder at the seccomp stop from its own clocks
  Unshare,      // CLONE_FILES gives the task a file table of its own (stdout tracking)
  Affinity,     // sched_setaffinity leaves rec's pinning alone; --chaos pretends a CPU count
  Rlimit,       // limits that shape memory (stack, data) are applied on replay too
  Seccomp,      // the program's own filters; PR_GET_SECCOMP reports the program's mode
  OwnMemory,    // process_vm_writev: into the caller's own process it is an output like any
                // other; into another recorded process, a write into its memory; else refused
  Ptrace,       // emulated between tracees: answered by the recorder; outputs by request
  Wait,         // wait4/waitid: the recorder answers with its emulated ptrace stops
  SigMask,      // rt_sigprocmask: the recorder notes the mask (rdtsc's forced fault, see
                // RecordSession::restoreTrapSignal)
  PidfdGetfd,   // a copy of another process's fd: it may alias stdout/stderr there
};

// Row flags.
inline constexpr uint16_t kMayBlock = 1 << 0;  // may wait for another task or the outside world
inline constexpr uint16_t kResultFromTrace =
    1 << 1;  // Executed, but the program sees the recorded result (ids)
inline constexpr uint16_t kNeverReturns = 1 << 2;  // exit, exit_group, rt_sigreturn-like
inline constexpr uint16_t kReturnsFd = 1 << 3;     // result is a new fd (for dump/stdout tracking)
inline constexpr uint16_t kOutputsOnError =
    1 << 4;  // the kernel writes its outputs even when the call fails (waitid, capget)
inline constexpr uint16_t kYields = 1 << 5;  // a scheduling point: another task runs next
inline constexpr uint16_t kReturnsFdPair =
    1 << 6;  // two new fds, in the int[2] of the first out param (pipe, socketpair)
inline constexpr uint16_t kResizesFile =
    1 << 7;  // may change the size of the file named by argument 0 (fd or path): files mapped
             // MAP_SHARED follow it on replay (recorder/shared_files.h)
inline constexpr uint16_t kZeroesRange =
    1 << 8;  // fallocate: with FALLOC_FL_PUNCH_HOLE or FALLOC_FL_ZERO_RANGE in argument 1, zeroes
             // argument 3 bytes at argument 2 of the file (shared copies follow on replay)
inline constexpr uint16_t kBuffered =
    1 << 9;  // may be made through the syscall buffer without a stop (docs/syscall-buffer.md):
             // its outputs are one ByResult or Fixed param, it never blocks on the fds the
             // buffer lets through, and rec has nothing else to note about it

// When a buffered row's call may be made through the buffer, beyond the
// default (an fd argument 0 of a read or write must be a file that cannot
// block; docs/syscall-buffer.md).
enum class BufferFd : uint8_t {
  Default,
  NotOutput,  // argument 0 is not the program's stdout/stderr or an alias (fcntl's dups)
  Close,      // that, and a regular file, directory or /dev/null|zero (close never blocks there)
  PathOpen,   // arguments 0 and 1 name (openat) a regular file, directory or /dev/null|zero
              // on a local file system, checked with an O_PATH open first
  Stream,     // as Default, or a pipe, FIFO or socket: read(2)/write(2) made with RWF_NOWAIT
              // (EAGAIN and EPIPE traced); writes only when whole-or-nothing (small, AF_UNIX)
  SocketMsg,  // recvfrom/sendto (fd, buf, len, flags, ...) on a socket: made with MSG_DONTWAIT
              // added to flags, as Stream; with a rule that the address is NULL
  Quiet,      // argument 0 is a regular file, directory or /dev/null|zero on a local file
              // system, where the call (its rule picks requests) fails and writes nothing
              // (ioctl TCGETS: ENOTTY): no output recorded
  MmapAnon,   // mmap of private anonymous memory (MAP_ANONYMOUS, MAP_PRIVATE, fd (int) -1, not
              // MAP_GROWSDOWN): no file to store; replay's buffer code maps it again at the
              // recorded address, as replay does for a traced one
  Again,      // set_tid_address: never blocks; replay's buffer code makes the call again for
              // its effect on the kernel's state, the program gets the recorded result
              // (kResultFromTrace)
  Brk,        // brk: replay's buffer code makes it again with the same argument, and the break
              // must be the recorded one (as replay checks a traced one)
  SigMask,    // rt_sigprocmask: never blocks; the buffer leaves the resulting mask in its
              // header for the recorder (the rdtsc trap's signal); replay makes it again
  ExecMissing,  // execve: only when its path does not exist (an O_PATH open fails with ENOENT
                // or ENOTDIR), answered with that error without making the call
};
struct BufferRule {
  BufferFd fd = BufferFd::Default;
  int8_t arg = -1;       // an argument the rule constrains (-1: none)
  bool oneOf = false;    // true: it equals one of `values`; false: it has none of values[0]'s bits
  uint8_t count = 0;
  std::array<int64_t, 6> values{};
  int64_t ignoreBits = 0;    // oneOf: bits of the argument the comparison leaves out
  uint8_t blockingFrom = 6;  // oneOf: values from this index on may block: buffered only under
                             // the task's desched event (docs/syscall-buffer.md "Blocking")
};

// Where a call that waits finds the signal mask it installs while waiting
// (rt_sigsuspend, ppoll, pselect6, epoll_pwait): a signal blocked outside
// the call can be delivered inside it.
enum class WaitMask : uint8_t {
  None,
  Arg,      // argument `waitMaskArg` points to the sigset_t (NULL: none)
  PairPtr,  // argument `waitMaskArg` points to {const sigset_t*, size_t} (pselect6)
};

struct SyscallRow {
  int number = -1;
  std::string_view name;
  uint8_t argCount = 0;
  std::array<Arg, 6> args{};
  Support support = Support::Emulated;
  uint16_t flags = 0;
  std::array<OutParam, 3> outs{};
  FdWrite fdWrite{};
  Hook hook = Hook::None;
  BufferRule buffer{};  // kBuffered rows: when the buffer may take the call
  WaitMask waitMask = WaitMask::None;
  uint8_t waitMaskArg = 0;
  std::string_view note;  // shown by `rec syscalls` when support is partial or refused

  bool traced() const { return support != Support::Passthrough; }
  bool mayBlock() const { return flags & kMayBlock; }
};

inline constexpr int kMaxSyscall = 512;  // numbers >= this are not x86-64 syscalls

// Row for nr, or nullptr when the kernel defines no such syscall.
const SyscallRow* findSyscall(int nr);
// Whether `args` pass the row's buffer rule (BufferRule; none: true), as the
// buffer's code checks it (sysbuf.c rule_allows).
bool bufferRuleAllows(const SyscallRow& row, const std::array<uint64_t, 6>& args);
const SyscallRow* findSyscall(std::string_view name);
// All rows, ordered by number.
std::span<const SyscallRow> allSyscalls();

// 32-bit syscalls (int 0x80 from 64-bit code: Wine, JITs, hand-written
// assembly). The seccomp filter stops them all and marks the stop with
// kSeccompCompatData (PTRACE_GETEVENTMSG). rec supports those whose
// arguments mean what their x86-64 twin's mean (read, write, exit,
// set_thread_area, ids); a syscall event of one carries the twin's number and
// `compat32`. The others are refused with ENOSYS.
inline constexpr uint32_t kSeccompCompatData = 0x32;
// The x86-64 row standing for i386 syscall `nr32`, or nullptr (refused).
const SyscallRow* findCompatSyscall(int nr32);
// The i386 number of the x86-64 syscall `nr64` stands for; -1 when none.
int compatNumber(int nr64);

// Reads tracee memory. Implemented over process_vm_readv by the ptrace layer
// and over plain buffers in tests.
class MemoryReader {
 public:
  virtual ~MemoryReader() = default;
  // Reads up to len bytes at addr; returns the number read (short at an unmapped page).
  virtual size_t read(uint64_t addr, void* buf, size_t len) = 0;
};

struct MemRange {
  uint64_t addr;
  uint64_t len;
};

// The memory a completed syscall wrote, per the row's OutParams (and, for the
// Ioctl/Fcntl/Prctl/Select/Recvmmsg hooks, their known output sizes). Reads
// tracee memory for iovecs, msghdrs and length pointers. Ranges are clipped
// to a sane maximum and empty ones dropped.
std::vector<MemRange> outputRanges(const SyscallRow& row, const std::array<uint64_t, 6>& args,
                                   int64_t result, MemoryReader& mem);

// The address of the signal mask a waiting call installs, or nullopt when
// the row has none or the program passed none.
std::optional<uint64_t> waitMaskAddress(const SyscallRow& row, const std::array<uint64_t, 6>& args,
                                        MemoryReader& mem);

// What a call still blocked in the kernel may write by the time it completes
// (the outputs of its largest result, its count arguments bounding it, and of
// its interruption): another thread's point masks them (docs/exactness.md).
std::vector<MemRange> pendingOutputRanges(const SyscallRow& row,
                                          const std::array<uint64_t, 6>& args, MemoryReader& mem);

// Indexes of the Path/Str arguments, in order (their contents are recorded).
std::vector<int> stringArgs(const SyscallRow& row);

// The CLONE_* flags a fork-like syscall creates its task with (vfork:
// CLONE_VM | CLONE_VFORK; fork: none); `arg0` is clone's first argument.
uint64_t cloneFlags(int nr, uint64_t arg0);

// `name(arg, arg, ...)`: strace-like rendering of a call; `strings` holds the
// recorded contents of the stringArgs in order.
std::string formatCall(const SyscallRow& row, const std::array<uint64_t, 6>& args,
                       std::span<const std::string> strings);
// A C-style quoted string, non-printable bytes escaped, cut at `limit` bytes
// with "..." after the quote when longer.
inline constexpr size_t kPathMax = 4096;  // paths print whole, as strace does
inline constexpr size_t kStringMax = 64;  // data strings are cut
std::string quoted(std::string_view s, size_t limit = kPathMax);
// "3", "-1 ENOENT (No such file or directory)", "0x7f..." for mmap.
std::string formatResult(const SyscallRow& row, int64_t result);

std::string_view errnoName(int err);      // "ENOENT"; "" when unknown
std::string_view signalName(int signo);   // "SIGSEGV"; "" when unknown
std::string_view supportName(Support s);  // "emulated", "executed", "passthrough", "refused"

}  // namespace rec::sys
