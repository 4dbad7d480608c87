/* rec's time shim: what a traced program finds where the kernel's vDSO
 * would be (AT_SYSINFO_EHDR). Without it, reading the clock would either
 * escape the recording (the real vDSO) or cost a ptrace stop per call (a
 * Python start-up reads the clock ~230 times).
 *
 * Recording: the kernel answers a syscall made from rec's scratch page,
 * which the seccomp filter lets through without a stop (the kernel's own
 * vDSO might itself fall back to a syscall, a traced one, that replay would
 * not make); the shim appends the answer to a log that rec reads at the
 * task's next event. Replay: the shim hands back the
 * logged answers in order. Off, or with the log full or empty: a real
 * syscall, which rec records and replays like any other. The same store
 * instruction (deliver) writes the caller's buffer in both modes, so a bad
 * pointer faults at the same address in both.
 *
 * Freestanding: no libc, no globals, no relocations; rec maps the image at
 * REC_SHIM_IMAGE and nowhere else. */
#include "shim_abi.h"

/* The C bodies; the exported entry points (ENTRY, below) call them. */
#define IMPL __attribute__((visibility("hidden"), used, noinline))

#define SYS_gettimeofday 96
#define SYS_time 201
#define SYS_clock_gettime 228
#define SYS_clock_getres 229
#define SYS_getcpu 309

static long raw_syscall(long nr, long a, long b, long c) {
  long result;
  __asm__ volatile("syscall"
                   : "=a"(result)
                   : "a"(nr), "D"(a), "S"(b), "d"(c)
                   : "rcx", "r11", "memory");
  return result;
}

/* Through the stub in rec's scratch page: seccomp lets it through. The call
 * pushes on the stack, so the shim is built with -mno-red-zone. */
static long untraced_syscall(long nr, long a, long b, long c) {
  long result;
  register long target __asm__("r11") = REC_SHIM_UNTRACED_SYSCALL;
  __asm__ volatile("call *%%r11"
                   : "=a"(result), "+r"(target)
                   : "0"(nr), "D"(a), "S"(b), "d"(c)
                   : "rcx", "memory");
  return result;
}

static inline volatile struct rec_shim_control* control(void) {
  return (volatile struct rec_shim_control*)REC_SHIM_CONTROL;
}
static inline volatile struct rec_shim_log* shim_log(void) {
  return (volatile struct rec_shim_log*)REC_SHIM_LOG;
}

__attribute__((noinline)) static void deliver(void* to, const volatile uint64_t* from,
                                              unsigned bytes) {
  if (bytes == 16) {
    ((uint64_t*)to)[0] = from[0];
    ((uint64_t*)to)[1] = from[1];
  } else if (bytes == 8) {
    *(uint64_t*)to = from[0];
  } else {
    *(uint32_t*)to = (uint32_t)from[0];
  }
}

/* Record: a free entry to fill, or 0 (shim off or log full). */
static volatile struct rec_shim_entry* recording_entry(void) {
  volatile struct rec_shim_log* log = shim_log();
  if (control()->mode != REC_SHIM_RECORD || log->count >= log->capacity) return 0;
  return &log->entries[log->count];
}

/* Replay: the next logged entry if it is for this call, or 0. */
static volatile struct rec_shim_entry* replay_entry(uint32_t function, long clock) {
  volatile struct rec_shim_log* log = shim_log();
  if (control()->mode != REC_SHIM_REPLAY || log->next >= log->count) return 0;
  volatile struct rec_shim_entry* e = &log->entries[log->next];
  if (e->function != function || e->clock != (int32_t)clock) return 0;
  log->next = log->next + 1;
  return e;
}

static void commit(volatile struct rec_shim_entry* e, uint32_t function, long clock, long a0,
                   long a1, long result) {
  e->function = function;
  e->clock = (int32_t)clock;
  e->args[0] = (uint64_t)a0;
  e->args[1] = (uint64_t)a1;
  e->result = result;
  shim_log()->count = shim_log()->count + 1;
}

/* The kernel's answer, asked without a stop: what it stores lands in
 * value[0..1] (getcpu's two 32-bit values, one in each). */
static long ask_kernel(uint32_t function, long clock, uint64_t value[2]) {
  switch (function) {
    case REC_SHIM_CLOCK_GETTIME:
      return untraced_syscall(SYS_clock_gettime, clock, (long)value, 0);
    case REC_SHIM_GETTIMEOFDAY:
      return untraced_syscall(SYS_gettimeofday, (long)value, 0, 0);
    case REC_SHIM_TIME:
      return (long)(value[0] = (uint64_t)untraced_syscall(SYS_time, 0, 0, 0));
    default:
      return untraced_syscall(SYS_getcpu, (long)&value[0], (long)&value[1], 0);
  }
}

