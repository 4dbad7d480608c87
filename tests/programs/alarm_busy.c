// A SIGALRM handler samples a counter every 20 ms while the main code
// busy-loops with no syscalls. The samples differ on every native run; a
// replay must deliver each signal at the very same instruction to print the
// same ones. `alarm_busy USEC` samples every USEC microseconds instead: a
// timer faster than rec's walk to a point lands signals during the walk.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

enum { kSamples = 25 };
static volatile unsigned long counter;
static volatile unsigned long samples[kSamples];
static volatile int taken;

static void onAlarm(int sig) {
  (void)sig;
  if (taken < kSamples) samples[taken++] = counter;
}

int main(int argc, char** argv) {
  long usec = argc > 1 ? atol(argv[1]) : 20000;
  struct sigaction sa = {0};
  sa.sa_handler = onAlarm;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval every = {{0, usec}, {0, usec}};
  setitimer(ITIMER_REAL, &every, NULL);
  while (taken < kSamples) counter++;  // no syscalls in here
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  for (int i = 0; i < kSamples; ++i) printf("sample %d: %lu\n", i, samples[i]);
  return 0;
}
