// Prints argv, a few environment variables, the environment size and the
// working directory, plus the pid and time so that native runs differ.
// Replayed from another directory with another environment it must still
// print the recorded values.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

int main(int argc, char** argv) {
  for (int i = 0; i < argc; i++) printf("argv[%d] %s\n", i, argv[i]);
  const char* vars[] = {"FOO", "HOME", "PATH", "PWD", "LANG", "REC_TEST_VAR"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char* v = getenv(vars[i]);
    printf("env %s=%s\n", vars[i], v ? v : "(unset)");
  }
  int n = 0;
  while (environ[n]) n++;
  printf("environ count %d\n", n);
  char cwd[PATH_MAX];
  printf("cwd %s\n", getcwd(cwd, sizeof cwd) ? cwd : "(error)");
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  printf("pid %d time %lld.%09ld\n", (int)getpid(), (long long)ts.tv_sec, ts.tv_nsec);
  return 0;
}
