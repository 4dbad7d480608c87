// Asynchronous points that only an exact replay tells apart (issue 10).
// Each mode prints values that depend on where a timer signal landed, so
// they differ on every native run; a replay must print the same.
//
//   global-round  SIGALRM lands in an inner loop whose registers and stack
//                 are the same every round of an outer loop: the round
//                 lives only in a global. The handler prints it.
//   jmp-self      SIGALRM lands in `jmp .` (2 bytes); the handler prints
//                 how many rounds a counter loop did before and jumps out.
//   dec-jnz       SIGALRM lands in `dec %ecx; jnz` (4 bytes in all); the
//                 handler prints the count left in rcx.
//   loop-insn     SIGALRM lands in `loop .` (2 bytes, a rel8 jump onto
//                 itself that counts rcx down); the handler prints rcx.
//   pause-spin    a thread spins in `pause; jmp` on a flag beside a main
//                 that sleeps and counts; preemptions land in the spin.
//   red-zone      SIGALRM lands in a loop calling a function that leaves
//                 a different word 0x88 below the caller's stack pointer
//                 each round.
//   syscall-spin  a thread loops over a syscall that rec lets through
//                 without a stop (sigaltstack) beside a main that
//                 sleeps: the recorder's walk to a preemption point steps
//                 over that syscall, whose saved flags (r11) must not keep
//                 rec's trap flag.
//   stack-round   SIGALRM lands in a byte loop clearing a buffer, called with
//                 the same arguments every round of an outer loop whose count
//                 lives only on the stack, and whose rounds are longer than
//                 the recorder's walk (openssl speed's shape: SHA-256 and
//                 OPENSSL_cleanse in a loop counting on the stack).
//   probe-round   SIGALRM lands in a short probe loop that writes no memory
//                 and whose registers change every pass (a hash table's
//                 probe), called alike every round of an outer loop whose
//                 count lives only on the heap (CPython's dict lookups in
//                 its eval loop).
//   select-spin   two threads spin beside a main that sleeps in select()
//                 (python3.10's time.sleep): the kernel writes the time left
//                 into main's timeval when the call times out, while a
//                 spinner is walked to its preemption point (rounds of 3000
//                 instructions: a long walk).
//   item-loop     SIGALRM lands in a loop of four short instructions (none
//                 of 5 bytes: `mulsd; addsd; dec; jnz`) entered again for
//                 every work item, as bench/threads.c's is, at its `dec`
//                 (a rotated loop); the handler prints the item and rcx.
//                 Replay enters its point by a jump over several
//                 instructions (tracee/code_patch.h), not by a debug
//                 register stop per item; a point at the `addsd` has the
//                 jump cover the `dec`, entered from outside: a guard.
//   xmm-round     SIGALRM lands in a subroutine called from several sites
//                 every round of a loop that counts in xmm0 only, with the
//                 stack moved 4 KiB away (rr's signal_xmm_state's shape):
//                 the general registers, the words written and the stack
//                 are alike every round. The handler prints xmm0.
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static volatile long round_counter;  // only here: never in a register at the point
static sigjmp_buf escape;
static volatile long before;

static void arm_alarm(long usec) {
  struct itimerval it = {{0, 0}, {0, usec}};
  setitimer(ITIMER_REAL, &it, NULL);
}

static void on_alarm_print_round(int sig) {
  (void)sig;
  printf("signal in outer round %ld\n", round_counter);
  fflush(stdout);
  _exit(0);
}

static void on_alarm_escape(int sig, siginfo_t* info, void* context) {
  (void)sig;
  (void)info;
  ucontext_t* uc = context;
  printf("signal at rcx %lld after %ld rounds\n", (long long)uc->uc_mcontext.gregs[REG_RCX],
         before);
  fflush(stdout);
  siglongjmp(escape, 1);
}

__attribute__((noreturn)) static void global_round(void) {
  signal(SIGALRM, on_alarm_print_round);
  arm_alarm(20000 + (long)(getpid() % 7) * 3000);
  for (;;) {
    round_counter++;
    // Same registers every round: a fixed count, nothing written but rcx.
    __asm__ volatile("mov $20000, %%ecx\n1: dec %%ecx\n jnz 1b" ::: "rcx", "cc");
  }
}

static void install_escape(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_alarm_escape;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGALRM, &sa, NULL);
}

static int jmp_self(void) {
  install_escape();
  for (int i = 0; i < 3; ++i) {
    if (sigsetjmp(escape, 1) == 0) {
      before = 0;
      struct timespec t0, t;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      do {  // a random amount of work first: the count printed differs per run
        before++;
        clock_gettime(CLOCK_MONOTONIC, &t);
      } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 3000000);
      arm_alarm(10000);
      __asm__ volatile("xor %%ecx, %%ecx\n1: jmp 1b" ::: "rcx");
    }
  }
  return 0;
}

