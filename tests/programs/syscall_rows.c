// Syscalls whose table rows needed care: outputs written even on failure,
// output sizes that depend on the call's own data, state rec itself sets in
// every tracee (TSC mode, seccomp mode, CPU pinning), limits that shape
// memory, the vsyscall page, 32-bit int 0x80 calls and namespace flags. Each
// line prints what the program saw; random bytes and times make every
// native run differ.
#define _GNU_SOURCE
#include <asm/ldt.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/perf_event.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

static void capabilities(void) {
  struct __user_cap_header_struct header = {0, 0};
  long r = syscall(SYS_capget, &header, NULL);
  printf("capget(version 0, NULL) = %ld, version now %#x\n", r, header.version);
  header.version = 0x12345678;
  struct __user_cap_data_struct data[2];
  memset(data, 0xaa, sizeof data);
  r = syscall(SYS_capget, &header, data);
  printf("capget(bad version) = %ld errno %d, version now %#x\n", r, r ? errno : 0, header.version);
  header.version = _LINUX_CAPABILITY_VERSION_3;
  r = syscall(SYS_capget, &header, data);
  printf("capget(v3) = %ld effective %#x %#x\n", r, data[0].effective, data[1].effective);
}

static void waitidFailure(void) {
  siginfo_t info;
  memset(&info, 0x5a, sizeof info);
  int r = waitid(P_PID, 999999, &info, WEXITED | WNOHANG);
  printf("waitid(no such child) = %d errno %d, si_signo %d si_pid %d\n", r, errno, info.si_signo,
         info.si_pid);
}

static void ioctls(void) {
  int sock = socket(AF_INET, SOCK_DGRAM, 0);
  char buf[2048];
  struct ifconf conf = {.ifc_len = sizeof buf, .ifc_buf = buf};
  memset(buf, 0, sizeof buf);
  if (ioctl(sock, SIOCGIFCONF, &conf) == 0) {
    struct ifreq* req = (struct ifreq*)buf;
    printf("SIOCGIFCONF: %d bytes, first interface %s\n", conf.ifc_len,
           conf.ifc_len > 0 ? req->ifr_name : "-");
  }
  struct ifreq lo;
  memset(&lo, 0, sizeof lo);
  strcpy(lo.ifr_name, "lo");
  if (ioctl(sock, SIOCGIFINDEX, &lo) == 0) printf("SIOCGIFINDEX lo: %d\n", lo.ifr_ifindex);
  if (ioctl(sock, SIOCGIFFLAGS, &lo) == 0) printf("SIOCGIFFLAGS lo: %#x\n", lo.ifr_flags);
  close(sock);

  char path[] = "fiemapXXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  char block[8192];
  getrandom(block, sizeof block, 0);
  write(fd, block, sizeof block);
  fsync(fd);
  union {
    struct fiemap map;
    char bytes[sizeof(struct fiemap) + 8 * sizeof(struct fiemap_extent)];
  } u;
  memset(&u, 0, sizeof u);
  u.map.fm_length = ~0ull;
  u.map.fm_extent_count = 8;
  if (ioctl(fd, FS_IOC_FIEMAP, &u.map) == 0) {
    printf("FIEMAP: %u extents, first %llu bytes\n", u.map.fm_mapped_extents,
           u.map.fm_mapped_extents ? u.map.fm_extents[0].fe_length : 0ull);
  } else {
    printf("FIEMAP: errno %d\n", errno);
  }
  int pipes[2];
  pipe(pipes);
  write(pipes[1], block, 1 + block[0] % 64 + 64);
  int pending = 0;
  ioctl(pipes[0], FIONREAD, &pending);
  printf("FIONREAD: %d\n", pending);
  close(fd);
}

static void semaphores(void) {
  int id = semget(IPC_PRIVATE, 3, 0600);
  unsigned short set[3], got[3] = {0, 0, 0};
  unsigned char r[3];
  getrandom(r, sizeof r, 0);
  for (int i = 0; i < 3; ++i) set[i] = r[i];
  semctl(id, 0, SETALL, set);
  semctl(id, 0, GETALL, got);
  printf("semaphores: %u %u %u\n", got[0], got[1], got[2]);
  semctl(id, 0, IPC_RMID);
}

static void perfCounter(void) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_TASK_CLOCK;
  int fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
  if (fd < 0) {
    printf("perf_event_open: errno %d\n", errno);
    return;
  }
  uint64_t ns = 0;
  read(fd, &ns, sizeof ns);
  void* ring = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  printf("task clock %llu ns; ring buffer %s\n", (unsigned long long)ns,
         ring == MAP_FAILED ? strerror(errno) : "mapped");
  close(fd);
}

static sigjmp_buf tscFault;
static void onSegv(int sig) {
  (void)sig;
  siglongjmp(tscFault, 1);
}

static void tscMode(void) {
  int mode = 0;
  prctl(PR_GET_TSC, &mode);
  printf("PR_GET_TSC: %d, PR_GET_SECCOMP: %d\n", mode, prctl(PR_GET_SECCOMP));
  pid_t child = fork();
  if (child == 0) {
    signal(SIGSEGV, onSegv);
    prctl(PR_SET_TSC, PR_TSC_SIGSEGV);
    prctl(PR_GET_TSC, &mode);
    if (sigsetjmp(tscFault, 1) == 0) {
      unsigned long long tsc = __rdtsc();
      printf("child: rdtsc did not fault (%llu)\n", tsc);
    } else {
      printf("child: PR_GET_TSC %d, rdtsc faulted\n", mode);
    }
    fflush(stdout);
    _exit(0);
  }
  waitpid(child, NULL, 0);
  // rec keeps trapping RDTSC whatever the program sets: this one is recorded.
  prctl(PR_SET_TSC, PR_TSC_ENABLE);
  printf("rdtsc after PR_TSC_ENABLE: %llu\n", (unsigned long long)__rdtsc());
}

