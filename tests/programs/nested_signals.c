// Two signals sent at once to a process whose main thread is blocked in a
// read: the kernel delivers the second inside the first's handler. Each
// handler prints what its frame holds of the extended state (the XSAVE
// image: its XSTATE_BV header and a hash of the whole image, including the
// parts the kernel leaves unwritten) and formats its line with vsnprintf,
// whose first call goes through lazy binding (an XSAVEC image left on the
// handler's stack). On AVX-512 machines both differ between runs of the
// same program; the replay must reproduce the recording's.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static int to_thread[2], from_thread[2];

static uint64_t fnv1a(const unsigned char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static int format(char* line, size_t size, const char* format, ...) {
  va_list args;
  va_start(args, format);
  int n = vsnprintf(line, size, format, args);
  va_end(args);
  return n;
}

static void handler(int signo, siginfo_t* info, void* context) {
  (void)info;
  // Formatting first (the walk to the second signal's point passes the
  // lazy binding of vsnprintf, then stops in the hash's loop).
  char name[64];
  int named = format(name, sizeof name, "%s", signo == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
  const unsigned char* fp = (const unsigned char*)((ucontext_t*)context)->uc_mcontext.fpregs;
  uint32_t magic = 0, size = 512;
  uint64_t xstate_bv = 0;
  memcpy(&magic, fp + 464, 4);  // software-reserved bytes: FP_XSTATE_MAGIC1, sizes
  if (magic == 0x46505853u) {
    memcpy(&size, fp + 464 + 16, 4);
    memcpy(&xstate_bv, fp + 512, 8);
  }
  uint64_t hash = fnv1a(fp, size);
  char line[200];
  int n = format(line, sizeof line, "%.*s: frame xstate_bv %#llx, %u bytes, hash %016llx\n", named,
                 name, (unsigned long long)xstate_bv, size, (unsigned long long)hash);
  if (write(1, line, (size_t)n) != n) _exit(3);
}

static void* sender(void* arg) {
  (void)arg;
  sigset_t both;
  sigemptyset(&both);
  sigaddset(&both, SIGUSR1);
  sigaddset(&both, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &both, NULL);
  char c;
  if (read(to_thread[0], &c, 1) != 1) return NULL;
  kill(getpid(), SIGUSR1);
  kill(getpid(), SIGUSR2);
  if (write(from_thread[1], "K", 1) != 1) return NULL;
  return NULL;
}

int main(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  char start[64];
  int n = snprintf(start, sizeof start, "started at %ld ns\n", now.tv_nsec);
  if (write(1, start, (size_t)n) != n) return 1;
  if (pipe(to_thread) || pipe(from_thread)) return 1;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = handler;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaction(SIGUSR1, &action, NULL);
  sigaction(SIGUSR2, &action, NULL);
  for (int round = 0; round < 3; ++round) {
    pthread_t thread;
    pthread_create(&thread, NULL, sender, NULL);
    char c;
    if (write(to_thread[1], "J", 1) != 1 || read(from_thread[0], &c, 1) != 1) return 2;
    pthread_join(thread, NULL);
  }
  return 0;
}
