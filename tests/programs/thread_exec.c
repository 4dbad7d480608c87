// execve from a thread that is not the main one: the kernel ends every other
// thread and the exec'ing thread takes over the process id. The new program
// (this one again, in "after" mode) prints random values and its pid.
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

extern char** environ;

static void* execer(void* arg) {
  (void)arg;
  char* args[] = {"/proc/self/exe", "after", NULL};
  execve("/proc/self/exe", args, environ);
  perror("execve");
  return NULL;
}

int main(int argc, char** argv) {
  unsigned r = 0;
  getrandom(&r, sizeof r, 0);
  if (argc > 1 && !strcmp(argv[1], "after")) {
    printf("after exec: pid %d random %08x\n", (int)getpid(), r);
    return 7;
  }
  printf("before exec: pid %d random %08x\n", (int)getpid(), r);
  fflush(stdout);
  pthread_t t;
  pthread_create(&t, NULL, execer, NULL);
  for (;;) pause();  // ended by the other thread's execve
}
