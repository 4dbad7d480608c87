// Processes that work at the same time (docs/parallel.md): what parallel
// recording must keep exact. Every mode prints values that differ on every
// native run (random seeds, counts that depend on timing).
//   parallel pingpong  two processes each hashing between pipe messages
//   parallel tree      four children hashing independently, reaped by wait4
//   parallel signal    a child spinning in user code until its parent's
//                      SIGUSR1; it prints how far it got
//   parallel shared    parent and child increment a MAP_SHARED anonymous
//                      counter without locks; the total depends on the race
//   parallel remap     a file the parent mapped shared (so rec watches it):
//                      one child maps it again and again and reads it while
//                      another keeps rewriting it with pwrite
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t hashWork(uint64_t seed, int rounds) {
  uint64_t h = seed | 1;
  for (int i = 0; i < rounds; ++i) {
    h ^= h << 13;
    h ^= h >> 7;
    h ^= h << 17;
    h += (uint64_t)i * 0x9e3779b97f4a7c15ull;
  }
  return h;
}

static uint64_t randomSeed(void) {
  uint64_t s = 0;
  if (getrandom(&s, sizeof s, 0) != sizeof s) abort();
  return s;
}

static void writeAll(int fd, const void* p, size_t n) {
  if (write(fd, p, n) != (ssize_t)n) abort();
}

static void readAll(int fd, void* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char*)p + got, n - got);
    if (r <= 0) abort();
    got += (size_t)r;
  }
}

static int pingpong(void) {
  int toChild[2], toParent[2];
  if (pipe(toChild) || pipe(toParent)) abort();
  pid_t pid = fork();
  if (pid < 0) abort();
  int in = pid == 0 ? toChild[0] : toParent[0];
  int out = pid == 0 ? toParent[1] : toChild[1];
  uint64_t value = pid == 0 ? 0 : randomSeed();
  for (int round = 0; round < 200; ++round) {
    // The parent hashes, sends, and waits for the child's hash of that.
    if (pid == 0) readAll(in, &value, sizeof value);
    value = hashWork(value + (uint64_t)round, 20000);
    writeAll(out, &value, sizeof value);
    if (pid != 0) readAll(in, &value, sizeof value);
  }
  if (pid == 0) _exit(0);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) abort();
  printf("pingpong final %016llx child status %d\n", (unsigned long long)value, status);
  return 0;
}

static int tree(void) {
  enum { kChildren = 4 };
  int fds[kChildren][2];
  pid_t pids[kChildren];
  for (int i = 0; i < kChildren; ++i) {
    if (pipe(fds[i])) abort();
    uint64_t seed = randomSeed();
    pids[i] = fork();
    if (pids[i] < 0) abort();
    if (pids[i] == 0) {
      uint64_t h = seed;
      for (int step = 0; step < 50; ++step) h = hashWork(h, 40000);
      writeAll(fds[i][1], &h, sizeof h);
      _exit((int)(h & 0x7f));
    }
    close(fds[i][1]);
  }
  for (int n = 0; n < kChildren; ++n) {
    int status = 0;
    pid_t who = wait4(-1, &status, 0, NULL);
    int i = 0;
    while (i < kChildren && pids[i] != who) ++i;
    if (i == kChildren) abort();
    uint64_t h = 0;
    readAll(fds[i][0], &h, sizeof h);
    printf("tree child %d hash %016llx exit %d matches %d\n", i, (unsigned long long)h,
           WEXITSTATUS(status), WEXITSTATUS(status) == (int)(h & 0x7f));
  }
  printf("tree no more children: %d\n", wait(NULL) < 0);
  return 0;
}

static volatile sig_atomic_t gStop = 0;
static void onUsr1(int sig) {
  (void)sig;
  gStop = 1;
}