/* One call answered through the log: recorded into it, or replayed from
 * it. The call stores `bytes` at out0 (from the entry's first data word on)
 * and at out1 (from its second); either may be 0. Returns 0 in *answered
 * when the shim is off for this call, which then goes to the kernel. */
static long through_log(uint32_t function, long clock, void* out0, void* out1, unsigned bytes,
                        int* answered) {
  volatile struct rec_shim_entry* e = recording_entry();
  if (e) {
    uint64_t value[2] = {0, 0};
    long result = ask_kernel(function, clock, value);
    if (result != 0 && function != REC_SHIM_TIME) e = 0; /* an error: the kernel says it again */
    if (e) {
      e->data[0] = value[0];
      e->data[1] = value[1];
      commit(e, function, clock, (long)out0, (long)out1, result);
    }
  } else {
    e = replay_entry(function, clock);
  }
  *answered = e != 0;
  if (!e) return 0;
  if (out0) deliver(out0, &e->data[0], bytes);
  if (out1) deliver(out1, &e->data[1], bytes);
  return e->result;
}

IMPL long impl_clock_gettime(long clock, void* ts) {
  int answered = 0;
  long result = 0;
  if (rec_shim_system_wide_clock(clock) && ts)
    result = through_log(REC_SHIM_CLOCK_GETTIME, clock, ts, 0, 16, &answered);
  return answered ? result : raw_syscall(SYS_clock_gettime, clock, (long)ts, 0);
}

IMPL long impl_gettimeofday(void* tv, void* tz) {
  int answered = 0;
  long result = 0;
  if (!tz) result = through_log(REC_SHIM_GETTIMEOFDAY, 0, tv, 0, 16, &answered);
  return answered ? result : raw_syscall(SYS_gettimeofday, (long)tv, (long)tz, 0);
}

IMPL long impl_time(void* t) {
  int answered = 0;
  long result = through_log(REC_SHIM_TIME, 0, t, 0, 8, &answered);
  return answered ? result : raw_syscall(SYS_time, (long)t, 0, 0);
}

IMPL long impl_getcpu(void* cpu, void* node, void* unused) {
  int answered = 0;
  long result = through_log(REC_SHIM_GETCPU, 0, cpu, node, 4, &answered);
  return answered ? result : raw_syscall(SYS_getcpu, (long)cpu, (long)node, (long)unused);
}

IMPL long impl_clock_getres(long clock, void* res) {
  return raw_syscall(SYS_clock_getres, clock, (long)res, 0);
}

/* The exported entry points. Recording and replay run different code in
 * the bodies, which leave different values in the registers a call may
 * clobber and in the stack below the caller's: a point after the call is
 * matched on every register and on memory (docs/exactness.md), so each entry
 * point zeroes the stack the bodies used (at most ~140 bytes; 512 cleared),
 * clears those registers and sets the flags the same way before returning.
 * The kernel's vDSO exports both spellings. */
#define ENTRY(name, impl)                                                                 \
  __asm__(".text\n.globl __vdso_" #name "\n.type __vdso_" #name                           \
          ",@function\n"                                                                  \
          "__vdso_" #name                                                                 \
          ":\n"                                                                           \
          "  sub $8, %rsp\n  call " #impl                                                 \
          "\n  add $8, %rsp\n"                                                            \
          "  mov %rax, %rdx\n  lea -512(%rsp), %rdi\n  mov $64, %ecx\n  xor %eax, %eax\n" \
          "  rep stosq\n  mov %rdx, %rax\n"                                               \
          "  xor %ecx, %ecx\n  xor %edx, %edx\n  xor %esi, %esi\n  xor %edi, %edi\n"      \
          "  xor %r8d, %r8d\n  xor %r9d, %r9d\n  xor %r10d, %r10d\n  xor %r11d, %r11d\n"  \
          "  ret\n.size __vdso_" #name ", .-__vdso_" #name                                \
          "\n"                                                                            \
          ".globl " #name "\n.type " #name ",@function\n.set " #name ", __vdso_" #name "\n")

ENTRY(clock_gettime, impl_clock_gettime);
ENTRY(gettimeofday, impl_gettimeofday);
ENTRY(time, impl_time);
ENTRY(getcpu, impl_getcpu);
ENTRY(clock_getres, impl_clock_getres);
