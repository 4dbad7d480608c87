// Issue 4: a process tree exercising fork, vfork, posix_spawn and execve
// chains, wait4/waitid statuses, a child killed by a signal, a child that
// crashes, a signal between processes, process groups and sessions, and an
// orphan re-parented to init (or a subreaper). Output order is fixed by
// waiting and pipes, so it is deterministic apart from the values.
// Internal modes (used when re-executing itself): spawned, exec-chain N.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;
static volatile sig_atomic_t sigchld_count;
static volatile pid_t usr1_from;

static unsigned int rnd(void) {
  unsigned int r = 0;
  getrandom(&r, sizeof r, 0);
  return r;
}

static void report(const char* what, pid_t pid, int status) {
  if (WIFEXITED(status))
    printf("%s: pid %d exited %d\n", what, (int)pid, WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    printf("%s: pid %d killed by signal %d\n", what, (int)pid, WTERMSIG(status));
  else
    printf("%s: pid %d status %#x\n", what, (int)pid, status);
  fflush(stdout);
}

static void on_sigchld(int sig) {
  (void)sig;
  sigchld_count++;
}
static void on_usr1(int sig, siginfo_t* si, void* ctx) {
  (void)sig;
  (void)ctx;
  usr1_from = si->si_pid;
}

int main(int argc, char** argv) {
  if (argc >= 2 && !strcmp(argv[1], "spawned")) {
    printf("spawned pid %d ppid %d random %08x\n", (int)getpid(), (int)getppid(), rnd());
    return 9;
  }
  if (argc >= 3 && !strcmp(argv[1], "exec-chain")) {
    int n = atoi(argv[2]);
    printf("exec-chain %d pid %d random %08x\n", n, (int)getpid(), rnd());
    fflush(stdout);
    if (n <= 0) return 11;
    char next[16];
    snprintf(next, sizeof next, "%d", n - 1);
    char* args[] = {argv[0], "exec-chain", next, NULL};
    execve("/proc/self/exe", args, environ);
    return 12;
  }

  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  printf("root pid %d time %lld.%09ld\n", (int)getpid(), (long long)ts.tv_sec, ts.tv_nsec);
  fflush(stdout);
  signal(SIGCHLD, on_sigchld);
  int status;
  struct rusage ru;

  // 1. fork + exit, reaped with wait4 (rusage included).
  pid_t p = fork();
  if (p == 0) {
    printf("fork child pid %d ppid %d random %08x\n", (int)getpid(), (int)getppid(), rnd());
    fflush(stdout);
    _exit(3);
  }
  pid_t w = wait4(p, &status, 0, &ru);
  report("fork", w, status);
  printf("fork child rusage maxrss %ld utime %ld.%06ld\n", ru.ru_maxrss, (long)ru.ru_utime.tv_sec,
         (long)ru.ru_utime.tv_usec);

  // 2. vfork + _exit.
  p = vfork();
  if (p == 0) _exit(5);
  waitpid(p, &status, 0);
  report("vfork", p, status);

  // 3. posix_spawn of this program.
  char* spawn_args[] = {argv[0], "spawned", NULL};
  if (posix_spawn(&p, "/proc/self/exe", NULL, NULL, spawn_args, environ) != 0) return 2;
  waitpid(p, &status, 0);
  report("posix_spawn", p, status);

  // 4. fork + execve chain of three execs, reaped with waitid.
  p = fork();
  if (p == 0) {
    char* args[] = {argv[0], "exec-chain", "2", NULL};
    execve("/proc/self/exe", args, environ);
    _exit(127);
  }
  siginfo_t si;
  memset(&si, 0, sizeof si);
  waitid(P_PID, (id_t)p, &si, WEXITED);
  printf("waitid: pid %d code %d status %d\n", (int)si.si_pid, si.si_code, si.si_status);

  // 5. A child killed by SIGTERM while it sleeps.
  int ready[2];
  if (pipe(ready) != 0) return 2;
  p = fork();
  if (p == 0) {
    close(ready[0]);
    if (write(ready[1], "r", 1) != 1) _exit(1);
    for (int i = 0; i < 100; i++) pause();
    _exit(1);
  }
  close(ready[1]);
  char c;
  if (read(ready[0], &c, 1) != 1) return 2;
  close(ready[0]);
  kill(p, SIGTERM);
  waitpid(p, &status, 0);
  report("killed", p, status);

  // 6. A child that crashes with SIGSEGV.
  p = fork();
  if (p == 0) {
    signal(SIGSEGV, SIG_DFL);
    *(volatile int*)(uintptr_t)0x8 = 1;
    _exit(1);
  }
  waitpid(p, &status, 0);
  report("crashed", p, status);

  // 7. A signal between processes: the child waits for SIGUSR1 from the
  //    parent and reports who sent it; it also makes its own process group
  //    and then a new session.
  if (pipe(ready) != 0) return 2;
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigprocmask(SIG_BLOCK, &block, &old);
  p = fork();
  if (p == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    close(ready[0]);
    pid_t sid = setsid();
    printf("setsid child: sid %d pgrp %d is_self %d\n", (int)sid, (int)getpgrp(), sid == getpid());
    fflush(stdout);
    if (write(ready[1], "r", 1) != 1) _exit(1);
    while (!usr1_from) sigsuspend(&old);
    printf("child got SIGUSR1 from %d (parent %d)\n", (int)usr1_from, (int)getppid());
    fflush(stdout);
    _exit(12);
  }
  close(ready[1]);
  if (read(ready[0], &c, 1) != 1) return 2;
  close(ready[0]);
  sigprocmask(SIG_SETMASK, &old, NULL);
  kill(p, SIGUSR1);
  waitpid(p, &status, 0);
  report("signalled", p, status);

  // 8. An orphan: A forks B and exits; B waits until it is re-parented,
  //    prints its new parent and then closes the pipe the root waits on.
  if (pipe(ready) != 0) return 2;
  p = fork();
  if (p == 0) {
    pid_t a = getpid();
    pid_t b = fork();
    if (b == 0) {
      close(ready[0]);
      int i = 0;
      while (getppid() == a && i < 2000) {  // bounded: at most ~2 s
        usleep(1000);
        i++;
      }
      printf("orphan pid %d reparented %s to %d\n", (int)getpid(), getppid() != a ? "yes" : "no",
             (int)getppid());
      fflush(stdout);
      _exit(0);
    }
    _exit(0);
  }
  close(ready[1]);
  waitpid(p, &status, 0);
  while (read(ready[0], &c, 1) > 0) {  // EOF once the orphan has exited
  }
  close(ready[0]);
  report("orphan's parent", p, status);

  // Zombie: a child that exits while the parent sleeps, then is reaped.
  p = fork();
  if (p == 0) _exit(21);
  usleep(20000);
  char path[64], state[256] = "";
  snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
  FILE* f = fopen(path, "r");
  if (f) {
    if (!fgets(state, sizeof state, f)) state[0] = 0;
    fclose(f);
  }
  char* paren = strrchr(state, ')');
  printf("zombie state %c\n", paren && paren[1] ? paren[2] : '?');
  waitpid(p, &status, 0);
  report("zombie", p, status);

  while (waitpid(-1, &status, WNOHANG) > 0) {
  }
  printf("no more children: %s\n",
         waitpid(-1, &status, WNOHANG) < 0 && errno == ECHILD ? "yes" : "no");
  printf("sigchld count %d random %08x\n", (int)sigchld_count, rnd());
  return 0;
}
