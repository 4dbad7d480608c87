// Prints every time source and every source of randomness and identity a
// single process can observe. Each line differs on every native run, so a
// replay that merely re-ran the program would print something else.
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

static uint64_t rdtscp(uint32_t* aux) {
  uint32_t lo, hi, c;
  __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(c));
  *aux = c;
  return ((uint64_t)hi << 32) | lo;
}

static void hex(const char* label, const unsigned char* p, size_t n) {
  printf("%s ", label);
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
  printf("\n");
}

int main(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);  // vDSO
  printf("realtime %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO
  printf("monotonic %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
  clock_gettime(CLOCK_BOOTTIME, &ts);  // vDSO
  printf("boottime %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);  // real syscall
  printf("cputime %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
  struct timeval tv;
  gettimeofday(&tv, NULL);  // vDSO
  printf("gettimeofday %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
  printf("time %lld\n", (long long)time(NULL));  // vDSO
  printf("getcpu %d\n", sched_getcpu());         // vDSO
  // Raw syscall, bypassing the vDSO.
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  printf("sys_monotonic %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);

  uint32_t aux = 0;
  uint64_t t1 = rdtsc();
  uint64_t t2 = rdtscp(&aux);
  printf("rdtsc %llu\nrdtscp %llu aux %u\n", (unsigned long long)t1, (unsigned long long)t2, aux);

  unsigned char buf[16];
  if (getrandom(buf, sizeof buf, 0) != (ssize_t)sizeof buf) return 2;
  hex("getrandom", buf, sizeof buf);

  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, buf, sizeof buf) != (ssize_t)sizeof buf) return 3;
  close(fd);
  hex("urandom", buf, sizeof buf);

  const unsigned char* at_random = (const unsigned char*)getauxval(AT_RANDOM);
  if (at_random) hex("at_random", at_random, 16);

  printf("pid %d ppid %d tid %d\n", (int)getpid(), (int)getppid(), (int)gettid());
  return 0;
}
