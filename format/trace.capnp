@0xc5d8532ee62095cc;
# The rec trace schema. A trace file is: file magic + version, one Header
# message, then chunks of Event messages and Blob messages, then (when the
# recording ended cleanly) a Footer. See format/README.md for the framing.
#
# Compatibility rule: fields are only ever appended (new ordinals); removing
# or retyping a field requires bumping kFormatVersion in format/trace_file.h.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("rec::schema");

struct CpuidLeaf {
  leaf @0 :UInt32;
  subleaf @1 :UInt32;
  eax @2 :UInt32;
  ebx @3 :UInt32;
  ecx @4 :UInt32;
  edx @5 :UInt32;
}

struct CpuInfo {
  vendor @0 :Text;          # "AuthenticAMD", "GenuineIntel"
  modelName @1 :Text;       # brand string
  family @2 :UInt32;
  model @3 :UInt32;
  stepping @4 :UInt32;
  xsaveFeatures @5 :UInt64; # XCR0
  cpuidLeaves @6 :List(CpuidLeaf);
}

struct Rlimit {
  resource @0 :UInt32;
  soft @1 :UInt64;
  hard @2 :UInt64;
}

struct Header {
  recVersion @0 :Text;
  argv @1 :List(Text);
  envp @2 :List(Text);
  cwd @3 :Text;
  executable @4 :Text;          # absolute path of the program as resolved at record time
  startTimeNs @5 :Int64;        # CLOCK_REALTIME at start of recording
  kernelRelease @6 :Text;
  hostname @7 :Text;
  cpu @8 :CpuInfo;
  pageSize @9 :UInt32;
  tracedSyscalls @10 :Data;     # bitmap, bit N set = syscall N stops under seccomp (64 bytes); then,
                                # when present, 64 more: bit N set = the filter answers syscall N with
                                # ENOSYS, no stop (the table's refused rows; tracee/seccomp_filter.h)
  rlimits @11 :List(Rlimit);    # applied to the replayed process so its layout matches
  chaosSeed @12 :UInt64;        # 0 when chaos scheduling was off
  scratchAddress @13 :UInt64;   # rec's scratch page in every tracee
  rdtscPatched @14 :Bool;       # RDTSC did not trap: its sites were patched to UD2 (tracee/rdtsc_sites.h)
  timeShim @15 :Bool;           # the time shim stands in for the vDSO (tracee/time_shim.h); else the vDSO is hidden
  cpuNumber @16 :Int32 = -1;    # the CPU rec and the program were pinned to: replay takes the same
                                # one where it may (lsl and getcpu show it without a syscall)
  checkMemory @17 :Bool;        # `rec record --check-memory`: events carry a digest of the program's memory
  syscallBuffer @18 :Bool;      # the syscall buffer was on (docs/syscall-buffer.md)
  runSpans @19 :Bool;           # each task's first event after a run of its user code carries a
                                # RunSpan (parallel replay needs them; older traces replay serially)
}

# One register file, the kernel's struct user_regs_struct: raw, or (at a
# syscall's entry, raw empty) as the registers that differ from a
# prediction made from the same task's previous syscall (tracee/task_state.h:
# predictSyscallEntry), to keep traces small.
struct Registers {
  raw @0 :Data;
  changedMask @1 :UInt32;       # bit i: register i of user_regs_struct differs from the prediction
  changed @2 :List(UInt64);     # their values, in struct order
}

# One 1 MiB block of a memory digest (tracee/task_state.h): the XXH3-64 of
# the address and bytes of each non-zero page of writable memory in it.
struct MemoryBlock {
  start @0 :UInt64;
  hash @1 :UInt64;
  pages @2 :UInt32;
}

