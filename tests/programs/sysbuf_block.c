// Reads and writes on pipes and sockets that block inside the syscall
// buffer (docs/syscall-buffer.md "Blocking in the buffer"): two processes,
// values that differ on every run (pids, clocks), and the events that meet
// a call asleep there: a timer's signal with and without SA_RESTART, a kill
// from the other process, EOF when the writer exits, EPIPE/SIGPIPE when the
// reader exits, a socketpair.
//
//   sysbuf_block pingpong N | restart | eintr | kill | eof | epipe | socket N
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static void onSignal(int sig) {
  (void)sig;
  ++handled;
}

static uint64_t now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleepMs(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, 0);
}

static void handle(int sig, int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = onSignal;
  sa.sa_flags = flags;
  sigaction(sig, &sa, 0);
}

static int waitChild(pid_t child) {
  int status = 0;
  if (waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Parent and child pass a value that changes every round (the child's pid
// and clock mixed in) over two pipes, or over one socketpair.
static int pingpong(int rounds, int socket) {
  int there[2], back[2];
  if (socket) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, there)) return 1;
    back[0] = there[0];
    back[1] = there[1];
  } else if (pipe(there) || pipe(back)) {
    return 1;
  }
  pid_t child = fork();
  if (child == 0) {
    int in = socket ? there[1] : there[0], out = socket ? there[1] : back[1];
    for (int i = 0; i < rounds; ++i) {
      uint64_t v;
      ssize_t n = socket && (i & 1) ? recv(in, &v, sizeof v, 0) : read(in, &v, sizeof v);
      if (n != sizeof v) _exit(2);
      v = v * 31 + (uint64_t)getpid() + (now() & 0xff);
      n = socket && (i & 1) ? send(out, &v, sizeof v, 0) : write(out, &v, sizeof v);
      if (n != sizeof v) _exit(3);
    }
    _exit(0);
  }
  int out = socket ? there[0] : there[1], in = socket ? there[0] : back[0];
  uint64_t v = now(), hash = 0;
  for (int i = 0; i < rounds; ++i) {
    if (write(out, &v, sizeof v) != sizeof v) return 4;
    if (read(in, &v, sizeof v) != sizeof v) return 5;
    hash = hash * 1099511628211u ^ v;
  }
  printf("%s %d rounds hash %016llx child %d\n", socket ? "socket" : "pingpong", rounds,
         (unsigned long long)hash, waitChild(child));
  return 0;
}

// A read asleep in the buffer when a timer's SIGALRM comes: with SA_RESTART
// it goes on waiting and gets the child's value; without, it fails with
// EINTR after the handler ran, and the program reads again.
static int timerSignal(int restart) {
  int p[2];
  if (pipe(p)) return 1;
  handle(SIGALRM, restart ? SA_RESTART : 0);
  pid_t child = fork();
  if (child == 0) {
    sleepMs(300);
    uint64_t v = now() ^ (uint64_t)getpid();
    _exit(write(p[1], &v, sizeof v) == sizeof v ? 0 : 2);
  }
  struct itimerval it = {{0, 0}, {0, 30000}};
  setitimer(ITIMER_REAL, &it, 0);
  uint64_t v = 0;
  int eintr = 0;
  ssize_t n;
  while ((n = read(p[0], &v, sizeof v)) < 0 && errno == EINTR) eintr = handled ? eintr + 1 : -100;
  printf("%s: read %zd value %016llx eintr %d handled %d child %d\n",
         restart ? "restart" : "eintr", n, (unsigned long long)v, eintr, (int)handled,
         waitChild(child));
  return 0;
}

// The other process interrupts the reader with kill(), then writes.
static int killReader(void) {
  int p[2];
  if (pipe(p)) return 1;
  handle(SIGUSR1, 0);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child == 0) {
    sleepMs(100);
    kill(parent, SIGUSR1);
    sleepMs(50);
    uint64_t v = now() ^ (uint64_t)getpid();
    _exit(write(p[1], &v, sizeof v) == sizeof v ? 0 : 2);
  }
  uint64_t v = 0;
  int eintr = 0;
  ssize_t n;
  while ((n = read(p[0], &v, sizeof v)) < 0 && errno == EINTR) ++eintr;
  printf("kill: read %zd value %016llx eintr %d handled %d child %d\n", n,
         (unsigned long long)v, eintr, (int)handled, waitChild(child));
  return 0;
}

// The writer sends a few values apart in time and exits: the reader, asleep
// in the buffer, gets them and then EOF.
static int eof(void) {
  int p[2];
  if (pipe(p)) return 1;
  pid_t child = fork();
  if (child == 0) {
    close(p[0]);
    for (int i = 0; i < 5; ++i) {
      sleepMs(20);
      uint64_t v = now() + (uint64_t)i;
      if (write(p[1], &v, sizeof v) != sizeof v) _exit(2);
    }
    _exit(0);
  }
  close(p[1]);
  uint64_t v, hash = 0;
  int reads = 0;
  ssize_t n;
  while ((n = read(p[0], &v, sizeof v)) > 0) {
    hash = hash * 31 + v;
    ++reads;
  }
  printf("eof: %d values hash %016llx last %zd child %d\n", reads, (unsigned long long)hash, n,
         waitChild(child));
  return 0;
}

// The writer fills the pipe and blocks in the buffer; the reader exits
// without reading: EPIPE, and SIGPIPE to the handler.
static int epipe(void) {
  int p[2];
  if (pipe(p)) return 1;
  handle(SIGPIPE, 0);
  pid_t child = fork();
  if (child == 0) {
    close(p[1]);
    sleepMs(150);
    _exit((int)(getpid() & 0x3f));
  }
  close(p[0]);
  char page[4096];
  memset(page, (int)(now() & 0xff), sizeof page);
  int writes = 0;
  ssize_t n;
  while ((n = write(p[1], page, sizeof page)) == (ssize_t)sizeof page) ++writes;
  int error = errno;
  printf("epipe: %d writes then %zd errno %s sigpipe %d child %d pid %d\n", writes, n,
         error == EPIPE ? "EPIPE" : strerror(error), (int)handled, waitChild(child),
         (int)getpid());
  return 0;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "pingpong";
  int count = argc > 2 ? atoi(argv[2]) : 200;
  setvbuf(stdout, 0, _IONBF, 0);
  if (!strcmp(mode, "pingpong")) return pingpong(count, 0);
  if (!strcmp(mode, "socket")) return pingpong(count, 1);
  if (!strcmp(mode, "restart")) return timerSignal(1);
  if (!strcmp(mode, "eintr")) return timerSignal(0);
  if (!strcmp(mode, "kill")) return killReader();
  if (!strcmp(mode, "eof")) return eof();
  if (!strcmp(mode, "epipe")) return epipe();
  fprintf(stderr, "usage: sysbuf_block pingpong N|socket N|restart|eintr|kill|eof|epipe\n");
  return 64;
}
