// set_tid_address through the syscall buffer: detached threads each point
// their clear_child_tid at a word of their own, from one inline site shaped
// as ld.so's (`mov $218,%eax; syscall; mov %eax,disp32(%rbx)`), then exit.
// The kernel clears each word and wakes its futex when the thread exits:
// main waits for that (a replay that did not make the call again would hang
// or see the word unchanged), and checks that the call returned the
// thread's tid (stored by the displaced move). Output differs natively by
// the tids and a random nonce.
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

struct Slot {
  char pad[0x2d0];   // the store's displacement, as in ld.so's
  int32_t stored;    // what the site's move wrote: the call's result
  _Atomic int32_t word;  // cleared by the kernel at the thread's exit
  int32_t tid;
};

static void setTidAddress(struct Slot* s) {
  // rbx: the slot; rdi: the word; the result stored at 0x2d0(%rbx)
  __asm__ volatile("mov $218, %%eax\n\tsyscall\n\tmov %%eax, 0x2d0(%%rbx)"
                   :
                   : "b"(s), "D"(&s->word)
                   : "rax", "rcx", "r11", "memory", "cc");
}

static void* thread(void* arg) {
  struct Slot* s = arg;
  s->tid = (int32_t)gettid();
  setTidAddress(s);
  return NULL;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20;
  uint64_t nonce = 0;
  getrandom(&nonce, sizeof nonce, 0);
  printf("nonce %016llx\n", (unsigned long long)nonce);
  struct Slot* slots = calloc((size_t)n, sizeof *slots);
  int good = 0;
  for (int i = 0; i < n; ++i) {
    struct Slot* s = &slots[i];
    s->word = -1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    if (pthread_create(&t, &attr, thread, s) != 0) return 2;
    pthread_attr_destroy(&attr);
    // the kernel clears the word and wakes it at the thread's exit
    int32_t v;
    while ((v = s->word) != 0) syscall(SYS_futex, &s->word, FUTEX_WAIT, v, NULL, NULL, 0);
    if (s->stored == s->tid) ++good;
    if (i < 3) printf("thread %d: tid %d, set_tid_address returned %d, word %d\n", i, s->tid,
                      s->stored, (int)s->word);
  }
  printf("%d of %d threads: the result was the tid, the word cleared at exit\n", good, n);
  return good == n ? 0 : 1;
}
