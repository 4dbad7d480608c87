// RDTSC and RDTSCP next to decoys: instructions whose encodings contain the
// bytes of RDTSC (0f 31) and RDTSCP (0f 01 f9) inside an immediate. Where rec
// patches RDTSC sites (machines that ignore PR_SET_TSC, or REC_RDTSC=patch)
// it must patch the real instructions and never the decoys. Prints counter
// values (different on every run), branches on them, and the decoys' values.
#include <stdint.h>
#include <stdio.h>
#include <x86intrin.h>

__attribute__((noinline)) static uint64_t read_tsc(void) {
  return __rdtsc();
}

__attribute__((noinline)) static uint64_t read_tscp(unsigned* aux) {
  return __rdtscp(aux);
}

__attribute__((noinline)) static unsigned decoy_rdtsc(void) {
  unsigned v;
  asm volatile("mov $0x310f, %0" : "=r"(v));  // b8+r 0f 31 00 00
  return v;
}

__attribute__((noinline)) static unsigned decoy_rdtscp(void) {
  unsigned v;
  asm volatile("mov $0xf9010f, %0" : "=r"(v));  // b8+r 0f 01 f9 00
  return v;
}

int main(void) {
  unsigned odd = 0, aux = 0;
  uint64_t first = read_tsc(), last = first;
  for (int i = 0; i < 100; ++i) {
    uint64_t now = (i & 1) ? read_tscp(&aux) : read_tsc();
    if (now & 1) ++odd;  // control flow that depends on the counter
    last = now;
  }
  printf("rdtsc %llu\n", (unsigned long long)first);
  printf("elapsed %llu\n", (unsigned long long)(last - first));
  printf("odd %u aux %u\n", odd, aux);
  printf("decoys %#x %#x\n", decoy_rdtsc(), decoy_rdtscp());
  return 0;
}
