// Usage: signals MODE
// One signal scenario per mode; each prints values that differ between native
// runs (time, random bytes) and ends with a well-defined status:
//   segv-handler  SIGSEGV caught, siglongjmp out of the handler
//   segv-crash    SIGSEGV, no handler: dies (status 139 under rec)
//   fpe           SIGFPE (integer division by zero) caught
//   fpe-crash     SIGFPE, no handler: dies (136)
//   ill           SIGILL (ud2) caught
//   trap          SIGTRAP (int3) caught
//   bus           SIGBUS (touching a mapping beyond the end of a memfd) caught
//   abort         abort(): dies with SIGABRT (134)
//   raise-usr1    raise(SIGUSR1) with a handler
//   sigpipe       write to a pipe whose read end is closed: dies (141)
//   sigpipe-ign   the same with SIGPIPE ignored: write fails with EPIPE
//   alarm-eintr   alarm(1) interrupts a blocking read (no SA_RESTART): EINTR
//   alarm-restart alarm(1) with SA_RESTART; the handler writes to the pipe so
//                 the restarted read returns that byte
//   itimer        setitimer(ITIMER_REAL, 10 ms) during ~50 nanosleep(1 ms)
//   posix-timer   timer_create(CLOCK_MONOTONIC, SIGEV_SIGNAL), 5 ms period
//   kill-self     kill(getpid(), SIGUSR2) with an SA_SIGINFO handler
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static sigjmp_buf jump;
static volatile sig_atomic_t handled;
static volatile int last_signo, last_code;
static void* volatile last_addr;
static volatile pid_t last_pid;
static volatile uid_t last_uid;
static int pipe_fds[2];

// Prints a line that differs on every run (random bytes and the time).
static void print_random(const char* label) {
  unsigned int r = 0;
  getrandom(&r, sizeof r, 0);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  printf("%s random %08x time %lld.%09ld\n", label, r, (long long)ts.tv_sec, ts.tv_nsec);
  fflush(stdout);
}

static void fault_handler(int sig, siginfo_t* si, void* ctx) {
  (void)ctx;
  last_signo = sig;
  last_code = si->si_code;
  last_addr = si->si_addr;
  handled++;
  siglongjmp(jump, 1);
}

static void info_handler(int sig, siginfo_t* si, void* ctx) {
  (void)ctx;
  last_signo = sig;
  last_code = si->si_code;
  last_pid = si->si_pid;
  last_uid = si->si_uid;
  handled++;
}

static void count_handler(int sig) {
  (void)sig;
  handled++;
}

static void write_handler(int sig) {
  (void)sig;
  handled++;
  char c = 'R';
  if (write(pipe_fds[1], &c, 1) != 1) _exit(90);
}

static void install(int sig, void (*h)(int, siginfo_t*, void*), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = h;
  sa.sa_flags = SA_SIGINFO | flags;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) != 0) _exit(91);
}

static void install_plain(int sig, void (*h)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) != 0) _exit(91);
}

// Runs `fault` with a handler for `sig`; prints what the handler saw.
static int caught_fault(int sig, void (*fault)(void)) {
  install(sig, fault_handler, SA_NODEFER);
  print_random("before");
  if (sigsetjmp(jump, 1) == 0) {
    fault();
    printf("fault did not happen\n");
    return 1;
  }
  printf("caught signal %d code %d addr %p handled %d\n", last_signo, last_code, last_addr,
         (int)handled);
  print_random("after");
  return 0;
}

