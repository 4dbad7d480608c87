// execve of paths that do not exist, answered by the syscall buffer without
// a stop (docs/syscall-buffer.md, the ExecMissing row): direct calls that
// fail with ENOENT and ENOTDIR, one that fails otherwise (EACCES, traced),
// then execvp and posix_spawnp searching a PATH whose first directories lack
// the program (as gcc looks for cc1), from a fork's child and from
// posix_spawn's vfork-like child, each ending in a real exec of this program
// that prints the nonce it was given. The nonce (getrandom) makes every
// native run print something else.
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

static int wait_child(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "child") == 0) {
    printf("child %s\n", argv[2]);
    return 0;
  }
  const int rounds = argc > 1 ? atoi(argv[1]) : 20;
  uint64_t nonce = 0;
  if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce) return 2;
  char nonceText[32];
  snprintf(nonceText, sizeof nonceText, "%016llx", (unsigned long long)nonce);
  printf("nonce %s\n", nonceText);
  char* const args[] = {"exec_missing", "child", nonceText, NULL};
  int enoent = 0, enotdir = 0, other = 0;
  for (int i = 0; i < rounds; ++i) {
    const char* paths[] = {"/nonexistent/exec_missing", "/etc/passwd/exec_missing", ""};
    for (int p = 0; p < 3; ++p) {
      errno = 0;
      if (execve(paths[p], args, environ) != -1) return 3;
      if (errno == ENOENT)
        ++enoent;
      else if (errno == ENOTDIR)
        ++enotdir;
      else
        ++other;
    }
  }
  errno = 0;
  execve("/etc/passwd", args, environ);  // there, not executable: EACCES, made traced
  printf("direct: %d ENOENT, %d ENOTDIR, %d other; a file that is no program: %s\n", enoent,
         enotdir, other, strerror(errno));
  fflush(stdout);
  // A PATH search: the program's directory last.
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 4;
  self[n] = 0;
  char dir[4096];
  strcpy(dir, self);
  char path[8192];
  snprintf(path, sizeof path, "/nonexistent/a:/nonexistent/b:/etc/passwd:/usr/lib/nonexistent:%s",
           dirname(dir));
  setenv("PATH", path, 1);
  for (int i = 0; i < 3; ++i) {
    pid_t pid = fork();
    if (pid < 0) return 5;
    if (pid == 0) {
      execvp("exec_missing", args);
      _exit(99);
    }
    printf("execvp child %d: exit %d\n", i, wait_child(pid));
    fflush(stdout);
    pid_t spawned = 0;
    if (posix_spawnp(&spawned, "exec_missing", NULL, NULL, args, environ) != 0) return 6;
    printf("posix_spawnp child %d: exit %d\n", i, wait_child(spawned));
    fflush(stdout);
  }
  return 0;
}
