// A process that kills itself with SIGKILL: it dies inside its kill
// syscall, which never returns, so the trace has no event for it. What the
// process did between its last event and that kill (here: a store into
// memory its parent shares) must happen on replay too (rr's
// clone_cleartid_coredump: a lazily bound PLT entry written on the way).
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  volatile uint64_t* shared =
      mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return 1;
  pid_t child = fork();
  if (child == 0) {
    pid_t self = getpid();
    uint64_t value;
    if (getrandom(&value, sizeof value, 0) != sizeof value) _exit(2);
    *shared = value | 1;  // after its last event: only running it up to the kill stores it
    syscall(SYS_kill, self, SIGKILL);
    _exit(3);
  }
  int status;
  if (waitpid(child, &status, 0) != child) return 1;
  printf("child %s, stored %016llx\n",
         WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? "killed itself" : "did not die",
         (unsigned long long)*shared);
  return 0;
}
