// RDTSC and RDTSCP in a loop, at sites rec patches into a jump to its time
// shim (docs/syscall-buffer.md "RDTSC without a stop"): in the main
// process, in threads (the shim is off there: every read traps), and in a
// forked child (its own log from its first trapped read on). Each read's
// value steers control flow and goes into a digest; values differ on every
// run. Checks that each task's values only go up.
//   rdtsc_loop [N]   N reads per loop (default 2000)
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

static int rounds = 2000;

// The compiler's own pattern (rdtsc; shl $32,%rdx; or %rdx,%rax), as in
// glibc's HP_TIMING: 2 + 4 bytes, a site rec can patch.
__attribute__((noinline)) static uint64_t read_tsc(void) {
  return __rdtsc();
}

__attribute__((noinline)) static uint64_t read_tscp(unsigned* aux) {
  return __rdtscp(aux);
}

// rdtsc leaves the flags alone: CF set (or clear) before it is still so
// after (the site is rdtsc + a 3-byte lea: patchable).
__attribute__((noinline)) static int carry_kept(int carry) {
  unsigned char after;
  uint64_t lo, hi;
  if (carry)
    asm volatile("stc\n\trdtsc\n\tlea (%%rax), %0\n\tsetc %2" : "=r"(lo), "=d"(hi), "=q"(after) : : "rax");
  else
    asm volatile("clc\n\trdtsc\n\tlea (%%rax), %0\n\tsetc %2" : "=r"(lo), "=d"(hi), "=q"(after) : : "rax");
  (void)lo;
  (void)hi;
  return after == carry;
}

struct result {
  uint64_t first, digest;
  unsigned odd, backwards;
};

static void loop(struct result* r) {
  uint64_t last = 0;
  r->digest = 1469598103934665603ull;
  r->odd = r->backwards = 0;
  for (int i = 0; i < rounds; ++i) {
    unsigned aux = 0;
    uint64_t now = (i % 3 == 2) ? read_tscp(&aux) : read_tsc();
    if (i == 0) r->first = now;
    if (now <= last) ++r->backwards;
    if (now & 1) ++r->odd;  // control flow that depends on the counter
    r->digest = (r->digest ^ now ^ aux) * 1099511628211ull;
    last = now;
  }
}

static void* thread_main(void* arg) {
  loop(arg);
  return NULL;
}

static void report(const char* who, const struct result* r) {
  printf("%s first %llu odd %u digest %016llx backwards %u\n", who, (unsigned long long)r->first,
         r->odd, (unsigned long long)r->digest, r->backwards);
}

int main(int argc, char** argv) {
  if (argc > 1) rounds = atoi(argv[1]);
  int kept = 0;
  for (int i = 0; i < 100; ++i) kept += carry_kept(i & 1);
  printf("flags kept %d/100\n", kept);
  struct result main_result;
  loop(&main_result);
  report("main", &main_result);
  fflush(stdout);

  pid_t child = fork();
  if (child == 0) {
    struct result r;
    loop(&r);
    report("child", &r);
    fflush(stdout);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);

  pthread_t threads[2];
  struct result results[2];
  for (int i = 0; i < 2; ++i) pthread_create(&threads[i], NULL, thread_main, &results[i]);
  for (int i = 0; i < 2; ++i) pthread_join(threads[i], NULL);
  for (int i = 0; i < 2; ++i) report(i ? "thread 2" : "thread 1", &results[i]);
  struct result after;
  loop(&after);
  report("after", &after);
  printf("child status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}
