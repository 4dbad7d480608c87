// Issue 4: the parent forks a child and sends it 256 KiB of random data
// through a pipe (more than a pipe buffer, so both block in turn). The child
// prints the length, a checksum and its pid and exits with checksum % 100;
// the parent waits and prints the child's status and its own checksum.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIZE (256 * 1024)

static uint64_t fnv(const unsigned char* p, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

int main(void) {
  static unsigned char data[SIZE];
  for (size_t off = 0; off < SIZE;) {
    ssize_t n = getrandom(data + off, SIZE - off, 0);
    if (n <= 0) return 2;
    off += (size_t)n;
  }
  int fds[2];
  if (pipe(fds) != 0) return 2;
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    close(fds[1]);
    unsigned char buf[4096];
    uint64_t h = 1469598103934665603ull;
    size_t total = 0, reads = 0;
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) {
      h = fnv(buf, (size_t)n, h);
      total += (size_t)n;
      reads++;
    }
    printf("child pid %d ppid %d got %zu bytes in %zu reads checksum %016llx\n", (int)getpid(),
           (int)getppid(), total, reads, (unsigned long long)h);
    fflush(stdout);
    _exit((int)(h % 100));
  }
  close(fds[0]);
  for (size_t off = 0; off < SIZE;) {  // write in odd-sized pieces
    size_t chunk = SIZE - off < 10000 ? SIZE - off : 10000;
    ssize_t n = write(fds[1], data + off, chunk);
    if (n <= 0) return 3;
    off += (size_t)n;
  }
  close(fds[1]);
  int status = 0;
  if (waitpid(child, &status, 0) != child) return 4;
  uint64_t h = fnv(data, SIZE, 1469598103934665603ull);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  printf("parent pid %d child %d exited %d expected %d time %lld.%09ld\n", (int)getpid(),
         (int)child, WIFEXITED(status) ? WEXITSTATUS(status) : -1, (int)(h % 100),
         (long long)ts.tv_sec, ts.tv_nsec);
  return 0;
}
