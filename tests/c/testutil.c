#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int tu_checks = 0;
int tu_failures = 0;
static pthread_mutex_t tu_print = PTHREAD_MUTEX_INITIALIZER;

int tu_check(int ok, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&tu_print);
  tu_checks++;
  if (!ok) tu_failures++;
  if (ok) {
    fputs("  ok    ", stdout);
  } else {
    const char *base = strrchr(file, '/');
    printf("  FAIL  [%s:%d] ", base ? base + 1 : file, line);
  }
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
  pthread_mutex_unlock(&tu_print);
  return ok;
}

static const char *rc_name(int rc) {
  switch (rc) {
  case 0: return "MLLP_OK";
  case 670: return "MLLP_ERR_NAK_RECEIVED";
  case 671: return "MLLP_ERR_INVALID_DATA";
  case 672: return "MLLP_ERR_INTERRUPTED";
  case 106: return "MLLP_ERR_CANNOT_CHANGE_LOCAL_PORT";
  case 107: return "MLLP_ERR_CANNOT_CHANGE_LOCAL_HOST";
  case 135: return "MLLP_ERR_WOULD_BLOCK";
  case 201: return "MLLP_ERR_TIMEOUT";
  case 211: return "MLLP_ERR_BAD_STATE";
  case 303: return "MLLP_ERR_CANNOT_OPEN_FILE";
  case 2001: return "MLLP_ERR_INVALID_ARGUMENT";
  case 2002: return "MLLP_ERR_NO_SUCH_CONNECTION";
  case 2003: return "MLLP_ERR_NOT_SUPPORTED";
  case 2004: return "MLLP_ERR_UNKNOWN_SETTING";
  case 2005: return "MLLP_ERR_INVALID_VALUE";
  case 2006: return "MLLP_ERR_REENTRANT";
  case 2007: return "MLLP_ERR_PANIC";
  case 2008: return "MLLP_ERR_BUFFER_TOO_SMALL";
  case 2009: return "MLLP_ERR_IO";
  case 2011: return "MLLP_ERR_SEND_INTERRUPTED";
  case 2012: return "MLLP_ERR_TOO_MANY_CONNECTIONS";
  case 10048: return "10048 (address in use)";
  default: return "?";
  }
}

/* Declared here to avoid including mllp.h in the helper (it is library-independent). */
extern const char *mllp_last_error_message(void);

int tu_check_rc(int got, int want, const char *file, int line, const char *expr) {
  if (got == want)
    return tu_check(1, file, line, "%s == %s", expr, rc_name(want));
  return tu_check(0, file, line, "%s returned %d %s, expected %d %s (last error: \"%s\")", expr,
                  got, rc_name(got), want, rc_name(want), mllp_last_error_message());
}

void tu_section(const char *name) {
  pthread_mutex_lock(&tu_print);
  printf("\n== %s\n", name);
  fflush(stdout);
  pthread_mutex_unlock(&tu_print);
}

void tu_note(const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&tu_print);
  fputs("  ..    ", stdout);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
  pthread_mutex_unlock(&tu_print);
}

long long tu_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tu_sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

uint8_t *tu_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0;
  if (!f) return NULL;
  for (;;) {
    size_t r;
    if (n == cap) {
      uint8_t *nb;
      cap = cap ? cap * 2 : 4096;
      nb = (uint8_t *)realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
    }
    r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  fclose(f);
  *len = n;
  return buf;
}

int tu_write_file(const char *path, const uint8_t *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  if (len && fwrite(data, 1, len, f) != len) {
    fclose(f);
    return -1;
  }
  return fclose(f) == 0 ? 0 : -1;
}

int tu_connect(tu_client *c, uint16_t port) {
  struct sockaddr_in a;
  struct timeval tv;
  int one = 1;
  memset(c, 0, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) return -1;
  tv.tv_sec = 5;
  tv.tv_usec = 0;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(c->fd);
    c->fd = -1;
    return -1;
  }
  return 0;
}

void tu_close(tu_client *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  free(c->rx);
  c->rx = NULL;
  c->have = c->cap = 0;
}

uint16_t tu_local_port(const tu_client *c) {
  struct sockaddr_in a;
  socklen_t l = sizeof a;
  if (getsockname(c->fd, (struct sockaddr *)&a, &l) != 0) return 0;
  return ntohs(a.sin_port);
}

int tu_send_all(tu_client *c, const void *data, size_t len) {
  const uint8_t *p = (const uint8_t *)data;
  while (len) {
    ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int tu_send_frame(tu_client *c, const uint8_t *data, size_t len) {
  uint8_t sb = TU_SB, eb[2] = {TU_EB, TU_CR};
  if (tu_send_all(c, &sb, 1) || tu_send_all(c, data, len) || tu_send_all(c, eb, 2)) return -1;
  return 0;
}

int tu_send_ack(tu_client *c, uint8_t ack_or_nak) {
  uint8_t f[4] = {TU_SB, 0, TU_EB, TU_CR};
  f[1] = ack_or_nak;
  return tu_send_all(c, f, 4);
}

/* Reads more bytes into c->rx, waiting up to `ms`. 1 = got bytes, 0 = timeout, -1 = closed. */
static int fill(tu_client *c, int ms) {
  struct pollfd p;
  ssize_t n;
  int r;
  if (ms < 0) ms = 0;
  p.fd = c->fd;
  p.events = POLLIN;
  p.revents = 0;
  do {
    r = poll(&p, 1, ms);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return 0;
  if (r < 0) return -1;
  if (c->cap - c->have < 65536) {
    size_t nc = c->cap ? c->cap * 2 : 131072;
    uint8_t *nb;
    while (nc - c->have < 65536) nc *= 2;
    nb = (uint8_t *)realloc(c->rx, nc);
    if (!nb) return -1;
    c->rx = nb;
    c->cap = nc;
  }
  do {
    n = recv(c->fd, c->rx + c->have, c->cap - c->have, 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return -1; /* EOF, reset, or error */
  c->have += (size_t)n;
  return 1;
}

long tu_recv_frame(tu_client *c, uint8_t **out, int timeout_ms) {
  long long dl = tu_now_ms() + timeout_ms;
  *out = NULL;
  for (;;) {
    if (c->have > 0) {
      size_t i;
      if (c->rx[0] != TU_SB) return TU_BADFRAME;
      for (i = 1; i + 1 < c->have; i++) {
        if (c->rx[i] == TU_EB && c->rx[i + 1] == TU_CR) {
          size_t plen = i - 1;
          uint8_t *p = (uint8_t *)malloc(plen + 1);
          if (!p) return TU_BADFRAME;
          memcpy(p, c->rx + 1, plen);
          p[plen] = 0; /* convenient for strstr on text payloads */
          memmove(c->rx, c->rx + i + 2, c->have - (i + 2));
          c->have -= i + 2;
          *out = p;
          return (long)plen;
        }
      }
    }
    {
      int r = fill(c, (int)(dl - tu_now_ms()));
      if (r < 0) return TU_CLOSED;
      if (r == 0) return TU_TIMEOUT;
    }
  }
}

int tu_wait_closed(tu_client *c, int timeout_ms) {
  long long dl = tu_now_ms() + timeout_ms;
  for (;;) {
    int r = fill(c, (int)(dl - tu_now_ms()));
    if (r < 0) return 1;
    if (r == 0) return 0;
    c->have = 0; /* discard */
  }
}

int tu_quiet_for(tu_client *c, int ms) {
  if (c->have > 0) return 0;
  return fill(c, ms) == 0;
}
