// bench/run.sh's read4k row: a tight read() loop over a file in 4 KiB
// blocks (issue 13), summing the bytes so the reads cannot be skipped.
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 2) return 64;
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) return 66;
  static unsigned char block[4096];
  unsigned long sum = 0;
  ssize_t n;
  while ((n = read(fd, block, sizeof block)) > 0)
    for (ssize_t i = 0; i < n; i += 512) sum += block[i];
  printf("%lu\n", sum);
  return 0;
}
