// A child killed with SIGKILL dies while its parent maps a file: its SIGCHLD
// (ignored by default) arrives during the mmap, which replay carries out
// with syscalls of its own; replay must still deliver it there, as the
// recording did. The counts printed differ per run.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  (void)argc;
  int fd = open(argv[0], O_RDONLY);
  if (fd < 0) return 1;
  long total = 0;
  for (int child = 0; child < 20; ++child) {
    pid_t pid = fork();
    if (pid == 0) {
      pause();
      _exit(child);
    }
    kill(pid, SIGKILL);
    long maps = 0;
    for (;;) {
      void* p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) return 2;
      munmap(p, 4096);
      ++maps;
      int status;
      if (waitpid(pid, &status, WNOHANG) == pid) break;
    }
    total += maps;
    printf("child %d reaped after %ld maps\n", child, maps);
  }
  printf("%ld maps in all\n", total);
  return 0;
}
