// process_vm_writev into a child process: the child prints what its parent
// wrote into its memory. Recorded as a write into the child's memory, which
// replay makes itself (the child reads a random nonce, different per run).
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static char mailbox[64] = "empty";

int main(void) {
  int go[2];
  if (pipe(go) != 0) return 1;
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    char c;
    if (read(go[0], &c, 1) != 1) _exit(2);
    printf("child's mailbox: %s\n", mailbox);
    fflush(stdout);
    _exit(0);
  }
  unsigned long nonce = 0;
  getrandom(&nonce, sizeof nonce, 0);
  char text[64];
  int n = snprintf(text, sizeof text, "nonce %lu", nonce);
  struct iovec local = {text, (size_t)n + 1}, remote = {mailbox, (size_t)n + 1};
  ssize_t wrote = process_vm_writev(child, &local, 1, &remote, 1, 0);
  printf("process_vm_writev wrote %zd bytes (%s)\n", wrote, wrote < 0 ? "failed" : "ok");
  fflush(stdout);
  if (write(go[1], "x", 1) != 1) return 3;
  int status = 0;
  waitpid(child, &status, 0);
  printf("parent's mailbox: %s; child exited %d\n", mailbox, WEXITSTATUS(status));
  return 0;
}
