// A thread makes traced syscalls back to back, then spins in user code on a
// flag only another thread sets. A preemption interrupt that reaches the
// thread as it enters one of those syscalls is dropped by the kernel (any
// ptrace stop clears a pending interrupt); a recorder still waiting for it
// would never preempt the thread again, and the spin would never end.
// REC_TEST_DROP_INTERRUPT makes rec send such interrupts on purpose
// (Scheduler::run); tests/integration/threads.sh.
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static atomic_int phase, go;

static void* helper(void* arg) {
  (void)arg;
  long spins = 0;
  while (!atomic_load_explicit(&phase, memory_order_acquire)) ++spins;
  atomic_store_explicit(&go, 1, memory_order_release);
  return (void*)spins;
}

int main(int argc, char** argv) {
  int calls = argc > 1 ? atoi(argv[1]) : 20000;
  pthread_t t;
  pthread_create(&t, NULL, helper, NULL);
  for (int i = 0; i < calls; ++i) (void)getppid();  // a traced call (not buffered)
  atomic_store_explicit(&phase, 1, memory_order_release);
  long spins = 0;
  while (!atomic_load_explicit(&go, memory_order_acquire)) ++spins;
  void* helperSpins;
  pthread_join(t, &helperSpins);
  // The spin counts differ natively from run to run; a replay repeats them.
  printf("done after %d calls, spins %ld %ld\n", calls, spins, (long)helperSpins);
  return 0;
}
