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

static int system_wide(long clock) {
  /* REALTIME, MONOTONIC, MONOTONIC_RAW, REALTIME_COARSE, MONOTONIC_COARSE,
   * BOOTTIME, TAI: per-process and per-thread clocks go to the kernel. */
  return clock == 0 || clock == 1 || (clock >= 4 && clock <= 7) || clock == 11;
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

IMPL long impl_clock_gettime(long clock, void* ts) {
  if (system_wide(clock) && ts) {
    volatile struct rec_shim_entry* e = recording_entry();
    if (e) {
      uint64_t value[2];
      long result = untraced_syscall(SYS_clock_gettime, clock, (long)value, 0);
      if (result == 0) {
        e->data[0] = value[0];
        e->data[1] = value[1];
        commit(e, REC_SHIM_CLOCK_GETTIME, clock, (long)ts, 0, result);
        deliver(ts, e->data, 16);
        return result;
      }
    }
    e = replay_entry(REC_SHIM_CLOCK_GETTIME, clock);
    if (e) {
      deliver(ts, e->data, 16);
      return e->result;
    }
  }
  return raw_syscall(SYS_clock_gettime, clock, (long)ts, 0);
}

IMPL long impl_gettimeofday(void* tv, void* tz) {
  if (!tz) {
    volatile struct rec_shim_entry* e = recording_entry();
    if (e) {
      uint64_t value[2];
      long result = untraced_syscall(SYS_gettimeofday, (long)value, 0, 0);
      if (result == 0) {
        e->data[0] = value[0];
        e->data[1] = value[1];
        commit(e, REC_SHIM_GETTIMEOFDAY, 0, (long)tv, 0, result);
        if (tv) deliver(tv, e->data, 16);
        return result;
      }
    }
    e = replay_entry(REC_SHIM_GETTIMEOFDAY, 0);
    if (e) {
      if (tv) deliver(tv, e->data, 16);
      return e->result;
    }
  }
  return raw_syscall(SYS_gettimeofday, (long)tv, (long)tz, 0);
}

IMPL long impl_time(void* t) {
  volatile struct rec_shim_entry* e = recording_entry();
  if (e) {
    long result = untraced_syscall(SYS_time, 0, 0, 0);
    e->data[0] = (uint64_t)result;
    commit(e, REC_SHIM_TIME, 0, (long)t, 0, result);
    if (t) deliver(t, e->data, 8);
    return result;
  }
  e = replay_entry(REC_SHIM_TIME, 0);
  if (e) {
    if (t) deliver(t, e->data, 8);
    return e->result;
  }
  return raw_syscall(SYS_time, (long)t, 0, 0);
}

IMPL long impl_getcpu(void* cpu, void* node, void* unused) {
  volatile struct rec_shim_entry* e = recording_entry();
  if (e) {
    uint32_t value[2] = {0, 0};
    long result = untraced_syscall(SYS_getcpu, (long)&value[0], (long)&value[1], 0);
    if (result == 0) {
      e->data[0] = value[0];
      e->data[1] = value[1];
      commit(e, REC_SHIM_GETCPU, 0, (long)cpu, (long)node, result);
      if (cpu) deliver(cpu, &e->data[0], 4);
      if (node) deliver(node, &e->data[1], 4);
      return result;
    }
  }
  e = replay_entry(REC_SHIM_GETCPU, 0);
  if (e) {
    if (cpu) deliver(cpu, &e->data[0], 4);
    if (node) deliver(node, &e->data[1], 4);
    return e->result;
  }
  return raw_syscall(SYS_getcpu, (long)cpu, (long)node, (long)unused);
}

IMPL long impl_clock_getres(long clock, void* res) {
  return raw_syscall(SYS_clock_getres, clock, (long)res, 0);
}

/* The exported entry points. Recording and replay run different code in
 * the bodies, which leave different values in the registers a call may
 * clobber; a signal or preemption point right after the call is matched on
 * every register, so each entry point clears them (and sets the flags the
 * same way) before returning. The kernel's vDSO exports both spellings. */
#define ENTRY(name, impl)                                                                \
  __asm__(".text\n.globl __vdso_" #name "\n.type __vdso_" #name                          \
          ",@function\n"                                                                 \
          "__vdso_" #name                                                                \
          ":\n"                                                                          \
          "  sub $8, %rsp\n  call " #impl                                                \
          "\n  add $8, %rsp\n"                                                           \
          "  xor %ecx, %ecx\n  xor %edx, %edx\n  xor %esi, %esi\n  xor %edi, %edi\n"     \
          "  xor %r8d, %r8d\n  xor %r9d, %r9d\n  xor %r10d, %r10d\n  xor %r11d, %r11d\n" \
          "  ret\n.size __vdso_" #name ", .-__vdso_" #name                               \
          "\n"                                                                           \
          ".globl " #name "\n.type " #name ",@function\n.set " #name ", __vdso_" #name "\n")

ENTRY(clock_gettime, impl_clock_gettime);
ENTRY(gettimeofday, impl_gettimeofday);
ENTRY(time, impl_time);
ENTRY(getcpu, impl_getcpu);
ENTRY(clock_getres, impl_clock_getres);
