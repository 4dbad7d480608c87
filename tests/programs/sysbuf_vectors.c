// readv/writev/preadv/pwritev/preadv2/pwritev2 through the syscall buffer
// (docs/syscall-buffer.md "Vector calls"). Every call site runs many times,
// so that it is patched after its first (traced) call and later calls go
// through the buffer. What is read is hashed and printed; the data comes
// from getrandom, so every native run prints other values.
//   sysbuf_vectors files DIR ROUNDS  a file: writev/pwritev/pwritev2 of many
//                                    iovecs (some empty), read back with
//                                    readv/preadv/preadv2 (more iovecs than
//                                    the data, short reads at the end), a
//                                    sparse file's hole and /dev/zero
//                                    (outputs all zero), /dev/null
//   sysbuf_vectors pipes ROUNDS      writev between two processes through a
//                                    pipe and a socketpair, readv on the
//                                    other side (EAGAIN: traced, blocks)
//   sysbuf_vectors bad DIR           bad iovec arrays and counts: EFAULT,
//                                    EINVAL, a bad buffer after a good one
//                                    (a short read), iovcnt 0
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long fnv(unsigned long h, const void* p, size_t n) {
  const unsigned char* c = p;
  for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ul;
  return h;
}

static void fill(void* p, size_t n) {
  for (size_t at = 0; at < n;) {
    ssize_t got = getrandom((char*)p + at, n - at, 0);
    if (got <= 0) exit(3);
    at += (size_t)got;
  }
}

// n iovecs over buf, with lengths 0, 1, 7, 64, 300, 0, 4096, ... taken from
// `shape`, covering `size` bytes (the last one takes the rest).
static int carve(struct iovec* iov, int n, unsigned char* buf, size_t size, unsigned shape) {
  static const size_t lengths[] = {0, 1, 7, 64, 300, 0, 4096, 13, 2, 1000, 0, 555};
  size_t at = 0;
  int i;
  for (i = 0; i < n; ++i) {
    size_t len = lengths[(i + shape) % (sizeof lengths / sizeof lengths[0])];
    if (at + len > size) len = size - at;
    iov[i].iov_base = buf + at;
    iov[i].iov_len = len;
    at += len;
  }
  iov[n - 1].iov_len += size - at;  // exactly `size` bytes
  return i;
}

static size_t covered(const struct iovec* iov, int n) {
  size_t total = 0;
  for (int i = 0; i < n; ++i) total += iov[i].iov_len;
  return total;
}

static unsigned long hash_iov(unsigned long h, const struct iovec* iov, int n, ssize_t got) {
  for (int i = 0; i < n && got > 0; ++i) {
    size_t len = iov[i].iov_len < (size_t)got ? iov[i].iov_len : (size_t)got;
    h = fnv(h, iov[i].iov_base, len);
    got -= (ssize_t)len;
  }
  return h;
}