static void do_segv(void) {
  *(volatile int*)(uintptr_t)0x10 = 1;
}
static volatile int zero = 0;
static void do_fpe(void) {
  volatile int x = 7 / zero;
  (void)x;
}
static void do_ill(void) {
  __asm__ volatile("ud2");
}
static void do_trap(void) {
  __asm__ volatile("int3");
}
static void do_bus(void) {
  int fd = memfd_create("bus", 0);  // size 0: any access to the mapping is SIGBUS
  volatile char* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) _exit(92);
  p[0] = 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: signals MODE\n");
    return 64;
  }
  const char* mode = argv[1];

  if (!strcmp(mode, "segv-handler")) return caught_fault(SIGSEGV, do_segv);
  if (!strcmp(mode, "fpe")) return caught_fault(SIGFPE, do_fpe);
  if (!strcmp(mode, "ill")) return caught_fault(SIGILL, do_ill);
  if (!strcmp(mode, "trap")) return caught_fault(SIGTRAP, do_trap);
  if (!strcmp(mode, "bus")) return caught_fault(SIGBUS, do_bus);

  if (!strcmp(mode, "segv-crash")) {
    print_random("about to crash");
    do_segv();
    return 1;
  }
  if (!strcmp(mode, "fpe-crash")) {
    print_random("about to divide by zero");
    do_fpe();
    return 1;
  }
  if (!strcmp(mode, "abort")) {
    print_random("about to abort");
    fprintf(stderr, "aborting now\n");
    abort();
  }
  if (!strcmp(mode, "raise-usr1")) {
    install(SIGUSR1, info_handler, 0);
    print_random("before");
    raise(SIGUSR1);
    printf("handled %d signo %d code %d pid_matches %d\n", (int)handled, last_signo, last_code,
           last_pid == getpid());
    print_random("after");
    return 0;
  }
  if (!strcmp(mode, "sigpipe") || !strcmp(mode, "sigpipe-ign")) {
    int ignore = !strcmp(mode, "sigpipe-ign");
    if (ignore) signal(SIGPIPE, SIG_IGN);
    if (pipe(pipe_fds) != 0) return 2;
    close(pipe_fds[0]);
    print_random("writing to a broken pipe");
    ssize_t n = write(pipe_fds[1], "x", 1);
    printf("write returned %zd errno %d (%s)\n", n, errno, strerror(errno));
    print_random("survived");
    return ignore ? 0 : 1;
  }
  if (!strcmp(mode, "alarm-eintr") || !strcmp(mode, "alarm-restart")) {
    int restart = !strcmp(mode, "alarm-restart");
    if (pipe(pipe_fds) != 0) return 2;
    install_plain(SIGALRM, restart ? write_handler : count_handler, restart ? SA_RESTART : 0);
    print_random("blocking in read");
    double t0 = now();
    alarm(1);
    char c = 0;
    ssize_t n = read(pipe_fds[0], &c, 1);
    int err = errno;
    double waited = now() - t0;
    printf("read returned %zd errno %d char %c handled %d waited %.6f\n", n, n < 0 ? err : 0,
           n == 1 ? c : '-', (int)handled, waited);
    print_random("after");
    return 0;
  }
  if (!strcmp(mode, "itimer")) {
    install_plain(SIGALRM, count_handler, 0);
    struct itimerval it = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_REAL, &it, NULL);
    int interrupted = 0;
    double t0 = now();
    for (int i = 0; i < 50; i++) {
      struct timespec req = {0, 1000000};
      if (nanosleep(&req, NULL) != 0 && errno == EINTR) interrupted++;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("itimer handled %d interrupted %d elapsed %.6f\n", (int)handled, interrupted,
           now() - t0);
    print_random("after");
    return 0;
  }
  if (!strcmp(mode, "posix-timer")) {
    install_plain(SIGRTMIN, count_handler, 0);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) return 2;
    struct itimerspec its = {{0, 5000000}, {0, 5000000}};
    timer_settime(timer, 0, &its, NULL);
    double t0 = now();
    int rounds = 0;
    while (handled < 5 && rounds < 1000) {  // bounded: at most ~1 s
      struct timespec req = {0, 1000000};
      nanosleep(&req, NULL);
      rounds++;
    }
    int overrun = timer_getoverrun(timer);
    timer_delete(timer);
    printf("posix timer handled %d rounds %d overrun %d elapsed %.6f\n", (int)handled, rounds,
           overrun, now() - t0);
    print_random("after");
    return 0;
  }
  if (!strcmp(mode, "kill-self")) {
    install(SIGUSR2, info_handler, 0);
    print_random("before");
    kill(getpid(), SIGUSR2);
    printf("handled %d signo %d si_code %d si_pid %d (self %d) si_uid %d\n", (int)handled,
           last_signo, last_code, (int)last_pid, (int)getpid(), (int)last_uid);
    print_random("after");
    return 0;
  }
  fprintf(stderr, "signals: unknown mode %s\n", mode);
  return 64;
}