# What, beyond the general registers, makes a point in user code exact
# (docs/exactness.md): replay delivers there only where all of it is equal.
struct PointState {
  extendedRegisters @0 :Data;    # XSAVE image, PTRACE_GETREGSET NT_X86_XSTATE
  memory @1 :List(MemoryBlock);  # digest of the address space's writable memory
  runNs @2 :UInt64;              # CPU time the task ran from its last resume to the point
  hardwareBreakpoint @3 :Bool;   # replay enters the check through a debug register, not a patched jump
  stack @4 :Data;                # the memory from the point's rsp up (at most kPointStackBytes, not past
                                 # its mapping): compared in-process, it tells apart the rounds of an outer
                                 # loop whose state is on the stack (a counter saved by a callee)
  deadStackExcluded @5 :Bool;    # memory leaves out the whole pages of the task's stack below rsp-128
                                 # (dead by the ABI; glibc's lazy binding leaves XSAVEC images there
                                 # whose XSTATE_BV depends on the CPU's XINUSE, not on the program)
  pendingOutputs @6 :List(AddressRange);  # bytes hashed as zeros in memory: what the syscalls other
                                 # threads of the address space were blocked in may write (the kernel
                                 # writes them when the call completes, while this thread runs; the
                                 # trace makes them visible at that call's exit event); and the dead
                                 # stack below rsp-128 inside rsp's own page (rec after 2026-12-03)
}

struct AddressRange {
  start @0 :UInt64;
  end @1 :UInt64;               # exclusive
}

struct MemWrite {
  address @0 :UInt64;
  data @1 :Data;
  # data empty: this many bytes, all zero, were written at address (a
  # buffered read of /dev/zero or of a file's hole; docs/syscall-buffer.md)
  zeros @2 :UInt64;
}

# A file-backed mapping whose contents come from a stored blob.
struct Mapping {
  start @0 :UInt64;
  end @1 :UInt64;
  prot @2 :UInt32;
  flags @3 :UInt32;     # MAP_* flags as the program asked (MAP_SHARED/PRIVATE)
  offset @4 :UInt64;
  blobHash @5 :Data;    # 16 bytes XXH3-128; empty = anonymous
  path @6 :Text;        # as seen at record time, for humans
  device @7 :UInt64;    # MAP_SHARED: the file's identity at record time (st_dev, st_ino): replay
  inode @8 :UInt64;     # keeps one shared copy per file, which every such mapping of it maps
  sparse @9 :SparseFile;  # set instead of blobHash for a file too large or too sparse for one blob
}

# A file's contents as its data extents (SEEK_DATA/SEEK_HOLE): every byte
# not in a piece is zero (a hole, or data that was all zeros). Pieces are
# bounded in size and aligned, so an unchanged region dedupes across mmaps.
struct SparseFile {
  size @0 :UInt64;
  pieces @1 :List(FilePiece);  # in ascending, non-overlapping order
}

struct FilePiece {
  offset @0 :UInt64;
  blobHash @1 :Data;  # the piece's bytes, stored as a blob
}

# A change a syscall made to a file that is (or was) mapped MAP_SHARED:
# replay applies it to its shared copy of the file, so the mappings see it.
struct FileUpdate {
  device @0 :UInt64;
  inode @1 :UInt64;
  size @2 :UInt64;      # the file's size after the call
  offset @3 :UInt64;    # where `data` (the file's bytes after the call) starts
  data @4 :Data;
  zeroed @5 :UInt64;    # the call first zeroed [offset, offset + zeroed) (fallocate PUNCH_HOLE, ZERO_RANGE)
}

