// Makes a divergence on purpose: RDRAND cannot be trapped, so it returns
// other values on replay, and this program then makes other syscalls
// (getpid or getppid, 32 times by its bits). Replay must stop and report it.
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
      printf("%d getpid %d\n", i, (int)getpid());
    else
      printf("%d getppid %d\n", i, (int)getppid());
  }
  return 0;
}
