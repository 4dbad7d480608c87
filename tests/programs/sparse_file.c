// Huge, sparse files mapped whole: rec stores what they hold, never their
// holes, so its memory and the trace stay small. Each step prints values
// that differ on every native run (random bytes).
//  1. a file with a 64 GiB hole and one value past it, mapped shared whole;
//     values stored through the mapping in the middle; a hole punched over
//     one of them (fallocate) reads 0 through the mapping; stored again,
//     unmapped, punched again, mapped again: it reads 0, the other survives;
//  2. a 1 TiB memfd with one value written at its start, mapped private and
//     shared, PROT_NONE and PROT_READ (rr's mmap_huge);
//  3. a 2 GiB memfd mapped shared twice: a value stored through one view is
//     seen through the other (rr's memfd_create_shared_huge);
//  4. a 20 GiB memfd of which one page is mapped executable, the .NET
//     double-mapping probe (rr's memfd_create_dotnet_huge_mapping).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

static uint64_t random64(void) {
  uint64_t v;
  if (getrandom(&v, sizeof v, 0) != sizeof v) exit(2);
  return v | 1;  // never 0: a value that reads 0 was lost
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void* map(size_t len, int prot, int flags, int fd) {
  void* p = mmap(NULL, len, prot, flags, fd, 0);
  if (p == MAP_FAILED) die("mmap");
  return p;
}

static void hole_in_file(void) {
  const off_t size = (off_t)64 << 30;
  const char* path = "sparse_file.data";
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) die("open");
  unlink(path);
  uint64_t end = random64(), middle = random64(), after = random64();
  if (pwrite(fd, &end, sizeof end, size) != sizeof end) die("pwrite");
  char* p = map(size + sizeof end, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
  memcpy(p + size / 2, &middle, sizeof middle);
  memcpy(p + size / 2 + 65536, &after, sizeof after);
  // Punched under a live mapping: it reads zeros at once.
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, size / 2, 4096) != 0)
    die("fallocate");
  uint64_t punched, kept, last;
  memcpy(&punched, p + size / 2, sizeof punched);
  printf("1 hole: punched under the mapping %016llx\n", (unsigned long long)punched);
  memcpy(p + size / 2, &middle, sizeof middle);
  if (munmap(p, size + sizeof end) != 0) die("munmap");
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, size / 2, 4096) != 0)
    die("fallocate");
  p = map(size + sizeof end, PROT_READ, MAP_SHARED, fd);
  memcpy(&punched, p + size / 2, sizeof punched);
  memcpy(&kept, p + size / 2 + 65536, sizeof kept);
  memcpy(&last, p + size, sizeof last);
  printf("1 hole: punched %016llx, kept %016llx (%s), end %016llx (%s)\n",
         (unsigned long long)punched, (unsigned long long)kept,
         kept == after ? "same" : "DIFFERENT", (unsigned long long)last,
         last == end ? "same" : "DIFFERENT");
  munmap(p, size + sizeof end);
  close(fd);
}

static void terabyte_memfd(void) {
  const size_t len = (size_t)1 << 40;
  int fd = memfd_create("sparse_tb", 0);
  if (fd < 0) die("memfd_create");
  if (ftruncate(fd, (off_t)len) != 0) die("ftruncate");
  uint64_t value = random64();
  if (write(fd, &value, sizeof value) != sizeof value) die("write");
  const int prots[] = {PROT_NONE, PROT_READ};
  const int types[] = {MAP_PRIVATE, MAP_SHARED};
  unsigned same = 0;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      char* p = map(len, prots[i], types[j], fd);
      uint64_t got = 0;
      if (prots[i] == PROT_READ) memcpy(&got, p, sizeof got);
      same += got == value;
      if (munmap(p, len) != 0) die("munmap");
    }
  printf("2 terabyte memfd: %016llx seen by %u of 2 readable mappings\n", (unsigned long long)value,
         same);
  close(fd);
}

static void double_mapped_memfd(void) {
  const size_t len = (size_t)2 << 30;
  int fd = memfd_create("sparse_2g", 0);
  if (fd < 0) die("memfd_create");
  if (ftruncate(fd, (off_t)len) != 0) die("ftruncate");
  char* a = map(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
  uint64_t value = random64();
  memcpy(a + len - 4096, &value, sizeof value);
  char* b = map(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
  uint64_t seen;
  memcpy(&seen, b + len - 4096, sizeof seen);
  printf("3 two views: %016llx (%s)\n", (unsigned long long)seen,
         seen == value ? "same" : "DIFFERENT");
  close(fd);
}

static void dotnet_probe(void) {
  int fd = memfd_create("double_mapper", MFD_CLOEXEC);
  if (fd < 0) die("memfd_create");
  if (ftruncate(fd, (off_t)20 << 30) != 0) die("ftruncate");
  uint64_t value = random64();
  if (pwrite(fd, &value, sizeof value, 8) != sizeof value) die("pwrite");
  char* code = map(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd);
  uint64_t seen;
  memcpy(&seen, code + 8, sizeof seen);
  printf("4 executable page: %016llx (%s)\n", (unsigned long long)seen,
         seen == value ? "same" : "DIFFERENT");
  close(fd);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  hole_in_file();
  terabyte_memfd();
  double_mapped_memfd();
  dotnet_probe();
  return 0;
}