struct SyscallEvent {
  number @0 :Int32;
  args @1 :List(UInt64);      # the six argument registers
  result @2 :Int64;           # raw rax at syscall exit (negative errno on failure)
  writes @3 :List(MemWrite);  # memory the kernel wrote, to be restored on replay
  strings @4 :List(Text);     # string arguments in argument order (paths), for dump and divergence checks
  outputFd @5 :Int32;         # 1 or 2 when this writes the program's stdout/stderr; else 0
  mapping @6 :Mapping;        # for mmap of a file: what to map on replay
  ip @7 :UInt64;              # address after the syscall instruction
  interrupted @8 :Bool;       # result is a -ERESTART* code: a signal follows
  refused @9 :Bool;           # rec refused it with ENOSYS at record time
  newTask @10 :Int32;         # fork/vfork/clone: the recorded id of the created task
  buffered @11 :Bool;         # answered inside the process by the time shim, without a stop
  shimData @12 :Data;         # buffered: what the shim stored (its log entry's data words)
  startsTimeLog @13 :Bool;    # the time shim's log was mapped and turned on at this syscall's exit
  compat32 @14 :Bool;         # a 32-bit syscall (int 0x80): number is its x86-64 twin's, args
                              # are ebx..ebp; refused ones keep their i386 number
  registers @15 :Registers;   # every general register at the syscall's entry (seccomp stop); replay compares
  fileUpdates @16 :List(FileUpdate);  # writes/truncations of files mapped MAP_SHARED
  taskWrites @17 :List(TaskMemWrite);  # memory of a process written through /proc/PID/mem or ptrace
  # Emulated ptrace (docs/ptrace-emulation.md): a call that changed its
  # tracee's registers (SETREGS, POKEUSER), the tracee's recorded id and its
  # raw user_regs_struct afterwards; replay sets them. (POKEDATA: taskWrites.)
  ptraceTracee @18 :Int32;
  traceeRegisters @19 :Data;
  # ... SETFPREGS/SETREGSET of FP state: the tracee's XSAVE area
  # (NT_X86_XSTATE) afterwards; POKEUSER beyond the general registers (debug
  # registers): each word written, address = offset in struct user.
  traceeXstate @20 :Data;
  traceeUserWrites @21 :List(MemWrite);
  # Made through the syscall buffer without a stop (with `buffered`): replay
  # queues it in the buffer, whose code hands it back (docs/syscall-buffer.md).
  # Format 1 only: since format 2 such calls are BufferedSyscalls events
  # (rec dump still shows each as a SyscallEvent with this set).
  inSyscallBuffer @22 :Bool;
  # At this syscall's exit the recorder patched the site it was made from
  # into a jump to the syscall buffer; replay patches it at the same point.
  bufferPatch @23 :BufferPatch;
  # mmap of an executable file: the syscall sites of the new mapping the
  # recorder patched at this syscall's exit, in order; replay does the same.
  bufferPatches @24 :List(BufferPatch);
  # The process's syscall buffer was mapped at this call's exit: a call the
  # buffer turned down (from its traced fallback) because the process had
  # none yet, a fork's child whose calls come from sites its parent patched.
  startsBuffer @25 :Bool;
  # fork/vfork/clone (with newTask): the CPU the created task was pinned to
  # (docs/parallel.md "CPU placement"); replay pins it there. -1: none
  # recorded, it keeps the CPU it inherits.
  newTaskCpu @26 :Int32 = -1;
  # The CPU the task's process runs on from this syscall's return on: rec
  # moved it there at this stop (a single-threaded process that computed
  # while another shared its CPU and a CPU was free: docs/parallel.md "CPU
  # placement"); replay moves it at the same event. -1: it stays.
  processCpu @27 :Int32 = -1;
}

# The syscalls one task made through the syscall buffer without a stop
# since its last event, in order, as one event (docs/syscall-buffer.md):
# replay queues them in the task's buffer before running it to its next
# event. `entries` is `count` entries back to back, in the layout the
# buffer defines (format/README.md, "Buffered syscalls"; format/buffered_calls.h
# decodes and checks it). Since format version 2; before, each such call was a
# SyscallEvent with `inSyscallBuffer` set.
struct BufferedSyscalls {
  count @0 :UInt32;
  entries @1 :Data;
}

struct BufferPatch {
  site @0 :UInt64;          # the `syscall` instruction replaced (with the `cmp` after it)
  slot @1 :UInt64;          # its trampoline
  newPage @2 :UInt64;       # a trampoline page mapped first; 0: none
  startsBuffer @3 :Bool;    # the process's buffer was mapped first
  # An RDTSC (1) or RDTSCP (2) site instead (docs/syscall-buffer.md "RDTSC
  # without a stop"): `length` bytes from `site` on (the instruction and
  # those after it) jump to a 64-byte slot that asks the time shim.
  rdtsc @4 :UInt8;
  length @5 :UInt8;
  startsTimeLog @6 :Bool;   # the process's time log was mapped first
}

