/* rec's syscall buffer, the in-process half (docs/syscall-buffer.md).
 *
 * rec patches a program's `syscall; cmp $-4096,%rax` sites into a jump to a
 * trampoline near them that calls rec_sysbuf_entry (at REC_SYSBUF_ENTRY)
 * with the syscall's registers. Recording: a call the buffer takes (its
 * policy, rec_sysbuf_policy, filled by rec from the syscall table) is made
 * from rec's scratch page, which the seccomp filter lets through without a
 * stop, and its result and the memory it wrote are appended to the buffer,
 * which rec turns into trace events at the task's next stop. Replay: the
 * next entry, if it is this call, is handed back. Anything else (buffer
 * off, full, busy, another syscall, an fd that might block) is made as an
 * ordinary traced syscall from here, with every register as the program
 * set it.
 *
 * The C body runs on its own stack in the buffer's mapping: the program's
 * stack only ever gets the registers the entry saves (the same values in
 * recording and replay). One task runs user code at a time and rec never
 * stops one in here for a preemption or an asynchronous signal (the image
 * is "shim code", time_shim.h), so one stack and one buffer per address
 * space do. */
#include "shim_abi.h"

_Static_assert(REC_SHIM_CONTROL + 4 == 0x70005004, "the entry's address of sysbuf_mode");
_Static_assert(REC_SYSBUF + 8 == 0x70016008, "the entry's address of busy");
_Static_assert(REC_SYSBUF_STACK_TOP == 0x7001c000, "the entry's stack");
_Static_assert(sizeof(struct rec_sysbuf_header) <= REC_SYSBUF_FILES - REC_SYSBUF,
               "the header ends before the files table");
_Static_assert(sizeof(struct rec_sysbuf_files) <= 0x2000, "the files table leaves the stack room");

#define SYS_close 3
#define SYS_fstat 5
#define SYS_fstatfs 138
#define SYS_openat 257
#define S_IFIFO_ 0010000
#define S_IFSOCK_ 0140000
#define SYS_getsockopt 55
#define SYS_sendto 44
#define SYS_recvfrom 45
#define MSG_PEEK_ 0x2
#define MSG_DONTWAIT_ 0x40
#define MSG_NOSIGNAL_ 0x4000
#define SYS_getpid 39
#define SYS_process_vm_readv 310
#define SYS_preadv2 327
#define SYS_pwritev2 328
#define RWF_NOWAIT_ 8
#define EAGAIN_ 11
#define EPIPE_ 32
#define EOPNOTSUPP_ 95
#define O_DIRECTORY_ 0200000
#define O_NOFOLLOW_ 0400000
#define O_CLOEXEC_ 02000000
#define O_PATH_ 010000000
#define ENOENT_ 2
#define ENOTDIR_ 20
#define SYS_ioctl 16
#define SYS_rt_sigprocmask 14
#define SYS_rt_sigaction 13
#define SYS_rt_sigpending 127
#define SYS_fcntl 72
#define SYS_gettid 186
#define F_GETOWN_EX_ 16
#define F_OWNER_TID_ 0
#define PERF_EVENT_IOC_ENABLE_ 0x2400
#define PERF_EVENT_IOC_DISABLE_ 0x2401
#define SYS_mmap 9
#define SYS_brk 12
#define MAP_TYPE_ 0x0f
#define MAP_PRIVATE_ 0x02
#define MAP_FIXED_ 0x10
#define MAP_ANONYMOUS_ 0x20
#define MAP_GROWSDOWN_ 0x0100
#define MAP_FIXED_NOREPLACE_ 0x100000
#define PROT_EXEC_ 4
#define F_GETFL_ 3
#define O_ACCMODE_ 3
#define AT_FDCWD_ (-100)
#define SYS_statx 332
#define AT_SYMLINK_NOFOLLOW_ 0x100
#define AT_EMPTY_PATH_ 0x1000
#define AT_STATX_DONT_SYNC_ 0x4000
#define STATX_TYPE_ 0x1
#define STATX_INO_ 0x100
#define STATX_MNT_ID_UNIQUE_ 0x4000

/* Saved registers, as rec_sysbuf_entry pushes them (lowest address first). */
enum { F_RBX, F_R11, F_RCX, F_R9, F_R8, F_R10, F_RDX, F_RSI, F_RDI, F_RAX };

static long untraced6(long nr, long a, long b, long c, long d, long e, long f) {
  long result;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  register long target __asm__("r11") = REC_SHIM_UNTRACED_SYSCALL;
  __asm__ volatile("call *%%r11"
                   : "=a"(result), "+r"(target), "+r"(r10), "+r"(r8), "+r"(r9)
                   : "0"(nr), "D"(a), "S"(b), "d"(c)
                   : "rcx", "memory");
  return result;
}

static void copy(void* to, const void* from, uint64_t n) {
  __asm__ volatile("rep movsb" : "+D"(to), "+S"(from), "+c"(n) : : "memory");
}

static void zero_fill(void* to, uint64_t n) {
  __asm__ volatile("rep stosb" : "+D"(to), "+c"(n) : "a"(0) : "memory");
}

/* Whether n bytes at p are all zero (/dev/zero, sparse files): such an
 * output is stored as its length only. Stops at the first non-zero word, so
 * other data costs a word or two. */
static int all_zero(const unsigned char* p, uint64_t n) {
  for (; n && ((uint64_t)p & 7); --n)
    if (*p++) return 0;
  const uint64_t* w = (const uint64_t*)p;
  if (n >= 8 && *w) return 0; /* (most data: the first word says so) */
  for (; n >= 64; n -= 64, w += 8)
    if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) return 0;
  for (; n >= 8; n -= 8)
    if (*w++) return 0;
  for (p = (const unsigned char*)w; n; --n)
    if (*p++) return 0;
  return 1;
}

static inline volatile struct rec_sysbuf_header* header(void) {
  return (volatile struct rec_sysbuf_header*)REC_SYSBUF;
}

struct kstat {
  uint64_t dev, ino, nlink;
  uint32_t mode, uid, gid, pad0;
  uint64_t rdev;
  int64_t size, blksize, blocks;
  uint64_t times[6];
  int64_t unused[3];
};

/* struct statx, the fields read here */
struct kstatx {
  uint32_t mask, blksize;
  uint64_t attributes;
  uint32_t nlink, uid, gid;
  uint16_t mode, pad0;
  uint64_t ino, size, blocks, attributes_mask;
  int64_t times[8];
  uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
  uint64_t mnt_id;
  uint64_t spare[13];
};
_Static_assert(sizeof(struct kstatx) == 256, "struct statx");

