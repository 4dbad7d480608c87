// Reads the clock through the vDSO the way programs do, in every situation
// rec's time shim (tracee/time_shim.h) must get right: thousands of calls in
// a row, every vDSO function, a bad pointer, a fork's child, a signal
// handler that reads the clock while it interrupts clock reads, and a second
// thread (after which the shim is off). Every line differs between native
// runs.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t mix(uint64_t h, const struct timespec* ts) {
  h ^= (uint64_t)ts->tv_sec * 1000000007u + (uint64_t)ts->tv_nsec;
  return h * 0x100000001b3ull;
}

static uint64_t read_clocks(int n, const char* label) {
  uint64_t h = 1469598103934665603ull;
  struct timespec ts;
  for (int i = 0; i < n; i++) {
    clock_gettime(i % 3 ? CLOCK_MONOTONIC : CLOCK_REALTIME, &ts);
    h = mix(h, &ts);
  }
  printf("%s %d reads hash %016llx last %lld.%09ld\n", label, n, (unsigned long long)h,
         (long long)ts.tv_sec, ts.tv_nsec);
  return h;
}

static volatile sig_atomic_t ticks;
static struct timespec in_handler;

static void on_alarm(int sig) {
  (void)sig;
  clock_gettime(CLOCK_MONOTONIC, &in_handler);
  ticks = ticks + 1;
}

static void* thread_main(void* arg) {
  (void)arg;
  read_clocks(500, "thread");
  return NULL;
}

int main(void) {
  printf("vdso %s\n", getauxval(AT_SYSINFO_EHDR) ? "present" : "absent");
  read_clocks(3000, "main");

  struct timeval tv;
  gettimeofday(&tv, NULL);
  printf("gettimeofday %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
  time_t t = 0;
  time_t r = time(&t);
  printf("time %lld %s\n", (long long)r, r == t ? "stored" : "differs");
  unsigned cpu = 99, node = 99;
  int got = getcpu(&cpu, &node);
  printf("getcpu %d cpu %u node %u\n", got, cpu, node);
  struct timespec res;
  clock_getres(CLOCK_MONOTONIC, &res);
  printf("clock_getres %ld\n", res.tv_nsec);
  // A per-process clock goes to the kernel, in order with the shim's answers.
  struct timespec cpu_time;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_time);
  printf("cputime %lld.%09ld\n", (long long)cpu_time.tv_sec, cpu_time.tv_nsec);
  // An invalid clock: the error comes back the same way.
  struct timespec bad;
  printf("bad clock %d\n", clock_gettime(12345, &bad));

  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    read_clocks(700, "child");
    fflush(stdout);
    _exit(0);
  }
  int status;
  waitpid(child, &status, 0);
  read_clocks(300, "after fork");

  // Clock reads interrupted by a timer whose handler reads the clock too.
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 2000}, {0, 2000}};
  setitimer(ITIMER_REAL, &it, NULL);
  uint64_t reads = 0;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  do {
    clock_gettime(CLOCK_MONOTONIC, &now);
    reads++;
  } while (ticks < 5 && now.tv_sec - start.tv_sec < 10);
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  printf("ticks %d after %llu reads, handler read %lld.%09ld\n", (int)ticks,
         (unsigned long long)reads, (long long)in_handler.tv_sec, in_handler.tv_nsec);

  pthread_t thread;
  pthread_create(&thread, NULL, thread_main, NULL);
  read_clocks(500, "beside thread");
  pthread_join(thread, NULL);
  read_clocks(100, "end");
  return 0;
}
