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
#define CLOCK_MONOTONIC_RAW_ 4

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

/* ---- RDTSC/RDTSCP at a patched site (docs/syscall-buffer.md "RDTSC
 * without a stop") ----
 * Recording: the counter cannot be read here (PR_SET_TSC makes RDTSC fault
 * in the shim as anywhere), so it is computed from CLOCK_MONOTONIC_RAW,
 * asked untraced, scaled as rec calibrated it (rec's own traps report the
 * same scale), kept strictly increasing, and logged. Replay: the next logged
 * value, if it is for this site. Otherwise the slot runs its own
 * RDTSC/RDTSCP (or UD2), which traps into rec as before. */
_Static_assert(REC_SHIM_CONTROL == 0x70005000, "the rdtsc entry's address of mode");
_Static_assert(REC_SHIM_CONTROL + 8 == 0x70005008, "the rdtsc entry's address of rdtsc_trap");
_Static_assert(REC_SHIM_RDTSC_STACK_TOP == 0x70016000, "the rdtsc entry's stack");
_Static_assert(REC_RDTSC_ENTRY == REC_SHIM_IMAGE + 0x700, "the rdtsc entry's place (shim.lds)");
_Static_assert(sizeof(struct rec_shim_log) + REC_SHIM_LOG_CAPACITY * sizeof(struct rec_shim_entry) <=
                   REC_SHIM_LOG_SIZE - REC_SHIM_RDTSC_STACK,
               "the log leaves the rdtsc stack room");

struct rdtsc_answer {
  uint64_t value;
  uint64_t aux_kind; /* TSC_AUX | 1 (rdtsc) or 2 (rdtscp) << 32; 0: not answered */
};

IMPL struct rdtsc_answer rec_rdtsc_handle(const unsigned char* fallback) {
  struct rdtsc_answer a = {0, 0};
  const uint32_t function = fallback[2] == 0xf9 ? REC_SHIM_RDTSCP : REC_SHIM_RDTSC;
  const uint64_t site = *(const volatile uint64_t*)(fallback + (REC_RDTSC_SLOT_SITE -
                                                                REC_RDTSC_SLOT_FALLBACK));
  volatile struct rec_shim_log* log = shim_log();
  volatile struct rec_shim_entry* e = recording_entry();
  if (e) {
    volatile struct rec_shim_control* c = control();
    int64_t ts[2] = {0, 0};
    if (untraced_syscall(SYS_clock_gettime, CLOCK_MONOTONIC_RAW_, (long)ts, 0) != 0) return a;
    int64_t ns = ts[0] * 1000000000 + ts[1] - (int64_t)c->tsc_ns_base;
    if (ns < 0) ns = 0;
    uint64_t value =
        c->tsc_base + (uint64_t)(((unsigned __int128)(uint64_t)ns * c->tsc_mult) >> 32);
    if (value <= log->last_tsc) value = log->last_tsc + 1;
    log->last_tsc = value;
    uint64_t aux = 0;
    if (function == REC_SHIM_RDTSCP) {
      uint32_t cpu_node[2] = {0, 0};
      untraced_syscall(SYS_getcpu, (long)&cpu_node[0], (long)&cpu_node[1], 0);
      aux = (uint64_t)(cpu_node[1] << 12 | cpu_node[0]);
    }
    e->data[0] = value;
    e->data[1] = aux;
    commit(e, function, 0, (long)site, 0, 0);
    a.value = value;
    a.aux_kind = aux;
  } else if (control()->mode == REC_SHIM_REPLAY && log->next < log->count) {
    e = &log->entries[log->next];
    if (e->function != function || e->args[0] != site) return a;
    log->next = log->next + 1;
    a.value = e->data[0];
    a.aux_kind = (uint32_t)e->data[1];
  } else {
    return a;
  }
  a.aux_kind |= (uint64_t)(function == REC_SHIM_RDTSCP ? 2 : 1) << 32;
  return a;
}

/* Called from a slot (REC_RDTSC_ENTRY): every register but rax, rdx (and
 * rcx for rdtscp) comes back as it was, the flags too (arithmetic ones and
 * DF); the program's
 * stack below its red zone gets the return address, the flags and the
 * saved registers, the same values in recording and replay; the C body runs
 * on the stack at the end of the log's mapping (mapped whenever the mode is
 * not off). */
__asm__(".section .text.rec_rdtsc_entry,\"ax\",@progbits\n"
        ".globl rec_rdtsc_entry\n.hidden rec_rdtsc_entry\n"
        ".type rec_rdtsc_entry,@function\n"
        "rec_rdtsc_entry:\n"
        "  pushfq\n"
        "  push %rcx\n  push %rsi\n  push %rdi\n  push %r8\n  push %r9\n"
        "  push %r10\n  push %r11\n  push %rbx\n"
        "  mov %rsp, %rbx\n"
        "  cmpl $0, 0x70005000\n" /* REC_SHIM_CONTROL's mode */
        "  je 2f\n"
        "  cmpl $0, 0x70005008\n" /* ... rdtsc_trap */
        "  jne 2f\n"
        "  mov $0x70016000, %rsp\n" /* REC_SHIM_RDTSC_STACK_TOP */
        "  cld\n"
        "  mov 72(%rbx), %rdi\n" /* the return address: the slot's fallback */
        "  call rec_rdtsc_handle\n"
        "  mov %rbx, %rsp\n"
        "  mov %rdx, %rcx\n"
        "  shr $32, %rcx\n"
        "  jz 2f\n"
        "  cmp $2, %ecx\n"
        "  jne 1f\n"
        "  mov %edx, %edx\n"
        "  mov %rdx, 56(%rbx)\n" /* rdtscp: the saved rcx becomes TSC_AUX */
        "1:\n"
        "  addq $3, 72(%rbx)\n" /* past the fallback */
        "  mov %rax, %rdx\n"
        "  shr $32, %rdx\n"
        "  mov %eax, %eax\n"
        "  jmp 3f\n"
        "2:\n"
        "  xor %eax, %eax\n" /* the same registers at the fallback's trap in both modes */
        "  xor %edx, %edx\n"
        "3:\n"
        /* The flags back without popf: rec single-steps tasks out of the
         * image, and a popf of flags pushed under single-step would leave
         * TF set for good (the kernel takes a popf as the program's own). */
        "  mov %rax, %r8\n"
        "  mov 64(%rbx), %rcx\n"
        "  bt $10, %rcx\n" /* DF */
        "  jnc 4f\n"
        "  std\n"
        "  jmp 5f\n"
        "4:\n"
        "  cld\n"
        "5:\n"
        "  mov %ecx, %edi\n"
        "  shr $11, %edi\n"
        "  and $1, %edi\n"
        "  add $0x7f, %dil\n" /* OF */
        "  mov %cl, %ah\n"
        "  sahf\n" /* SF ZF AF PF CF */
        "  mov %r8, %rax\n"
        "  pop %rbx\n  pop %r11\n  pop %r10\n  pop %r9\n  pop %r8\n"
        "  pop %rdi\n  pop %rsi\n  pop %rcx\n"
        "  lea 8(%rsp), %rsp\n" /* the flags as pushed */
        "  ret\n"
        ".size rec_rdtsc_entry, .-rec_rdtsc_entry\n"
        ".text\n");

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