/* statx's device numbers as fstat encodes them (the kernel's new_encode_dev) */
static uint64_t encode_dev(uint32_t major, uint32_t minor) {
  return (minor & 0xffu) | ((uint64_t)major << 8) | ((uint64_t)(minor & ~0xffu) << 12);
}

static int local_mount(uint64_t mnt) {
  volatile struct rec_sysbuf_header* h = header();
  uint32_t n = h->local_mount_count;
  for (uint32_t i = 0; i < n && i < REC_SYSBUF_LOCAL_MOUNTS; ++i)
    if (h->local_mounts[i] == mnt) return 1;
  return 0;
}

static void note_local_mount(uint64_t mnt) {
  volatile struct rec_sysbuf_header* h = header();
  uint32_t n = h->local_mount_count;
  if (n >= REC_SYSBUF_LOCAL_MOUNTS || local_mount(mnt)) return;
  h->local_mounts[n] = mnt;
  h->local_mount_count = n + 1; /* (after the id: one task runs in here at a time) */
}

/* statx of dirfd/path (path 0: of the fd dirfd itself) with the unique
 * mount id; 0 when made and the kernel gave that id, else the error or 1. */
static long statx_mount(long dirfd, long path, long flags, struct kstatx* sx) {
  char empty[1] = {0};
  if (!path) {
    path = (long)empty;
    flags |= AT_EMPTY_PATH_;
  }
  long r = untraced6(SYS_statx, dirfd, path, flags | AT_STATX_DONT_SYNC_,
                     STATX_TYPE_ | STATX_INO_ | STATX_MNT_ID_UNIQUE_, (long)sx, 0);
  if (r != 0) return r;
  return (sx->mask & (STATX_TYPE_ | STATX_INO_ | STATX_MNT_ID_UNIQUE_)) ==
                 (STATX_TYPE_ | STATX_INO_ | STATX_MNT_ID_UNIQUE_)
             ? 0
             : 1;
}

static int local_file_system(long fd) {
  int64_t fs[15]; /* struct statfs: f_type first */
  if (untraced6(SYS_fstatfs, fd, (long)fs, 0, 0, 0, 0) != 0) return 0;
  switch ((uint64_t)fs[0] & 0xffffffffu) {
    case 0xEF53:     /* ext2/3/4 */
    case 0x58465342: /* xfs */
    case 0x9123683E: /* btrfs */
    case 0x01021994: /* tmpfs */
    case 0x794c7630: /* overlayfs */
    case 0xF2F52010: /* f2fs */
      return 1;
    default: /* proc, sysfs, FUSE, network file systems, ...: traced */
      return 0;
  }
}

static int output_fd(long fd) {
  volatile struct rec_sysbuf_header* h = header();
  return fd >= REC_SYSBUF_OUTPUT_FDS ? h->output_high != 0
                                     : (int)((h->output_fds[fd / 64] >> (fd % 64)) & 1);
}

/* The program's output: how replay shows a write to `fd` (an output fd
 * below REC_SYSBUF_OUTPUT_FDS). */
static uint32_t echo_flag(long fd) {
  volatile struct rec_sysbuf_header* h = header();
  return ((h->stderr_fds[fd / 64] >> (fd % 64)) & 1) ? REC_SYSBUF_ENTRY_ECHO_STDERR
                                                      : REC_SYSBUF_ENTRY_ECHO_STDOUT;
}

/* Opens the window of a buffered output write: only while rec lets the task
 * execute alone (the header's echo_alone, echo_busy: a Dekker handshake with
 * rec, which clears echo_alone before it starts another task beside). */
static int echo_begin(void) {
  volatile struct rec_sysbuf_header* h = header();
  h->echo_busy = 1;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (h->echo_alone) return 1;
  h->echo_busy = 0;
  return 0;
}

static void echo_end(void) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST); /* the entry before the window closes */
  header()->echo_busy = 0;
}

static int watched_file(uint64_t dev, uint64_t ino) {
  volatile struct rec_sysbuf_header* h = header();
  uint32_t n = h->watched_count;
  for (uint32_t i = 0; i < n && i < REC_SYSBUF_WATCHED; ++i)
    if (h->watched[i].ino == ino && h->watched[i].dev == dev) return 1;
  return 0;
}

static inline volatile struct rec_sysbuf_files* files(void) {
  return (volatile struct rec_sysbuf_files*)REC_SYSBUF_FILES;
}

/* A private, non-executable mmap of a file rec stored whole (its blob is in
 * the trace), unchanged since (device, inode, size, mtime, ctime), open
 * read-only (a file open for writing, or watched, follows later changes:
 * traced), and the slot that names it; -1: traced. Executable pieces stay
 * traced: rec patches them ahead before they run. */
static int stored_file(const uint64_t* args) {
  if ((args[3] & MAP_TYPE_) != MAP_PRIVATE_ || (args[3] & (MAP_ANONYMOUS_ | MAP_GROWSDOWN_)) ||
      (args[2] & PROT_EXEC_))
    return -1;
  long fd = (long)(int32_t)args[4];
  volatile struct rec_sysbuf_files* f = files();
  uint32_t n = __atomic_load_n(&f->count, __ATOMIC_ACQUIRE);
  if (fd < 0 || n == 0) return -1;
  struct kstat st;
  if (untraced6(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) != 0 || (st.mode & 0170000) != 0100000 ||
      watched_file(st.dev, st.ino))
    return -1;
  long fl = untraced6(SYS_fcntl, fd, F_GETFL_, 0, 0, 0, 0);
  if (fl < 0 || (fl & O_ACCMODE_) != 0 /* O_RDONLY */) return -1;
  for (uint32_t i = 0; i < n && i < REC_SYSBUF_FILES_MAX; ++i) {
    volatile struct rec_sysbuf_file* x = &f->file[i];
    if (x->ino == st.ino && x->dev == st.dev && x->size == st.size &&
        x->mtime_sec == (int64_t)st.times[2] && x->mtime_nsec == (int64_t)st.times[3] &&
        x->ctime_sec == (int64_t)st.times[4] && x->ctime_nsec == (int64_t)st.times[5])
      return (int)i;
  }
  return -1;
}

/* The class (below) of a file of type `type` (st_mode's S_IFMT bits) that
 * is not a socket, as far as its type and device tell: FILE_OR_DIR when it
 * is a regular file or a directory, whose class depends on its file system
 * (local_class). */
