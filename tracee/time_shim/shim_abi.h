/* What rec's time shim (the vDSO stand-in in every tracee, shim.c) and rec
 * itself agree on. C, so both the freestanding shim and rec include it.
 *
 * Layout, at fixed addresses inside rec's scratch mapping (remote_syscall.h):
 *   REC_SHIM_IMAGE    the shim's ELF image, what AT_SYSINFO_EHDR points at
 *   REC_SHIM_CONTROL  one page the shim only reads; rec writes it through
 *                     /proc/PID/mem, so a fork's child gets its own copy
 *   REC_SHIM_LOG      the log: a memfd shared with rec, mapped at the first
 *                     time call of each process (rec reads it without a
 *                     syscall at every event of the task)
 *   REC_SYSBUF        the syscall buffer (docs/syscall-buffer.md): a memfd
 *                     shared with rec, mapped at the first buffered syscall
 *                     of each process; its header, the buffer code's own
 *                     stack, then the entries
 */
#ifndef REC_TIME_SHIM_ABI_H
#define REC_TIME_SHIM_ABI_H

#include <stdint.h>

#define REC_SHIM_UNTRACED_SYSCALL 0x70000010UL /* `syscall; ret` in the scratch page */
#define REC_SHIM_IMAGE 0x70001000UL
#define REC_SHIM_IMAGE_MAX 0x4000UL
#define REC_SHIM_CONTROL (REC_SHIM_IMAGE + REC_SHIM_IMAGE_MAX)
#define REC_SHIM_LOG (REC_SHIM_CONTROL + 0x1000UL)
#define REC_SHIM_LOG_SIZE 0x10000UL

/* rec_shim_control.mode */
#define REC_SHIM_OFF 0    /* every call enters the kernel (a traced syscall) */
#define REC_SHIM_RECORD 1 /* ask the kernel (untraced), append the answer to the log */
#define REC_SHIM_REPLAY 2 /* return the log's next entry */

/* Which function an entry is for. */
#define REC_SHIM_CLOCK_GETTIME 0
#define REC_SHIM_GETTIMEOFDAY 1
#define REC_SHIM_TIME 2
#define REC_SHIM_GETCPU 3
/* RDTSC/RDTSCP at a patched site (docs/syscall-buffer.md "RDTSC without a
 * stop"): args[0] the site, data[0] the counter, data[1] TSC_AUX (rdtscp). */
#define REC_SHIM_RDTSC 4
#define REC_SHIM_RDTSCP 5
#define REC_SHIM_FUNCTIONS 6

struct rec_shim_control {
  uint32_t mode;
  uint32_t sysbuf_mode; /* REC_SHIM_OFF, REC_SHIM_RECORD or REC_SHIM_REPLAY */
  /* Record: the program asked for PR_TSC_SIGSEGV: its RDTSC must fault (the
   * rdtsc entry falls back to the slot's own instruction). */
  uint32_t rdtsc_trap;
  uint32_t reserved;
  /* Record: the counter the rdtsc entry reports, from CLOCK_MONOTONIC_RAW
   * (the shim cannot run RDTSC where it traps): tsc_base + (ns - ns_base) *
   * tsc_mult / 2^32, as rec calibrated it (and reports at its own traps). */
  uint64_t tsc_base;
  uint64_t tsc_ns_base;
  uint64_t tsc_mult;
};

struct rec_shim_entry {
  uint32_t function;
  int32_t clock;    /* clock_gettime's clock id */
  uint64_t args[2]; /* the pointer arguments as the program passed them */
  int64_t result;
  uint64_t data[2]; /* what the call stored: timespec, timeval, time_t, cpu and node */
};

struct rec_shim_log {
  uint32_t count; /* entries filled: by the shim (record), by rec (replay) */
  uint32_t capacity;
  uint32_t next; /* replay: the next entry the shim returns */
  uint32_t reserved;
  uint64_t last_tsc; /* record: the last counter value the rdtsc entry reported */
  struct rec_shim_entry entries[];
};

/* The clocks the shim answers (and rec answers at the seccomp stop):
 * REALTIME, MONOTONIC, MONOTONIC_RAW, REALTIME_COARSE, MONOTONIC_COARSE,
 * BOOTTIME, TAI. Per-process and per-thread clocks go to the kernel. */
static inline int rec_shim_system_wide_clock(long clock) {
  return clock == 0 || clock == 1 || (clock >= 4 && clock <= 7) || clock == 11;
}