# A write into a process's memory through its /proc/PID/mem file: replay
# does not run the write, so it stores the bytes there itself.
struct TaskMemWrite {
  task @0 :Int32;       # the process, as recorded
  address @1 :UInt64;
  data @2 :Data;
}

# A syscall that was entered and is still in the kernel when other tasks'
# events follow (it blocked). Its SyscallEvent comes later.
struct SyscallEnterEvent {
  number @0 :Int32;
  newTask @1 :Int32;          # vfork / CLONE_VFORK: the child, created before the parent's syscall returns
  newTaskCpu @2 :Int32 = -1;  # that child's CPU (SyscallEvent.newTaskCpu)
}

enum SignalDisposition {
  delivered @0;        # signal-delivery-stop passed through to the program
  injectBeforeSyscall @1;  # held async signal, raised as the task entered its next syscall
  injectAtSyscallExit @2;  # async signal that interrupted the syscall just completed
  atPoint @3;              # async signal delivered in user code, at the point in `registers`
  byPtracer @4;            # the task's emulated ptracer resumed it from a ptrace stop with this signal
}

struct SignalEvent {
  signo @0 :Int32;
  siginfo @1 :Data;          # 128 raw bytes of siginfo_t
  disposition @2 :SignalDisposition;
  ip @3 :UInt64;
  synchronous @4 :Bool;      # a fault that recurs by itself on replay
  registers @5 :Registers;   # atPoint: where (rip and every register) it was delivered
  memory @6 :List(MemWrite); # atPoint: memory words that tell that point from earlier passes
  state @7 :PointState;      # atPoint: the rest of the state that makes the point exact
  frame @8 :List(UInt64);    # a handler's frame: err, trapno, cr2 as the kernel wrote them in its sigcontext
  ptraceStop @9 :Bool;       # the task stopped here for its emulated ptracer: reached as the
                             # disposition says, but nothing is delivered (byPtracer follows if any)
  frameMemory @10 :MemWrite; # a handler's whole frame as the kernel wrote it, from the handler's rsp
                             # up (tracee/signals.h HandlerFrame); replay writes it back. Unset in
                             # older traces: only `frame`'s trap words are written back then
}

# The recorder switched away from a task in the middle of its user code
# (timeslice over while another task was runnable). Replay stops the task at
# the first execution of registers.rip whose registers all equal these.
struct PreemptEvent {
  registers @0 :Registers;
  memory @1 :List(MemWrite);   # 8-byte words that must also match (loops with unchanging registers)
  state @2 :PointState;        # the rest of the state that makes the point exact
}

struct ExecEvent {
  filename @0 :Text;
  exeBlob @1 :Data;                # blob hash of the binary the kernel executed (interpreter for scripts)
  mappings @2 :List(Mapping);      # file-backed mappings right after exec
  stackStart @3 :UInt64;           # lowest address of stackImage (initial rsp)
  stackImage @4 :Data;             # [stackStart, top of stack) as the program first saw it
  registers @5 :Registers;         # initial registers
  argv @6 :List(Text);
  writableData @7 :List(MemWrite); # contents of writable mappings right after exec (data/bss pages)
  becomesTid @8 :Int32;            # exec from a non-leader thread: the id it has afterwards (the leader's)
  bufferPatches @9 :List(BufferPatch);  # syscall sites of the new image patched right after exec, in order
  cpu @10 :Int32 = -1;             # the CPU the process is pinned to from this exec on (docs/parallel.md
                                   # "CPU placement"); -1: none recorded, it keeps the one it had
}

