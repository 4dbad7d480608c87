// Syscalls the syscall buffer makes without a stop (docs/syscall-buffer.md):
// read/write/pread64/pwrite64/lseek/fstat/newfstatat/statx on regular
// files, from threads, from a signal handler interrupting them, in a fork's
// child, before exit and exec. Prints values that differ on every native
// run (file contents from the clock and the pid, inode numbers, times).
//   sysbuf [loops]        the whole tour
//   sysbuf exec-child N   (what the tour execs)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[4096];
static volatile sig_atomic_t handled;
static int handlerFd = -1;

static void* volatile badPointer = (void*)16;

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

static uint64_t checksum(const unsigned char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Writes `blocks` 4 KiB blocks of bytes from `seed`, reads them back in
// several ways, and returns a digest of everything the calls returned.
static uint64_t fileWork(const char* name, uint64_t seed, int blocks) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) {
    perror("open");
    exit(2);
  }
  unsigned char block[4096];
  uint64_t h = seed;
  for (int b = 0; b < blocks; ++b) {
    for (size_t i = 0; i < sizeof block; ++i) block[i] = (unsigned char)(mix(seed, b * 4096 + i));
    if (write(fd, block, sizeof block) != (ssize_t)sizeof block) {
      perror("write");
      exit(2);
    }
  }
  h = mix(h, (uint64_t)lseek(fd, 0, SEEK_SET));
  ssize_t n;
  while ((n = read(fd, block, sizeof block)) > 0) h = mix(h, checksum(block, (size_t)n));
  for (int b = blocks - 1; b >= 0; --b) {
    n = pread(fd, block, 100, (off_t)b * 4096 + 7);
    h = mix(h, checksum(block, n > 0 ? (size_t)n : 0));
  }
  h = mix(h, (uint64_t)pwrite(fd, "pwritten", 8, 5));
  struct stat st;
  h = mix(h, (uint64_t)fstat(fd, &st));
  h = mix(h, st.st_ino ^ (uint64_t)st.st_size ^ (uint64_t)st.st_mtim.tv_nsec);
  h = mix(h, (uint64_t)stat(path, &st));
  h = mix(h, st.st_ino ^ (uint64_t)st.st_size);
  struct statx sx;
  h = mix(h, (uint64_t)statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &sx));
  h = mix(h, sx.stx_ino ^ sx.stx_size ^ sx.stx_mtime.tv_nsec);
  // Failures go through the buffer too: a bad pointer is EFAULT both times.
  h = mix(h, (uint64_t)read(fd, badPointer, 10));
  h = mix(h, (uint64_t)errno);
  h = mix(h, (uint64_t)fstat(fd, (struct stat*)badPointer));
  h = mix(h, (uint64_t)lseek(fd, -5, SEEK_SET));
  close(fd);
  return h;
}

static void onAlarm(int sig) {
  (void)sig;
  ++handled;
  // Buffered calls from inside a handler that may have interrupted one.
  if (handlerFd >= 0) {
    char c = 'h';
    struct stat st;
    (void)!write(handlerFd, &c, 1);
    fstat(handlerFd, &st);
  }
}

struct Job {
  int index;
  uint64_t seed;
  uint64_t result;
};

static void* worker(void* arg) {
  struct Job* job = arg;
  char name[64];
  uint64_t h = job->seed;
  for (int round = 0; round < 20; ++round) {
    snprintf(name, sizeof name, "thread%d", job->index);
    h = mix(h, fileWork(name, h, 3));
  }
  job->result = h;
  return NULL;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char* tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s", tmp && *tmp ? tmp : "/tmp");
  if (argc >= 3 && strcmp(argv[1], "exec-child") == 0) {
    printf("exec'd child %016llx\n", (unsigned long long)fileWork("exec", strtoull(argv[2], 0, 16), 2));
    return 0;
  }
  int loops = argc > 1 ? atoi(argv[1]) : 50;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t seed = mix((uint64_t)ts.tv_nsec, (uint64_t)getpid());

  // One thread: many calls through the buffer.
  uint64_t h = seed;
  for (int i = 0; i < loops; ++i) h = mix(h, fileWork("single", h, 2));
  printf("single %016llx\n", (unsigned long long)h);

  // A timer's signal handler that makes buffered calls, interrupting them.
  char hpath[4200];
  snprintf(hpath, sizeof hpath, "%s/handler", dir);
  handlerFd = open(hpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = onAlarm;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 2000}, {0, 2000}};
  setitimer(ITIMER_REAL, &it, NULL);
  for (int i = 0; i < loops; ++i) h = mix(h, fileWork("signals", h, 4));
  it = (struct itimerval){{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &it, NULL);
  struct stat st;
  fstat(handlerFd, &st);
  printf("signals %016llx (handler wrote %s)\n", (unsigned long long)h,
         st.st_size == handled ? "once per signal" : "a different count");

  // Threads.
  pthread_t threads[3];
  struct Job jobs[3];
  for (int i = 0; i < 3; ++i) {
    jobs[i] = (struct Job){i, mix(h, (uint64_t)i), 0};
    pthread_create(&threads[i], NULL, worker, &jobs[i]);
  }
  for (int i = 0; i < 3; ++i) {
    pthread_join(threads[i], NULL);
    printf("thread %d %016llx\n", i, (unsigned long long)jobs[i].result);
  }

  // A fork's child: its own buffer; exits with calls still buffered.
  pid_t child = fork();
  if (child == 0) {
    uint64_t c = fileWork("child", h ^ 1, 3);
    printf("child %016llx\n", (unsigned long long)c);
    fileWork("child2", c, 2);
    _exit((int)(c & 0x7f));
  }
  int status = 0;
  waitpid(child, &status, 0);
  printf("child exit %d\n", WEXITSTATUS(status));
  h = mix(h, fileWork("parent", h, 2));
  printf("parent %016llx\n", (unsigned long long)h);

  // Exec with buffered calls just before it.
  fileWork("before-exec", h, 2);
  char arg[32];
  snprintf(arg, sizeof arg, "%llx", (unsigned long long)h);
  execl("/proc/self/exe", argv[0], "exec-child", arg, (char*)NULL);
  perror("exec");
  return 1;
}
