// Usage: tcp_server PORTFILE [CONNECTIONS]
// Listens on 127.0.0.1 on an ephemeral port, writes the port number to
// PORTFILE (atomically, via rename), and answers CONNECTIONS (default 1)
// clients: reads one request and replies with random bytes, the time and the
// request length. Gives up after 20 seconds so that it never lingers.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: tcp_server PORTFILE [CONNECTIONS]\n");
    return 64;
  }
  int connections = argc > 2 ? atoi(argv[2]) : 1;
  alarm(20);  // hard limit: SIGALRM kills the server
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ls < 0 || bind(ls, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(ls, 8) != 0) {
    perror("tcp_server: bind/listen");
    return 1;
  }
  socklen_t len = sizeof addr;
  getsockname(ls, (struct sockaddr*)&addr, &len);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
  FILE* f = fopen(tmp, "w");
  if (!f) return 1;
  fprintf(f, "%d\n", ntohs(addr.sin_port));
  fclose(f);
  if (rename(tmp, argv[1]) != 0) return 1;

  for (int c = 0; c < connections; c++) {
    int s = accept(ls, NULL, NULL);
    if (s < 0) return 1;
    char req[512];
    ssize_t n = read(s, req, sizeof req);
    unsigned char rnd[16];
    getrandom(rnd, sizeof rnd, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char reply[256];
    int off = snprintf(reply, sizeof reply, "reply to %zd bytes: random ", n);
    for (size_t i = 0; i < sizeof rnd; i++)
      off += snprintf(reply + off, sizeof reply - off, "%02x", rnd[i]);
    off += snprintf(reply + off, sizeof reply - off, " time %lld.%09ld\n", (long long)ts.tv_sec,
                    ts.tv_nsec);
    if (write(s, reply, (size_t)off) != off) return 1;
    close(s);
  }
  return 0;
}
