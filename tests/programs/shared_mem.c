// Issue 4: parent and child share memory three ways (anonymous MAP_SHARED,
// a memfd mapped MAP_SHARED, System V shm) and take turns through a pipe
// handshake: the parent writes a random value, the child answers with a
// value derived from it, its pid and a timestamp.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct shared {
  uint64_t request;
  uint64_t answer;
  int64_t child_pid;
  int64_t nsec;
};

static void exchange(const char* kind, volatile struct shared* s) {
  int to_child[2], to_parent[2];
  if (pipe(to_child) != 0 || pipe(to_parent) != 0) _exit(2);
  fflush(stdout);
  pid_t p = fork();
  if (p < 0) _exit(2);
  if (p == 0) {
    close(to_child[1]);
    close(to_parent[0]);
    char c;
    while (read(to_child[0], &c, 1) == 1) {  // one byte per round, EOF ends
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      s->answer = s->request * 3 + 1;
      s->child_pid = getpid();
      s->nsec = ts.tv_nsec;
      if (write(to_parent[1], "a", 1) != 1) _exit(1);
    }
    _exit(0);
  }
  close(to_child[0]);
  close(to_parent[1]);
  for (int round = 0; round < 5; round++) {
    uint64_t r = 0;
    getrandom(&r, sizeof r, 0);
    s->request = r;
    char c;
    if (write(to_child[1], "q", 1) != 1 || read(to_parent[0], &c, 1) != 1) _exit(3);
    printf("%s round %d request %016llx answer %016llx ok %d child %lld nsec %lld\n", kind, round,
           (unsigned long long)s->request, (unsigned long long)s->answer, s->answer == r * 3 + 1,
           (long long)s->child_pid, (long long)s->nsec);
  }
  close(to_child[1]);
  close(to_parent[0]);
  int status;
  waitpid(p, &status, 0);
  fflush(stdout);
  printf("%s child exited %d\n", kind, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

int main(void) {
  void* anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (anon == MAP_FAILED) return 2;
  exchange("anon", anon);

  int fd = memfd_create("rec-test", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, 4096) != 0) return 2;
  void* mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) return 2;
  exchange("memfd", mem);
  struct shared copy;
  if (pread(fd, &copy, sizeof copy, 0) != (ssize_t)sizeof copy) return 2;
  printf("memfd pread answer %016llx\n", (unsigned long long)copy.answer);

  int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  if (id < 0) {
    printf("sysv shm unavailable\n");
    return 0;
  }
  void* sysv = shmat(id, NULL, 0);
  shmctl(id, IPC_RMID, NULL);  // destroyed once both processes detach
  if (sysv == (void*)-1) return 2;
  exchange("sysv", sysv);
  shmdt(sysv);
  return 0;
}