/* The log mapping's last REC_SHIM_RDTSC_STACK bytes: the rdtsc entry's stack. */
#define REC_SHIM_RDTSC_STACK 0x800UL
#define REC_SHIM_RDTSC_STACK_TOP (REC_SHIM_LOG + REC_SHIM_LOG_SIZE)
#define REC_SHIM_LOG_CAPACITY                                                  \
  ((REC_SHIM_LOG_SIZE - REC_SHIM_RDTSC_STACK - sizeof(struct rec_shim_log)) / \
   sizeof(struct rec_shim_entry))

/* A patched RDTSC/RDTSCP site jumps to a 64-byte trampoline slot:
 *    0  lea -128(%rsp),%rsp
 *    5  call *8(page)          REC_RDTSC_ENTRY, the page's second word
 *   11  the fallback: rdtsc;nop | rdtscp | ud2;nop (rdtsc) | ud2;0xf9 (rdtscp)
 *   14  lea 128(%rsp),%rsp
 *   22  the instructions the jump displaced, then jmp back
 *   56  the site's address (the log names it)
 * The entry returns past the fallback when it answered, to it otherwise. */
#define REC_RDTSC_ENTRY (REC_SHIM_IMAGE + 0x700UL)
#define REC_RDTSC_SLOT_SIZE 64
#define REC_RDTSC_SLOT_FALLBACK 11
#define REC_RDTSC_SLOT_DISPLACED 22
#define REC_RDTSC_SLOT_SITE 56

/* ---- The syscall buffer ---------------------------------------------------
 * A patched syscall site jumps to a trampoline near it, which calls
 * REC_SYSBUF_ENTRY (the image's first code byte, shim.lds) with the syscall's
 * registers; the entry answers the call through the buffer or makes it as a
 * traced syscall. */
#define REC_SYSBUF_ENTRY (REC_SHIM_IMAGE + 0x800UL)
#define REC_SYSBUF (REC_SHIM_LOG + REC_SHIM_LOG_SIZE)
#define REC_SYSBUF_SIZE 0x400000UL
#define REC_SYSBUF_STACK_TOP (REC_SYSBUF + 0x6000UL) /* 8 KiB below it, after the files */
#define REC_SYSBUF_FILES (REC_SYSBUF + 0x2000UL)     /* struct rec_sysbuf_files, two pages */
#define REC_SYSBUF_ENTRIES (REC_SYSBUF + 0x6000UL)
/* Recording fills at most this much between two stops of a task (`limit`);
 * replay may queue a few such fills at once (a task that ran on after a
 * stop rec took without an event), up to the whole mapping. */
#define REC_SYSBUF_CAPACITY 0x100000UL
#define REC_SYSBUF_REPLAY_CAPACITY (REC_SYSBUF_SIZE - 0x6000UL)
/* Recording: the entries' area, used as a ring of such fills: a fill rec
 * lent to the trace writer stays where it lies until written, and the
 * program fills the next part meanwhile (`limit` is an offset in it). */
#define REC_SYSBUF_RECORD_AREA REC_SYSBUF_REPLAY_CAPACITY
#define REC_SYSBUF_MAX_NR 512
#define REC_SYSBUF_OUTPUT_FDS 1024
#define REC_SYSBUF_WATCHED 64 /* files mapped MAP_SHARED the header can name */

/* How the buffer code treats one syscall number (rec fills it from the
 * syscall table's buffered rows). */
#define REC_SYSBUF_FD_ANY 0      /* any fd (or none): the call never blocks */
#define REC_SYSBUF_FD_READ 1     /* a regular file or directory on a local file system */
#define REC_SYSBUF_FD_WRITE 2    /* a regular file (not watched) or /dev/null|zero, not an alias
                                    of the program's stdout/stderr */
#define REC_SYSBUF_FD_NOT_OUTPUT 3 /* not an alias of the program's stdout/stderr */
#define REC_SYSBUF_FD_CLOSE 4    /* that, and a regular file, directory or /dev/null|zero, or a
                                    pipe or FIFO */
#define REC_SYSBUF_PATH_OPEN 5   /* arguments 0 and 1 (openat) name a regular file, directory or
                                    /dev/null|zero on a local file system (an O_PATH open first) */
