// Prints addresses the program can observe: stack, heap, a large malloc
// (served by mmap), an anonymous mmap, brk, code in the executable and in
// libc, the vDSO, a thread-local variable. With ASLR they differ on every
// native run; rec disables ASLR, but replay must show the recorded values.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

extern char** environ;
static __thread int tls_var;

int main(int argc, char** argv) {
  (void)argc;
  int stack_var = 0;
  void* small = malloc(32);
  void* large = malloc(8 << 20);  // above the mmap threshold
  void* map = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (!small || !large || map == MAP_FAILED) return 2;
  memset(large, 1, 4096);
  printf("stack %p\n", (void*)&stack_var);
  printf("argv %p environ %p\n", (void*)argv, (void*)environ);
  printf("malloc %p\n", small);
  printf("malloc_large %p\n", large);
  printf("mmap %p\n", map);
  printf("brk %p\n", sbrk(0));
  printf("main %p\n", (void*)(uintptr_t)&main);
  printf("libc_printf %p\n", (void*)(uintptr_t)&printf);
  printf("tls %p\n", (void*)&tls_var);
  printf("vdso %#lx\n", getauxval(AT_SYSINFO_EHDR));
  printf("at_random %#lx\n", getauxval(AT_RANDOM));
  free(small);
  free(large);
  munmap(map, 1 << 16);
  return 0;
}
