// The README's demo: prints things that differ on every run (the time, the
// TSC, random bytes from getrandom and /dev/urandom, its pid). Under
// `rec replay` it prints exactly what it printed when recorded.
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

int main(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  char when[64];
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime(&now.tv_sec));
  printf("time:        %s.%09ld UTC\n", when, now.tv_nsec);
  printf("rdtsc:       %llu\n", (unsigned long long)__rdtsc());

  unsigned char bytes[16];
  if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) return 1;
  printf("getrandom:   ");
  for (size_t i = 0; i < sizeof bytes; ++i) printf("%02x", bytes[i]);
  printf("\n");

  int fd = open("/dev/urandom", O_RDONLY);
  if (fd < 0 || read(fd, bytes, sizeof bytes) != (ssize_t)sizeof bytes) return 1;
  close(fd);
  printf("/dev/urandom: ");
  for (size_t i = 0; i < sizeof bytes; ++i) printf("%02x", bytes[i]);
  printf("\n");
  printf("pid:         %d\n", (int)getpid());
  return 0;
}
