// rec's side of the syscall buffer (docs/syscall-buffer.md; the in-process
// half is tracee/time_shim/sysbuf.c, the layout time_shim/shim_abi.h).
//
// Recording and replay both
//   - map a buffer shared with rec at REC_SYSBUF, at the first patch of a
//     process (sysbuf::start), and fill its policy from the syscall table's
//     buffered rows;
//   - patch a `syscall; cmp $-4096,%rax` site (8 bytes; or `syscall; ret`
//     and 2 bytes of padding) into a jump to a
//     trampoline slot in a page near it (within +-2 GiB), which calls the
//     buffer's entry and then runs the displaced `cmp` (sysbuf::applyPatch).
//     The recorder decides (sysbuf::planPatch) at the exit of a buffered
//     syscall made from such a site and notes the patch in that syscall's
//     event; replay applies the same patch at the same event.
// The recorder moves the entries out of the buffer at each stop of the task
// that wrote them, and writes them as syscall events marked `buffered` and
// `inSyscallBuffer` before that task's next event; replay queues them in the
// buffer before running the task on.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <array>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <span>
#include <vector>

#include "remote_syscall.h"
#include "scoped_fd.h"
#include "syscall_table.h"
#include "task.h"
#include "time_shim.h"
#include "time_shim/shim_abi.h"

namespace rec {

inline constexpr uint64_t kSysbufAddress = REC_SYSBUF;
inline constexpr uint64_t kSysbufEnd = REC_SYSBUF + REC_SYSBUF_SIZE;

// The buffer of one address space: a memfd that rec maps too.
class SysbufMemory {
 public:
  SysbufMemory();  // throws RecError
  ~SysbufMemory();
  SysbufMemory(const SysbufMemory&) = delete;
  SysbufMemory& operator=(const SysbufMemory&) = delete;

  int fd() const { return fd_.get(); }
  // Once the task has mapped it: rec keeps only its own mapping (one fd
  // fewer per process, however many live).
  void closeFd() { fd_.reset(); }
  rec_sysbuf_header& header() { return *static_cast<rec_sysbuf_header*>(base_); }
  rec_sysbuf_files& files() {
    return *reinterpret_cast<rec_sysbuf_files*>(static_cast<std::byte*>(base_) +
                                                (REC_SYSBUF_FILES - REC_SYSBUF));
  }
  std::byte* entries() { return static_cast<std::byte*>(base_) + (REC_SYSBUF_ENTRIES - REC_SYSBUF); }

  // Record: ranges of entries() that stay where they lie until the trace
  // writer has written them (docs/syscall-buffer.md "Lent, not copied"),
  // oldest first: the program must not write over them. The newest may be
  // held by a task (`heldBy`: drained, its event not written yet); the
  // others are lent to the writer, which returns them in order (`back`).
  struct Loan {
    uint32_t from = 0, to = 0;
    uint64_t seq = 0;
  };
  std::deque<Loan> loans;
  pid_t heldBy = 0;
  // Forgets the loans the writer has returned.
  void collectLoans();
  // Blocks until the oldest loan (lent, not held) is back.
  void waitOldestLoan();
  // The held loan goes to the writer: the returned token's drop brings it back.
  static std::shared_ptr<const void> lendHeld(const std::shared_ptr<SysbufMemory>& memory);
  // The held loan is given up (its bytes copied elsewhere, or never written).
  void dropHeld();
  uint64_t loansMade = 0;

