// Priority-inheritance mutexes (FUTEX_LOCK_PI/UNLOCK_PI, the kernel writes
// owner ids into the futex word) contended by three threads, plus a
// robust mutex. Prints a random-seeded total and the order of lock holders.
#include <pthread.h>
#include <stdio.h>
#include <sys/random.h>

static pthread_mutex_t pi;
static unsigned long total;
static char order[64];
static int turns;

static void* work(void* arg) {
  long id = (long)arg;
  for (int i = 0; i < 5; ++i) {
    pthread_mutex_lock(&pi);
    unsigned r = 0;
    getrandom(&r, sizeof r, 0);
    total += r % 1000;
    if (turns < 63) order[turns++] = (char)('a' + id);
    pthread_mutex_unlock(&pi);
  }
  return NULL;
}

int main(void) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&pi, &attr);
  pthread_t t[3];
  for (long i = 0; i < 3; ++i) pthread_create(&t[i], NULL, work, (void*)i);
  for (int i = 0; i < 3; ++i) pthread_join(t[i], NULL);
  printf("total %lu order %s\n", total, order);
  return 0;
}
