// Reads all of stdin and prints its length, an FNV-1a checksum, whether stdin
// is a terminal, and a timestamp. Replay must print the same without stdin.
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  unsigned char buf[8192];
  uint64_t hash = 1469598103934665603ull, total = 0;
  uint64_t reads = 0;
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0) return 2;
    if (n == 0) break;
    reads++;
    for (ssize_t i = 0; i < n; i++) hash = (hash ^ buf[i]) * 1099511628211ull;
    total += (uint64_t)n;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  printf("length %llu checksum %016llx isatty %d reads %llu\n", (unsigned long long)total,
         (unsigned long long)hash, isatty(0), (unsigned long long)reads);
  printf("time %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
  return 0;
}
