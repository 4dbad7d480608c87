/* What rec's time shim (the vDSO stand-in in every tracee, shim.c) and rec
 * itself agree on. C, so both the freestanding shim and rec include it.
 *
 * Layout, at fixed addresses inside rec's scratch mapping (remote_syscall.h):
 *   REC_SHIM_IMAGE    the shim's ELF image, what AT_SYSINFO_EHDR points at
 *   REC_SHIM_CONTROL  one page the shim only reads; rec writes it through
 *                     /proc/PID/mem, so a fork's child gets its own copy
 *   REC_SHIM_LOG      the log: a memfd shared with rec, mapped at the first
 *                     time call of each process (rec reads it without a
 *                     syscall at every event of the task)
 */
#ifndef REC_TIME_SHIM_ABI_H
#define REC_TIME_SHIM_ABI_H

#include <stdint.h>

#define REC_SHIM_UNTRACED_SYSCALL 0x70000010UL /* `syscall; ret` in the scratch page */
#define REC_SHIM_IMAGE 0x70001000UL
#define REC_SHIM_IMAGE_MAX 0x4000UL
#define REC_SHIM_CONTROL (REC_SHIM_IMAGE + REC_SHIM_IMAGE_MAX)
#define REC_SHIM_LOG (REC_SHIM_CONTROL + 0x1000UL)
#define REC_SHIM_LOG_SIZE 0x10000UL

/* rec_shim_control.mode */
#define REC_SHIM_OFF 0    /* every call enters the kernel (a traced syscall) */
#define REC_SHIM_RECORD 1 /* ask the kernel (untraced), append the answer to the log */
#define REC_SHIM_REPLAY 2 /* return the log's next entry */

/* Which function an entry is for. */
#define REC_SHIM_CLOCK_GETTIME 0
#define REC_SHIM_GETTIMEOFDAY 1
#define REC_SHIM_TIME 2
#define REC_SHIM_GETCPU 3
#define REC_SHIM_FUNCTIONS 4

struct rec_shim_control {
  uint32_t mode;
  uint32_t reserved;
};

struct rec_shim_entry {
  uint32_t function;
  int32_t clock;    /* clock_gettime's clock id */
  uint64_t args[2]; /* the pointer arguments as the program passed them */
  int64_t result;
  uint64_t data[2]; /* what the call stored: timespec, timeval, time_t, cpu and node */
};

struct rec_shim_log {
  uint32_t count; /* entries filled: by the shim (record), by rec (replay) */
  uint32_t capacity;
  uint32_t next; /* replay: the next entry the shim returns */
  uint32_t reserved;
  struct rec_shim_entry entries[];
};

/* The clocks the shim answers (and rec answers at the seccomp stop):
 * REALTIME, MONOTONIC, MONOTONIC_RAW, REALTIME_COARSE, MONOTONIC_COARSE,
 * BOOTTIME, TAI. Per-process and per-thread clocks go to the kernel. */
static inline int rec_shim_system_wide_clock(long clock) {
  return clock == 0 || clock == 1 || (clock >= 4 && clock <= 7) || clock == 11;
}

#define REC_SHIM_LOG_CAPACITY \
  ((REC_SHIM_LOG_SIZE - sizeof(struct rec_shim_log)) / sizeof(struct rec_shim_entry))

#endif
