// Pipes and sockets through the syscall buffer (docs/syscall-buffer.md,
// "Pipes and sockets"): read/write with RWF_NOWAIT, EAGAIN and EPIPE on the
// traced path. Every mode's output depends on values that differ per run.
//   sysbuf_stream procs N     N messages of random lengths there and back
//                             over two pipes between two processes
//   sysbuf_stream threads N   the same between two threads
//   sysbuf_stream socket N    the same over an AF_UNIX stream socketpair,
//                             and datagrams of random lengths over a
//                             SOCK_DGRAM pair
//   sysbuf_stream eagain      reads that find the pipe empty (the writer
//                             sleeps first) and writes that find it full
//                             (the reader drains it slowly), and writes
//                             larger than PIPE_BUF: all must block and go on
//   sysbuf_stream epipe       writes to a pipe and a socket with no reader:
//                             SIGPIPE with a handler, ignored, blocked, and
//                             the default action killing a child
//   sysbuf_stream nonblock    an O_NONBLOCK pipe: EAGAIN reaches the program
//   sysbuf_stream external    stdin to its end (a pipe from a process that
//                             is not recorded)
//   sysbuf_stream sendrecv N  send()/recv() (sendto/recvfrom without an
//                             address) over AF_UNIX stream and datagram
//                             socketpairs, MSG_PEEK, MSG_WAITALL, and
//                             EPIPE with and without MSG_NOSIGNAL
//   sysbuf_stream signals N   the threads' exchange under a fast timer whose
//                             handler writes to another pipe (buffered
//                             calls interrupted, blocked reads interrupted)
//   sysbuf_stream exits N     threads and a forked child write N messages
//                             each into one pipe and exit at once, their
//                             last calls still in the buffer
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long fnv(unsigned long h, const void* data, size_t n) {
  const unsigned char* p = data;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ul;
  return h;
}
#define FNV0 1469598103934665603ul

static unsigned seed(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned)(ts.tv_nsec ^ ts.tv_sec ^ getpid());
}

static int read_all(int fd, void* to, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = read(fd, (char*)to + done, n - done);
    if (r <= 0) return -1;
    done += (size_t)r;
  }
  return 0;
}

// The echo side: reads a length byte and that many bytes, sends them back
// with every byte plus one; a zero length ends it.
static int echo(int in, int out) {
  for (;;) {
    unsigned char m[256];
    if (read_all(in, m, 1)) return 1;
    if (m[0] == 0) return 0;
    if (read_all(in, m + 1, m[0])) return 2;
    for (int i = 1; i <= m[0]; ++i) m[i]++;
    if (write(out, m, 1u + m[0]) != 1 + m[0]) return 3;
  }
}

// Called before each round of ask() when set (signals mode: arms its timer
// once the exchange's call sites are patched, so that signals land in
// buffered calls rather than keep a site from being patched).
static void (*ask_hook)(int round);

static unsigned long ask(int out, int in, int rounds, unsigned* s) {
  unsigned long h = FNV0;
  for (int i = 0; i < rounds; ++i) {
    if (ask_hook) ask_hook(i);
    unsigned char m[256];
    m[0] = (unsigned char)(1 + rand_r(s) % 64);
    for (int j = 1; j <= m[0]; ++j) m[j] = (unsigned char)rand_r(s);
    if (write(out, m, 1u + m[0]) != 1 + m[0]) return 0;
    unsigned char back[256];
    if (read_all(in, back, 1u + m[0])) return 0;
    h = fnv(h, back, 1u + m[0]);
  }
  unsigned char end = 0;
  if (write(out, &end, 1) != 1) return 0;
  return h;
}

