// Adjacent mappings of one open file that the kernel merges into one: an
// mremap across the former boundary works only if replay merges them too
// (rr's mremap_after_coalesce). Prints random file contents read through
// the moved mappings, so the output differs on every native run.
//  1. a read-only file mapped private, then its first page mapped again over
//     the first (MAP_FIXED): one mapping; grown with mremap(MREMAP_MAYMOVE);
//  2. the same, shrunk in place;
//  3. the same with a file open for writing, mapped shared, shrunk from the
//     middle of the merged mapping.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

static void die(const char* what) {
  perror(what);
  exit(1);
}

static const size_t kPage = 4096;
static const size_t kSize = 5 * 4096;

static int random_file(const char* path, int mode) {
  static char data[5 * 4096];
  if (getrandom(data, sizeof data, 0) != sizeof data) die("getrandom");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write(fd, data, sizeof data) != sizeof data) die("write");
  close(fd);
  fd = open(path, mode);
  if (fd < 0) die("open");
  unlink(path);
  return fd;
}

static void* map(void* at, size_t len, int prot, int flags, int fd) {
  void* p = mmap(at, len, prot, flags, fd, 0);
  if (p == MAP_FAILED) die("mmap");
  return p;
}

static unsigned long long word(const char* p, size_t offset) {
  unsigned long long v;
  memcpy(&v, p + offset, sizeof v);
  return v;
}

int main(void) {
  int fd = random_file("merged_a.data", O_RDONLY);
  char* p = map(NULL, kSize, PROT_READ, MAP_PRIVATE, fd);
  map(p, kPage, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd);
  char* q = mremap(p, kSize, kSize + kPage, MREMAP_MAYMOVE);
  if (q == MAP_FAILED) die("mremap grow");
  printf("1 grown: %016llx %016llx\n", word(q, 0), word(q, kSize - 8));

  fd = random_file("merged_b.data", O_RDONLY);
  p = map(NULL, kSize, PROT_READ, MAP_PRIVATE, fd);
  map(p, kPage, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd);
  q = mremap(p, kSize, kSize - 2 * kPage, 0);
  if (q == MAP_FAILED) die("mremap shrink");
  printf("2 shrunk: %016llx %016llx\n", word(q, 0), word(q, kSize - 2 * kPage - 8));

  fd = random_file("merged_c.data", O_RDWR);
  p = map(NULL, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
  map(p, 3 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd);
  q = mremap(p + kPage, 3 * kPage, kPage, 0);
  if (q == MAP_FAILED) die("mremap middle");
  printf("3 middle: %016llx %016llx\n", word(q, 0), word(p, 4 * kPage));
  return 0;
}