 private:
  ScopedFd fd_;
  void* base_ = nullptr;
  std::atomic<uint64_t> loansBack_{0};
};

// Record: a task's buffered entries drained but not copied, lying at
// [from, to) of `memory`'s entries (the task's pending vector is empty
// meanwhile). Gives its range up when destroyed unwritten.
class SysbufHeld {
 public:
  SysbufHeld() = default;
  SysbufHeld(const SysbufHeld&) = delete;
  SysbufHeld& operator=(const SysbufHeld&) = delete;
  ~SysbufHeld() { release(); }
  explicit operator bool() const { return memory_ != nullptr; }
  const std::shared_ptr<SysbufMemory>& memory() const { return memory_; }
  uint32_t from() const { return from_; }
  uint32_t to() const { return to_; }
  std::span<const std::byte> bytes() const {
    return {memory_->entries() + from_, static_cast<size_t>(to_ - from_)};
  }
  // Holds [from, to) of `memory`, when nobody holds any of it.
  bool hold(const std::shared_ptr<SysbufMemory>& memory, pid_t tid, uint32_t from, uint32_t to);
  // Extends it by [to, at) when that follows it in the same memory.
  bool extend(const SysbufMemory& memory, uint32_t from, uint32_t at);
  // Lends the range to the trace writer: the token keeps it until written.
  std::shared_ptr<const void> lend();
  // Copies the range to the end of `pending` and gives it up.
  void copyTo(std::vector<std::byte>& pending);
  void release();

