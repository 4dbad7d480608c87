// What every process start asks and never blocks on, through the syscall
// buffer from glibc's own wrappers (docs/syscall-buffer.md "Per-process
// start-up calls"): getpid, the user and group id getters (`mov $NR,%eax;
// syscall; ret`, sites patched with the padding after the `ret`), the
// process-group getters, stat/lstat (raw, from inline sites) of files that
// exist and do not, getrusage, uname and times; in main, in threads and in
// a forked child; pipes closed at both ends. The traced getppid, gettid and
// getrandom go into the same hash. Each round folds the answers into a hash
// that is printed; a random nonce and the pids make the output differ
// natively, so a replay that did not hand back the recorded answers prints
// something else.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t fold(uint64_t h, uint64_t v) {
  return (h ^ v) * 0x100000001b3ull;
}

// stat and lstat as raw syscalls from sites shaped as glibc's wrappers
// (`mov $NR,%eax; syscall; cmp $-4096,%rax`): glibc's stat() makes
// newfstatat, while older binaries (make's) make these.
#define RAW_PATH_CALL(name, nr)                                            \
  static long name(const char* path, struct stat* st) {                    \
    long r;                                                                \
    __asm__ volatile("mov $" #nr ", %%eax\n\tsyscall\n\tcmp $-4096, %%rax" \
                     : "=a"(r)                                             \
                     : "D"(path), "S"(st)                                  \
                     : "rcx", "r11", "memory", "cc");                      \
    return r;                                                              \
  }
RAW_PATH_CALL(raw_stat, 4)
RAW_PATH_CALL(raw_lstat, 6)

static uint64_t round_of(const char* path, uint64_t h) {
  h = fold(h, (uint64_t)getuid());
  h = fold(h, (uint64_t)getgid());
  h = fold(h, (uint64_t)geteuid());
  h = fold(h, (uint64_t)getegid());
  h = fold(h, (uint64_t)getpid());
  h = fold(h, (uint64_t)getppid());
  h = fold(h, (uint64_t)gettid());
  h = fold(h, (uint64_t)getpgrp());
  h = fold(h, (uint64_t)getpgid(0));
  h = fold(h, (uint64_t)getsid(0));
  unsigned char random[24];
  h = fold(h, (uint64_t)getrandom(random, sizeof random, GRND_NONBLOCK));
  for (size_t i = 0; i < sizeof random; ++i) h = fold(h, random[i]);
  struct stat st;
  h = fold(h, (uint64_t)raw_stat(path, &st));
  h = fold(h, (uint64_t)st.st_ino ^ (uint64_t)st.st_size ^ (uint64_t)st.st_mtim.tv_nsec);
  h = fold(h, (uint64_t)raw_lstat("/proc/self/exe", &st));
  h = fold(h, (uint64_t)st.st_mode);
  // ENOENT through the buffer: the recorded error comes back
  h = fold(h, (uint64_t)raw_stat("/nonexistent/sysbuf_ids", &st));
  errno = 0;  // and glibc's stat (newfstatat) sets errno from it
  h = fold(h, (uint64_t)stat("/nonexistent/sysbuf_ids", &st));
  h = fold(h, (uint64_t)errno);
  struct rusage ru;
  h = fold(h, (uint64_t)getrusage(RUSAGE_SELF, &ru));
  h = fold(h, (uint64_t)ru.ru_utime.tv_usec ^ (uint64_t)ru.ru_minflt);
  struct utsname u;
  h = fold(h, (uint64_t)uname(&u));
  for (const char* c = u.release; *c; ++c) h = fold(h, (uint64_t)*c);
  struct tms t;
  h = fold(h, (uint64_t)times(&t));
  return h;
}

// Pipes opened and closed (a pipe's close never blocks: buffered, as make
// closes its jobs' pipe ends), a reader seeing EOF after the writer's close,
// here and across a fork.
static uint64_t pipes_of(int rounds, uint64_t h) {
  for (int i = 0; i < rounds; ++i) {
    int fds[2];
    if (pipe(fds) != 0) return 0;
    char byte = (char)('a' + i % 26), got[2] = {0, 0};
    h = fold(h, (uint64_t)write(fds[1], &byte, 1));
    h = fold(h, (uint64_t)close(fds[1]));
    h = fold(h, (uint64_t)read(fds[0], got, 2));
    h = fold(h, (uint64_t)got[0]);
    h = fold(h, (uint64_t)read(fds[0], got, 2));  // EOF: the only writer closed
    h = fold(h, (uint64_t)close(fds[0]));
  }
  int fds[2];
  if (pipe(fds) != 0) return 0;
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    char text[] = "from the child";
    write(fds[1], text, sizeof text);
    close(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  char got[64];
  ssize_t n, total = 0;
  while ((n = read(fds[0], got, sizeof got)) > 0) total += n;  // until the child's close
  h = fold(h, (uint64_t)total);
  close(fds[0]);
  waitpid(child, NULL, 0);
  return h;
}

struct Work {
  const char* path;
  int rounds;
  uint64_t hash;
};

static void* thread_main(void* arg) {
  struct Work* w = arg;
  for (int i = 0; i < w->rounds; ++i) w->hash = round_of(w->path, w->hash);
  return NULL;
}

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 20;
  uint64_t nonce = 0;
  if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce) return 2;
  printf("nonce %016llx pid %d\n", (unsigned long long)nonce, (int)getpid());
  uint64_t h = nonce;
  for (int i = 0; i < rounds; ++i) h = round_of(argv[0], h);
  printf("main %016llx\n", (unsigned long long)h);
  printf("pipes %016llx\n", (unsigned long long)pipes_of(rounds, nonce));
  struct Work works[2] = {{argv[0], rounds, 1}, {argv[0], rounds, 2}};
  // One at a time: a site is patched while no other thread of the process
  // runs user code (rec knows where each one stands), here main's join.
  for (int i = 0; i < 2; ++i) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, thread_main, &works[i]) != 0) return 3;
    pthread_join(thread, NULL);
    printf("thread %d %016llx\n", i + 1, (unsigned long long)works[i].hash);
  }
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return 4;
  if (child == 0) {
    uint64_t c = 3;
    for (int i = 0; i < rounds; ++i) c = round_of(argv[0], c);
    printf("child %016llx ppid ok %d\n", (unsigned long long)c, getppid() > 1);
    return 0;
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child) return 5;
  printf("child exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}