static int dec_jnz(void) {
  install_escape();
  for (int i = 0; i < 3; ++i) {
    if (sigsetjmp(escape, 1) == 0) {
      before = i;
      arm_alarm(5000 + i * 1000);
      __asm__ volatile("mov $0xffffffff, %%ecx\n1: dec %%ecx\n jnz 1b" ::: "rcx", "cc");
    }
  }
  return 0;
}

static volatile long item;
// A call per item, as threads.c's mutex: the copy of the loop replay runs
// ends before it, so the loop is entered from the program's code every item.
__attribute__((noinline)) static void next_item(void) {
  item = item + 1;
  __asm__ volatile("" ::: "memory");
}
static void on_alarm_item(int sig, siginfo_t* info, void* context) {
  (void)sig;
  (void)info;
  ucontext_t* uc = context;
  printf("signal in item %ld at rcx %lld\n", item, (long long)uc->uc_mcontext.gregs[REG_RCX]);
  fflush(stdout);
  siglongjmp(escape, 1);
}
static int item_loop(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_alarm_item;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGALRM, &sa, NULL);
  static double x;
  const double a = 1.0000001, b = 0.5;
  for (int i = 0; i < 3; ++i) {
    if (sigsetjmp(escape, 1) == 0) {
      arm_alarm(5000 + i * 1000);
      for (item = 0;; next_item())
        __asm__ volatile(
            "movsd %[x], %%xmm0\n movsd %[a], %%xmm1\n movsd %[b], %%xmm2\n mov $2000, %%ecx\n"
            " jmp 2f\n"
            "1: mulsd %%xmm1, %%xmm0\n addsd %%xmm2, %%xmm0\n2: dec %%rcx\n jnz 1b\n"
            " movsd %%xmm0, %[x]\n"
            : [x] "+m"(x)
            : [a] "m"(a), [b] "m"(b)
            : "rcx", "xmm0", "xmm1", "xmm2", "cc");
    }
  }
  return 0;
}

static int loop_insn(void) {
  install_escape();
  for (int i = 0; i < 3; ++i) {
    if (sigsetjmp(escape, 1) == 0) {
      before = i;
      arm_alarm(5000 + i * 1000);
      for (;;) __asm__ volatile("mov $0xffffffff, %%ecx\n1: loop 1b" ::: "rcx");
    }
  }
  return 0;
}

static volatile int stop_spinning;
static void* spinner(void* arg) {
  (void)arg;
  __asm__ volatile(
      "1: pause\n"
      " cmpl $0, %0\n"
      " je 1b\n" ::"m"(stop_spinning)
      : "cc");
  return NULL;
}

static int pause_spin(void) {
  pthread_t thread;
  pthread_create(&thread, NULL, spinner, NULL);
  long sum = 0;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < 20; ++i) {
    struct timespec nap = {0, 5000000};
    nanosleep(&nap, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t);
    sum += (t.tv_nsec / 1000) % 1000;
  }
  stop_spinning = 1;
  pthread_join(thread, NULL);
  printf("slept with a spinning thread: %ld\n", sum);
  return 0;
}

// Writes a value that changes every call far below its frame, where the
// caller's red zone ends.
__attribute__((noinline)) static void leave_word(long value) {
  volatile long frame[20];
  frame[0] = value;  // lowest address of the frame
  __asm__ volatile("" ::"r"(frame) : "memory");
}

static void on_alarm_print_before(int sig) {
  (void)sig;
  printf("signal after %ld calls\n", before);
  fflush(stdout);
  _exit(0);
}

__attribute__((noreturn)) static void red_zone(void) {
  signal(SIGALRM, on_alarm_print_before);
  arm_alarm(20000 + (long)(getpid() % 5) * 2000);
  for (;;) {
    leave_word(before);
    before++;
    __asm__ volatile("mov $500, %%ecx\n1: dec %%ecx\n jnz 1b" ::: "rcx", "cc");
  }
}

static volatile long syscall_rounds;
static void* syscall_spinner(void* arg) {
  (void)arg;
  while (!stop_spinning) {
    syscall(SYS_sigaltstack, NULL, NULL);
    syscall_rounds++;
  }
  return NULL;
}

static int syscall_spin(void) {
  pthread_t thread;
  pthread_create(&thread, NULL, syscall_spinner, NULL);
  for (int i = 0; i < 10; ++i) {
    struct timespec nap = {0, 5000000};
    nanosleep(&nap, NULL);
  }
  stop_spinning = 1;
  pthread_join(thread, NULL);
  printf("slept beside %ld syscall rounds\n", syscall_rounds);
  return 0;
}

static volatile long* volatile stack_round_count;  // volatile: read only by the handler
static void on_alarm_print_stack_round(int sig) {
  (void)sig;
  printf("signal in stack round %ld\n", *stack_round_count);
  fflush(stdout);
  _exit(0);
}

// Registers count; what it writes is the same every call.
__attribute__((noinline)) static void clear_bytes(volatile char* p, int n) {
  for (int pass = 0; pass < 8; ++pass)
    for (int i = 0; i < n; ++i) p[i] = 0;
}

