// A thread group ended by one of its threads while the others are blocked
// in the kernel (pthread_cond_wait, read on a pipe, sleep), spinning in user
// code, or created a moment ago and not yet run. The kernel kills them all
// and reports their deaths in any order; replay must follow.
//
//   group_exit worker   a worker calls exit() while main waits in pthread_join
//   group_exit main     main calls exit() with the workers still there
//   group_exit exec     main execs itself (the kernel kills the workers first)
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int pipeFds[2];
static int blocked;  // workers that reached their blocking call (atomic)
static volatile int stop;

static void arrived(void) {
  __atomic_add_fetch(&blocked, 1, __ATOMIC_SEQ_CST);
}

static void* condWaiter(void* arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  arrived();
  for (;;) pthread_cond_wait(&never, &lock);
  return NULL;
}

static void* reader(void* arg) {
  (void)arg;
  char c;
  arrived();
  read(pipeFds[0], &c, 1);
  return NULL;
}

static void* sleeper(void* arg) {
  (void)arg;
  arrived();
  sleep(1000);
  return NULL;
}

static void* spinner(void* arg) {
  (void)arg;
  volatile unsigned long n = 0;
  arrived();
  while (!stop) n++;
  return NULL;
}

static void waitForWorkers(int count) {
  while (__atomic_load_n(&blocked, __ATOMIC_SEQ_CST) < count) usleep(1000);
}

static void report(const char* who) {
  unsigned value;
  getrandom(&value, sizeof value, 0);
  printf("pid %d random %u: %s exits with the others blocked\n", getpid(), value, who);
  fflush(stdout);
}

static void* exiter(void* arg) {
  (void)arg;
  waitForWorkers(5);
  report("a worker");
  exit(0);
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "worker";
  if (strcmp(mode, "after-exec") == 0) {
    report("the exec'd image");
    return 0;
  }
  pipe(pipeFds);
  pthread_t t;
  for (int i = 0; i < 2; ++i) pthread_create(&t, NULL, condWaiter, NULL);
  pthread_create(&t, NULL, reader, NULL);
  pthread_create(&t, NULL, sleeper, NULL);
  pthread_create(&t, NULL, spinner, NULL);
  if (strcmp(mode, "worker") == 0) {
    pthread_create(&t, NULL, exiter, NULL);
    pthread_join(t, NULL);
    return 1;
  }
  waitForWorkers(5);
  // Born just before the end: the kernel may kill them before they first run.
  for (int i = 0; i < 3; ++i) pthread_create(&t, NULL, spinner, NULL);
  if (strcmp(mode, "exec") == 0) {
    char* args[] = {argv[0], "after-exec", NULL};
    execv("/proc/self/exe", args);
    return 2;
  }
  report("main");
  exit(3);
}
