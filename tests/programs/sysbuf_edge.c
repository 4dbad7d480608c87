// Edge cases of the syscall buffer (docs/syscall-buffer.md).
//   sysbuf_edge diverge        buffered calls chosen by RDRAND, which replay
//                              cannot reproduce: replay must report a divergence
//   sysbuf_edge forever FILE   buffered 1-byte writes to FILE until killed,
//                              a line on stdout every 20000
//   sysbuf_edge watched DIR    writes to a file it maps MAP_SHARED (traced:
//                              replay's shared copy must see them) beside
//                              writes to another file and to /dev/null
//                              (buffered), then prints what the mapping and
//                              the other file hold
//   sysbuf_edge fds DIR        openat/close/fcntl/getdents64/readlink/access
//                              on files with names that differ every run,
//                              around an alias of stdout made by fcntl and a
//                              file opened as fd 1 after close(1): what goes
//                              to stdout must show on replay, the rest not
//   sysbuf_edge fdcache DIR    the buffer remembers what it found per fd:
//                              a file written through the buffer, then
//                              mapped MAP_SHARED (its later writes must be
//                              traced: replay's shared copy sees them); an
//                              fd number that was a plain file becoming a
//                              file mapped shared (by a traced dup2, by a
//                              buffered close + F_DUPFD, in the parent while
//                              a vfork child makes it the plain file again):
//                              its pwrites must be traced, and the mapping
//                              printed at the end is the same on replay
//   sysbuf_edge opens DIR      openat's path check (one statx on a mount
//                              the buffer knows is local): files with names
//                              that differ every run, a directory, a file
//                              opened with O_DIRECTORY (ENOTDIR), a symlink
//                              with O_NOFOLLOW (ELOOP), a missing path, a
//                              path under a file, /dev/null, a FIFO and a
//                              /proc file (both traced); then an fd number
//                              that was a file becoming the FIFO by a
//                              buffered close + F_DUPFD: its read (EAGAIN)
//                              must go traced. Prints what each open gave
//                              and a hash of what the files held
//   sysbuf_edge queries N      what a start-up asks N times over (isatty() on
//                              a file and /dev/null, getcwd, prlimit64 reads,
//                              one with no old-limit pointer, sysinfo):
//                              buffered; a hash of the answers with random
//                              bytes (getrandom), which differ every run
//   sysbuf_edge mmaps N        private anonymous mmaps (buffered: replay maps
//                              them again where the recording got them) of
//                              random sizes, filled, partly mapped over with
//                              MAP_FIXED (zeros), a MAP_FIXED_NOREPLACE that
//                              fails, a bad length, beside shared, growsdown
//                              and /dev/zero mappings (traced), in a forked
//                              child too, and the heap grown and shrunk by
//                              brk: a hash of what the memory holds
#define _GNU_SOURCE  // prlimit
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/stat.h>
#include <termios.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long fnv(const unsigned char* p, size_t n) {
  unsigned long h = 1469598103934665603ul;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ul;
  return h;
}

static int watched(const char* dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/shared", dir);
  int shared = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  snprintf(path, sizeof path, "%s/plain", dir);
  int plain = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int null = open("/dev/null", O_WRONLY);
  if (shared < 0 || plain < 0 || null < 0 || ftruncate(shared, 4096) != 0) return 2;
  unsigned char* map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, shared, 0);
  if (map == MAP_FAILED) return 2;
  printf("fds shared=%d plain=%d null=%d\n", shared, plain, null);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long seed = (unsigned long)ts.tv_nsec;
  for (int i = 0; i < 300; ++i) {
    seed = seed * 6364136223846793005ul + 1442695040888963407ul;
    unsigned char byte = (unsigned char)(seed >> 56);
    if (pwrite(shared, &byte, 1, (off_t)(seed >> 20) % 4096) != 1) return 3;
    if (write(plain, &byte, 1) != 1 || write(null, &byte, 1) != 1) return 3;
  }
  unsigned char back[300];
  if (pread(plain, back, sizeof back, 0) != (ssize_t)sizeof back) return 4;
  printf("mapping %016lx plain %016lx\n", fnv(map, 4096), fnv(back, sizeof back));
  return 0;
}

