// Robust mutexes whose owner dies holding them: a thread that exits, and a
// child process killed by its parent. The kernel marks each mutex
// FUTEX_OWNER_DIED when its owner dies; the next locker gets EOWNERDEAD.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t* mutex;

static void* lockAndExit(void* arg) {
  (void)arg;
  pthread_mutex_lock(mutex);
  return NULL;  // exits holding it
}

static const char* lockResult(void) {
  int r = pthread_mutex_lock(mutex);
  if (r == EOWNERDEAD) {
    pthread_mutex_consistent(mutex);
    pthread_mutex_unlock(mutex);
    return "EOWNERDEAD";
  }
  if (r == 0) pthread_mutex_unlock(mutex);
  return r == 0 ? "0" : "error";
}

int main(void) {
  mutex = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutex_init(mutex, &attr);

  pthread_t t;
  pthread_create(&t, NULL, lockAndExit, NULL);
  pthread_join(t, NULL);
  printf("after a thread died holding it: %s\n", lockResult());

  int ready[2];
  pipe(ready);
  pid_t child = fork();
  if (child == 0) {
    pthread_mutex_lock(mutex);
    write(ready[1], "x", 1);
    pause();
    return 1;
  }
  char c;
  read(ready[0], &c, 1);
  kill(child, SIGKILL);
  int status;
  waitpid(child, &status, 0);
  printf("after child %d was killed holding it: %s\n", child, lockResult());
  unsigned value;
  getrandom(&value, sizeof value, 0);
  printf("pid %d random %u\n", getpid(), value);
  return 0;
}
