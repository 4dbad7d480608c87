// A process tree whose processes tell which CPU they run on through CPUID
// (docs/parallel.md "CPU placement"): the APIC ids of leaf 1 (EBX >> 24)
// and leaf 0xB (EDX, the x2APIC id), which cannot be trapped, next to
// sched_getcpu() (recorded), and a pid and a random hash that differ on
// every native run.
//   cpu_tree tree N   forks N children that each exec `cpu_tree leaf I`,
//                     then a fork without exec that prints from the
//                     parent's CPU; reaps them all
//   cpu_tree leaf I   hashes for a while (keeps its CPU busy), prints
//   cpu_tree pair N   forks N children without exec (they start on their
//                     parent's CPU) that hash in rounds of a few ms with a
//                     pread of a file between rounds, reading their APIC ids
//                     each round: rec may move one to a free CPU at a
//                     syscall (docs/parallel.md), which it then reports
//
// Each process keeps its APIC ids in memory (as ld.so does) and checks them
// again after its work: a process moved to another CPU midway says so.
#define _GNU_SOURCE
#include <cpuid.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

struct Ids {
  unsigned apic, x2apic;
};

static struct Ids readIds(void) {
  unsigned a, b, c, d;
  struct Ids ids = {0, 0};
  __cpuid(1, a, b, c, d);
  ids.apic = b >> 24;
  if (__get_cpuid_max(0, 0) >= 0xb) {
    __cpuid_count(0xb, 0, a, b, c, d);
    ids.x2apic = d;
  }
  return ids;
}

static uint64_t hashWork(uint64_t seed, long rounds) {
  uint64_t h = seed | 1;
  for (long i = 0; i < rounds; ++i) {
    h ^= h << 13;
    h ^= h >> 7;
    h ^= h << 17;
    h += (uint64_t)i * 0x9e3779b97f4a7c15ull;
  }
  return h;
}

static void report(const char* who, int index, long rounds) {
  static volatile struct Ids first;  // in memory: --check-memory compares it
  struct Ids ids = readIds();
  first.apic = ids.apic;
  first.x2apic = ids.x2apic;
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) abort();
  uint64_t h = hashWork(seed, rounds);
  struct Ids again = readIds();
  printf("%s %d pid %d apic %u x2apic %u cpu %d hash %016llx%s\n", who, index, (int)getpid(),
         first.apic, first.x2apic, sched_getcpu(), (unsigned long long)h,
         again.apic != first.apic || again.x2apic != first.x2apic ? " MOVED" : "");
  fflush(stdout);
}

// Waits for every child; says how many failed. The exit status: 1 if any.
static int reapAll(const char* who) {
  int status, bad = 0;
  while (wait(&status) > 0)
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++bad;
  printf("%s reaped, %d failed\n", who, bad);
  return bad != 0;
}

// Rounds of work with a syscall between them; every round's APIC id stays
// in memory (--check-memory compares it with replay's at each event).
static void pairChild(int index, int fd) {
  static volatile unsigned seenApic[40];
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) abort();
  uint64_t h = seed;
  int changes = 0;
  for (int round = 0; round < 40; ++round) {
    seenApic[round] = readIds().apic;
    if (round > 0 && seenApic[round] != seenApic[round - 1]) ++changes;
    h = hashWork(h, 2L * 1000 * 1000);
    char byte;
    if (pread(fd, &byte, 1, round % 4) != 1) abort();
    h += (unsigned char)byte;
  }
  printf("pair %d pid %d first apic %u last apic %u changes %d hash %016llx\n", index,
         (int)getpid(), seenApic[0], seenApic[39], changes, (unsigned long long)h);
  fflush(stdout);
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "pair") == 0) {
    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0) abort();
    int n = atoi(argv[2]);
    for (int i = 0; i < n; ++i) {
      pid_t pid = fork();
      if (pid < 0) abort();
      if (pid == 0) {
        pairChild(i + 1, fd);
        _exit(0);
      }
    }
    return reapAll("pairs");
  }
  if (argc == 3 && strcmp(argv[1], "leaf") == 0) {
    report("leaf", atoi(argv[2]), 30L * 1000 * 1000);
    return 0;
  }
  if (argc != 3 || strcmp(argv[1], "tree") != 0) {
    fprintf(stderr, "usage: cpu_tree tree N | cpu_tree leaf I | cpu_tree pair N\n");
    return 2;
  }
  int n = atoi(argv[2]);
  report("root", 0, 1000);
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
      char index[16];
      snprintf(index, sizeof index, "%d", i + 1);
      execl("/proc/self/exe", argv[0], "leaf", index, (char*)NULL);
      _exit(127);
    }
  }
  pid_t forked = fork();
  if (forked < 0) abort();
  if (forked == 0) {
    report("forked", 0, 1000 * 1000);
    _exit(0);
  }
  return reapAll("root");
}
