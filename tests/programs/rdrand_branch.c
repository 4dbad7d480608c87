// Makes a divergence on purpose: RDRAND cannot be trapped, so it returns
// other values on replay, and this program then makes other syscalls
// (gettid or getppid, 32 times by its bits: both traced, where replay
// names glibc's code; a divergence inside the syscall buffer is
// syscall_buffer.sh's). Replay must stop and report it.
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>

static unsigned long long rdrand64(void) {
  unsigned long long value;
  unsigned char ok;
  do {
    __asm__ volatile("rdrand %0; setc %1" : "=r"(value), "=qm"(ok));
  } while (!ok);
  return value;
}

int main(void) {
  unsigned long long bits = rdrand64();
  for (int i = 0; i < 32; ++i) {
    if ((bits >> i) & 1)
      printf("%d gettid %d\n", i, (int)gettid());
    else
      printf("%d getppid %d\n", i, (int)getppid());
  }
  return 0;
}