#define FILE_OR_DIR (-2)
static int special_class(uint32_t type, uint64_t rdev) {
  if (type == S_IFIFO_) return REC_SYSBUF_CLASS_FIFO;
  if (type == 0020000) /* /dev/null, /dev/zero */
    return rdev == 0x103   ? REC_SYSBUF_CLASS_QUIET | REC_SYSBUF_CLASS_QUIET_FILE
           : rdev == 0x105 ? REC_SYSBUF_CLASS_QUIET | REC_SYSBUF_CLASS_QUIET_FILE |
                                 REC_SYSBUF_CLASS_ZERO
                           : 0;
  return type == 0100000 || type == 0040000 ? FILE_OR_DIR : 0;
}

/* The class of a regular file or directory on a local file system. */
static int local_class(uint32_t type, uint64_t dev, uint64_t ino) {
  if (type == 0040000) return REC_SYSBUF_CLASS_QUIET;
  return REC_SYSBUF_CLASS_QUIET | REC_SYSBUF_CLASS_QUIET_FILE |
         (watched_file(dev, ino) ? REC_SYSBUF_CLASS_WATCHED : 0);
}

/* The class of a file whose statx gave its mount id (statx_mount), when it
 * needs no more syscalls: -1 when it does (a socket, a file on a mount not
 * known to be local). */
static int class_of_statx(const struct kstatx* sx) {
  uint32_t type = sx->mode & 0170000;
  if (type == S_IFSOCK_) return -1;
  int c = special_class(type, encode_dev(sx->rdev_major, sx->rdev_minor));
  if (c != FILE_OR_DIR) return c;
  if (!local_mount(sx->mnt_id)) return -1;
  return local_class(type, encode_dev(sx->dev_major, sx->dev_minor), sx->ino);
}

/* What the fd checks need to know of a file open as `fd`
 * (REC_SYSBUF_CLASS_* bits): whether its calls cannot block (a regular file
 * or, for QUIET, a directory on a local file system, or /dev/null or
 * /dev/zero), whether rec watches it, and whether it is a pipe or a socket
 * (an AF_UNIX one). -1: fstat failed (not an open fd). use_statx 0: the
 * caller's statx already found that one is not enough. */
static int classify(long fd, int use_statx) {
  struct kstatx sx;
  /* (anything else than its answer, older kernels' included: fstat and
   * fstatfs, as before statx knew mounts) */
  long known = use_statx ? statx_mount(fd, 0, 0, &sx) : 1;
  if (known == 0) {
    int c = class_of_statx(&sx);
    if (c >= 0) return c;
  }
  struct kstat st;
  if (untraced6(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) != 0) return -1;
  uint32_t type = st.mode & 0170000;
  if (type == S_IFSOCK_) {
    int domain = 0;
    uint32_t size = sizeof domain;
    return REC_SYSBUF_CLASS_SOCKET |
           (untraced6(SYS_getsockopt, fd, 1 /* SOL_SOCKET */, 39 /* SO_DOMAIN */, (long)&domain,
                      (long)&size, 0) == 0 &&
                    domain == 1 /* AF_UNIX */
                ? REC_SYSBUF_CLASS_UNIX
                : 0);
  }
  int c = special_class(type, st.rdev);
  if (c != FILE_OR_DIR) return c;
  if (!local_file_system(fd)) return 0;
  /* (the fstat and the statx saw the same file: the fd's) */
  if (known == 0) note_local_mount(sx.mnt_id);
  return local_class(type, st.dev, st.ino);
}

/* classify(), remembered per fd until the fd table changes (fd_gen): two
 * untraced syscalls (fstat, fstatfs) fewer before each read and write. An
 * fd that is not open is not remembered (a later fd at that number is
 * announced by no bump). */
static int fd_class(long fd) {
  volatile struct rec_sysbuf_header* h = header();
  uint32_t gen = h->fd_gen;
  int cache = fd < REC_SYSBUF_FD_CACHE && !h->fd_cache_off;
  if (cache && h->fd_class_gen[fd] == gen) return h->fd_class[fd];
  int c = classify(fd, 1);
  if (c < 0) return 0;
  if (cache) {
    h->fd_class[fd] = (uint8_t)c;
    h->fd_class_gen[fd] = gen;
  }
  return c;
}

/* After a buffered call that changed which file the number fd names (the
 * fd an openat or a dup returned, the fd a close closed): only its
 * remembered class is stale; the others still name the files they did.
 * (Bumping fd_gen here instead cost find two untraced syscalls, fstat and
 * fstatfs, for each later call on any other fd: 180k of them.) */
static void fd_changed(long fd) {
  volatile struct rec_sysbuf_header* h = header();
  if (fd >= 0 && fd < REC_SYSBUF_FD_CACHE) h->fd_class_gen[fd] = h->fd_gen - 1;
}

/* openat without O_CREAT/O_TRUNC: the path is looked at through an O_PATH
 * open (which never blocks and has no effect on a FIFO or a device) before
 * the real open. 1: the real open may be made here. A path that does not
 * exist fails the real open the same way, without blocking. (A FIFO put at
 * the path by another process between the two opens would block: not
 * handled.) */
static int path_allowed(long dirfd, long path, long flags) {
  /* On a mount known to be local (or for a FIFO, a device, a symlink with
   * O_NOFOLLOW), statx of the path says what the O_PATH open and its fd's
   * checks would, in one syscall instead of four (find makes one open per
   * directory). With O_DIRECTORY, a path that is not a directory: the real
   * open fails with ENOTDIR without blocking, as the O_PATH open did. */
  struct kstatx sx;
  long known = statx_mount(dirfd, path, (flags & O_NOFOLLOW_) ? AT_SYMLINK_NOFOLLOW_ : 0, &sx);
  if (known == -ENOENT_ || known == -ENOTDIR_) return 1;
  if (known == 0) {
    if ((flags & O_DIRECTORY_) && (sx.mode & 0170000) != 0040000) return 1;
    int c = class_of_statx(&sx);
    if (c >= 0) return (c & REC_SYSBUF_CLASS_QUIET) != 0;
  }
  long fd = untraced6(SYS_openat, dirfd, path,
                      O_PATH_ | O_CLOEXEC_ | (flags & (O_NOFOLLOW_ | O_DIRECTORY_)), 0, 0, 0);
  if (fd == -ENOENT_ || fd == -ENOTDIR_) return 1;
  if (fd < 0) return 0;
  int c = classify(fd, known != 0);
  untraced6(SYS_close, fd, 0, 0, 0, 0, 0);
  int ok = c > 0 && (c & REC_SYSBUF_CLASS_QUIET);
  return ok;
}