#define REC_SYSBUF_FD_READ_STREAM 6  /* REC_SYSBUF_FD_READ, or a pipe or socket, made without
                                        waiting (the policy's `nowait`), EAGAIN traced */
#define REC_SYSBUF_FD_WRITE_STREAM 7 /* REC_SYSBUF_FD_WRITE, or a pipe (at most PIPE_BUF bytes) or
                                        an AF_UNIX socket (at most 2048), made without waiting,
                                        EAGAIN and EPIPE traced */
#define REC_SYSBUF_MMAP_ANON 8 /* mmap: anonymous, MAP_PRIVATE, fd -1 (argument 3, 4); or
                                  MAP_PRIVATE without PROT_EXEC of a file rec stored, unchanged
                                  since, open read-only (rec_sysbuf_files); replay's buffer code
                                  maps it again at the recorded address (the file: its copy) */
#define REC_SYSBUF_AGAIN 20 /* set_tid_address: always; replay's buffer code makes it again
                               (its effect is the kernel's), the program gets the recorded
                               result (20: apart from the values other rows may take) */
#define REC_SYSBUF_BRK 21 /* brk: replay's buffer code makes it again (the same argument), and
                             its result must be the recorded one */
#define REC_SYSBUF_SIGMASK 22 /* rt_sigprocmask: always; record: the resulting mask (and, when it
                                 blocks the rdtsc trap's signal, that signal's action) goes to
                                 the header's sigmask_* for rec; replay makes it again */
#define REC_SYSBUF_EXEC_MISSING 23 /* execve of a path that does not exist (an O_PATH open of it
                                      fails with ENOENT or ENOTDIR): that error is the call's,
                                      which is not made; any other execve is traced */
#define REC_SYSBUF_NOWAIT_RWF 1 /* read/write(fd, buf, n) as preadv2/pwritev2(RWF_NOWAIT) */
#define REC_SYSBUF_NOWAIT_MSG 2 /* recvfrom/sendto(fd, buf, n, flags, NULL, ...) on a socket,
                                   with MSG_DONTWAIT (and MSG_NOSIGNAL) added to flags */
#define REC_SYSBUF_FD_CACHE 256
#define REC_SYSBUF_LOCAL_MOUNTS 8    /* local mounts remembered (header's local_mounts) */
#define REC_SYSBUF_CLASS_QUIET 1     /* regular file or directory on a local fs, or /dev/null|zero */
#define REC_SYSBUF_CLASS_QUIET_FILE 2 /* the same without directories */
#define REC_SYSBUF_CLASS_WATCHED 4   /* a file rec watches (watched[]) */
#define REC_SYSBUF_CLASS_FIFO 8      /* a pipe or FIFO */
#define REC_SYSBUF_CLASS_SOCKET 16   /* a socket */
#define REC_SYSBUF_CLASS_UNIX 32     /* ... of AF_UNIX */
#define REC_SYSBUF_CLASS_ZERO 64     /* /dev/zero: what it reads is zeros */
#define REC_SYSBUF_RULE_ONE_OF 1  /* the argument equals one of values[0..count) */
#define REC_SYSBUF_RULE_NO_BITS 2 /* the argument has none of values[0]'s bits */
#define REC_SYSBUF_RULES 12 /* (7 used: room for a few more rows with a rule) */
#define REC_SYSBUF_DESCHED_TASKS 64 /* threads of one process with a desched event */
struct rec_sysbuf_rule {
  uint8_t arg;
  uint8_t kind;
  uint8_t count;
  /* ONE_OF: values[blocking_from..count) name calls that may block: made
   * only under the task's desched event (docs/syscall-buffer.md "Blocking") */
  uint8_t blocking_from;
  uint8_t reserved[4];
  int64_t ignore_bits; /* ONE_OF: bits of the argument left out of the comparison */
  int64_t values[6];
};
#define REC_SYSBUF_OUT_NONE 0
#define REC_SYSBUF_OUT_RESULT 1  /* `result` bytes at argument out_arg */
#define REC_SYSBUF_OUT_FIXED 2   /* out_size bytes at argument out_arg when the call succeeds */
/* readv/writev and their p- and 2 forms: the iovec array at argument out_arg,
 * its count at argument out_size (read first with process_vm_readv on the
 * buffer's own process: a bad array is left to the traced call) */
#define REC_SYSBUF_OUT_IOVEC 3   /* a read: `result` bytes spread over the iovecs, in order */
#define REC_SYSBUF_IN_IOVEC 4    /* a write: nothing written to memory */
#define REC_SYSBUF_IOV_MAX 1024  /* UIO_MAXIOV: more is EINVAL, left to the traced call */
struct rec_sysbuf_policy {
  uint8_t args;     /* 1 + the arguments compared on replay (the id getters have none); 0: not buffered */
  uint8_t fd_check; /* REC_SYSBUF_FD_*, on argument 0 */
  uint8_t out_kind; /* REC_SYSBUF_OUT_* */
  uint8_t out_arg;
  uint16_t out_size;
  uint8_t rule; /* 1 + an index into the header's rules; 0: none */
  uint8_t nowait; /* REC_SYSBUF_NOWAIT_*, for the _STREAM checks */
};

