// Buffered brks before a preemption point, with the free pages nearest the
// point just above the heap (as in cc1, a large PIE: replay puts a point's
// trampoline in the free gap nearest its ip). Two processes take turns on
// rec's schedule; each round grows the heap with sbrk (brk, made through
// the syscall buffer: queued in replay, not made yet when replay looks for
// room for the trampoline), then computes (30 M iterations by default, ~30 ms) without a syscall, in
// code placed 4 MiB into the executable's text, past a jump over padding,
// so that the heap's gap is nearer than the one below the executable. rec
// interrupts one of them there: a point after buffered brks. Replay must
// not put the trampoline where those brks grow the heap.
// Output: a hash of the computation and heap contents, and a random nonce.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t spin(uint64_t seed, long iterations) {
  // jumped over: 4 MiB of padding before the loop
  __asm__ volatile("jmp 1f\n\t.skip 0x400000, 0xcc\n1:" ::: "memory");
  uint64_t x = seed;
  for (long i = 0; i < iterations; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
  return x;
}

static uint64_t run(uint64_t seed, int rounds, long iterations) {
  uint64_t h = seed;
  for (int r = 0; r < rounds; ++r) {
    const intptr_t grow = 64 * 4096;
    unsigned char* heap = sbrk(grow);
    if (heap == (void*)-1) return 0;
    heap[grow - 1] = (unsigned char)h;
    h = spin(h, iterations) ^ heap[grow - 1];
    if (r % 2 && sbrk(-grow) == (void*)-1) return 0;
  }
  return h;
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 8;
  long iterations = argc > 2 ? atol(argv[2]) : 30000000;
  uint64_t nonce = 0;
  getrandom(&nonce, sizeof nonce, 0);
  printf("nonce %016llx\n", (unsigned long long)nonce);
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return 2;
  uint64_t h = run(child ? 1 : 2, rounds, iterations);
  if (child == 0) {
    printf("child %016llx\n", (unsigned long long)h);
    return 0;
  }
  int status = 0;
  waitpid(child, &status, 0);
  printf("parent %016llx, child status %d\n", (unsigned long long)h, status);
  return 0;
}
