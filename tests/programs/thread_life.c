// Thread lifecycle: 100 threads created and joined, a signal sent to one
// thread (pthread_kill), a thread exiting while others run, sched_getaffinity
// and /proc/self/task, then exit() while detached threads still run.
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { kThreads = 100 };
static unsigned values[kThreads];
static atomic_int signalled;
static atomic_int stop;

static void* draw(void* arg) {
  getrandom(&values[(long)arg], sizeof values[0], 0);
  return NULL;
}

static void onUsr1(int sig) {
  (void)sig;
  atomic_store(&signalled, (int)syscall(SYS_gettid));
}

static void* waitForSignal(void* arg) {
  (void)arg;
  while (!atomic_load(&signalled)) sched_yield();
  return NULL;
}

static void* spinForever(void* arg) {
  (void)arg;
  volatile unsigned long n = 0;
  while (!atomic_load(&stop)) n++;
  return NULL;
}

int main(void) {
  pthread_t t[kThreads];
  for (long i = 0; i < kThreads; ++i) pthread_create(&t[i], NULL, draw, (void*)i);
  unsigned long sum = 0;
  for (int i = 0; i < kThreads; ++i) {
    pthread_join(t[i], NULL);
    sum += values[i];
  }
  printf("100 threads drew sum %lu\n", sum);

  signal(SIGUSR1, onUsr1);
  pthread_t w;
  pthread_create(&w, NULL, waitForSignal, NULL);
  pthread_kill(w, SIGUSR1);
  pthread_join(w, NULL);
  printf("signal handled by a thread: %s\n", atomic_load(&signalled) ? "yes" : "no");

  cpu_set_t set;
  sched_getaffinity(0, sizeof set, &set);
  printf("cpus %d pid %d\n", CPU_COUNT(&set), (int)getpid());

  pthread_t spinners[3];
  for (int i = 0; i < 3; ++i) pthread_create(&spinners[i], NULL, spinForever, NULL);
  int tasks = 0;
  DIR* d = opendir("/proc/self/task");
  for (struct dirent* e; d && (e = readdir(d));) tasks += e->d_name[0] != '.';
  if (d) closedir(d);
  printf("tasks in /proc/self/task: %d\n", tasks);
  fflush(stdout);
  exit(3);  // exit_group with three threads still spinning
}