struct rec_sysbuf_header {
  uint32_t used;     /* record: entry bytes filled; replay: filled by rec */
  uint32_t next;     /* replay: offset of the next entry to hand back */
  uint32_t busy;     /* the buffer code is running (a fault inside it: later calls are traced) */
  uint32_t no_writes; /* rec watches more files than `watched` holds: every write stays traced */
  uint32_t limit;     /* record: `used` stays at or below it (rec sets it at each stop) */
  uint32_t nowait_rwf; /* RWF_NOWAIT is honoured on pipes and sockets (kernel >= 6.5) */
  /* The fds that are the program's stdout or stderr (recorder/output_fds.h):
   * replay shows what is written to them, so those writes stay traced but
   * while echo_alone (below). */
  uint64_t output_fds[REC_SYSBUF_OUTPUT_FDS / 64];
  uint32_t output_high; /* one at REC_SYSBUF_OUTPUT_FDS or above */
  /* The program's output through the buffer (docs/syscall-buffer.md "The
   * program's output"): rec sets echo_alone while the task executes alone
   * (no other task's output can come between its write and rec's next
   * stop), and clears it before it starts another beside. The buffer code
   * takes a write to an output fd only then: it sets echo_busy, fences,
   * reads echo_alone, and clears echo_busy once the entry is written; rec
   * clears echo_alone, fences, and starts nothing beside while echo_busy. */
  uint32_t echo_alone;
  uint32_t echo_busy;
  uint64_t stderr_fds[REC_SYSBUF_OUTPUT_FDS / 64]; /* of output_fds, stderr's */
  /* Files rec watches (mapped MAP_SHARED, or mapped by an fd open for
   * writing, recorder/shared_files.h): writes to them stay traced, so that
   * their changes reach replay's shared copies. st_dev and st_ino as fstat
   * gives them. */
  uint32_t watched_count;
  struct {
    uint64_t dev, ino;
  } watched[REC_SYSBUF_WATCHED];
  struct rec_sysbuf_rule rules[REC_SYSBUF_RULES];
  struct rec_sysbuf_policy policy[REC_SYSBUF_MAX_NR];
  /* Record: what the fd checks found for fds below REC_SYSBUF_FD_CACHE
   * (REC_SYSBUF_CLASS_* bits), valid while fd_class_gen[fd] == fd_gen.
   * fd_cache_off: the address space's tasks do not all share one fd table
   * (a vfork child, unshare(CLONE_FILES)): one task's entries would lie to
   * another, so nothing is cached. */
  uint32_t fd_gen; /* bumped at every change of the fd table (by rec at its stops, and by the
                    * buffer's own openat/close/fcntl) */
  uint32_t fd_cache_off;
  uint32_t fd_class_gen[REC_SYSBUF_FD_CACHE];
  uint8_t fd_class[REC_SYSBUF_FD_CACHE];
  /* The desched event (docs/syscall-buffer.md "Blocking"): each task's
   * perf context-switch event, as rec opened it in the task (fd -1 or no
   * entry: none; the task's calls that may block stay traced). The buffer
   * code sets desched_armed around the enabled window of a call that may
   * block; rec sets desched_abort when the event (or a signal) interrupted
   * that call: the buffer then makes it traced. desched_streams: pipes and
   * sockets too are made blocking under the event instead of with
   * RWF_NOWAIT/MSG_DONTWAIT (REC_SYSBUF_BLOCKING=desched). */
  struct {
    int32_t tid, fd;
  } desched[REC_SYSBUF_DESCHED_TASKS];
  uint32_t desched_armed;
  uint32_t desched_abort;
  uint32_t desched_streams;
  uint32_t reserved_desched;
  /* Blocking pipes and sockets without an event (docs/syscall-buffer.md
   * "Blocking in the buffer"): block_streams (set by rec for a process that
   * may execute beside others): read/write/send/recv on pipes and sockets
   * are made as the program asked, blocking, inside the buffer. The buffer
   * code sets block_armed around that one untraced call; rec, when it needs
   * the task stopped (a signal, another task waiting for its lane), sets
   * block_abort (and rax to -EINTR) if the call had no effect: the buffer
   * then makes it traced. */
  uint32_t block_streams;
  uint32_t block_armed;
  uint32_t block_abort;
  uint32_t reserved_block;
  /* Record: the signal a trapped rdtsc raises (rec sets it), and what the
   * last buffered rt_sigprocmask left: the thread (0: nothing new since rec
   * took it), its mask, and the trap signal's action when the mask blocks
   * it. The kernel's forced fault unblocks that signal and resets its
   * action, which rec puts back (signals.h, restoreForcedSignal): rec must
   * know both before the trap, and at the trap they are gone. */
  int32_t trap_signal;
  int32_t sigmask_tid;
  uint64_t sigmask;
  uint8_t sigmask_trap_action[32];
  /* Record: mounts the fd checks found on a local file system, by statx's
   * unique mount id (STATX_MNT_ID_UNIQUE, Linux 6.8: never reused while
   * the system runs, and a mount's file system never changes): a file on
   * one is classified by one statx instead of fstat and fstatfs, and an
   * openat's path by one statx instead of an O_PATH open, fstat, fstatfs
   * and close. Filled by the buffer code only; a new buffer starts empty. */
  uint32_t local_mount_count;
  uint32_t reserved_mounts;
  uint64_t local_mounts[REC_SYSBUF_LOCAL_MOUNTS];
};
#define REC_SYSBUF_DESCHED_SIGNAL 30 /* SIGPWR: never delivered to the program */