struct RdtscEvent {
  value @0 :UInt64;
  aux @1 :UInt32;        # TSC_AUX for rdtscp
  isRdtscp @2 :Bool;
  ip @3 :UInt64;
  registers @4 :Registers;   # at the trap
  # The trap is a forced fault: the kernel unblocked its signal (SIGSEGV, or
  # SIGILL at a patched site) and reset the handler to SIG_DFL when the
  # program had it blocked. rec puts back the program's action (a kernel
  # struct sigaction, empty when it was SIG_DFL) and blocks it again.
  trapAction @5 :Data;
  reblockTrapSignal @6 :Bool;
  # Answered by the time shim at a patched site, without a stop (the time
  # log's entry; `ip` is the site, no registers): replay queues it in the
  # task's log like the shim's other answers.
  inLog @7 :Bool;
  # A trap at a patched site's fallback in a process without a time log (a
  # fork's child): rec mapped it the log at this trap; replay does too.
  startsTimeLog @8 :Bool;
}

struct ExitEvent {
  waitStatus @0 :Int32;  # raw status as from waitpid
  threadOnly @1 :Bool;   # a thread exited, the process lives on
  syscallAtDeath @2 :Int32 = -1;  # killed (SIGKILL) inside this syscall, whose entry has no
                                  # event of its own (kill(getpid(), SIGKILL)): replay runs the
                                  # task to that entry before killing it
}

# When the task ran, in the recording, before its event: rec last resumed
# it when `from` events had been written, and saw the stop that ended its
# run of user code (a syscall's entry, a signal, an interrupt, its exit)
# when `to` had. Events from..to-1 are other tasks' written while it ran;
# those whose own runs overlap its run ran beside it, which only tasks
# that cannot change each other's memory do (docs/parallel.md). Replay may
# run it beside them too ("Parallel replay"). The sequence numbers order
# the resume and the stop among all of rec's resumes and stops, which
# event counts cannot (many happen between two events): another task's run
# overlapped this one if it stopped after this one was resumed.
struct RunSpan {
  from @0 :UInt64;
  to @1 :UInt64;
  memoryPrivate @2 :Bool;  # no other task could write its memory (no threads, no shared mappings,
                           # no ptracer)
  resumedSeq @3 :UInt64;
  stoppedSeq @4 :UInt64;
}

struct Event {
  tid @0 :Int32;         # recorded thread id of the task the event belongs to
  union {
    syscall @1 :SyscallEvent;
    syscallEnter @2 :SyscallEnterEvent;
    signal @3 :SignalEvent;
    exec @4 :ExecEvent;
    rdtsc @5 :RdtscEvent;
    exit @6 :ExitEvent;
    preempt @7 :PreemptEvent;
    bufferedSyscalls @10 :BufferedSyscalls;
  }
  memory @8 :List(MemoryBlock);  # --check-memory: digest of the writable memory when the event happened
  pendingOutputs @9 :List(AddressRange);  # --check-memory: bytes hashed as zeros in memory (what
                                 # other threads' blocked syscalls may write; PointState.pendingOutputs)
  run @11 :RunSpan;      # the task's first event after a run of its user code (Header.runSpans);
                         # absent on its other events
}

struct Blob {
  hash @0 :Data;         # 16 bytes XXH3-128 of data
  path @1 :Text;         # first path it was seen under
  data @2 :Data;
}

struct ChunkIndexEntry {
  offset @0 :UInt64;
  kind @1 :UInt8;
  firstEvent @2 :UInt64;
  eventCount @3 :UInt32;
  blobHash @4 :Data;     # blob chunks: the blob's hash (16 bytes), so that a
                         # reader learns it without decompressing the chunk
}

struct Footer {
  eventCount @0 :UInt64;
  chunks @1 :List(ChunkIndexEntry);
  endTimeNs @2 :Int64;
  exitStatus @3 :Int32;          # raw wait status of the initial process
  taskCount @4 :UInt32;
  signalCount @5 :UInt64;
  interruptedByUser @6 :Bool;    # rec itself was stopped (SIGTERM/SIGHUP)
  timedOut @7 :Bool;             # the program was killed after --timeout
}
