/* Helpers for the C harness: checks that print one line each, time, files, and a small
 * blocking MLLP client over POSIX sockets (every wait bounded). */
#ifndef MLLP_TESTUTIL_H
#define MLLP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- checks ---------------------------------------------------------------------------- */
extern int tu_checks;   /* number of checks run */
extern int tu_failures; /* number of failed checks */

/* Thread-safe; may be called from callbacks. Returns `ok`. */
int tu_check(int ok, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
int tu_check_rc(int got, int want, const char *file, int line, const char *expr);
void tu_section(const char *name);
void tu_note(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#define CHECK(cond, ...) tu_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_RC(expr, want) tu_check_rc((expr), (want), __FILE__, __LINE__, #expr)

/* ---- time ------------------------------------------------------------------------------ */
long long tu_now_ms(void);
void tu_sleep_ms(int ms);
/* Polls `cond` every 2 ms until it is true or `ms` milliseconds passed. */
#define WAIT_UNTIL(cond, ms)                                                                   \
  do {                                                                                         \
    long long tu_dl_ = tu_now_ms() + (ms);                                                     \
    while (!(cond) && tu_now_ms() < tu_dl_) tu_sleep_ms(2);                                    \
  } while (0)

/* ---- files ----------------------------------------------------------------------------- */
/* Reads a whole file (malloc'd, caller frees); NULL on failure. */
uint8_t *tu_read_file(const char *path, size_t *len);
int tu_write_file(const char *path, const uint8_t *data, size_t len);

/* ---- MLLP client ----------------------------------------------------------------------- */
#define TU_SB 0x0B
#define TU_EB 0x1C
#define TU_CR 0x0D
#define TU_ACK 0x06
#define TU_NAK 0x15

typedef struct {
  int fd;
  uint8_t *rx;   /* bytes received and not consumed yet */
  size_t have;
  size_t cap;
} tu_client;

/* Connects to 127.0.0.1:port with SO_RCVTIMEO/SO_SNDTIMEO of 5 s; fd -1 on failure. */
int tu_connect(tu_client *c, uint16_t port);
void tu_close(tu_client *c);
/* The client's own port (getsockname), 0 on failure. */
uint16_t tu_local_port(const tu_client *c);
int tu_send_all(tu_client *c, const void *data, size_t len);
/* Sends 0x0B + data + 0x1C 0x0D. */
int tu_send_frame(tu_client *c, const uint8_t *data, size_t len);
/* Sends the 4-byte MLLP v2 ACK (0x06) or NAK (0x15) block. */
int tu_send_ack(tu_client *c, uint8_t ack_or_nak);

#define TU_TIMEOUT (-1)
#define TU_CLOSED (-2)
#define TU_BADFRAME (-3)
/* Receives one frame within timeout_ms: returns the payload length (payload, unframed, copied
 * to *out, malloc'd, caller frees) or TU_TIMEOUT / TU_CLOSED / TU_BADFRAME. */
long tu_recv_frame(tu_client *c, uint8_t **out, int timeout_ms);
/* True when the peer closes (EOF or reset) within timeout_ms; data before the close is
 * discarded. */
int tu_wait_closed(tu_client *c, int timeout_ms);
/* True when no byte arrives within ms (and the socket is still open). */
int tu_quiet_for(tu_client *c, int ms);

#ifdef __cplusplus
}
#endif
#endif
