// Futex wake-ups through the syscall buffer (docs/syscall-buffer.md):
// threads hand work over with a contended mutex and condition variables
// (glibc's FUTEX_WAKE_PRIVATE) and with raw futex wait/wake on a shared
// word (FUTEX_WAKE, not private). Each waiter is blocked in a traced wait
// when another thread's buffered wake lets it go. What is printed depends
// on random values and on which thread took which item: it differs on
// every native run, and a replay must print it again.
//
// Usage: sysbuf_futex ITEMS
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

enum { kConsumers = 3, kQueue = 4 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static uint64_t queue[kQueue];
static int head, count, done;
static uint64_t order_hash = 1469598103934665603ull;  // FNV-1a over (consumer, item)
static uint64_t sums[kConsumers];
static int taken[kConsumers];

static uint64_t mix(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ull;
  return h;
}

static void* consumer(void* arg) {
  int id = (int)(intptr_t)arg;
  for (;;) {
    pthread_mutex_lock(&lock);
    while (count == 0 && !done) pthread_cond_wait(&not_empty, &lock);
    if (count == 0) {
      pthread_mutex_unlock(&lock);
      return NULL;
    }
    uint64_t v = queue[head];
    head = (head + 1) % kQueue;
    --count;
    order_hash = mix(order_hash, (uint64_t)id << 56 | v);
    pthread_cond_signal(&not_full);
    pthread_mutex_unlock(&lock);
    // a little work outside the lock, so the others contend for it
    for (int i = 0; i < 2000; ++i) v = v * 6364136223846793005ull + 1442695040888963407ull;
    sums[id] += v;
    ++taken[id];
  }
}

// Raw futexes: two threads pass a token back and forth through one word.
static _Atomic uint32_t word;
static uint64_t token;

// An inline call site shaped as glibc's (`mov $nr,%eax; syscall; cmp
// $-4096,%rax`), which rec can patch (syscall() sets the number from a
// register: its site stays traced).
static long futex(_Atomic uint32_t* addr, int op, uint32_t val) {
  long result;
  register long r10 __asm__("r10") = 0;
  __asm__ volatile("mov $202, %%eax\n\tsyscall\n\tcmp $-4096, %%rax"
                   : "=a"(result)
                   : "D"(addr), "S"(op), "d"(val), "r"(r10)
                   : "rcx", "r11", "memory", "cc");
  return result;
}

static void* pong(void* arg) {
  long rounds = (long)(intptr_t)arg;
  for (long i = 0; i < rounds; ++i) {
    while (word != 1) futex(&word, FUTEX_WAIT, 0);
    token = token * 31 + 7;
    word = 0;
    futex(&word, FUTEX_WAKE, 1);
  }
  return NULL;
}

int main(int argc, char** argv) {
  long items = argc > 1 ? atol(argv[1]) : 2000;
  uint64_t seed;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) return 1;

  pthread_t t[kConsumers];
  for (int i = 0; i < kConsumers; ++i) pthread_create(&t[i], NULL, consumer, (void*)(intptr_t)i);
  uint64_t x = seed;
  for (long n = 0; n < items; ++n) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    pthread_mutex_lock(&lock);
    while (count == kQueue) pthread_cond_wait(&not_full, &lock);
    queue[(head + count) % kQueue] = x;
    ++count;
    pthread_cond_signal(&not_empty);
    pthread_mutex_unlock(&lock);
  }
  pthread_mutex_lock(&lock);
  done = 1;
  pthread_cond_broadcast(&not_empty);
  pthread_mutex_unlock(&lock);
  uint64_t total = 0;
  int all = 0;
  for (int i = 0; i < kConsumers; ++i) {
    pthread_join(t[i], NULL);
    total += sums[i];
    all += taken[i];
  }
  printf("queue %ld items %d taken sum %016llx order %016llx\n", items, all,
         (unsigned long long)total, (unsigned long long)order_hash);

  long rounds = items / 4;
  token = seed;
  pthread_t p;
  pthread_create(&p, NULL, pong, (void*)(intptr_t)rounds);
  for (long i = 0; i < rounds; ++i) {
    token = token * 17 + 3;
    word = 1;
    futex(&word, FUTEX_WAKE, 1);
    while (word != 0) futex(&word, FUTEX_WAIT, 1);
  }
  pthread_join(p, NULL);
  printf("futex %ld rounds token %016llx\n", rounds, (unsigned long long)token);
  return 0;
}