/* A vfork child (same memory, so the same buffer, but its own fd table)
 * makes fd n the plain file and writes to it. */
static __attribute__((noinline)) int vfork_writes(int plain, int n) {
  pid_t child = vfork();
  if (child == 0) {
    if (dup2(plain, n) != n) _exit(5);
    for (int i = 0; i < 5; ++i)
      if (write(n, "kid!", 4) != 4) _exit(5);
    _exit(0);
  }
  int status;
  return child > 0 && waitpid(child, &status, 0) == child && status == 0 ? 0 : 1;
}

static int fdcache(const char* dir) {
  char path[4096];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long seed = (unsigned long)ts.tv_nsec;
  unsigned char bytes[100];
  for (size_t i = 0; i < sizeof bytes; ++i) {
    seed = seed * 6364136223846793005ul + 1442695040888963407ul;
    bytes[i] = (unsigned char)(seed >> 56);
  }
  /* Written through the buffer first (its class remembered), then mapped
   * shared: the later writes must reach replay's shared copy. */
  snprintf(path, sizeof path, "%s/late-shared", dir);
  int late = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (late < 0 || ftruncate(late, 4096) != 0) return 2;
  for (int i = 0; i < 50; ++i)
    if (pwrite(late, &bytes[i], 1, i) != 1) return 3;
  unsigned char* map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, late, 0);
  if (map == MAP_FAILED) return 2;
  for (int i = 50; i < 100; ++i)
    if (pwrite(late, &bytes[i], 1, i) != 1) return 3;
  printf("late mapping %016lx\n", fnv(map, 4096));

  /* One fd number, first a plain file (written through the buffer), then a
   * file mapped shared, whose writes must be traced. */
  snprintf(path, sizeof path, "%s/plain", dir);
  int plain = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  snprintf(path, sizeof path, "%s/shared", dir);
  int shared = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (plain < 0 || shared < 0 || ftruncate(shared, 4096) != 0) return 2;
  unsigned char* smap = mmap(NULL, 4096, PROT_READ, MAP_SHARED, shared, 0);
  if (smap == MAP_FAILED) return 2;
  const int n = 30;
  /* patches the sites of fcntl and close (a site's first call is traced) */
  for (int i = 0; i < 2; ++i)
    if (close(fcntl(plain, F_DUPFD, 40)) != 0) return 2;
  for (int round = 0; round < 3; ++round) {
    if (dup2(plain, n) != n) return 4;
    for (int i = 0; i < 5; ++i)
      if (write(n, "file", 4) != 4) return 4;
    if (round == 0) {
      if (dup2(shared, n) != n) return 4; /* traced */
    } else if (round == 1) {
      if (close(n) != 0 || fcntl(shared, F_DUPFD, n) != n) return 4; /* buffered */
    } else {
      /* fd n the shared file in the parent, the plain one in a vfork
       * child's table */
      if (dup2(shared, n) != n) return 4;
      if (vfork_writes(plain, n) != 0) return 5;
    }
    for (int i = 0; i < 10; ++i)
      if (pwrite(n, &bytes[10 * round + i], 1, 100 * round + i) != 1) return 4;
  }
  printf("shared through fd %d %016lx\n", n, fnv(smap, 4096));
  return 0;
}

static const char* open_result(int fd) {
  if (fd >= 0) return "ok";
  return errno == ENOTDIR  ? "ENOTDIR"
         : errno == ELOOP  ? "ELOOP"
         : errno == ENOENT ? "ENOENT"
                           : "other";
}

