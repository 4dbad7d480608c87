// Writes into a process's memory through /proc/PID/mem (debuggers, JITs
// and rr's proc_mem do): replay does not run the write, so it must store
// the bytes itself. A forked child waits while its parent writes random
// values into it with pwrite, pwritev and lseek+write; then the child prints
// them. The parent also writes into its own memory through /proc/self/mem.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile uint64_t cookie1, cookie2, cookie3, own;

static void die(const char* what) {
  perror(what);
  exit(1);
}

static uint64_t random64(void) {
  uint64_t v;
  if (getrandom(&v, sizeof v, 0) != sizeof v) die("getrandom");
  return v;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int go[2];
  if (pipe(go) != 0) die("pipe");
  pid_t child = fork();
  if (child == 0) {
    char c;
    if (read(go[0], &c, 1) != 1) die("read");
    printf("child sees %016llx %016llx %016llx\n", (unsigned long long)cookie1,
           (unsigned long long)cookie2, (unsigned long long)cookie3);
    return 0;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", child);
  int fd = open(path, O_RDWR);
  if (fd < 0) die("open");
  uint64_t a = random64(), b = random64(), c = random64();
  if (pwrite(fd, &a, sizeof a, (off_t)(uintptr_t)&cookie1) != sizeof a) die("pwrite");
  struct iovec iov[2] = {{&b, 3}, {(char*)&b + 3, 5}};
  if (pwritev(fd, iov, 2, (off_t)(uintptr_t)&cookie2) != sizeof b) die("pwritev");
  if (lseek(fd, (off_t)(uintptr_t)&cookie3, SEEK_SET) < 0) die("lseek");
  if (write(fd, &c, sizeof c) != sizeof c) die("write");
  close(fd);
  printf("parent wrote %016llx %016llx %016llx\n", (unsigned long long)a, (unsigned long long)b,
         (unsigned long long)c);
  if (write(go[1], "x", 1) != 1) die("write");
  int status;
  if (waitpid(child, &status, 0) != child) die("waitpid");

  int self = open("/proc/self/mem", O_RDWR);
  uint64_t d = random64();
  if (self < 0 || pwrite(self, &d, sizeof d, (off_t)(uintptr_t)&own) != sizeof d)
    die("/proc/self/mem");
  printf("own memory %016llx (%s)\n", (unsigned long long)own, own == d ? "same" : "DIFFERENT");
  return 0;
}
