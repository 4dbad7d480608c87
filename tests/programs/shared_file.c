// Files mapped MAP_SHARED while the program also changes them with write(),
// pwrite() and ftruncate(): every view of the file must show the same bytes,
// on replay as when recorded. Each step prints values that differ on every
// native run (random bytes, pids).
//  1. a temporary file written with write(), mapped shared, changed through
//     the mapping (read back with pread) and with pwrite (read back through
//     the mapping);
//  2. the same file truncated, rewritten and mapped again: the new mapping
//     shows the new contents, not the old ones;
//  3. a file grown under its mapping with ftruncate: the new page is
//     readable through the mapping that was already there;
//  4. a memfd mapped twice, writable and read-only/executable (the JIT
//     pattern of V8, the JVM, .NET): code written through one view runs
//     through the other;
//  5. a forked child writes through its shared mapping; the parent reads the
//     file with read() and through its own mapping;
//  6. a private mapping of an empty file open for writing, grown and
//     written under it: its pages show the file until the program writes;
//  7. process_vm_writev and process_vm_readv on the program's own memory.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static uint32_t random32(void) {
  uint32_t v;
  if (getrandom(&v, sizeof v, 0) != sizeof v) exit(2);
  return v;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

int main(void) {
  long page = sysconf(_SC_PAGESIZE);
  char path[] = "/tmp/rec-shared-file-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) die("mkstemp");
  unlink(path);

  // 1. write(), a shared mapping, stores through it, pwrite() under it.
  char text[64];
  int len = snprintf(text, sizeof text, "first %08x", random32());
  if (write(fd, text, (size_t)len) != len) die("write");
  char* map = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) die("mmap");
  printf("1 mapped: %.*s\n", len, map);
  uint32_t stored = random32();
  snprintf(map, 16, "map %08x", stored);
  char back[16] = {0};
  if (pread(fd, back, 12, 0) != 12) die("pread");
  printf("1 pread sees: %.12s\n", back);
  char over[16];
  snprintf(over, sizeof over, "pw %08x", random32());
  if (pwrite(fd, over, 11, 2) != 11) die("pwrite");
  printf("1 mapping sees: %.13s\n", map);

  // 2. Truncated, rewritten, mapped again.
  munmap(map, (size_t)page);
  if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) die("truncate");
  len = snprintf(text, sizeof text, "second %08x", random32());
  if (write(fd, text, (size_t)len) != len) die("write");
  map = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) die("mmap");
  printf("2 remapped: %.*s\n", len, map);
  munmap(map, (size_t)page);

  // 3. Grown under the mapping.
  map = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) die("mmap");
  if (ftruncate(fd, 2 * page) != 0) die("ftruncate");
  uint32_t far = random32();
  if (pwrite(fd, &far, sizeof far, page + 8) != sizeof far) die("pwrite");
  uint32_t seen;
  memcpy(&seen, map + page + 8, sizeof seen);
  printf("3 grown page: %08x (%s)\n", seen, seen == far ? "same" : "DIFFERENT");
  munmap(map, 2 * (size_t)page);
  close(fd);

  // 4. A memfd mapped twice: write code through one view, run it through the other.
  int code = memfd_create("jit", MFD_CLOEXEC);
  if (code < 0 || ftruncate(code, page) != 0) die("memfd");
  unsigned char* rw = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, code, 0);
  unsigned char* rx = mmap(NULL, (size_t)page, PROT_READ | PROT_EXEC, MAP_SHARED, code, 0);
  if (rw == MAP_FAILED || rx == MAP_FAILED) die("mmap jit");
  for (int round = 0; round < 3; ++round) {
    uint32_t value = random32();
    rw[0] = 0xb8;  // mov eax, imm32
    memcpy(rw + 1, &value, 4);
    rw[5] = 0xc3;  // ret
    uint32_t got = ((uint32_t(*)(void))rx)();
    printf("4 jit round %d: %08x (%s)\n", round, got, got == value ? "same" : "DIFFERENT");
  }
  close(code);

  // 5. A child writes through its mapping; the parent reads the file.
  int shared = memfd_create("shared", MFD_CLOEXEC);
  if (shared < 0 || ftruncate(shared, page) != 0) die("memfd");
  char* parentView = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, shared, 0);
  if (parentView == MAP_FAILED) die("mmap");
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    char* childView = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, shared, 0);
    if (childView == MAP_FAILED) _exit(1);
    snprintf(childView, 32, "child %d %08x", getpid(), random32());
    _exit(0);
  }
  int status;
  waitpid(child, &status, 0);
  char fromFile[32] = {0};
  if (pread(shared, fromFile, sizeof fromFile - 1, 0) < 0) die("pread");
  printf("5 read: %s\n", fromFile);
  printf("5 mapping: %s (%s)\n", parentView, strcmp(parentView, fromFile) ? "DIFFERENT" : "same");

  // 6. A private mapping of a file that grows under it.
  int grow = memfd_create("grow", MFD_CLOEXEC);
  if (grow < 0) die("memfd");
  char* priv = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE, grow, 0);
  if (priv == MAP_FAILED) die("mmap private");
  if (ftruncate(grow, page) != 0) die("ftruncate");
  uint32_t later = random32();
  if (pwrite(grow, &later, sizeof later, 8) != sizeof later) die("pwrite");
  memcpy(&seen, priv + 8, sizeof seen);
  priv[0] = 'x';  // now a private copy
  printf("6 private view: %08x (%s)\n", seen, seen == later ? "same" : "DIFFERENT");

  // 7. Copies within the process, through the remote-memory calls.
  uint32_t source[2] = {random32(), random32()}, target[2] = {0, 0}, readBack[2] = {0, 0};
  struct iovec local = {source, sizeof source}, remote = {target, sizeof target};
  ssize_t wrote = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
  struct iovec into = {readBack, sizeof readBack}, from = {target, sizeof target};
  ssize_t got = process_vm_readv(getpid(), &into, 1, &from, 1, 0);
  printf("7 process_vm_writev %zd: %08x %08x, process_vm_readv %zd: %s\n", wrote, target[0],
         target[1], got, memcmp(source, readBack, sizeof source) ? "DIFFERENT" : "same");
  return 0;
}
