// Bulk data through the syscall buffer (docs/syscall-buffer.md "Lent, not
// copied"): batches large enough that rec lends them to the trace writer
// from where they lie, the buffer used as a ring around them.
//   sysbuf_bulk all DIR       writes a file of random bytes (16 MiB, so it
//                             differs every run), then reads it in 4 KiB
//                             blocks: in main (the ring goes round several
//                             times), in a forked child (its own buffer) and
//                             parent at once, in two threads sharing one
//                             buffer, and last in a program exec'd right
//                             after a read loop (its batch written before
//                             the exec); a hash of each part
//   sysbuf_bulk forever DIR   reads such a file over and over until killed,
//                             a line with the hash after each pass
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

enum { kBlock = 4096, kFileBytes = 16 << 20 };

static uint64_t mix(uint64_t h, const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
  }
  return h;
}

// Reads [from, from + bytes) of fd in blocks, by read (pread when positioned).
static uint64_t readHash(int fd, off_t from, size_t bytes, int positioned) {
  static __thread unsigned char block[kBlock];
  uint64_t h = 0xcbf29ce484222325ull;
  if (!positioned && lseek(fd, from, SEEK_SET) != from) exit(3);
  for (size_t done = 0; done < bytes; done += kBlock) {
    ssize_t n = positioned ? pread(fd, block, kBlock, from + (off_t)done) : read(fd, block, kBlock);
    if (n != kBlock) exit(4);
    h = mix(h, block, kBlock);
  }
  return h;
}

static void makeFile(const char* path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) exit(2);
  static unsigned char chunk[1 << 16];
  for (size_t done = 0; done < kFileBytes; done += sizeof chunk) {
    for (size_t i = 0; i < sizeof chunk; i += 256)
      if (getrandom(chunk + i, 256, 0) != 256) exit(2);
    if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) exit(2);
  }
  close(fd);
}

struct part {
  int fd;
  off_t from;
  uint64_t hash;
};

static void* threadRead(void* arg) {
  struct part* p = arg;
  p->hash = readHash(p->fd, p->from, 6 << 20, 1);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc == 4 && strcmp(argv[1], "tail") == 0) {
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return 2;
    printf("exec'd %016llx\n", (unsigned long long)readHash(fd, atoi(argv[3]), 4 << 20, 0));
    return 0;
  }
  if (argc != 3) return 64;
  char path[4096];
  snprintf(path, sizeof path, "%s/bulk", argv[2]);
  makeFile(path);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(argv[1], "forever") == 0) {
    for (;;) printf("pass %016llx\n", (unsigned long long)readHash(fd, 0, kFileBytes, 0));
  }
  if (strcmp(argv[1], "all") != 0) return 64;
  printf("whole %016llx\n", (unsigned long long)readHash(fd, 0, kFileBytes, 0));
  pid_t child = fork();
  if (child < 0) return 5;
  if (child == 0) {
    printf("child %016llx\n", (unsigned long long)readHash(fd, 0, 8 << 20, 1));
    _exit(0);
  }
  printf("parent %016llx\n", (unsigned long long)readHash(fd, 8 << 20, 8 << 20, 1));
  int status;
  if (waitpid(child, &status, 0) != child || status != 0) return 6;
  struct part parts[2] = {{fd, 0, 0}, {fd, 10 << 20, 0}};
  pthread_t threads[2];
  for (int i = 0; i < 2; ++i)
    if (pthread_create(&threads[i], NULL, threadRead, &parts[i])) return 7;
  uint64_t mine = readHash(fd, 4 << 20, 2 << 20, 1);
  for (int i = 0; i < 2; ++i) pthread_join(threads[i], NULL);
  printf("threads %016llx %016llx %016llx\n", (unsigned long long)parts[0].hash,
         (unsigned long long)parts[1].hash, (unsigned long long)mine);
  // A read loop right before the exec: its batch goes before the exec event.
  uint64_t before = readHash(fd, 0, 3 << 20, 0);
  printf("before exec %016llx\n", (unsigned long long)before);
  char from[32];
  snprintf(from, sizeof from, "%d", 12 << 20);
  execl("/proc/self/exe", argv[0], "tail", path, from, (char*)NULL);
  return 8;
}
