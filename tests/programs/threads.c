// Threads: a producer/consumer with a mutex and condition variable, worker
// threads printing random numbers and their tids, and a racy counter
// (plain increments without a lock). Prints values that differ every run.
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { kWorkers = 4, kItems = 20, kIncrements = 200000 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int queue[kItems];
static int head, tail;
static long racy;

static unsigned rnd(void) {
  unsigned r = 0;
  getrandom(&r, sizeof r, 0);
  return r;
}

static void* producer(void* arg) {
  (void)arg;
  for (int i = 0; i < kItems; ++i) {
    pthread_mutex_lock(&lock);
    queue[tail++] = (int)(rnd() % 1000);
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
  }
  return NULL;
}

static void* consumer(void* arg) {
  long sum = 0;
  for (int i = 0; i < kItems; ++i) {
    pthread_mutex_lock(&lock);
    while (head == tail) pthread_cond_wait(&changed, &lock);
    sum += queue[head++];
    pthread_mutex_unlock(&lock);
  }
  *(long*)arg = sum;
  return NULL;
}

static void* worker(void* arg) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  for (int i = 0; i < kIncrements; ++i) racy++;
  pthread_mutex_lock(&lock);
  printf("worker %ld tid %ld random %08x at %ld.%09ld\n", (long)(intptr_t)arg,
         (long)syscall(SYS_gettid), rnd(), (long)now.tv_sec, now.tv_nsec);
  pthread_mutex_unlock(&lock);
  return NULL;
}

int main(void) {
  pthread_t p, c, w[kWorkers];
  long sum = 0;
  pthread_create(&c, NULL, consumer, &sum);
  pthread_create(&p, NULL, producer, NULL);
  for (long i = 0; i < kWorkers; ++i) pthread_create(&w[i], NULL, worker, (void*)(intptr_t)i);
  pthread_join(p, NULL);
  pthread_join(c, NULL);
  for (int i = 0; i < kWorkers; ++i) pthread_join(w[i], NULL);
  printf("consumed sum %ld racy counter %ld pid %d\n", sum, racy, (int)getpid());
  return 0;
}