static int opens(const char* parent) {
  char dir[1024], path[2048], name[64];
  if (strlen(parent) > 512) return 64;
  snprintf(dir, sizeof dir, "%s/opensXXXXXX", parent);
  if (!mkdtemp(dir)) return 2;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long seed = (unsigned long)ts.tv_nsec, h = 1469598103934665603ul;
  /* files written (O_CREAT: traced), then opened and read through the buffer */
  for (int i = 0; i < 20; ++i) {
    seed = seed * 6364136223846793005ul + 1442695040888963407ul;
    snprintf(path, sizeof path, "%s/f%02d", dir, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    snprintf(name, sizeof name, "%lx", seed >> 8);
    if (fd < 0 || write(fd, name, strlen(name)) != (ssize_t)strlen(name)) return 2;
    close(fd);
  }
  char link[2048];
  snprintf(link, sizeof link, "%s/link", dir);
  if (symlink("f00", link) != 0) return 2;
  char fifo[2048];
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  if (mkfifo(fifo, 0600) != 0) return 2;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 20; ++i) {
      snprintf(path, sizeof path, "%s/f%02d", dir, i);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      char got[64];
      ssize_t n = fd < 0 ? -1 : read(fd, got, sizeof got);
      if (n <= 0) return 3;
      h = fnv((const unsigned char*)got, (size_t)n) ^ (h * 31);
      close(fd);
    }
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    printf("directory %s\n", open_result(d));
    close(d);
    snprintf(path, sizeof path, "%s/f01", dir);
    errno = 0;
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    printf("file as a directory %s\n", open_result(fd));
    if (fd >= 0) close(fd);
    errno = 0;
    fd = open(link, O_RDONLY | O_NOFOLLOW);
    printf("symlink, no follow %s\n", open_result(fd));
    if (fd >= 0) close(fd);
    fd = open(link, O_RDONLY);
    printf("symlink %s\n", open_result(fd));
    if (fd >= 0) close(fd);
    snprintf(path, sizeof path, "%s/missing-%lx", dir, seed >> 20);
    errno = 0;
    fd = open(path, O_RDONLY);
    printf("missing %s\n", open_result(fd));
    if (fd >= 0) close(fd);
    snprintf(path, sizeof path, "%s/f02/below", dir);
    errno = 0;
    fd = open(path, O_RDONLY);
    printf("under a file %s\n", open_result(fd));
    if (fd >= 0) close(fd);
    fd = open("/dev/null", O_RDONLY);
    printf("/dev/null %s\n", open_result(fd));
    if (fd >= 0) close(fd);
    fd = open("/proc/self/stat", O_RDONLY);
    printf("/proc %s\n", open_result(fd));
    if (fd >= 0) close(fd);
    /* (O_RDWR: the open does not wait for a writer, and an empty FIFO
     * with one reads EAGAIN, not end of file) */
    int f = open(fifo, O_RDWR | O_NONBLOCK);
    printf("fifo %s\n", open_result(f));
    if (f < 0) return 4;
    /* fd n: a file (its class remembered by its read), then the FIFO, to
     * which a write of more than PIPE_BUF bytes must be traced (a file's
     * would be buffered) */
    snprintf(path, sizeof path, "%s/f03", dir);
    int n = open(path, O_RDWR);
    char got[64];
    if (n < 0 || read(n, got, sizeof got) <= 0) return 5;
    if (close(n) != 0 || fcntl(f, F_DUPFD, n) != n) return 5;
    static unsigned char block[8192];
    for (size_t i = 0; i < sizeof block; ++i) block[i] = (unsigned char)(seed >> (i % 48));
    ssize_t wrote = write(n, block, sizeof block);
    static unsigned char back[8192];
    ssize_t got_back = read(f, back, sizeof back);
    printf("fifo as fd %d: wrote %zd, read %zd\n", n, wrote, got_back);
    if (got_back > 0) h = fnv(back, (size_t)got_back) ^ (h * 31);
    close(n);
    close(f);
  }
  printf("files %016lx\n", h);
  return 0;
}

static unsigned long long rdrand64(void) {
  unsigned long long value;
  unsigned char ok;
  do {
    __asm__ volatile("rdrand %0; setc %1" : "=r"(value), "=qm"(ok));
  } while (!ok);
  return value;
}