static int files(const char* dir, int rounds) {
  char path[4096];
  snprintf(path, sizeof path, "%s/vectors", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  snprintf(path, sizeof path, "%s/sparse", dir);
  int sparse = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int zero = open("/dev/zero", O_RDONLY);
  int null = open("/dev/null", O_WRONLY);
  if (fd < 0 || sparse < 0 || zero < 0 || null < 0 || ftruncate(sparse, 1 << 20) != 0) return 2;
  static unsigned char out[65536], in[65536];
  struct iovec iov[64];
  unsigned long written = 1469598103934665603ul, read = written, zeros = 0;
  long short_reads = 0;
  for (int r = 0; r < rounds; ++r) {
    fill(out, 20000);
    written = fnv(written, out, 20000);
    int n = carve(iov, 40, out, 20000, (unsigned)r);
    off_t base = lseek(fd, 0, SEEK_CUR);
    if (writev(fd, iov, n) != (ssize_t)covered(iov, n)) return 4;
    // the same bytes again at an offset past them, then with flags
    if (pwritev(fd, iov, n, base + 20000) != (ssize_t)covered(iov, n)) return 4;
    if (pwritev2(fd, iov, n, base + 40000, r % 8 == 1 ? RWF_DSYNC : 0) != (ssize_t)covered(iov, n))
      return 4;
    if (lseek(fd, base, SEEK_SET) != base) return 4;
    memset(in, 0xaa, sizeof in);
    n = carve(iov, 50, in, 30000, (unsigned)r + 3);
    ssize_t got = readv(fd, iov, n);
    if (got <= 0) return 5;
    read = hash_iov(read, iov, n, got);
    got = preadv(fd, iov, n, base + 20000);
    read = hash_iov(read, iov, n, got);
    got = preadv2(fd, iov, n, base + 40000, 0);
    read = hash_iov(read, iov, n, got);
    // a short read: more iovecs than the file has left
    got = preadv2(fd, iov, n, base + 60000 - 777, RWF_HIPRI);
    if (got == 777) ++short_reads;
    read = hash_iov(read, iov, n, got);
    if (lseek(fd, base + 60000, SEEK_SET) != base + 60000) return 4;
    // outputs all zero: a hole, /dev/zero (the buffer keeps only lengths)
    memset(in, 0xaa, sizeof in);
    n = carve(iov, 12, in, 8000, (unsigned)r);
    got = preadv(sparse, iov, n, (off_t)(r % 16) * 4096);
    for (ssize_t i = 0; i < got; ++i) zeros += in[i] == 0;
    got = readv(zero, iov, n);
    for (ssize_t i = 0; i < got; ++i) zeros += in[i] == 0;
    read = fnv(read, in, 8000);  // 0xaa where the iovecs left gaps
    if (writev(null, iov, n) != (ssize_t)covered(iov, n)) return 4;
  }
  printf("files %d rounds: wrote %016lx read %016lx, %ld short, %lu zero bytes\n", rounds, written,
         read, short_reads, zeros);
  return 0;
}

static int pipes(int rounds) {
  int p[2], back[2], s[2];
  if (pipe(p) != 0 || pipe(back) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0) return 2;
  pid_t child = fork();
  if (child == 0) {
    // echoes each message back, read with readv and written with writev
    unsigned char head[5], body[300];
    for (int r = 0; r < rounds; ++r) {
      struct iovec iov[3] = {{head, sizeof head}, {NULL, 0}, {body, sizeof body}};
      ssize_t got = readv(p[0], iov, 3);
      if (got <= 0) _exit(5);
      iov[2].iov_len = (size_t)got - sizeof head;
      if (writev(s[1], iov, 3) != got) _exit(6);
    }
    _exit(0);
  }
  close(p[0]);
  close(s[1]);
  unsigned char msg[305], echo[305];
  unsigned long sent = 1469598103934665603ul, received = sent;
  for (int r = 0; r < rounds; ++r) {
    fill(msg, sizeof msg);
    size_t len = 5 + msg[0] % 300;
    struct iovec iov[4] = {{msg, 2}, {msg + 2, 0}, {msg + 2, 3}, {msg + 5, len - 5}};
    if (writev(p[1], iov, 4) != (ssize_t)len) return 4;
    sent = fnv(sent, msg, len);
    size_t have = 0;
    while (have < len) {
      struct iovec in[2] = {{echo + have, 1}, {echo + have + 1, len - have - 1}};
      ssize_t got = readv(s[0], in, 2);
      if (got <= 0) return 5;
      have += (size_t)got;
    }
    received = fnv(received, echo, len);
  }
  int status;
  waitpid(child, &status, 0);
  printf("pipes %d rounds: sent %016lx, echo %s, child %d\n", rounds, sent,
         sent == received ? "same" : "DIFFERENT", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}

// (volatile: the compiler would see through them and refuse the calls)
static struct iovec* volatile unmapped_iov = (struct iovec*)8;
static volatile int negative_count = -1, too_many = 1025;

static int bad(const char* dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/bad", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return 2;
  unsigned char data[4096], in[4096];
  fill(data, sizeof data);
  if (write(fd, data, sizeof data) != (ssize_t)sizeof data) return 2;
  int efault = 0, einval = 0, shortened = 0, empty = 0;
  unsigned long h = 1469598103934665603ul;
  for (int r = 0; r < 30; ++r) {
    // an unmapped iovec array
    if (preadv(fd, unmapped_iov, 2, 0) == -1 && errno == EFAULT) ++efault;
    if (pwritev(fd, unmapped_iov, 1, 0) == -1 && errno == EFAULT) ++efault;
    // a bad buffer: first (nothing read), then after a good one (short read)
    struct iovec first[2] = {{(void*)8, 100}, {in, 100}};
    if (preadv(fd, first, 2, 0) == -1 && errno == EFAULT) ++efault;
    struct iovec second[2] = {{in, 100 + r}, {(void*)8, 100}};
    ssize_t got = preadv(fd, second, 2, 0);
    if (got == 100 + r) ++shortened;
    h = fnv(h, in, 100 + (size_t)r);
    // counts the kernel refuses, and none
    struct iovec one = {in, 10};
    if (preadv(fd, &one, negative_count, 0) == -1 && errno == EINVAL) ++einval;
    if (preadv(fd, &one, too_many, 0) == -1 && errno == EINVAL) ++einval;
    if (preadv(fd, NULL, 0, 0) == 0) ++empty;
    if (pwritev(fd, &one, 0, 0) == 0) ++empty;
  }
  printf("bad: %d EFAULT, %d EINVAL, %d short, %d empty, read %016lx\n", efault, einval, shortened,
         empty, h);
  return 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 4 && strcmp(argv[1], "files") == 0) return files(argv[2], atoi(argv[3]));
  if (argc == 3 && strcmp(argv[1], "pipes") == 0) return pipes(atoi(argv[2]));
  if (argc == 3 && strcmp(argv[1], "bad") == 0) return bad(argv[2]);
  fprintf(stderr, "usage: sysbuf_vectors files DIR ROUNDS | pipes ROUNDS | bad DIR\n");
  return 64;
}
