// Edge cases of the syscall buffer (docs/syscall-buffer.md).
//   sysbuf_edge diverge        buffered calls chosen by RDRAND, which replay
//                              cannot reproduce: replay must report a divergence
//   sysbuf_edge forever FILE   buffered 1-byte writes to FILE until killed,
//                              a line on stdout every 20000
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned long long rdrand64(void) {
  unsigned long long value;
  unsigned char ok;
  do {
    __asm__ volatile("rdrand %0; setc %1" : "=r"(value), "=qm"(ok));
  } while (!ok);
  return value;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "diverge") == 0) {
    int fd = open("/proc/self/exe", O_RDONLY);
    struct stat st;
    // Each call's site is patched at its first (traced) call.
    for (int i = 0; i < 3; ++i) {
      lseek(fd, 0, SEEK_CUR);
      fstat(fd, &st);
    }
    unsigned long long bits = rdrand64();
    long sum = 0;
    for (int i = 0; i < 32; ++i) {
      if ((bits >> i) & 1)
        sum += lseek(fd, i, SEEK_SET);
      else
        sum += fstat(fd, &st) + 1000;
    }
    printf("sum %ld\n", sum);
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "forever") == 0) {
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return 2;
    for (unsigned long n = 1;; ++n) {
      if (write(fd, "x", 1) != 1) return 3;
      if (n % 20000 == 0) printf("%lu\n", n);
    }
  }
  fprintf(stderr, "usage: sysbuf_edge diverge | forever FILE\n");
  return 64;
}