static int fds(const char* parent) {
  char dir[1024];
  if (strlen(parent) > 512) return 64;
  snprintf(dir, sizeof dir, "%s/runXXXXXX", parent);
  if (!mkdtemp(dir)) return 2;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long seed = (unsigned long)ts.tv_nsec;
  char path[2048], target[64], got[64];
  int made = 0;
  for (int i = 0; i < 40; ++i) {
    seed = seed * 6364136223846793005ul + 1442695040888963407ul;
    snprintf(path, sizeof path, "%s/f%02d-%lx", dir, i, seed >> 40);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600); /* O_CREAT: traced */
    if (fd < 0) return 2;
    close(fd);
    snprintf(path, sizeof path, "%s/l%02d", dir, i);
    snprintf(target, sizeof target, "t%lx", seed >> 20);
    if (symlink(target, path) != 0) return 2;
    made++;
  }
  /* The calls the buffer takes: reads of the directory and the links. */
  unsigned long h = 1469598103934665603ul;
  for (int round = 0; round < 20; ++round) {
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int d2 = fcntl(d, F_DUPFD_CLOEXEC, 3);
    if (d < 0 || d2 < 0 || !(fcntl(d2, F_GETFD) & FD_CLOEXEC)) return 3;
    close(d);
    DIR* listing = fdopendir(d2);
    struct dirent* e;
    while ((e = readdir(listing))) {
      for (const char* c = e->d_name; *c; ++c) h = (h ^ (unsigned char)*c) * 1099511628211ul;
      if (e->d_name[0] == 'l') {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, got, sizeof got);
        if (n <= 0) return 4;
        for (ssize_t i = 0; i < n; ++i) h = (h ^ (unsigned char)got[i]) * 1099511628211ul;
        h += access(path, F_OK) + 7 * (access(path, W_OK) == 0);
      }
    }
    closedir(listing);
  }
  printf("listed %d files: %016lx\n", made, h);
  /* The buffer's O_PATH check hands the kernel the program's pointer: a
   * bad one fails there (EFAULT), the same on replay. */
  for (int i = 0; i < 3; ++i) {
    errno = 0;
    if (open((const char*)16, O_RDONLY) != -1 || errno != EFAULT) return 7;
  }
  /* An alias of stdout made by fcntl: what it writes is the program's output. */
  int alias = fcntl(1, F_DUPFD_CLOEXEC, 20);
  if (alias < 0) return 5;
  fflush(stdout);
  dprintf(alias, "through the alias %d: %016lx\n", alias, h ^ seed);
  close(alias);
  /* stdout closed, a file opened as fd 1: its writes are not output. */
  int keep = dup(1);
  close(1);
  snprintf(path, sizeof path, "%s/as-stdout", dir);
  int one = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (one != 1) return 6;
  for (int i = 0; i < 50; ++i) dprintf(1, "not output %lx\n", seed + (unsigned long)i);
  close(1);
  int again = open(path, O_RDONLY);
  char back[8192];
  ssize_t n = read(again, back, sizeof back);
  close(again);
  dup2(keep, 1);
  close(keep);
  unsigned long hb = 1469598103934665603ul;
  for (ssize_t i = 0; i < n; ++i) hb = (hb ^ (unsigned char)back[i]) * 1099511628211ul;
  printf("fd 1 was a file: %zd bytes %016lx\n", n, hb);
  return 0;
}

static int queries(int n) {
  int file = open("/proc/self/exe", O_RDONLY);
  int null = open("/dev/null", O_RDONLY);
  if (file < 0 || null < 0) return 2;
  unsigned long h = 0;
  int notty = 0;
  for (int i = 0; i < n; ++i) {
    struct termios tio;
    struct winsize ws;
    notty += isatty(file) == 0 && errno == ENOTTY;
    notty += ioctl(null, TIOCGWINSZ, &ws) < 0 && errno == ENOTTY;
    notty += tcgetattr(null, &tio) < 0 && errno == ENOTTY;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return 3;
    h ^= fnv((const unsigned char*)cwd, strlen(cwd));
    struct rlimit lim;
    if (prlimit(0, RLIMIT_NOFILE, NULL, &lim) != 0) return 4;
    if (prlimit(0, RLIMIT_STACK, NULL, NULL) != 0) return 5;
    h = h * 31 + lim.rlim_cur;
    struct sysinfo si;
    if (sysinfo(&si) != 0) return 6;
    h = h * 31 + (unsigned long)si.procs;
    unsigned char random[16];
    if (getrandom(random, sizeof random, GRND_NONBLOCK) != (ssize_t)sizeof random) return 7;
    h ^= fnv(random, sizeof random);
  }
  printf("queries %d notty %d %016lx\n", n, notty, h);
  return 0;
}