static int* depth;
static int recurse(int limit) {
  volatile char frame[256];
  frame[0] = (char)++*depth;
  if (*depth > limit) return 0;  // never: the stack runs out first
  return recurse(limit) + frame[0];
}

static void stackLimit(void) {
  depth = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t child = fork();
  if (child == 0) {
    struct rlimit small = {256 * 1024, 256 * 1024};
    setrlimit(RLIMIT_STACK, &small);
    signal(SIGSEGV, SIG_DFL);
    recurse(1 << 30);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  // Deep enough to have used the whole small stack, short of the default 8 MB.
  printf("stack overflow: signal %d after %d calls, %s\n",
         WIFSIGNALED(status) ? WTERMSIG(status) : 0, *depth,
         *depth > 300 && *depth < 2000 ? "within the 256 KiB limit" : "NOT within the limit");
}

static void affinity(void) {
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int i = 0; i < CPU_SETSIZE; ++i) CPU_SET(i, &all);
  int r = sched_setaffinity(0, sizeof all, &all);
  cpu_set_t none;
  CPU_ZERO(&none);
  int r2 = sched_setaffinity(0, sizeof none, &none);
  printf("sched_setaffinity(all) = %d, (none) = %d errno %d\n", r, r2, errno);
}

static int hasVsyscall(void) {
  FILE* maps = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  while (maps && fgets(line, sizeof line, maps))
    if (strstr(line, "[vsyscall]")) found = 1;
  if (maps) fclose(maps);
  return found;
}

static void vsyscalls(void) {
  if (!hasVsyscall()) {
    printf("no vsyscall page\n");
    return;
  }
  struct timeval tv = {0, 0};
  long r;
  __asm__ volatile("movq $0xffffffffff600000, %%rax\n\tcallq *%%rax"
                   : "=a"(r)
                   : "D"(&tv), "S"(0)
                   : "rcx", "rdx", "r8", "r9", "r10", "r11", "cc", "memory");
  time_t t = 0, t2;
  __asm__ volatile("movq $0xffffffffff600400, %%rax\n\tcallq *%%rax"
                   : "=a"(t2)
                   : "D"(&t)
                   : "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "cc", "memory");
  printf("vsyscall gettimeofday = %ld (%ld.%06ld), time = %ld (%ld)\n", r, (long)tv.tv_sec,
         (long)tv.tv_usec, (long)t2, (long)t);
}

static long int80(long nr, long a, long b, long c) {
  long r;
  __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
  return r;
}

static void compat32(void) {
  char* low =
      mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  unsigned char r;
  getrandom(&r, 1, 0);
  int n = snprintf(low, 64, "int 0x80 write %u\n", r);
  fflush(stdout);
  long written = int80(4 /* i386 write */, 1, (long)(uintptr_t)low, n);
  long pid = int80(20 /* i386 getpid */, 0, 0, 0);
  long unknown = int80(5 /* i386 open */, (long)(uintptr_t)low, 0, 0);
  struct user_desc* desc = (struct user_desc*)(low + 1024);
  memset(desc, 0, sizeof *desc);
  desc->entry_number = -1;
  desc->base_addr = (unsigned)(uintptr_t)low;
  desc->limit = 0xfff;
  desc->seg_32bit = 1;
  desc->useable = 1;
  long area = int80(243 /* i386 set_thread_area */, (long)(uintptr_t)desc, 0, 0);
  printf("int 0x80: write %ld, getpid %s, open %ld, set_thread_area %ld entry %u\n", written,
         pid == getpid() ? "matches" : "differs", unknown, area, desc->entry_number);
}

static void newNamespaces(void) {
  char path[] = "nsfileXXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  ftruncate(fd, 4096);
  long child = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (child == 0) {
    char* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    _exit(p == MAP_FAILED ? 1 : 77);
  }
  int status = 0;
  if (child > 0) waitpid(child, &status, 0);
  printf("clone(CLONE_NEWUSER): %s, child exit %d\n", child > 0 ? "ok" : strerror(errno),
         WEXITSTATUS(status));
}

// lsl on the CPU-number segment tells the CPU without a syscall: replay runs
// on the recording's CPU where it may.
static void cpuSegment(void) {
  unsigned value = 0;
  __asm__ volatile("lsl %1, %0" : "=r"(value) : "r"(0x7b));
  printf("lsl cpu %u\n", value & 0xfff);
}

static void systemInfo(void) {
  struct utsname u;
  uname(&u);
  struct sysinfo si;
  sysinfo(&si);
  struct tms tm;
  clock_t ticks = times(&tm);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  struct statfs fs;
  statfs(".", &fs);
  struct rlimit files;
  getrlimit(RLIMIT_NOFILE, &files);
  struct sched_param param;
  sched_getparam(0, &param);
  printf("uname %s; uptime %ld; times %ld; maxrss %ld; statfs type %#lx; nofile %llu; prio %d\n",
         u.sysname, si.uptime, (long)ticks, ru.ru_maxrss, (unsigned long)fs.f_type,
         (unsigned long long)files.rlim_cur, param.sched_priority);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  unsigned int token;
  getrandom(&token, sizeof token, 0);
  printf("token %u\n", token);
  capabilities();
  waitidFailure();
  ioctls();
  semaphores();
  perfCounter();
  tscMode();
  stackLimit();
  affinity();
  vsyscalls();
  compat32();
  newNamespaces();
  cpuSegment();
  systemInfo();
  return 0;
}