/* execve: the error it would fail with when its path does not exist
 * (ENOENT, ENOTDIR: the same lookup as an O_PATH open's, symlinks followed),
 * or 0: the file is there (or the lookup failed otherwise), so the call is
 * made traced. gcc's execvp tries each PATH directory for cc1, as and
 * collect2: make -j2 ~90 such calls, two stops each. (A file put at the
 * path between the lookup and the call is as if it came a moment later.) */
static long exec_missing(long path) {
  long fd = untraced6(SYS_openat, AT_FDCWD_, path, O_PATH_ | O_CLOEXEC_, 0, 0, 0);
  if (fd == -ENOENT_ || fd == -ENOTDIR_) return fd;
  if (fd >= 0) untraced6(SYS_close, fd, 0, 0, 0, 0, 0);
  return 0;
}

/* The desched event (docs/syscall-buffer.md "Blocking"): the calling
 * thread's perf context-switch event, or -1 when it has none, blocks the
 * desched signal (it would never interrupt the call), or the fd at that
 * number is no longer the event rec opened (the program closed it or put
 * another file there: its owner is not this thread). */
static long desched_fd(void) {
  volatile struct rec_sysbuf_header* h = header();
  int any = 0;
  for (int i = 0; i < REC_SYSBUF_DESCHED_TASKS && !any; ++i) any = h->desched[i].tid != 0;
  if (!any) return -1; /* (no event in this process: no syscall spent) */
  long tid = untraced6(SYS_gettid, 0, 0, 0, 0, 0, 0);
  long fd = -1;
  for (int i = 0; i < REC_SYSBUF_DESCHED_TASKS; ++i)
    if (h->desched[i].tid == tid) {
      fd = h->desched[i].fd;
      break;
    }
  if (fd < 0) return -1;
  uint64_t blocked = 0;
  if (untraced6(SYS_rt_sigprocmask, 0 /* SIG_BLOCK */, 0, (long)&blocked, 8, 0, 0) != 0 ||
      ((blocked >> (REC_SYSBUF_DESCHED_SIGNAL - 1)) & 1))
    return -1;
  struct {
    int32_t type, pid;
  } owner = {-1, 0};
  if (untraced6(SYS_fcntl, fd, F_GETOWN_EX_, (long)&owner, 0, 0, 0) != 0 ||
      owner.type != F_OWNER_TID_ || owner.pid != tid)
    return -1;
  return fd;
}

/* A call that may block, made with the desched event enabled: if the thread
 * blocks, the event's signal interrupts the call and rec, at that signal's
 * stop, sets desched_abort (and rax to -EINTR: no restart); so does a
 * signal of the program's arriving meanwhile (rec holds it for the traced
 * call). 1: made, *result set; 0: make it traced. */
static int desched_call(long fd, long nr, const long* a, long* result) {
  volatile struct rec_sysbuf_header* h = header();
  h->desched_abort = 0;
  h->desched_armed = 1;
  if (untraced6(SYS_ioctl, fd, PERF_EVENT_IOC_ENABLE_, 0, 0, 0, 0) != 0) {
    h->desched_armed = 0;
    return 0;
  }
  long r = untraced6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  /* (cleared before the event is off: a desched signal rec sees unarmed is
   * one from this window or later, which needs nothing but dropping) */
  h->desched_armed = 0;
  untraced6(SYS_ioctl, fd, PERF_EVENT_IOC_DISABLE_, 0, 0, 0, 0);
  if (h->desched_abort) {
    h->desched_abort = 0;
    return 0;
  }
  *result = r;
  return 1;
}

/* A call on a pipe or socket made blocking, as the program asked, by a
 * process that may execute beside others (block_streams, docs/syscall-
 * buffer.md "Blocking in the buffer"): nobody waits for it, so it may sleep
 * here. block_armed marks the window: when rec needs the task stopped (a
 * signal, another task waiting for its lane) it interrupts it, and if the
 * call had no effect (not made yet, or interrupted: -ERESTART*, -EINTR) sets
 * rax to -EINTR and block_abort: the call is then made traced, where rec
 * records it (and the signal) as any traced call. The window holds this one
 * untraced syscall only, so rec can tell from rip where it stands. 1: made,
 * *result set; 0: make it traced. */
static int block_call(long nr, const long* a, long* result) {
  volatile struct rec_sysbuf_header* h = header();
  h->block_abort = 0;
  __atomic_store_n(&h->block_armed, 1, __ATOMIC_SEQ_CST);
  long r = untraced6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  __atomic_store_n(&h->block_armed, 0, __ATOMIC_SEQ_CST);
  if (h->block_abort) {
    h->block_abort = 0;
    return 0;
  }
  *result = r;
  return 1;
}

/* Pipes and sockets (docs/syscall-buffer.md "Pipes and sockets"): the
 * call is made with RWF_NOWAIT, so it never blocks; EAGAIN sends it to the
 * traced path, where it blocks under rec's scheduler. A read returns what
 * the blocking read would once data is there. A write must be made whole or
 * not at all, as the blocking one is: at most PIPE_BUF bytes into a pipe or
 * FIFO, at most 2048 into an AF_UNIX socket (one skb whatever SO_SNDBUF is;
 * other families' stream writes may stop part way). */
#define PIPE_BUF_ 4096
#define UNIX_WHOLE_WRITE 2048
static int stream_fd(int fd_class_bits, int writing, uint64_t length, uint8_t nowait) {
  /* (before 6.5 a kernel may take RWF_NOWAIT on a pipe and block anyway) */
  if (nowait == REC_SYSBUF_NOWAIT_RWF && !header()->nowait_rwf) return 0;
  if (fd_class_bits & REC_SYSBUF_CLASS_FIFO)
    return nowait == REC_SYSBUF_NOWAIT_RWF && (!writing || length <= PIPE_BUF_);
  if (!(fd_class_bits & REC_SYSBUF_CLASS_SOCKET)) return 0;
  if (!writing) return 1;
  return length <= UNIX_WHOLE_WRITE && (fd_class_bits & REC_SYSBUF_CLASS_UNIX);
}

/* The call on a pipe or socket, as read(2)/write(2) with RWF_NOWAIT; 0
 * when it must be made traced instead: EAGAIN (it would block, or the fd
 * is O_NONBLOCK: the traced call says which), EPIPE (the kernel has raised
 * SIGPIPE: rec drops it at this stop, sysbuf::ownSigpipe, and the traced
 * call raises it again where replay sees it), EOPNOTSUPP (no NOWAIT for
 * this file). None of them had an effect. */
