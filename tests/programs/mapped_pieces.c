// Maps a file the way ld.so maps a library: one mapping of the fd that
// reserves the range, then MAP_FIXED pieces of the same fd inside it (an
// executable one, a read-only one, a writable private one), and prints a
// hash of what each piece shows. Then again through a new fd of the same
// file (the mappings rec has seen already), and once more after the program
// itself appended to the file through another fd (what the pieces show must
// be the new contents); then a fourth time through an fd open for reading
// and writing (such pieces follow the file: rec keeps them traced), and
// once MAP_SHARED. The file (argv[1]) is random bytes written by the
// test, and the test changes it on disk before the replay: the replay must
// still show what the recording saw.
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t hash(const unsigned char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static int round_of(const char* path, int round, int mode) {
  int fd = open(path, mode | O_CLOEXEC);
  if (fd < 0) return perror("open"), 1;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < 3 * 4096) return fprintf(stderr, "file too small\n"), 1;
  const size_t page = 4096, size = (size_t)st.st_size;
  // The reservation: the whole file and a page more, read-only.
  unsigned char* base = mmap(NULL, size + page, PROT_READ, MAP_PRIVATE, fd, 0);
  if (base == MAP_FAILED) return perror("mmap"), 1;
  struct {
    size_t at, len;
    int prot;
  } pieces[3] = {{0, page, PROT_READ | PROT_EXEC},
                 {page, page, PROT_READ},
                 {2 * page, size - 2 * page, PROT_READ | PROT_WRITE}};
  for (int i = 0; i < 3; ++i) {
    void* p = mmap(base + pieces[i].at, pieces[i].len, pieces[i].prot, MAP_PRIVATE | MAP_FIXED, fd,
                   (off_t)pieces[i].at);
    if (p != base + pieces[i].at) return perror("mmap fixed"), 1;
  }
  base[2 * page] ^= 0xff;  // a private copy of the writable piece's first page
  printf("%d pieces:", round);
  for (int i = 0; i < 3; ++i) printf(" %016llx", (unsigned long long)hash(base + pieces[i].at, pieces[i].len));
  printf(" size %zu\n", size);
  munmap(base, size + page);
  close(fd);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 2) return fprintf(stderr, "usage: mapped_pieces FILE\n"), 2;
  if (round_of(argv[1], 1, O_RDONLY) || round_of(argv[1], 2, O_RDONLY)) return 1;
  // The program changes the file itself: the next mappings show the change.
  int w = open(argv[1], O_WRONLY | O_APPEND | O_CLOEXEC);
  unsigned char more[4096];
  for (size_t i = 0; i < sizeof more; ++i) more[i] = (unsigned char)(rand() ^ getpid() ^ i);
  if (w < 0 || write(w, more, sizeof more) != sizeof more) return perror("append"), 1;
  close(w);
  if (round_of(argv[1], 3, O_RDONLY) || round_of(argv[1], 4, O_RDWR)) return 1;
  int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) return perror("open"), 1;
  unsigned char* shared = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  if (shared == MAP_FAILED) return perror("mmap shared"), 1;
  printf("shared: %016llx\n", (unsigned long long)hash(shared, (size_t)st.st_size));
  munmap(shared, (size_t)st.st_size);
  close(fd);
  return 0;
}
