// Workload of bench/reverse.sh: about 5 s of mixed syscalls and computation
// (rounds of short arithmetic stretches, each followed by a write and a
// getppid), for timing reverse execution in the debugger. Usage:
// reverse_target [ROUNDS] (default 100, ~50 ms each). Its result depends on
// the clock and the pid, so every run differs.
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

uint64_t total;       // the watched variable: every stretch adds to it
uint64_t last_round;  // written once per round

__attribute__((noinline)) uint64_t crunch(uint64_t x, int n) {
  for (int i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

__attribute__((noinline)) void round_done(int round, uint64_t value) {
  last_round = value + (uint64_t)round;
}

__attribute__((noinline)) void report(void) {
  printf("total %llu last %llu\n", (unsigned long long)total, (unsigned long long)last_round);
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 100;
  int fd = open("/dev/null", O_WRONLY);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  for (int round = 0; round < rounds; round++) {
    for (int k = 0; k < 20; k++) {
      uint64_t v = crunch(seed + (uint64_t)k, 1150000);  // ~2.5 ms
      total += v & 0xff;  // BENCH:add
      char line[64];
      int len = snprintf(line, sizeof line, "%d %d %llu\n", round, k, (unsigned long long)v);
      if (write(fd, line, (size_t)len) != len) return 1;
      seed = v ^ (uint64_t)getppid();
    }
    round_done(round, total);
  }
  report();
  return 0;
}
