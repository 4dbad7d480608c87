// A SIGALRM handler samples a counter every 20 ms while the main code
// busy-loops with no syscalls. The samples differ on every native run; a
// replay must deliver each signal at the very same instruction to print the
// same ones.
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>

enum { kSamples = 25 };
static volatile unsigned long counter;
static volatile unsigned long samples[kSamples];
static volatile int taken;

static void onAlarm(int sig) {
  (void)sig;
  if (taken < kSamples) samples[taken++] = counter;
}

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = onAlarm;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval every = {{0, 20000}, {0, 20000}};
  setitimer(ITIMER_REAL, &every, NULL);
  while (taken < kSamples) counter++;  // no syscalls in here
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  for (int i = 0; i < kSamples; ++i) printf("sample %d: %lu\n", i, samples[i]);
  return 0;
}
