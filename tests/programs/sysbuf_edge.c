// Edge cases of the syscall buffer (docs/syscall-buffer.md).
//   sysbuf_edge diverge        buffered calls chosen by RDRAND, which replay
//                              cannot reproduce: replay must report a divergence
//   sysbuf_edge forever FILE   buffered 1-byte writes to FILE until killed,
//                              a line on stdout every 20000
//   sysbuf_edge watched DIR    writes to a file it maps MAP_SHARED (traced:
//                              replay's shared copy must see them) beside
//                              writes to another file and to /dev/null
//                              (buffered), then prints what the mapping and
//                              the other file hold
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static unsigned long fnv(const unsigned char* p, size_t n) {
  unsigned long h = 1469598103934665603ul;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ul;
  return h;
}

static int watched(const char* dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/shared", dir);
  int shared = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  snprintf(path, sizeof path, "%s/plain", dir);
  int plain = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int null = open("/dev/null", O_WRONLY);
  if (shared < 0 || plain < 0 || null < 0 || ftruncate(shared, 4096) != 0) return 2;
  unsigned char* map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, shared, 0);
  if (map == MAP_FAILED) return 2;
  printf("fds shared=%d plain=%d null=%d\n", shared, plain, null);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long seed = (unsigned long)ts.tv_nsec;
  for (int i = 0; i < 300; ++i) {
    seed = seed * 6364136223846793005ul + 1442695040888963407ul;
    unsigned char byte = (unsigned char)(seed >> 56);
    if (pwrite(shared, &byte, 1, (off_t)(seed >> 20) % 4096) != 1) return 3;
    if (write(plain, &byte, 1) != 1 || write(null, &byte, 1) != 1) return 3;
  }
  unsigned char back[300];
  if (pread(plain, back, sizeof back, 0) != (ssize_t)sizeof back) return 4;
  printf("mapping %016lx plain %016lx\n", fnv(map, 4096), fnv(back, sizeof back));
  return 0;
}

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
  if (argc >= 3 && strcmp(argv[1], "watched") == 0) return watched(argv[2]);
  fprintf(stderr, "usage: sysbuf_edge diverge | forever FILE | watched DIR\n");
  return 64;
}