 private:
  std::shared_ptr<SysbufMemory> memory_;
  uint32_t from_ = 0, to_ = 0;
};

// A task's desched event (docs/syscall-buffer.md "Blocking"): a perf
// context-switch event opened in the task, whose signal
// (REC_SYSBUF_DESCHED_SIGNAL) tells rec that the task blocked in a buffered
// call that may block.
struct DeschedEvent {
  ScopedFd fd;        // rec's copy (the signal's si_fd is its number)
  int traceeFd = -1;  // its number in the task's fd table
  pid_t tid = 0;
};

// The buffer's state in one address space (shared by the tasks created
// with CLONE_VM).
struct SysbufSpace {
  bool disabled = false;  // the program installed a seccomp filter (rec's calls would pass it)
  std::shared_ptr<SysbufMemory> buffer;  // once started (and while its lent entries are written)
  uint32_t drained = 0;                  // record: entry bytes already moved out
  struct Page {
    uint64_t address;
    unsigned slots;  // used
  };
  std::vector<Page> pages;        // trampoline pages
  std::set<uint64_t> patched;     // sites
  std::set<uint64_t> signalIps;   // where signals were delivered: a handler may return there
  // Record: executable file mappings by start address, the file named by
  // rec's key for it (its content hash), to learn which file a patched site
  // lies in.
  struct Code {
    uint64_t end = 0;
    uint64_t offset = 0;
    std::string file;
  };
  std::map<uint64_t, Code> code;
  std::string program;  // record: the executable's key (content hash), for the site cache
  void noteCode(uint64_t start, uint64_t end, uint64_t offset, const std::string& file);
  const Code* codeAt(uint64_t address, uint64_t* start) const;
  // Events of exited threads: their fds are closed in the process at the
  // next event opened there (when still theirs).
  std::vector<std::unique_ptr<DeschedEvent>> deadDesched;
};

// A patch as the trace notes it.
struct SysbufPatch {
  uint64_t site = 0;     // the `syscall` instruction (or RDTSC/RDTSCP)
  uint64_t slot = 0;     // its trampoline
  uint64_t newPage = 0;  // a trampoline page mapped first (0: none)
  // An RDTSC (1) or RDTSCP (2) site, whose `length` bytes (the instruction
  // and what follows it, up to 5 bytes or more) the jump replaces; the slot
  // (REC_RDTSC_SLOT_SIZE, two syscall slots) calls the shim's rdtsc entry
  // (docs/syscall-buffer.md "RDTSC without a stop"). 0: a syscall site.
  uint8_t rdtsc = 0;
  uint8_t length = 0;
  bool startsTimeLog = false;  // the process's time log was mapped first (the entry's log)
  // Recording: the bytes planPatch read at the site, which applyPatch
  // patches without reading them again (nothing runs in the process in
  // between). Not in the trace: replay reads the site and checks it.
  std::optional<std::array<uint8_t, 16>> code;
};

namespace sysbuf {

// The buffer's policy (which calls it takes, and how), from the syscall
// table's buffered rows; a row that does not fit (its output kind, no room
// for its argument rule) is left out, and stays traced.
void fillPolicy(rec_sysbuf_header& h);

// REC_SYSCALL_BUFFER=off turns the buffer off for a recording.
bool enabledByEnvironment();

// At a syscall-exit stop: maps a new buffer into the task and turns it on
// in `mode` (REC_SHIM_RECORD or REC_SHIM_REPLAY). False when the task
// cannot open it (no /proc, another root).
bool start(Task& task, SysbufSpace& space, uint32_t mode, StraySignals& strays);
// Both start() and time_shim::startLog, the two mappings in one stop (a
// process's first patches at exec need both). False when the task cannot
// open them; neither is on then.
bool startWithTimeLog(Task& task, SysbufSpace& space, TimeShimSpace& timeSpace, uint32_t mode,
                      StraySignals& strays);

// Replay's checkpoints (a fork of the process): maps into `task` a new
// buffer holding what `from`'s holds, in `from`'s mode.
bool startCopy(Task& task, SysbufSpace& space, SysbufSpace& from, StraySignals& strays);

// Record: the signal a trapped rdtsc raises (the buffer notes that signal's
// action when a buffered rt_sigprocmask blocks it).
void setTrapSignal(SysbufSpace& space, int signo);

// Record: what the last buffered rt_sigprocmask left, once: the thread that
// made it, its mask, and the trap signal's action when the mask blocks it
// (kKernelSigactionSize bytes; empty otherwise).
struct SignalMaskNote {
  pid_t tid = 0;
  uint64_t mask = 0;
  std::vector<std::byte> trapAction;
};
std::optional<SignalMaskNote> takeSignalMask(SysbufSpace& space);

// Record: the fds that are the program's stdout or stderr (writes there
// stay traced: replay shows them), and the files rec watches (mapped
// MAP_SHARED: writes to them stay traced, in the order rec first saw them,
// so that the header only grows; past REC_SYSBUF_WATCHED files every write
// stays traced), written into the buffer's header.
struct FileId {
  uint64_t device = 0;
  uint64_t inode = 0;
};
// An fd that is the program's stdout (origin 1) or stderr (origin 2).
struct OutputFd {
  long fd;
  int origin;
};
void setOutputFds(SysbufSpace& space, std::span<const OutputFd> outputFds);
// The program's output through the buffer (docs/syscall-buffer.md "The
// program's output"): opens the window while the buffer's task is about to
// execute alone (`open`), or closes it. Closing returns whether the task is
// out of any output write it began (rec starts nothing beside it until so).
void setEchoWindow(SysbufSpace& space, bool open);
// REC_SYSBUF_ECHO=off keeps every write to the program's output traced.
bool echoOutputByEnvironment();
bool closeEchoWindow(SysbufSpace& space);
void setWatchedFiles(SysbufSpace& space, std::span<const FileId> files);
// Record: the files rec stored whole from a private mmap, in the order it
// stored them (the slots are the same in every process; past
// REC_SYSBUF_FILES_MAX the rest stay traced): a later private,
// non-executable mmap of one, unchanged since, is buffered
// (docs/syscall-buffer.md "File mmaps"). Grown only.
struct StoredFile {
  uint64_t device = 0, inode = 0;
  int64_t size = 0, mtimeSec = 0, mtimeNsec = 0, ctimeSec = 0, ctimeNsec = 0;
  std::array<std::byte, 16> hash{};  // the blob's
  // The file `st` describes, its hash not set.
  static StoredFile of(const struct stat& st);
  // What says the file is unchanged: all but the hash.
  auto identity() const {
    return std::make_tuple(device, inode, size, mtimeSec, mtimeNsec, ctimeSec, ctimeNsec);
  }
};
void setStoredFiles(SysbufSpace& space, std::span<const StoredFile> files);
// Replay: the stored files the entries (checked) map, by slot; and the file
// replay's buffer code maps for a slot (false: a slot or path it cannot hold).
struct MappedFileRef {
  uint32_t slot = 0;
  std::array<std::byte, 16> hash{};
};
std::vector<MappedFileRef> mappedFiles(std::span<const std::byte> entries);
// `keptFd`: an fd the process holds open on that file (>= 0: the slot takes
// it over; the traced mappings of the file used it).
bool setReplayFile(SysbufSpace& space, const MappedFileRef& ref, const std::string& path,
                   int keptFd = -1);
// Replay: the slots filled (a copied buffer's, to be named again).
std::vector<MappedFileRef> replayFiles(SysbufSpace& space);
// Replay: the fd task `tid` keeps open on `path` for a slot (still that
// file), or -1.
int replayFileFd(SysbufSpace& space, pid_t tid, const std::string& path);
// Whether an entry (its header and `size` bytes) is an mmap of a file that
// lacks the rec_sysbuf_mapped_file it needs.
bool lacksMappedFile(const rec_sysbuf_entry& e);

// Record: the buffer remembers what its fd checks found per fd until the fd
// table changes (each of the calls above forgets it). `several`: the tasks
// of the address space do not all share one fd table (a vfork child,
// unshare(CLONE_FILES)), so nothing may be remembered.
void setFdTables(SysbufSpace& space, bool several);

// Whether the code right before a `syscall` (the last kSetsNumberWindow
// bytes) loads `nr` into eax: `mov $nr,%eax` (or `xor %eax,%eax` for 0),
// followed only by moves of the other argument registers (glibc's
// __open_nocancel: mov $0x101,%eax; mov %rdi,%rsi; mov $-100,%edi; syscall).
inline constexpr size_t kSetsNumberWindow = 16;
bool setsNumberBefore(const uint8_t (&code)[kSetsNumberWindow], long nr);

// The code around a syscall site, read in one process_vm_readv: the
// kSetsNumberWindow bytes before it (`beforeRead`: all of them could be
// read) and up to 16 from it (`atRead` of them; zeros past a hole).
struct SiteCode {
  uint8_t before[kSetsNumberWindow] = {};
  std::array<uint8_t, 16> at = {};
  bool beforeRead = false;
  size_t atRead = 0;
};
SiteCode readSite(Task& task, uint64_t site);

// Record, at the exit of a buffered syscall whose `syscall` instruction is
// at site = ip - 2 (`code`: readSite of it): the patch to apply, or nullopt
// when the site is not the glibc pattern, or some task may still return
// into the bytes it replaces (`busyIps`: where the other tasks of the
// address space stand or will return to), or no page near it can be had.
std::optional<SysbufPatch> planPatch(Task& task, SysbufSpace& space, uint64_t site,
                                     const SiteCode& code, std::span<const uint64_t> busyIps);

// Record: the patch of an RDTSC/RDTSCP site (`rdtsc` 1 or 2) followed by
// `moveLength` bytes that can run from a slot (tracee/rdtsc_sites.h), or
// nullopt when it does not hold that instruction (or UD2, where rec patched
// it so) or no page near it can be had.
// `code` holds the bytes at the site (read by the caller, which reads a
// mapping's sites at once).
std::optional<SysbufPatch> planRdtscPatch(Task& task, SysbufSpace& space, uint64_t site,
                                          uint8_t rdtsc, uint8_t moveLength,
                                          std::span<const uint8_t> code);
// The address of an rdtsc slot's fallback instruction.
inline uint64_t rdtscFallback(const SysbufPatch& patch) {
  return patch.slot + REC_RDTSC_SLOT_FALLBACK;
}

// A task standing right after the patched `syscall` goes on at the slot's
// copy of the displaced compare instead (applyPatch does so for its task).
void moveOutOfSite(Task& task, const SysbufPatch& patch);

// Applies `patch` (recorded, or planned just now): maps its new page,
// writes the slot and the jump, and moves a task standing right after the
// site's `syscall` into the slot. Throws RecError (kExitDivergence in
// replay) when the code or the page is not as recorded.
// An rdtsc patch's fallback is the instruction itself where RDTSC traps,
// UD2 where rec patches RDTSC (`ud2Fallback`, tracee/rdtsc_sites.h).
// `code`: the bytes at an rdtsc site when the caller has them (else read).
// `deferred`: the slot's and the site's bytes are appended there (address,
// bytes) for the caller to write, several patches' at once, instead of
// written now (each write of code through /proc/PID/mem costs a page walk,
// the first one on a page a copy of it).
using CodeWrites = std::vector<std::pair<uint64_t, std::vector<uint8_t>>>;
void applyPatch(Task& task, SysbufSpace& space, const SysbufPatch& patch, StraySignals& strays,
                bool replaying, bool ud2Fallback = false, std::span<const uint8_t> code = {},
                CodeWrites* deferred = nullptr);

// The state of a task created with `flags` by `parent`: a thread or vfork
// child shares the space; a fork's child starts with the buffer off (its
// mapping is its parent's memfd) and its own copy of the patches.
std::shared_ptr<SysbufSpace> forChild(const std::shared_ptr<SysbufSpace>& space, Task& child,
                                      uint64_t flags);

// Turns the buffer off in the task's process for good (the program's own
// seccomp filter would not see the buffer's calls).
void disable(Task& task, SysbufSpace& space);

// Record: the entries written since the last call, [from, to) of the
// buffer's entries() (whole entries, in order, checked), now drained. They
// stay there until rearm() lets the program write over them: the caller
// copies them, or holds them (SysbufHeld) first.
std::pair<uint32_t, uint32_t> take(SysbufSpace& space);

// Record: where the program's next entries go, and the header's limit:
// from the start once nothing in the buffer is held or lent (a task
// stopped inside the buffer's code, its busy flag set, may be about to
// store `used`: not then), else on after the last entry, around the held
// and lent ranges, as a ring; waits for the writer to return the oldest
// loan when it leaves too little room. `pendingBytes`: the running task's
// entries not in the trace yet, which stay below what replay can queue.
void rearm(SysbufSpace& space, size_t pendingBytes);

// Record, while the task runs: its next call that would go through the
// buffer is made as a traced syscall instead (a stop), until the next
// drain() sets the limit again. False when the task has no buffer. The
// scheduler asks this before preempting a task in user code: a switch at a
// syscall needs no point.
bool stopAtNextCall(SysbufSpace& space);

// One range of memory a buffered call wrote: `data` (nullptr: all zeros).
struct SysbufWrite {
  uint64_t address = 0;
  uint64_t length = 0;
  const std::byte* data = nullptr;
};

// Calls f(SysbufWrite) for each range the entry at `entry` (its `size`
// bytes, checked by the caller) wrote, in order; false when its ranges,
// lengths and size disagree (the program wrote over the buffer).
template <typename F>
bool forEachWrite(const std::byte* entry, F&& f) {
  rec_sysbuf_entry e;
  std::memcpy(&e, entry, sizeof e);
  const std::byte* data = entry + sizeof e;
  const std::byte* const end = entry + e.size;
  if (e.ranges > REC_SYSBUF_IOV_MAX || e.out_len > REC_SYSBUF_CAPACITY) return false;
  if (!e.ranges) {
    if (!e.out_len) return true;
    const bool zero = e.flags & REC_SYSBUF_ENTRY_ZERO;
    if (!zero && e.out_len > static_cast<uint64_t>(end - data)) return false;
    f(SysbufWrite{e.out_addr, e.out_len, zero ? nullptr : data});
    return true;
  }
  const std::byte* bytes = data + e.ranges * sizeof(rec_sysbuf_range);
  if (bytes > end) return false;
  uint64_t total = 0;
  for (uint32_t i = 0; i < e.ranges; ++i) {
    rec_sysbuf_range r;
    std::memcpy(&r, data + i * sizeof r, sizeof r);
    if (r.len > REC_SYSBUF_CAPACITY) return false;
    total += r.len;
    if (e.flags & REC_SYSBUF_ENTRY_ZERO) {
      f(SysbufWrite{r.addr, r.len, nullptr});
      continue;
    }
    if (REC_SYSBUF_PAD(r.len) > static_cast<uint64_t>(end - bytes)) return false;
    f(SysbufWrite{r.addr, r.len, bytes});
    bytes += REC_SYSBUF_PAD(r.len);
  }
  return total == e.out_len;
}

// Replay: the bytes queued and not yet handed back; emptying the queue;
// adding recorded entries (whole entries in the buffer's layout, as drain
// moved them out; checked first, copied once).
uint32_t unread(SysbufSpace& space);
// Replay: the address ranges the queued, unread entries will map when the
// program makes them (anonymous mmaps; the heap from `startBrk`, the
// process's start_brk, up to the highest break a queued brk sets): replay
// must not put a page of its own there meanwhile (a point's trampoline: in
// the gap above the heap, it would make the buffered brk fail).
std::vector<std::pair<uint64_t, uint64_t>> pendingMappings(SysbufSpace& space, uint64_t startBrk);
void clearQueue(SysbufSpace& space);
enum class Enqueued { Ok, Malformed, Full };
Enqueued enqueue(SysbufSpace& space, std::span<const std::byte> entries);

// Record: whether the task stands at a signal-delivery-stop for the
// SIGPIPE the kernel raised in a buffered pipe or socket write (EPIPE, in
// the untraced syscall the buffer's code made). The recorder drops it: the
// buffer's code turns EPIPE into the traced call, which raises it again at
// a syscall exit replay knows.
bool ownSigpipe(Task& task, SysbufSpace* space, int signo, const siginfo_t& info);

// ---- The desched event (docs/syscall-buffer.md "Blocking") ----
// REC_SYSBUF_BLOCKING: nowait (the default, measured faster: no event,
// waits stay traced, pipes and sockets with RWF_NOWAIT/MSG_DONTWAIT), auto
// (futex waits under the event where it opens), desched (pipes and sockets
// too under the event, blocking; RWF_NOWAIT for a task without one).
enum class Blocking { Auto, NoWait, Desched };
Blocking blockingByEnvironment();
void setDeschedStreams(SysbufSpace& space, bool on);

// Whether the traced call of `row` with `args` is one the buffer would take
// under a desched event (a futex wait; with `streams` also a read or write).
bool mayBlockInBuffer(const sys::SyscallRow& row, const std::array<uint64_t, 6>& args,
                      bool streams);

// Opens the task's event (it stands at a syscall-exit stop, its buffer
// mapped) at a high fd number, and enters it in the buffer's table; nullptr
// when it cannot (no permission: perf_event_paranoid, no room, ...).
std::unique_ptr<DeschedEvent> openDesched(Task& task, SysbufSpace& space, StraySignals& strays);
// The task exited: its entry leaves the table (its fd is closed later).
void dropDesched(SysbufSpace* space, std::unique_ptr<DeschedEvent> event);
// Turns the event off (from rec's copy).
void disarmDesched(const DeschedEvent& event);
bool isDeschedSignal(const DeschedEvent* event, int signo, const siginfo_t& info);
// The buffer's code is in the enabled window of a call that may block
// (of the one task running user code).
bool deschedArmed(const SysbufSpace* space);
void setDeschedAbort(SysbufSpace& space);

// ---- Blocking in the buffer (docs/syscall-buffer.md "Blocking in the buffer") ----
// REC_SYSBUF_BLOCK_STREAMS (on unless off): a process that may execute
// beside others makes its reads and writes on pipes and sockets blocking
// inside the buffer (the header's block_streams).
bool blockStreamsByEnvironment();
void setBlockStreams(SysbufSpace& space, bool on);
// The buffer's code is in the window of such a call (block_armed).
bool blockArmed(const SysbufSpace* space);
// The call had no effect: the buffer makes it traced (the window ends).
void setBlockAbort(SysbufSpace& space);

// Whether the syscall buffer's code or data lies at ip (in rec's image: the
// same rule as the time shim's code).
bool inBufferData(uint64_t address);

}  // namespace sysbuf

}  // namespace rec
