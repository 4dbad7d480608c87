// Futex waits through the syscall buffer under the desched event
// (docs/syscall-buffer.md "Blocking", REC_SYSBUF_BLOCKING=auto): waits that
// return at once (EAGAIN: the word changed; ETIMEDOUT: a timeout already
// past) are buffered; waits that block are interrupted by the event's
// signal and made again traced. Raw calls from inline sites shaped as
// glibc's, which rec patches. What is printed depends on random values and
// on the timer's signals: it differs on every native run, and a replay
// must print it again.
//
// Usage: sysbuf_desched MODE N
//   eagain    N waits on a word that changed, by two threads, plain and
//             BITSET, with and without a (relative or absolute) timeout
//   pingpong  two threads pass a token N times (each wait blocks)
//   signals   eagain and pingpong under a 1 ms timer whose handler runs
//             while waits are buffered or blocked
//   masked    SIGPWR (the event's signal) blocked, then eagain: traced
//   fork      a fork's child does pingpong and eagain with its own threads
//   exits     N threads one after another, each waiting and exiting
//   closefds  eagain on word A, then every fd from 3 up closed
//             (close_range) or overwritten (dup2), then eagain on word B
//             (the buffer must not use the event's fd any more)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// An inline call site as glibc's (`mov $nr,%eax; syscall; cmp $-4096,%rax`).
static long futex4(_Atomic uint32_t* addr, long op, uint32_t val, const struct timespec* ts,
                   uint32_t bitset) {
  long result;
  register long r10 __asm__("r10") = (long)ts;
  register long r8 __asm__("r8") = 0;
  register long r9 __asm__("r9") = bitset;
  __asm__ volatile("mov $202, %%eax\n\tsyscall\n\tcmp $-4096, %%rax"
                   : "=a"(result)
                   : "D"(addr), "S"(op), "d"(val), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory", "cc");
  return result;
}

static uint64_t mix(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ull;
  return h;
}

static uint64_t seed;
static _Atomic uint32_t word_a, word_b, token_word;
static volatile sig_atomic_t alarms;

// N waits that return at once: the word never holds the expected value,
// or the timeout is over already. Returns a hash of the results.
static uint64_t eagain(_Atomic uint32_t* word, long n, uint64_t h) {
  struct timespec rel = {0, 0};  // a relative timeout of 0: ETIMEDOUT or EAGAIN
  for (long i = 0; i < n; ++i) {
    uint32_t v = *word;
    long r;
    switch (i % 4) {
      case 0: r = futex4(word, FUTEX_WAIT_PRIVATE, v + 1, NULL, 0); break;
      case 1: r = futex4(word, FUTEX_WAIT, v + 7, NULL, 0); break;
      case 2: r = futex4(word, FUTEX_WAIT_BITSET_PRIVATE, v + 3, NULL, 0xffffffff); break;
      default: r = futex4(word, FUTEX_WAIT_PRIVATE, v ^ 1, &rel, 0); break;
    }
    h = mix(h, (uint64_t)r ^ (seed + (uint64_t)i));
    *word = v + (uint32_t)(seed >> (i % 32)) + 1;
  }
  return h;
}

// Ping-pong through token_word: each side waits until it is its turn.
static uint64_t token;
static long rounds;

static void wait_turn(uint32_t mine) {
  struct timespec ten_s = {10, 0};
  struct timespec abs;
  clock_gettime(CLOCK_MONOTONIC, &abs);
  abs.tv_sec += 10;
  int i = 0;
  while (token_word != mine) {
    uint32_t v = token_word;
    if (v == mine) break;
    if (++i % 2)
      futex4(&token_word, FUTEX_WAIT_PRIVATE, v, &ten_s, 0);
    else
      futex4(&token_word, FUTEX_WAIT_BITSET_PRIVATE, v, &abs, 0xffffffff);
  }
}

static void* pong(void* arg) {
  (void)arg;
  for (long i = 0; i < rounds; ++i) {
    wait_turn(1);
    token = token * 31 + 7;
    token_word = 0;
    futex4(&token_word, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
  }
  return NULL;
}

static uint64_t pingpong(long n) {
  rounds = n;
  token = seed;
  token_word = 0;
  pthread_t p;
  pthread_create(&p, NULL, pong, NULL);
  for (long i = 0; i < n; ++i) {
    token = token * 17 + 3;
    token_word = 1;
    futex4(&token_word, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
    wait_turn(0);
  }
  pthread_join(p, NULL);
  return token;
}

static void* eagain_thread(void* arg) {
  long n = (long)(intptr_t)arg;
  static uint64_t h;
  h = eagain(&word_b, n, seed ^ 0x55);
  return &h;
}

static void on_alarm(int sig) {
  (void)sig;
  ++alarms;
}

static uint64_t threads_exiting(long n) {
  uint64_t h = seed;
  for (long i = 0; i < n; ++i) {
    pthread_t t;
    pthread_create(&t, NULL, eagain_thread, (void*)(intptr_t)8);
    void* r;
    pthread_join(t, &r);
    h = mix(h, *(uint64_t*)r);
    word_a = (uint32_t)h;  // a wait on a word that changes
    h = mix(h, (uint64_t)futex4(&word_a, FUTEX_WAIT_PRIVATE, (uint32_t)h + 1, NULL, 0));
  }
  return h;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: sysbuf_desched MODE N\n");
    return 64;
  }
  const char* mode = argv[1];
  long n = atol(argv[2]);
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) return 1;
  word_a = (uint32_t)seed;
  word_b = (uint32_t)(seed >> 32);
  if (!strcmp(mode, "eagain")) {
    pthread_t t;
    pthread_create(&t, NULL, eagain_thread, (void*)(intptr_t)n);
    uint64_t h = eagain(&word_a, n, seed);
    void* r;
    pthread_join(t, &r);
    printf("eagain %ld %016llx %016llx\n", n, (unsigned long long)h,
           (unsigned long long)*(uint64_t*)r);
  } else if (!strcmp(mode, "pingpong")) {
    printf("pingpong %ld token %016llx\n", n, (unsigned long long)pingpong(n));
  } else if (!strcmp(mode, "signals")) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    uint64_t h = seed;
    for (int k = 0; k < 5; ++k) {
      h = eagain(&word_a, n, h);
      h = mix(h, pingpong(n / 10));
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("signals %ld %016llx alarms %s\n", n, (unsigned long long)h,
           alarms > 0 ? "some" : "none");
    printf("alarm count %d\n", (int)alarms);
  } else if (!strcmp(mode, "masked")) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPWR);
    sigprocmask(SIG_BLOCK, &set, NULL);
    printf("masked %ld %016llx\n", n, (unsigned long long)eagain(&word_a, n, seed));
  } else if (!strcmp(mode, "fork")) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
      seed = seed * 6364136223846793005ull + 1;
      uint64_t h = eagain(&word_a, n, seed);
      h = mix(h, pingpong(n / 4));
      printf("child %ld %016llx\n", n, (unsigned long long)h);
      return 0;
    }
    uint64_t h = eagain(&word_b, n, seed);
    int status = 0;
    waitpid(child, &status, 0);
    printf("parent %ld %016llx child status %d\n", n, (unsigned long long)h, status);
  } else if (!strcmp(mode, "exits")) {
    printf("exits %ld %016llx\n", n, (unsigned long long)threads_exiting(n));
  } else if (!strcmp(mode, "closefds")) {
    printf("words %p %p\n", (void*)&word_a, (void*)&word_b);
    uint64_t h = eagain(&word_a, n, seed);
    fflush(stdout);
    int p[2];
    if (pipe(p) != 0) return 1;
    for (int fd = 256; fd < 1024; ++fd)
      if (fd != p[0] && fd != p[1]) dup2(p[0], fd);  // over the event's fd, wherever it is
    h = eagain(&word_b, n / 2, h);
    syscall(SYS_close_range, 3, ~0u, 0);
    h = eagain(&word_b, n / 2, h);
    printf("closefds %ld %016llx\n", n, (unsigned long long)h);
  } else {
    fprintf(stderr, "sysbuf_desched: unknown mode %s\n", mode);
    return 64;
  }
  return 0;
}