static int stream_call(const uint64_t* args, int writing, uint8_t nowait,
                       const struct rec_sysbuf_range* iov, uint64_t count, long* result) {
  long r;
  /* REC_SYSBUF_BLOCKING=desched: the call blocking (send with MSG_NOSIGNAL,
   * as below), under the desched event ("Blocking") */
  long desched = header()->desched_streams ? desched_fd() : -1;
  /* block_streams: blocking, without an event (block_call) */
  int block = desched < 0 && header()->block_streams;
  int wait = desched >= 0 || block; /* made as the program asked: it may block */
  if (nowait == REC_SYSBUF_NOWAIT_MSG) {
    /* send()/recv(): only flags whose meaning MSG_DONTWAIT does not change
     * (not MSG_WAITALL, MSG_OOB, MSG_TRUNC, ...); MSG_NOSIGNAL: no SIGPIPE
     * at all, the traced call raises it */
    long flags = (long)args[3];
    if (flags & ~(long)(writing ? MSG_DONTWAIT_ | MSG_NOSIGNAL_ : MSG_DONTWAIT_ | MSG_PEEK_))
      return 0;
    long a[6] = {(long)args[0], (long)args[1], (long)args[2],
                 flags | (wait ? 0 : MSG_DONTWAIT_) | (writing ? MSG_NOSIGNAL_ : 0), 0, 0};
    long nr = writing ? SYS_sendto : SYS_recvfrom;
    if (desched >= 0) {
      if (!desched_call(desched, nr, a, &r)) return 0;
    } else if (block) {
      if (!block_call(nr, a, &r)) return 0;
    } else {
      r = untraced6(nr, a[0], a[1], a[2], a[3], 0, 0);
    }
  } else {
    /* read/write: their one buffer; readv/writev: the program's iovecs */
    struct rec_sysbuf_range one = {args[1], args[2]};
    if (!iov) {
      iov = &one;
      count = 1;
    }
    long a[6] = {(long)args[0], (long)iov, (long)count, -1, -1, wait ? 0 : RWF_NOWAIT_};
    long nr = writing ? SYS_pwritev2 : SYS_preadv2;
    if (desched >= 0) {
      if (!desched_call(desched, nr, a, &r)) return 0;
    } else if (block) {
      if (!block_call(nr, a, &r)) return 0;
    } else {
      r = untraced6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
  }
  /* (made blocking, EAGAIN is the program's answer: an O_NONBLOCK fd, a
   * timeout; made again traced it would wait that timeout twice) */
  if ((r == -EAGAIN_ && !block) || r == -EPIPE_ || r == -EOPNOTSUPP_) return 0;
  *result = r;
  return 1;
}

#define VIA_CALL 1   /* made as the program asked */
#define VIA_NOWAIT 2 /* stream_call */

/* Record, after a buffered rt_sigprocmask: the thread's mask now, and the
 * rdtsc trap signal's action when that mask blocks it, for rec to take at
 * its next stop (the header's sigmask_*). */
static void note_sigmask(void) {
  volatile struct rec_sysbuf_header* h = header();
  uint64_t mask = 0;
  if (untraced6(SYS_rt_sigprocmask, 0 /* SIG_BLOCK */, 0, (long)&mask, 8, 0, 0) != 0) return;
  const int trap = h->trap_signal;
  if (trap > 0 && trap <= 64 && (mask >> (trap - 1)) & 1) {
    unsigned char action[32];
    if (untraced6(SYS_rt_sigaction, trap, 0, (long)action, 8, 0, 0) != 0) return;
    for (int i = 0; i < 32; ++i) h->sigmask_trap_action[i] = action[i];
  }
  h->sigmask = mask;
  h->sigmask_tid = (int32_t)untraced6(SYS_gettid, 0, 0, 0, 0, 0, 0);
}

/* How the call may be made here (VIA_*), or 0: it could block, or rec has
 * something else to note about it. */
static int fd_allowed(uint8_t check, uint8_t nowait, const uint64_t* args, uint64_t length,
                      int* zeros, uint32_t* echo) {
  long fd = (long)args[0];
  switch (check) {
    case REC_SYSBUF_FD_ANY:
      return VIA_CALL;
    case REC_SYSBUF_PATH_OPEN:
      return path_allowed(fd, (long)args[1], (long)args[2]) ? VIA_CALL : 0;
    case REC_SYSBUF_AGAIN:
      return VIA_CALL; /* (replay makes it again for its effect) */
    case REC_SYSBUF_BRK:
      return VIA_CALL; /* (the heap: replay makes it again, brk_again) */
    case REC_SYSBUF_EXEC_MISSING:
      return VIA_CALL; /* (only once exec_missing found the path missing) */
    case REC_SYSBUF_SIGMASK: {
      /* A signal pending when a call unblocks it is delivered before the
       * call returns (POSIX); made here, it would stop the task in the
       * buffer's code and wait for rec's next traced call: such a call is
       * made traced. (One arriving from elsewhere during the call is as if
       * it had arrived later.) SIG_BLOCK (0) or no set unblocks nothing. */
      if (args[0] == 0 || !args[1]) return VIA_CALL;
      uint64_t pending = 0;
      if (untraced6(SYS_rt_sigpending, (long)&pending, 8, 0, 0, 0, 0) != 0) return 0;
      return pending ? 0 : VIA_CALL;
    }
    case REC_SYSBUF_MMAP_ANON:
      /* private anonymous memory: rec notes nothing about it (no file to
       * store, nothing shared), and replay makes it again (mmap_again) */
      return (args[3] & MAP_ANONYMOUS_) && (args[3] & MAP_TYPE_) == MAP_PRIVATE_ &&
                     !(args[3] & MAP_GROWSDOWN_) && (int32_t)args[4] == -1
                 ? VIA_CALL
                 : 0;
    default:
      break;
  }
  if (fd < 0) return 0;
  if (check == REC_SYSBUF_FD_READ) {
    int c = fd_class(fd);
    *zeros = (c & REC_SYSBUF_CLASS_ZERO) != 0;
    return (c & REC_SYSBUF_CLASS_QUIET) ? VIA_CALL : 0;
  }
  if (check == REC_SYSBUF_FD_READ_STREAM) {
    int c = fd_class(fd);
    *zeros = (c & REC_SYSBUF_CLASS_ZERO) != 0;
    if (nowait == REC_SYSBUF_NOWAIT_RWF && (c & REC_SYSBUF_CLASS_QUIET)) return VIA_CALL;
    return stream_fd(c, 0, length, nowait) ? VIA_NOWAIT : 0;
  }
  /* what replay shows as the program's output, or an fd that would become
   * an alias of it (rec's view of the fd table changes only at its stops):
   * only a write, whose bytes the entry stores (echo), is taken */
  if (output_fd(fd)) {
    if ((check != REC_SYSBUF_FD_WRITE && check != REC_SYSBUF_FD_WRITE_STREAM) ||
        fd >= REC_SYSBUF_OUTPUT_FDS)
      return 0;
    *echo = echo_flag(fd);
  }
  if (check == REC_SYSBUF_FD_NOT_OUTPUT) return VIA_CALL;
  /* (a pipe's or FIFO's close never blocks either: make closes its jobs'
   * pipe ends, ~60 calls in make -j2; a socket's can linger) */
  if (check == REC_SYSBUF_FD_CLOSE)
    return (fd_class(fd) & (REC_SYSBUF_CLASS_QUIET | REC_SYSBUF_CLASS_FIFO)) ? VIA_CALL : 0;
  /* REC_SYSBUF_FD_WRITE(_STREAM) */
  if (header()->no_writes) return 0;
  int c = fd_class(fd);
  if (nowait != REC_SYSBUF_NOWAIT_MSG && (c & REC_SYSBUF_CLASS_QUIET_FILE))
    return (c & REC_SYSBUF_CLASS_WATCHED) ? 0 : VIA_CALL;
  return check == REC_SYSBUF_FD_WRITE_STREAM && stream_fd(c, 1, length, nowait) ? VIA_NOWAIT : 0;
}

#define RULE_CALL 1  /* the rule takes the call */
#define RULE_BLOCKS 2 /* ... and it may block: only under the desched event */
static int rule_allows(uint8_t rule, const uint64_t* args) {
  if (!rule) return RULE_CALL;
  if (rule > REC_SYSBUF_RULES) return 0;
  const volatile struct rec_sysbuf_rule* r = &header()->rules[rule - 1];
  if (r->arg >= 6) return 0;
  int64_t v = (int64_t)args[r->arg];
  if (r->kind == REC_SYSBUF_RULE_NO_BITS) return (v & r->values[0]) == 0 ? RULE_CALL : 0;
  if (r->kind != REC_SYSBUF_RULE_ONE_OF) return 0;
  v &= ~r->ignore_bits;
  for (uint8_t i = 0; i < r->count && i < 6; ++i)
    if (r->values[i] == v) return i >= r->blocking_from ? RULE_CALL | RULE_BLOCKS : RULE_CALL;
  return 0;
}

/* readv/writev and co: the program's iovec array (count entries at addr),
 * read into `to` by the kernel (process_vm_readv on this very process), so a
 * bad pointer fails here with EFAULT instead of faulting: the call is then
 * made traced, and fails there the same way in recording and replay.
 * Returns the bytes the iovecs cover, or -1. */
static int64_t read_iovecs(uint64_t addr, uint64_t count, struct rec_sysbuf_range* to) {
  if (count == 0) return 0;
  struct rec_sysbuf_range local = {(uint64_t)to, count * sizeof *to}, remote = {addr, local.len};
  long pid = untraced6(SYS_getpid, 0, 0, 0, 0, 0, 0);
  if (untraced6(SYS_process_vm_readv, pid, (long)&local, 1, (long)&remote, 1, 0) !=
      (long)local.len)
    return -1;
  uint64_t total = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (to[i].len > (1ul << 40)) return -1; /* (past SSIZE_MAX: EINVAL, traced) */
    total += to[i].len;
  }
  return (int64_t)total;
}

