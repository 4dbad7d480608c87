// Multithreaded workload: 4 worker threads share a work queue under a mutex
// and crunch numbers between items (a small thread pool). Exercises futex
// waits and wake-ups and preemption in user code.
#include <pthread.h>
#include <stdio.h>

enum { kThreads = 4, kItems = 400, kWorkPerItem = 200000 };
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int next;
static double total;

static void* worker(void* arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&lock);
    int item = next < kItems ? next++ : -1;
    pthread_mutex_unlock(&lock);
    if (item < 0) return NULL;
    double x = item;
    for (int i = 0; i < kWorkPerItem; ++i) x = x * 1.0000001 + 0.5;
    pthread_mutex_lock(&lock);
    total += x;
    pthread_mutex_unlock(&lock);
  }
}

int main(void) {
  pthread_t t[kThreads];
  for (int i = 0; i < kThreads; ++i) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < kThreads; ++i) pthread_join(t[i], NULL);
  printf("%g\n", total);
  return 0;
}