__attribute__((noreturn)) static void stack_round(void) {
  volatile long count = 0;
  volatile char buf[256];
  stack_round_count = &count;
  signal(SIGALRM, on_alarm_print_stack_round);
  arm_alarm(20000 + (long)(getpid() % 7) * 3000);
  for (;;) {
    count++;
    clear_bytes(buf, sizeof buf);
  }
}

static volatile long* heap_round;  // the count: on the heap, its address in a global
static void on_alarm_print_heap_round(int sig) {
  (void)sig;
  printf("signal in heap round %ld\n", *heap_round);
  fflush(stdout);
  _exit(0);
}

__attribute__((noinline)) static void bump_heap_round(void) { (*heap_round)++; }

__attribute__((noreturn)) static void probe_round(void) {
  heap_round = calloc(1, sizeof *heap_round);
  signal(SIGALRM, on_alarm_print_heap_round);
  arm_alarm(20000 + (long)(getpid() % 7) * 3000);
  for (;;) {
    bump_heap_round();
    // Six probes; every caller-saved register the bump may have left the
    // count in is cleared first, so no register tells the rounds apart.
    __asm__ volatile(
        "xor %%eax, %%eax\n xor %%edx, %%edx\n xor %%esi, %%esi\n xor %%edi, %%edi\n"
        " xor %%r8d, %%r8d\n xor %%r9d, %%r9d\n xor %%r10d, %%r10d\n xor %%r11d, %%r11d\n"
        " mov $6, %%ecx\n"
        "1: imul $5, %%rdx, %%rdx\n"
        " add $0x12345, %%rdx\n"
        " dec %%ecx\n"
        " jnz 1b\n" ::
            : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "cc");
  }
}

static volatile long select_spins;
static void* long_round_spinner(void* arg) {
  long x = (long)arg;
  while (!stop_spinning) {
    __asm__ volatile(".rept 3000\n add $0x12345, %0\n .endr" : "+r"(x));
    select_spins++;
  }
  return NULL;
}

static int select_spin(void) {
  pthread_t threads[2];
  for (long i = 0; i < 2; ++i) pthread_create(&threads[i], NULL, long_round_spinner, (void*)i);
  long sum = 0;
  for (int i = 0; i < 10; ++i) {
    struct timeval nap = {0, 30000};
    select(0, NULL, NULL, NULL, &nap);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    sum += (t.tv_nsec / 1000) % 1000 + nap.tv_usec;
  }
  stop_spinning = 1;
  for (int i = 0; i < 2; ++i) pthread_join(threads[i], NULL);
  printf("selected beside spinning threads: %ld %d\n", sum, select_spins > 0);
  return 0;
}

static void on_alarm_print_xmm0(int sig, siginfo_t* info, void* context) {
  (void)sig;
  (void)info;
  ucontext_t* uc = context;
  const uint32_t* x = uc->uc_mcontext.fpregs->_xmm[0].element;
  printf("signal at xmm0 %llu\n", (unsigned long long)x[0] | (unsigned long long)x[1] << 32);
  fflush(stdout);
  _exit(0);
}

__attribute__((noreturn)) static void xmm_round(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_alarm_print_xmm0;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGALRM, &sa, NULL);
  arm_alarm(20000 + (long)(getpid() % 7) * 3000);
  __asm__ volatile(
      "pxor %%xmm0, %%xmm0\n"
      " mov $1, %%eax\n movq %%rax, %%xmm1\n"
      "1: call 2f\n call 2f\n call 2f\n call 2f\n jmp 1b\n"
      "2: sub $4096, %%rsp\n"
      " paddq %%xmm1, %%xmm0\n paddq %%xmm1, %%xmm0\n paddq %%xmm1, %%xmm0\n"
      " add $4096, %%rsp\n"
      " ret\n" ::
          : "rax", "xmm0", "xmm1", "cc");
  __builtin_unreachable();
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (!strcmp(mode, "global-round")) global_round();
  if (!strcmp(mode, "jmp-self")) return jmp_self();
  if (!strcmp(mode, "dec-jnz")) return dec_jnz();
  if (!strcmp(mode, "loop-insn")) return loop_insn();
  if (!strcmp(mode, "item-loop")) return item_loop();
  if (!strcmp(mode, "pause-spin")) return pause_spin();
  if (!strcmp(mode, "red-zone")) red_zone();
  if (!strcmp(mode, "syscall-spin")) return syscall_spin();
  if (!strcmp(mode, "stack-round")) stack_round();
  if (!strcmp(mode, "probe-round")) probe_round();
  if (!strcmp(mode, "xmm-round")) xmm_round();
  if (!strcmp(mode, "select-spin")) return select_spin();
  fprintf(stderr,
          "usage: exact_points global-round|jmp-self|dec-jnz|loop-insn|item-loop|pause-spin|red-zone|"
          "syscall-spin|stack-round|probe-round|xmm-round|select-spin\n");
  return 2;
}