static int procs(int rounds, int sockets) {
  int there[2], back[2];
  if (sockets) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, there)) return 10;
    back[0] = there[0];
    back[1] = there[1];
  } else if (pipe(there) || pipe(back)) {
    return 10;
  }
  // With a socketpair each side reads and writes its own end.
  int childIn = there[0], childOut = sockets ? there[0] : back[1];
  int parentOut = there[1], parentIn = sockets ? there[1] : back[0];
  pid_t child = fork();
  if (child == 0) _exit(echo(childIn, childOut));
  unsigned s = seed();
  unsigned long h = ask(parentOut, parentIn, rounds, &s);
  int status;
  waitpid(child, &status, 0);
  printf("%s %d %016lx child %d\n", sockets ? "socket" : "procs", rounds, h,
         WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status));
  if (!sockets) return h ? 0 : 11;
  // Datagrams keep their lengths: each read returns one whole message.
  int d[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, d)) return 12;
  child = fork();
  if (child == 0) {
    unsigned long hh = FNV0;
    for (int i = 0; i < rounds; ++i) {
      char m[2048];
      ssize_t n = read(d[1], m, sizeof m);
      if (n <= 0) _exit(1);
      hh = fnv(hh, &n, sizeof n);
      hh = fnv(hh, m, (size_t)n);
    }
    if (write(d[1], &hh, sizeof hh) != sizeof hh) _exit(2);
    _exit(0);
  }
  for (int i = 0; i < rounds; ++i) {
    char m[2048];
    size_t n = 1 + (size_t)rand_r(&s) % sizeof m;
    memset(m, rand_r(&s), n);
    if (write(d[0], m, n) != (ssize_t)n) return 13;
  }
  unsigned long got = 0;
  if (read(d[0], &got, sizeof got) != sizeof got) return 14;
  waitpid(child, &status, 0);
  printf("datagrams %d %016lx child %d\n", rounds, got, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return h && got ? 0 : 15;
}

struct pair {
  int in, out, result;
};

static void* echo_thread(void* arg) {
  struct pair* p = arg;
  p->result = echo(p->in, p->out);
  return NULL;
}

static int threads(int rounds) {
  int there[2], back[2];
  if (pipe(there) || pipe(back)) return 10;
  struct pair p = {there[0], back[1], -1};
  pthread_t t;
  if (pthread_create(&t, NULL, echo_thread, &p)) return 11;
  unsigned s = seed();
  unsigned long h = ask(there[1], back[0], rounds, &s);
  pthread_join(t, NULL);
  printf("threads %d %016lx echo %d\n", rounds, h, p.result);
  return h && p.result == 0 ? 0 : 12;
}

static void pause_ms(long ms) {
  struct timespec ts = {0, ms * 1000000};
  nanosleep(&ts, NULL);
}

static int eagain(void) {
  int p[2], q[2];
  if (pipe(p) || pipe(q)) return 10;
  unsigned s = seed();
  unsigned token = (unsigned)rand_r(&s);
  pid_t child = fork();
  if (child == 0) {
    // The parent's first read finds the pipe empty.
    pause_ms(30);
    if (write(p[1], &token, sizeof token) != sizeof token) _exit(1);
    // Then drains q slowly: the parent's writes find it full.
    unsigned long h = FNV0;
    size_t total = 0;
    char buf[3000];
    ssize_t n;
    int slow = 0;
    close(q[1]);
    while ((n = read(q[0], buf, sizeof buf)) > 0) {
      if (slow++ < 20) pause_ms(2);
      h = fnv(h, buf, (size_t)n);
      total += (size_t)n;
    }
    if (write(p[1], &h, sizeof h) != sizeof h || write(p[1], &total, sizeof total) != sizeof total)
      _exit(2);
    _exit(0);
  }
  close(q[0]);
  unsigned got = 0;
  if (read(p[0], &got, sizeof got) != sizeof got) return 11;
  unsigned long h = FNV0;
  size_t total = 0;
  char chunk[10000];
  for (int i = 0; i < 200; ++i) {
    // mostly small writes (buffered unless the pipe is full), some larger
    // than PIPE_BUF (always traced)
    size_t n = i % 10 == 9 ? 5000 + (size_t)rand_r(&s) % 5000 : 1 + (size_t)rand_r(&s) % 1500;
    memset(chunk, rand_r(&s), n);
    if (write(q[1], chunk, n) != (ssize_t)n) return 12;
    h = fnv(h, chunk, n);
    total += n;
  }
  close(q[1]);
  unsigned long childHash = 0;
  size_t childTotal = 0;
  if (read_all(p[0], &childHash, sizeof childHash) || read_all(p[0], &childTotal, sizeof childTotal))
    return 13;
  int status;
  waitpid(child, &status, 0);
  printf("eagain token %08x sent %zu %016lx received %zu %s child %d\n", got, total, h, childTotal,
         childHash == h && childTotal == total ? "same" : "DIFFERENT",
         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return got == token && childHash == h ? 0 : 14;
}

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig) {
  (void)sig;
  sigpipes++;
}