static unsigned long mmap_round(unsigned long h) {
  unsigned int r;
  if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) return 0;
  size_t pages = 1 + r % 40, size = pages * 4096;
  unsigned char* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0;
  for (size_t i = 0; i < size; i += 512) p[i] = (unsigned char)(r >> (i % 24));
  // zeros over the middle: replay must really map there again
  size_t at = (pages / 2) * 4096;
  if (mmap(p + at, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
      p + at)
    return 0;
  // over an existing mapping: EEXIST, buffered like any result
  void* no = mmap(p, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (no != MAP_FAILED || errno != EEXIST) return 0;
  if (mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) return 0;
  unsigned char* ro = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ro == MAP_FAILED || ro[4096] != 0) return 0;
  // traced: shared memory, a stack-like mapping, a device's
  unsigned char* shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  unsigned char* down = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
  if (shared == MAP_FAILED || down == MAP_FAILED) return 0;
  shared[1] = p[0];
  down[8191] = p[512];
  // the heap grown and shrunk by brk (buffered: replay makes it again)
  unsigned char* heap = sbrk(0);
  if (sbrk((intptr_t)size) != heap) return 0;
  heap[size - 1] = (unsigned char)r;
  h = h * 31 + heap[size - 1] + (unsigned long)(heap[0] == 0);
  if (sbrk(-(intptr_t)size) == (void*)-1) return 0;
  h = h * 31 + fnv(p, size);
  h = h * 31 + (unsigned long)(shared[1] + down[8191]);
  munmap(p, size);
  munmap(ro, 8192);
  munmap(shared, 4096);
  munmap(down, 8192);
  return h ? h : 1;
}

static int mmaps(int n) {
  unsigned long h = 1469598103934665603ul;
  for (int i = 0; i < n; ++i)
    if (!(h = mmap_round(h))) return 2;
  int zero = open("/dev/zero", O_RDWR);
  unsigned char* z = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, zero, 0);
  if (zero < 0 || z == MAP_FAILED || z[100] != 0) return 3;
  pid_t child = fork();
  if (child == 0) {
    unsigned long c = 7;
    for (int i = 0; i < n; ++i)
      if (!(c = mmap_round(c))) _exit(2);
    printf("child %016lx\n", c);
    _exit(0);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child || status != 0) return 4;
  printf("mmaps %d %016lx\n", n, h);
  return 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "diverge") == 0) {
    int fd = open("/proc/self/exe", O_RDONLY);
    struct stat st;
    // Each call's site is patched at its first (traced) call.
    for (int i = 0; i < 3; ++i) {
      lseek(fd, 0, SEEK_CUR);
      fstat(fd, &st);
    }
    unsigned long long bits = rdrand64();
    long sum = 0;
    for (int i = 0; i < 32; ++i) {
      if ((bits >> i) & 1)
        sum += lseek(fd, i, SEEK_SET);
      else
        sum += fstat(fd, &st) + 1000;
    }
    printf("sum %ld\n", sum);
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "forever") == 0) {
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return 2;
    for (unsigned long n = 1;; ++n) {
      if (write(fd, "x", 1) != 1) return 3;
      if (n % 20000 == 0) printf("%lu\n", n);
    }
  }
  if (argc >= 3 && strcmp(argv[1], "watched") == 0) return watched(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "fds") == 0) return fds(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "fdcache") == 0) return fdcache(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "opens") == 0) return opens(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "queries") == 0) return queries(atoi(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "mmaps") == 0) return mmaps(atoi(argv[2]));
  fprintf(stderr,
          "usage: sysbuf_edge diverge | forever FILE | watched DIR | fds DIR | fdcache DIR | "
          "opens DIR | queries N | mmaps N\n");
  return 64;
}
