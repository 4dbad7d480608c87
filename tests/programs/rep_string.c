// A SIGALRM handler samples the progress of REP STOS and REP MOVS
// instructions (each a single instruction that runs for many microseconds)
// while the main code does nothing else. Signals and preemptions land in
// the middle of those instructions, where the CPU is between iterations;
// the samples differ on every native run and a replay must reproduce them.
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

enum { kSamples = 20, kBytes = 8 << 20 };
static volatile uint64_t rounds;
static uint64_t samples[kSamples];
static volatile int taken;
static unsigned char* a;
static unsigned char* b;

static void onAlarm(int sig) {
  (void)sig;
  // Which byte the interrupted instruction had reached shows in the buffers.
  if (taken < kSamples) samples[taken++] = rounds * 1000003 + a[kBytes / 2] * 31 + b[kBytes - 1];
}

static void repStos(void* dst, unsigned char value, size_t n) {
  __asm__ volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(value) : "memory");
}

static void repMovs(void* dst, const void* src, size_t n) {
  __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

int main(void) {
  a = malloc(kBytes);
  b = malloc(kBytes);
  struct sigaction sa = {0};
  sa.sa_handler = onAlarm;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval every = {{0, 7000}, {0, 7000}};
  setitimer(ITIMER_REAL, &every, NULL);
  while (taken < kSamples) {
    repStos(a, (unsigned char)rounds, kBytes);
    repMovs(b, a, kBytes);
    rounds++;
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  for (int i = 0; i < kSamples; ++i) printf("sample %d: %llu\n", i, (unsigned long long)samples[i]);
  return 0;
}