static int signalMode(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = onUsr1;
  sigaction(SIGUSR1, &sa, NULL);
  int ready[2];
  if (pipe(ready)) abort();
  pid_t pid = fork();
  if (pid < 0) abort();
  if (pid == 0) {
    uint64_t h = randomSeed();
    writeAll(ready[1], "r", 1);
    uint64_t rounds = 0;
    while (!gStop) {
      h = hashWork(h, 1000);
      ++rounds;
    }
    printf("signal child stopped after %llu rounds hash %016llx\n", (unsigned long long)rounds,
           (unsigned long long)h);
    fflush(stdout);
    _exit(0);
  }
  char c;
  readAll(ready[0], &c, 1);
  uint64_t h = hashWork(randomSeed(), 3000000);  // the parent works too
  kill(pid, SIGUSR1);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) abort();
  printf("signal parent hash %016llx child status %d\n", (unsigned long long)h, status);
  return 0;
}

static int shared(void) {
  volatile uint64_t* counter =
      mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (counter == MAP_FAILED) abort();
  int n = (int)(randomSeed() % 1000) + 200000;
  pid_t pid = fork();
  if (pid < 0) abort();
  for (int i = 0; i < n; ++i) {
    uint64_t v = *counter;  // a lost update whenever the other writes in between
    hashWork(v, 20);
    *counter = v + 1;
  }
  if (pid == 0) _exit(0);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) abort();
  printf("shared each %d total %llu of %d\n", n, (unsigned long long)*counter, 2 * n);
  return 0;
}

// Mappings of a watched file made beside other processes (a file mapped
// shared is watched for good, so later mappings of it need not wait to be
// alone; docs/parallel.md): what each mapping shows must be on replay what
// it was when recorded, whichever pwrite came before it.
static int remap(void) {
  char path[] = "/tmp/rec-remap-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) abort();
  uint64_t values[512] = {0};
  values[0] = randomSeed();
  writeAll(fd, values, sizeof values);
  close(fd);
  int ro = open(path, O_RDONLY);
  if (ro < 0) abort();
  const uint64_t* first = mmap(NULL, sizeof values, PROT_READ, MAP_SHARED, ro, 0);
  if (first == MAP_FAILED) abort();
  pid_t writer = fork();
  if (writer == 0) {
    int rw = open(path, O_WRONLY);
    if (rw < 0) abort();
    uint64_t v = randomSeed();
    for (int i = 0; i < 300; ++i) {
      v = hashWork(v, 20000);
      if (pwrite(rw, &v, sizeof v, (off_t)(i % 512) * 8) != sizeof v) abort();
    }
    _exit(0);
  }
  pid_t reader = fork();
  if (reader == 0) {
    uint64_t sum = 0;
    for (int i = 0; i < 300; ++i) {
      int again = open(path, O_RDONLY);
      if (again < 0) abort();
      const volatile uint64_t* m = mmap(NULL, sizeof values, PROT_READ, MAP_SHARED, again, 0);
      if (m == MAP_FAILED) abort();
      close(again);
      for (int j = 0; j < 512; ++j) sum = sum * 31 + m[j];
      munmap((void*)m, sizeof values);
      sum = hashWork(sum, 5000);
    }
    printf("remap reader sum %016llx\n", (unsigned long long)sum);
    _exit(0);
  }
  int status, bad = 0;
  while (wait(&status) > 0)
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++bad;
  uint64_t last = 0;
  for (int j = 0; j < 512; ++j) last = last * 31 + first[j];
  printf("remap final %016llx, %d failed\n", (unsigned long long)last, bad);
  unlink(path);
  return bad != 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char* mode = argc > 1 ? argv[1] : "";
  if (!strcmp(mode, "pingpong")) return pingpong();
  if (!strcmp(mode, "tree")) return tree();
  if (!strcmp(mode, "signal")) return signalMode();
  if (!strcmp(mode, "shared")) return shared();
  if (!strcmp(mode, "remap")) return remap();
  fprintf(stderr, "usage: parallel pingpong|tree|signal|shared|remap\n");
  return 2;
}