// A write to `fd` whose reader is gone: the result, errno and signals seen.
static void broken(const char* what, int fd) {
  sigpipes = 0;
  char m[16] = "broken";
  errno = 0;
  ssize_t r = write(fd, m, sizeof m);
  int e = errno;
  printf("%s: write %zd %s, %d SIGPIPE in the handler\n", what, r, e == EPIPE ? "EPIPE" : strerror(e),
         (int)sigpipes);
}

static int epipe(void) {
  unsigned s = seed();
  int p[2];
  // A value through a pipe first, so that runs differ.
  unsigned token = (unsigned)rand_r(&s), got = 0;
  if (pipe(p) || write(p[1], &token, sizeof token) != sizeof token ||
      read(p[0], &got, sizeof got) != sizeof got)
    return 10;
  printf("token %08x\n", got);
  signal(SIGPIPE, on_sigpipe);
  close(p[0]);
  broken("pipe, handler", p[1]);
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp)) return 11;
  close(sp[0]);
  broken("socket, handler", sp[1]);
  signal(SIGPIPE, SIG_IGN);
  broken("pipe, ignored", p[1]);
  broken("socket, ignored", sp[1]);
  signal(SIGPIPE, on_sigpipe);
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  sigprocmask(SIG_BLOCK, &set, &old);
  broken("pipe, blocked", p[1]);
  sigset_t pending;
  sigpending(&pending);
  printf("pending after the blocked write: %d\n", sigismember(&pending, SIGPIPE));
  sigprocmask(SIG_SETMASK, &old, NULL);
  printf("after unblocking: %d SIGPIPE in the handler\n", (int)sigpipes);
  // Many in a row, from a loop the buffer's patch covers.
  sigpipes = 0;
  int ok = 0;
  for (int i = 0; i < 100; ++i) ok += write(p[1], &i, 1) == -1 && errno == EPIPE;
  printf("100 writes: %d EPIPE, %d SIGPIPE\n", ok, (int)sigpipes);
  signal(SIGPIPE, SIG_DFL);
  pid_t child = fork();
  if (child == 0) {
    char m = 1;
    ssize_t r = write(p[1], &m, 1);
    _exit(r == -1 ? 2 : 3);  // not reached: SIGPIPE kills it first
  }
  int status;
  waitpid(child, &status, 0);
  printf("child: %s %d\n", WIFSIGNALED(status) ? "killed by signal" : "exited",
         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  return 0;
}

static int nonblock(void) {
  int p[2];
  if (pipe2(p, O_NONBLOCK)) return 10;
  char buf[4096];
  errno = 0;
  ssize_t r = read(p[0], buf, sizeof buf);
  printf("empty: %zd %s\n", r, errno == EAGAIN ? "EAGAIN" : strerror(errno));
  unsigned s = seed();
  size_t n = 100 + (size_t)rand_r(&s) % 900, total = 0;
  unsigned long h = FNV0;
  int writes = 0;
  for (;;) {
    memset(buf, rand_r(&s), n);
    r = write(p[1], buf, n);
    if (r < 0) break;
    h = fnv(h, buf, (size_t)r);
    total += (size_t)r;
    writes++;
  }
  printf("full after %d writes of %zu (%zu bytes): %s\n", writes, n, total,
         errno == EAGAIN ? "EAGAIN" : strerror(errno));
  unsigned long back = FNV0;
  size_t got = 0;
  while ((r = read(p[0], buf, sizeof buf)) > 0) {
    back = fnv(back, buf, (size_t)r);
    got += (size_t)r;
  }
  printf("read back %zu bytes %016lx %s, then %s\n", got, back, back == h ? "same" : "DIFFERENT",
         errno == EAGAIN ? "EAGAIN" : strerror(errno));
  return back == h ? 0 : 11;
}