/* Where a read's output goes: one range at `addr`, or (ranges > 0) the
 * ranges at the start of the entry's data. */
static int output_zero(uint64_t addr, uint64_t len, const struct rec_sysbuf_range* r,
                       uint32_t ranges) {
  if (!ranges) return all_zero((const unsigned char*)addr, len);
  for (uint32_t i = 0; i < ranges; ++i)
    if (!all_zero((const unsigned char*)r[i].addr, r[i].len)) return 0;
  return 1;
}

/* Replay of a buffered anonymous mmap: the same mapping at the address
 * the recording got, as replay does for a traced one (MAP_FIXED, never
 * NOREPLACE). 0: not made there (the traced call then shows the
 * divergence, with the entry left unread). */
static int mmap_again(const struct rec_sysbuf_entry* e) {
  if (e->result < 0 && e->result >= -4095) return 1; /* failed in the recording: nothing to map */
  long flags = ((long)e->args[3] & ~(long)MAP_FIXED_NOREPLACE_) | MAP_FIXED_;
  if (!rec_sysbuf_maps_file(e->args))
    return untraced6(SYS_mmap, e->result, (long)e->args[1], (long)e->args[2], flags, -1, 0) ==
           e->result;
  /* a stored file: replay's copy of it, which rec named in the slot */
  if (e->size < sizeof *e + sizeof(struct rec_sysbuf_mapped_file)) return 0;
  const struct rec_sysbuf_mapped_file* m = (const struct rec_sysbuf_mapped_file*)e->data;
  if (m->slot >= REC_SYSBUF_FILES_MAX) return 0;
  volatile struct rec_sysbuf_file* x = &files()->file[m->slot];
  for (int i = 0; i < 16; ++i)
    if (x->hash[i] != m->hash[i]) return 0;
  long fd = -1;
  if (x->fd_plus1 > 0) {
    struct kstat st;
    long kept = (long)x->fd_plus1 - 1;
    if (untraced6(SYS_fstat, kept, (long)&st, 0, 0, 0, 0) == 0 && st.ino == x->copy_ino &&
        st.dev == x->copy_dev)
      fd = kept;
  }
  if (fd < 0) {
    /* kept open: the next mapping of the file uses the same open file */
    fd = untraced6(SYS_openat, AT_FDCWD_, (long)x->path, O_CLOEXEC_, 0, 0, 0);
    if (fd < 0) return 0;
    x->fd_plus1 = (int32_t)(fd + 1);
  }
  long got = untraced6(SYS_mmap, e->result, (long)e->args[1], (long)e->args[2], flags, fd,
                       (long)e->args[5]);
  return got == e->result;
}

/* Replay of a buffered brk: made again; the break must be where the
 * recording found it (0: the traced call shows the divergence; brk made
 * twice with one argument is the same brk). */
static int brk_again(const struct rec_sysbuf_entry* e) {
  return untraced6(SYS_brk, (long)e->args[0], 0, 0, 0, 0, 0) == e->result;
}

/* Returns 1 with the result in frame[F_RAX], or 0: the entry makes the
 * call as a traced syscall. */
