// For the debugger tests: copies names into fixed records without a bound,
// so a long name overwrites the record's pointer, and the program later
// dies of SIGSEGV dereferencing it. The seed printed differs on every run.
#include <stdio.h>
#include <sys/random.h>

struct record {
  char name[8];
  long* target;
};

static struct record records[3];
static long values[3];

__attribute__((noinline)) void set_name(struct record* r, const char* name) {
  int i = 0;
  for (; name[i]; i++) r->name[i] = name[i];  // LINE:corrupting-write
  r->name[i] = 0;
}

int main(void) {
  unsigned seed;
  getrandom(&seed, sizeof seed, 0);
  for (int i = 0; i < 3; i++) {
    values[i] = seed >> i;
    records[i].target = &values[i];
  }
  printf("seed %u\n", seed);
  fflush(stdout);
  set_name(&records[0], "short");
  set_name(&records[1], "sixteen-or-more!");  // LINE:set-long-name
  set_name(&records[2], "ok");
  long sum = 0;
  for (int i = 0; i < 3; i++) sum += *records[i].target;  // LINE:crash
  printf("sum %ld\n", sum);
  return 0;
}
