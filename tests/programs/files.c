// Exercises file-system and system-information syscalls whose results vary
// between runs: a temp file with random contents (created in $TMPDIR and
// deleted again, so a replay must not create it), stat/fstat fields, a
// directory listing, /proc reads, uname, sysinfo, getrusage and times.
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <unistd.h>

static void print_file(const char* path) {
  char buf[1024];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0) n = 0;
  buf[n] = 0;
  printf("%s: %s", path, buf);
  if (n == 0 || buf[n - 1] != '\n') printf("\n");
}

static void print_stat(const char* label, const struct stat* st) {
  printf("%s ino %llu size %lld mode %o nlink %lu mtime %lld.%09ld ctime %lld.%09ld\n", label,
         (unsigned long long)st->st_ino, (long long)st->st_size, st->st_mode,
         (unsigned long)st->st_nlink, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
         (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

int main(void) {
  const char* tmp = getenv("TMPDIR");
  if (!tmp || !*tmp) tmp = "/tmp";
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/files-XXXXXX", tmp);
  if (!mkdtemp(dir)) return 2;

  // A temp file with random contents, written, re-read, stat'ed.
  snprintf(path, sizeof path, "%s/data-XXXXXX", dir);
  int fd = mkstemp(path);
  if (fd < 0) return 3;
  unsigned char rnd[32], back[32];
  getrandom(rnd, sizeof rnd, 0);
  if (write(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd) return 4;
  if (pread(fd, back, sizeof back, 0) != (ssize_t)sizeof back) return 5;
  printf("tempfile %s contents ", strrchr(path, '/') + 1);
  for (size_t i = 0; i < sizeof back; i++) printf("%02x", back[i]);
  printf("\n");
  struct stat st;
  fstat(fd, &st);
  print_stat("fstat", &st);
  close(fd);
  stat(path, &st);
  print_stat("stat", &st);
  lstat(dir, &st);
  print_stat("lstat_dir", &st);

  // A few more files with random names, then list the directory: names and
  // readdir order (hash order on most file systems) differ between runs.
  for (int i = 0; i < 4; i++) {
    char name[4300];
    snprintf(name, sizeof name, "%s/f%u", dir, (unsigned)rnd[i] * 256u + rnd[i + 4]);
    int f = open(name, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (f >= 0) close(f);
  }
  DIR* d = opendir(dir);
  if (!d) return 6;
  struct dirent* e;
  printf("readdir");
  while ((e = readdir(d)) != NULL) printf(" %s(%llu)", e->d_name, (unsigned long long)e->d_ino);
  printf("\n");
  // Remove everything again (rewind and delete), then the directory.
  rewinddir(d);
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    unlinkat(dirfd(d), e->d_name, 0);
  }
  closedir(d);
  if (rmdir(dir) != 0) return 7;
  printf("removed %s\n", access(dir, F_OK) == 0 ? "no" : "yes");

  print_file("/proc/self/stat");
  print_file("/proc/uptime");
  print_file("/proc/loadavg");

  struct utsname u;
  uname(&u);
  printf("uname %s %s %s %s %s\n", u.sysname, u.nodename, u.release, u.version, u.machine);
  struct sysinfo si;
  sysinfo(&si);
  printf("sysinfo uptime %ld freeram %lu procs %u\n", si.uptime, si.freeram, si.procs);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("rusage utime %ld.%06ld stime %ld.%06ld maxrss %ld minflt %ld\n", (long)ru.ru_utime.tv_sec,
         (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec,
         ru.ru_maxrss, ru.ru_minflt);
  struct tms t;
  clock_t ticks = times(&t);
  printf("times %lld utime %lld stime %lld\n", (long long)ticks, (long long)t.tms_utime,
         (long long)t.tms_stime);
  return 0;
}