__attribute__((visibility("hidden"), used)) int rec_sysbuf_handle(uint64_t* frame) {
  uint64_t nr = frame[F_RAX];
  if (nr >= REC_SYSBUF_MAX_NR) return 0;
  volatile struct rec_sysbuf_header* h = header();
  struct rec_sysbuf_policy p = *(const struct rec_sysbuf_policy*)&h->policy[nr];
  if (!p.args) return 0;
  uint64_t args[6] = {frame[F_RDI], frame[F_RSI], frame[F_RDX],
                      frame[F_R10], frame[F_R8],  frame[F_R9]};
  uint32_t mode = ((volatile struct rec_shim_control*)REC_SHIM_CONTROL)->sysbuf_mode;
  if (mode == REC_SHIM_RECORD) {
    uint64_t used = h->used, limit = h->limit;
    if (limit > REC_SYSBUF_RECORD_AREA || used + sizeof(struct rec_sysbuf_entry) > limit)
      return 0; /* full: the traced call's stop empties it */
    uint64_t room = limit - used - sizeof(struct rec_sysbuf_entry);
    int ruled = rule_allows(p.rule, args);
    if (!ruled) return 0;
    long desched = (ruled & RULE_BLOCKS) ? desched_fd() : -1;
    if ((ruled & RULE_BLOCKS) && desched < 0) return 0;
    struct rec_sysbuf_entry* e = (struct rec_sysbuf_entry*)(REC_SYSBUF_ENTRIES + used);
    /* a vector call's iovecs, copied to where the entry's ranges go */
    struct rec_sysbuf_range* iov = 0;
    uint64_t count = 0, length = args[2]; /* bytes read or written at most */
    if (p.out_kind == REC_SYSBUF_OUT_IOVEC || p.out_kind == REC_SYSBUF_IN_IOVEC) {
      count = args[p.out_size];
      if (count > REC_SYSBUF_IOV_MAX || count * sizeof *iov > room) return 0;
      iov = (struct rec_sysbuf_range*)e->data;
      int64_t total = read_iovecs(args[p.out_arg], count, iov);
      if (total < 0) return 0;
      length = (uint64_t)total;
    }
    uint64_t most = p.out_kind == REC_SYSBUF_OUT_RESULT  ? args[p.out_arg + 1]
                    : p.out_kind == REC_SYSBUF_OUT_FIXED ? p.out_size
                    : p.out_kind == REC_SYSBUF_OUT_IOVEC ? length + count * (sizeof *iov + 8)
                                                         : 0;
    if (most > room) return 0;
    int zeros = 0; /* reading /dev/zero: the output is zeros, no need to look */
    int slot = -1; /* a stored file's mmap: its slot */
    uint32_t echo = 0; /* a write of the program's output: REC_SYSBUF_ENTRY_ECHO_* */
    /* execve of a missing path: its error, the call not made */
    long missing = 0;
    if (p.fd_check == REC_SYSBUF_EXEC_MISSING && !(missing = exec_missing((long)args[0])))
      return 0;
    int via = fd_allowed(p.fd_check, p.nowait, args, length, &zeros, &echo);
    if (!via && p.fd_check == REC_SYSBUF_MMAP_ANON &&
        room >= sizeof(struct rec_sysbuf_mapped_file) && (slot = stored_file(args)) >= 0)
      via = VIA_CALL;
    if (!via) return 0;
    /* the output's bytes go into the entry (a write's, from its buffer);
     * never a call that may block, which would hold the window open */
    if (echo && (p.out_kind != REC_SYSBUF_OUT_NONE || (ruled & RULE_BLOCKS) ||
                 (via == VIA_NOWAIT && (h->desched_streams || h->block_streams)) ||
                 REC_SYSBUF_PAD(length) > room || !echo_begin()))
      return 0;
    const int echo_window = echo != 0;
    long result;
    if (missing) {
      result = missing;
    } else if (ruled & RULE_BLOCKS) {
      const long a[6] = {(long)args[0], (long)args[1], (long)args[2],
                         (long)args[3], (long)args[4], (long)args[5]};
      if (!desched_call(desched, (long)nr, a, &result)) return 0;
    } else if (via == VIA_NOWAIT) {
      if (!stream_call(args, p.fd_check == REC_SYSBUF_FD_WRITE_STREAM, p.nowait, iov, count,
                       &result)) {
        if (echo) echo_end();
        return 0;
      }
    } else if (iov) {
      /* the copy the ranges are taken from: what the kernel used */
      result = untraced6((long)nr, (long)args[0], (long)iov, (long)count, (long)args[3],
                         (long)args[4], (long)args[5]);
    } else {
      result = untraced6((long)nr, (long)args[0], (long)args[1], (long)args[2], (long)args[3],
                         (long)args[4], (long)args[5]);
    }
    uint64_t len = 0, addr = 0;
    uint32_t ranges = 0;
    if (p.out_kind == REC_SYSBUF_OUT_RESULT && result > 0) {
      len = (uint64_t)result <= most ? (uint64_t)result : most;
      addr = args[p.out_arg];
    } else if (p.out_kind == REC_SYSBUF_OUT_FIXED && result == 0 && args[p.out_arg]) {
      len = p.out_size; /* (a NULL pointer the call may skip: prlimit64's old limit) */
      addr = args[p.out_arg];
    } else if (p.out_kind == REC_SYSBUF_OUT_IOVEC && result > 0) {
      /* the iovecs filled in order up to the result, empty ones left out */
      uint64_t left = (uint64_t)result <= length ? (uint64_t)result : length;
      len = left;
      for (uint64_t i = 0; i < count && left; ++i) {
        uint64_t at = iov[i].addr, n = iov[i].len < left ? iov[i].len : left;
        if (!n) continue;
        iov[ranges].addr = at;
        iov[ranges].len = n;
        ++ranges;
        left -= n;
      }
      if (ranges == 1) { /* one range: as a read's */
        addr = iov[0].addr;
        ranges = 0;
      }
    }
    const struct rec_sysbuf_range* r = (const struct rec_sysbuf_range*)e->data;
    unsigned char* const start = e->data + ranges * sizeof *r;
    unsigned char* bytes = start;
    int zero = len >= 64 && (zeros || output_zero(addr, len, r, ranges));
    if (echo && result > 0) {
      uint64_t n = (uint64_t)result <= length ? (uint64_t)result : length;
      copy(bytes, (const void*)args[1], n);
      bytes += n;
      zero_fill(bytes, REC_SYSBUF_PAD(n) - n);
      bytes += REC_SYSBUF_PAD(n) - n;
    } else {
      echo = 0;
    }
    if (len && !zero) {
      if (!ranges) {
        copy(bytes, (const void*)addr, len);
        bytes += len;
      } else {
        /* each range's bytes start on 8 bytes (rec hands them to the trace
         * writer in place) */
        for (uint32_t i = 0; i < ranges; ++i) {
          copy(bytes, (const void*)r[i].addr, r[i].len);
          bytes += r[i].len;
          zero_fill(bytes, REC_SYSBUF_PAD(r[i].len) - r[i].len);
          bytes += REC_SYSBUF_PAD(r[i].len) - r[i].len;
        }
      }
    }
    e->nr = (int32_t)nr;
    e->result = result;
    for (int i = 0; i < 6; ++i) e->args[i] = args[i];
    e->out_addr = ranges ? 0 : addr;
    e->out_len = len;
    e->ranges = ranges;
    e->flags = (zero ? REC_SYSBUF_ENTRY_ZERO : 0) | echo;
    if (slot >= 0) { /* (no output: out_len 0) */
      struct rec_sysbuf_mapped_file* m = (struct rec_sysbuf_mapped_file*)bytes;
      volatile struct rec_sysbuf_file* x = &files()->file[slot];
      for (int i = 0; i < 16; ++i) m->hash[i] = x->hash[i];
      m->slot = (uint32_t)slot;
      m->reserved = 0;
      bytes += sizeof *m;
    }
    uint32_t size = (uint32_t)REC_SYSBUF_PAD(sizeof(struct rec_sysbuf_entry) + ranges * sizeof *r +
                                             (uint64_t)(bytes - start));
    e->size = size;
    if (result == 0 && p.fd_check == REC_SYSBUF_SIGMASK) note_sigmask();
    /* (a close that fails may have closed the fd all the same: EINTR, EIO;
     * a result of fcntl other than F_DUPFD's is not an fd: forgetting that
     * number's class costs one classify at most) */
    if (p.fd_check == REC_SYSBUF_FD_CLOSE)
      fd_changed((long)(uint32_t)args[0]); /* (the kernel reads an unsigned int) */
    else if (result >= 0 &&
             (p.fd_check == REC_SYSBUF_PATH_OPEN || p.fd_check == REC_SYSBUF_FD_NOT_OUTPUT))
      fd_changed(result);
    h->used = (uint32_t)(used + size); /* last: rec reads entries below `used` */
    if (echo_window) echo_end();
    frame[F_RAX] = (uint64_t)result;
    return 1;
  }
  if (mode == REC_SHIM_REPLAY) {
    uint32_t next = h->next;
    if (next >= h->used) return 0;
    const struct rec_sysbuf_entry* e = (const struct rec_sysbuf_entry*)(REC_SYSBUF_ENTRIES + next);
    /* Not the recorded call: made as a traced syscall, where replay sees
     * the divergence (the entries left unread). */
    if (e->nr != (int32_t)nr) return 0;
    for (unsigned i = 0; i + 1 < p.args; ++i)
      if (e->args[i] != args[i]) return 0;
    if (p.fd_check == REC_SYSBUF_MMAP_ANON && !mmap_again(e)) return 0;
    /* set_tid_address: the kernel's clear_child_tid must be set in replay
     * too (the word cleared and woken at the thread's exit); the program
     * gets the recorded tid below */
    if (p.fd_check == REC_SYSBUF_AGAIN || p.fd_check == REC_SYSBUF_SIGMASK)
      untraced6((long)nr, (long)args[0], (long)args[1], (long)args[2], (long)args[3],
                (long)args[4], (long)args[5]);
    if (p.fd_check == REC_SYSBUF_BRK && !brk_again(e)) return 0;
    if (e->out_len) {
      if (!e->ranges) {
        if (e->flags & REC_SYSBUF_ENTRY_ZERO)
          zero_fill((void*)e->out_addr, e->out_len);
        else
          copy((void*)e->out_addr, e->data, e->out_len);
      } else {
        const struct rec_sysbuf_range* r = (const struct rec_sysbuf_range*)e->data;
        const unsigned char* bytes = e->data + e->ranges * sizeof *r;
        for (uint32_t i = 0; i < e->ranges; ++i) {
          if (e->flags & REC_SYSBUF_ENTRY_ZERO) {
            zero_fill((void*)r[i].addr, r[i].len);
          } else {
            copy((void*)r[i].addr, bytes, r[i].len);
            bytes += REC_SYSBUF_PAD(r[i].len);
          }
        }
      }
    }
    h->next = next + e->size;
    frame[F_RAX] = (uint64_t)e->result;
    return 1;
  }
  return 0;
}