static int external(void) {
  char buf[1000];
  unsigned long h = FNV0;
  size_t total = 0;
  ssize_t n;
  while ((n = read(0, buf, sizeof buf)) > 0) {
    h = fnv(h, buf, (size_t)n);
    total += (size_t)n;
  }
  printf("stdin %zu bytes %016lx end %zd\n", total, h, n);
  return n == 0 ? 0 : 10;
}

static int sendrecv(int rounds) {
  int sp[2], dp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, dp))
    return 10;
  pid_t child = fork();
  if (child == 0) {
    // echo with send/recv: a length byte, then the message
    for (;;) {
      unsigned char m[256];
      if (recv(sp[0], m, 1, MSG_WAITALL) != 1) _exit(1);
      if (m[0] == 0) break;
      if (recv(sp[0], m + 1, m[0], MSG_WAITALL) != m[0]) _exit(2);
      for (int i = 1; i <= m[0]; ++i) m[i] ^= 0x5a;
      if (send(sp[0], m, 1u + m[0], 0) != 1 + m[0]) _exit(3);
    }
    // seqpacket: each recv one record, peeked first
    for (;;) {
      char m[2048], peek[2048];
      ssize_t p = recv(dp[0], peek, sizeof peek, MSG_PEEK);
      ssize_t n = recv(dp[0], m, sizeof m, 0);
      if (n <= 0 || p != n || memcmp(m, peek, (size_t)n)) _exit(4);
      if (n == 1) break;
      if (send(dp[0], &n, sizeof n, MSG_NOSIGNAL) != sizeof n) _exit(5);
    }
    _exit(0);
  }
  close(sp[0]);
  close(dp[0]);
  unsigned s = seed();
  unsigned long h = FNV0;
  for (int i = 0; i < rounds; ++i) {
    unsigned char m[256], back[256];
    m[0] = (unsigned char)(1 + rand_r(&s) % 100);
    for (int j = 1; j <= m[0]; ++j) m[j] = (unsigned char)rand_r(&s);
    if (send(sp[1], m, 1u + m[0], 0) != 1 + m[0]) return 11;
    size_t got = 0;
    while (got < 1u + m[0]) {
      ssize_t n = recv(sp[1], back + got, 1u + m[0] - got, 0);
      if (n <= 0) return 12;
      got += (size_t)n;
    }
    h = fnv(h, back, got);
  }
  unsigned char end = 0;
  if (send(sp[1], &end, 1, 0) != 1) return 13;
  unsigned long lengths = FNV0;
  for (int i = 0; i < rounds / 4; ++i) {
    char m[2048];
    size_t n = 2 + (size_t)rand_r(&s) % (sizeof m - 2);
    memset(m, rand_r(&s), n);
    if (send(dp[1], m, n, 0) != (ssize_t)n) return 14;
    ssize_t echoed = 0;
    if (recv(dp[1], &echoed, sizeof echoed, 0) != sizeof echoed || echoed != (ssize_t)n) return 15;
    lengths = fnv(lengths, &echoed, sizeof echoed);
  }
  if (send(dp[1], "x", 1, 0) != 1) return 16;
  int status;
  waitpid(child, &status, 0);
  printf("sendrecv %d %016lx seqpacket %016lx child %d\n", rounds, h, lengths,
         WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status));
  // the peer is gone: EPIPE, SIGPIPE only without MSG_NOSIGNAL
  signal(SIGPIPE, on_sigpipe);
  sigpipes = 0;
  errno = 0;
  ssize_t r = send(sp[1], "y", 1, MSG_NOSIGNAL);
  printf("send MSG_NOSIGNAL: %zd %s, %d SIGPIPE\n", r, errno == EPIPE ? "EPIPE" : strerror(errno),
         (int)sigpipes);
  errno = 0;
  r = send(sp[1], "y", 1, 0);
  printf("send: %zd %s, %d SIGPIPE\n", r, errno == EPIPE ? "EPIPE" : strerror(errno), (int)sigpipes);
  return h ? 0 : 17;
}

