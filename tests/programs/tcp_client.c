// Usage: tcp_client PORTFILE
// Connects to 127.0.0.1 on the port read from PORTFILE, sends a request that
// contains its pid and the time, and prints the server's reply and its own
// ephemeral port. Replay must print the same with no server running.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: tcp_client PORTFILE\n");
    return 64;
  }
  FILE* f = fopen(argv[1], "r");
  int port = 0;
  if (!f || fscanf(f, "%d", &port) != 1) {
    fprintf(stderr, "tcp_client: cannot read port from %s\n", argv[1]);
    return 1;
  }
  fclose(f);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || connect(s, (struct sockaddr*)&addr, sizeof addr) != 0) {
    perror("tcp_client: connect");
    return 1;
  }
  struct sockaddr_in local;
  socklen_t len = sizeof local;
  getsockname(s, (struct sockaddr*)&local, &len);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char req[128];
  int n = snprintf(req, sizeof req, "hello from %d at %lld.%09ld\n", (int)getpid(),
                   (long long)ts.tv_sec, ts.tv_nsec);
  if (send(s, req, (size_t)n, 0) != n) return 1;
  printf("local port %d sent %d bytes\n", ntohs(local.sin_port), n);
  char buf[512];
  size_t total = 0;
  for (;;) {  // read until the server closes
    ssize_t r = recv(s, buf + total, sizeof buf - 1 - total, 0);
    if (r < 0) return 1;
    if (r == 0 || total + (size_t)r >= sizeof buf - 1) {
      total += (size_t)(r > 0 ? r : 0);
      break;
    }
    total += (size_t)r;
  }
  buf[total] = 0;
  printf("server said: %s", buf);
  close(s);
  return 0;
}