/* The entry the trampolines call: rax the syscall number, rdi, rsi, rdx,
 * r10, r8, r9 its arguments; returns the result in rax with every other
 * register as the syscall instruction leaves it (rcx and r11, which it
 * clobbers, zeroed: the same in recording and replay). Flags are not kept:
 * the trampoline compares rax right after, as the patched code did. */
__asm__(".section .text.rec_sysbuf_entry,\"ax\",@progbits\n"
        ".globl rec_sysbuf_entry\n.hidden rec_sysbuf_entry\n"
        ".type rec_sysbuf_entry,@function\n"
        "rec_sysbuf_entry:\n"
        "  push %rax\n  push %rdi\n  push %rsi\n  push %rdx\n  push %r10\n"
        "  push %r8\n  push %r9\n  push %rcx\n  push %r11\n  push %rbx\n"
        "  mov %rsp, %rbx\n"
        "  cmpl $0, 0x70005004\n" /* REC_SHIM_CONTROL's sysbuf_mode */
        "  je 2f\n"
        "  cmpl $0, 0x70016008\n" /* REC_SYSBUF's busy */
        "  jne 2f\n"
        "  movl $1, 0x70016008\n"
        "  mov $0x7001c000, %rsp\n" /* REC_SYSBUF_STACK_TOP */
        "  cld\n"
        "  mov %rbx, %rdi\n"
        "  call rec_sysbuf_handle\n"
        "  mov %rbx, %rsp\n"
        "  movl $0, 0x70016008\n"
        "  test %eax, %eax\n"
        "  jmp 3f\n"
        "2:\n"
        "  xor %eax, %eax\n" /* ZF: not handled */
        "3:\n"
        "  pop %rbx\n  pop %r11\n  pop %rcx\n  pop %r9\n  pop %r8\n"
        "  pop %r10\n  pop %rdx\n  pop %rsi\n  pop %rdi\n  pop %rax\n"
        "  jnz 4f\n"
        "  syscall\n"
        "4:\n"
        "  mov $0, %ecx\n  mov $0, %r11d\n"
        "  ret\n"
        ".size rec_sysbuf_entry, .-rec_sysbuf_entry\n"
        ".text\n");