static int alarm_pipe[2];
static volatile sig_atomic_t alarms;
static void on_alarm(int sig) {
  (void)sig;
  char c = (char)alarms;
  int saved = errno;
  if (write(alarm_pipe[1], &c, 1) == 1) alarms++;
  errno = saved;
}

static void arm_timer(int round) {
  if (round != 20) return;
  struct itimerval it = {{0, 1000}, {0, 1000}};
  setitimer(ITIMER_REAL, &it, NULL);
}

static int signals(int rounds) {
  if (pipe2(alarm_pipe, O_NONBLOCK)) return 10;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  ask_hook = arm_timer;
  int there[2], back[2];
  if (pipe(there) || pipe(back)) return 11;
  struct pair p = {there[0], back[1], -1};
  pthread_t t;
  if (pthread_create(&t, NULL, echo_thread, &p)) return 12;
  unsigned s = seed();
  unsigned long h = ask(there[1], back[0], rounds, &s);
  pthread_join(t, NULL);
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  signal(SIGALRM, SIG_IGN);
  char buf[4096];
  ssize_t n;
  long drained = 0;
  while ((n = read(alarm_pipe[0], buf, sizeof buf)) > 0) drained += n;
  printf("signals %d %016lx echo %d; the handler wrote %d bytes, %ld read: %s\n", rounds, h,
         p.result, (int)alarms, drained, drained == alarms ? "same" : "DIFFERENT");
  return h && p.result == 0 && drained == alarms ? 0 : 13;
}

struct writer {
  int fd, count;
  unsigned seed;
};

static void* write_and_exit(void* arg) {
  struct writer* w = arg;
  for (int i = 0; i < w->count; ++i) {
    unsigned long m[2] = {(unsigned long)rand_r(&w->seed), (unsigned long)i};
    if (write(w->fd, m, sizeof m) != sizeof m) break;
  }
  return NULL;  // exits with its last writes still in the buffer
}

static int exits(int count) {
  if (count > 400) count = 400;  // 5 writers * 400 * 16 bytes fit in the pipe
  int p[2];
  if (pipe(p)) return 10;
  unsigned s = seed();
  pthread_t t[4];
  struct writer w[5];
  for (int i = 0; i < 5; ++i) w[i] = (struct writer){p[1], count, s + (unsigned)i};
  pid_t child = fork();
  if (child == 0) {
    write_and_exit(&w[4]);
    _exit(0);
  }
  for (int i = 0; i < 4; ++i)
    if (pthread_create(&t[i], NULL, write_and_exit, &w[i])) return 11;
  for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
  int status;
  waitpid(child, &status, 0);
  close(p[1]);
  // Order-independent: the writers' interleaving is the schedule's.
  unsigned long sum = 0, m[2];
  int messages = 0;
  while (read_all(p[0], m, sizeof m) == 0) {
    sum += fnv(FNV0, m, sizeof m);
    messages++;
  }
  printf("exits: %d messages of %d, sum %016lx, child %d\n", messages, 5 * count, sum,
         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return messages == 5 * count ? 0 : 12;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char* mode = argc > 1 ? argv[1] : "";
  int n = argc > 2 ? atoi(argv[2]) : 1000;
  if (!strcmp(mode, "procs")) return procs(n, 0);
  if (!strcmp(mode, "socket")) return procs(n, 1);
  if (!strcmp(mode, "threads")) return threads(n);
  if (!strcmp(mode, "eagain")) return eagain();
  if (!strcmp(mode, "epipe")) return epipe();
  if (!strcmp(mode, "nonblock")) return nonblock();
  if (!strcmp(mode, "external")) return external();
  if (!strcmp(mode, "signals")) return signals(n);
  if (!strcmp(mode, "sendrecv")) return sendrecv(n);
  if (!strcmp(mode, "exits")) return exits(n);
  fprintf(stderr, "usage: sysbuf_stream procs|threads|socket N | eagain | epipe | nonblock | external | signals N | exits N | sendrecv N\n");
  return 2;
}