/* Files rec stored whole from a private mmap (docs/syscall-buffer.md "File
 * mmaps"), at REC_SYSBUF_FILES: a later private, non-executable mmap of one,
 * unchanged since (device, inode, size, mtime, ctime as fstat gives them),
 * is buffered. Its entry's data holds a rec_sysbuf_mapped_file naming the
 * slot and the stored blob. Record: rec fills the slots in the order it
 * stored the files (the same slots in every process; count grows only, set
 * after the slot it covers). Replay: rec fills the slot an entry names, with
 * `path`, the file replay's copy of the blob is (the buffer code opens it),
 * before queueing the entry. */
#define REC_SYSBUF_FILES_MAX 32
struct rec_sysbuf_file {
  uint64_t dev, ino;
  int64_t size, mtime_sec, mtime_nsec, ctime_sec, ctime_nsec;
  uint8_t hash[16];
  /* Replay: the file replay's copy of the blob is (NUL-terminated), its
   * identity, and the fd + 1 the process keeps open on it (0: none), which
   * every mapping of the slot uses, buffered or traced: mappings of one open
   * file merge as in the recording (an mremap across them works). The
   * buffer code checks the fd is still that file (fstat) before using it. */
  char path[32];
  uint64_t copy_dev, copy_ino;
  int32_t fd_plus1;
  uint32_t reserved;
};
struct rec_sysbuf_files {
  uint32_t count; /* record: slots filled */
  uint32_t reserved;
  struct rec_sysbuf_file file[REC_SYSBUF_FILES_MAX];
};
struct rec_sysbuf_mapped_file {
  uint8_t hash[16];
  uint32_t slot;
  uint32_t reserved;
};
/* Whether an mmap entry (nr 9, args as the program passed them) maps a file
 * (and so carries a rec_sysbuf_mapped_file when it succeeded). */
static inline int rec_sysbuf_maps_file(const uint64_t* args) {
  return !(args[3] & 0x20 /* MAP_ANONYMOUS */) && (int32_t)args[4] != -1;
}

/* What a call wrote to memory: out_len bytes in all, either at out_addr
 * (ranges == 0) or over `ranges` ranges (a vector read), whose (address,
 * length) pairs start data[], in the order the bytes were written. The bytes
 * follow in data[] (each range's padded to 8), unless `zero`: they were all
 * zero, and are not stored (replay fills them with zeros). */
#define REC_SYSBUF_PAD(n) (((n) + 7) & ~(uint64_t)7)
struct rec_sysbuf_range {
  uint64_t addr, len;
};
struct rec_sysbuf_entry {
  uint32_t size; /* bytes, this header included, a multiple of 8 */
  int32_t nr;
  int64_t result;
  uint64_t args[6];
  uint64_t out_addr;
  uint64_t out_len;
  uint32_t ranges;
  uint32_t flags; /* REC_SYSBUF_ENTRY_* */
  unsigned char data[];
};
#define REC_SYSBUF_ENTRY_ZERO 1 /* every byte written was zero: none stored */
/* A write to the program's stdout (or stderr): nothing written to memory;
 * the `result` bytes it wrote are stored, for replay to show. */
#define REC_SYSBUF_ENTRY_ECHO_STDOUT 2
#define REC_SYSBUF_ENTRY_ECHO_STDERR 4
#define REC_SYSBUF_ENTRY_FLAGS 7

#endif
