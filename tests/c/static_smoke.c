/* A minimal round trip through the static library (mllp::mllp_static): start on an ephemeral
 * port, a client sends the sample, the Transfer data matches and the client gets the ACK. */
#define _POSIX_C_SOURCE 200809L
#include "mllp.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t got[65536];
static size_t got_len;
static int ackouts, released;

static void on_transfer(void *user, const mllp_transfer_event *e) {
  (void)user;
  pthread_mutex_lock(&mu);
  if (got_len + e->len <= sizeof got) {
    memcpy(got + got_len, e->data, e->len);
    got_len += e->len;
  }
  pthread_mutex_unlock(&mu);
}
static void on_ack_out(void *user, mllp_ack_out_event *e) {
  (void)user;
  (void)e;
  pthread_mutex_lock(&mu);
  ackouts++;
  pthread_mutex_unlock(&mu);
}
static void on_release(void *user) {
  (void)user;
  released++;
}

int main(int argc, char **argv) {
  size_t len = 0;
  uint8_t *msg, *f = NULL;
  uint16_t port = 0;
  tu_client c;
  long n;
  mllp_server *s;
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2 || !(msg = tu_read_file(argv[1], &len))) {
    fprintf(stderr, "usage: %s sample.hl7\n", argv[0]);
    return 2;
  }
  printf("static library %s\n", mllp_version());
  s = mllp_server_new();
  CHECK(s != NULL, "mllp_server_new");
  CHECK_RC(mllp_server_set_user_data(s, s, on_release), MLLP_OK);
  CHECK_RC(mllp_server_on_transfer(s, on_transfer), MLLP_OK);
  CHECK_RC(mllp_server_on_ack_out(s, on_ack_out), MLLP_OK);
  CHECK_RC(mllp_server_set_local_host(s, "127.0.0.1"), MLLP_OK);
  CHECK_RC(mllp_server_start_listening(s), MLLP_OK);
  CHECK_RC(mllp_server_get_local_port(s, &port), MLLP_OK);
  if (CHECK(tu_connect(&c, port) == 0, "client connects to port %u", port)) {
    CHECK(tu_send_frame(&c, msg, len) == 0, "client sends the sample");
    n = tu_recv_frame(&c, &f, 5000);
    CHECK(n == 1 && f && f[0] == TU_ACK, "client receives the ACK (n=%ld)", n);
    free(f);
    tu_close(&c);
  }
  pthread_mutex_lock(&mu);
  CHECK(got_len == len && memcmp(got, msg, len) == 0, "Transfer data == sample (%zu bytes)",
        got_len);
  CHECK(ackouts == 1, "AckOut fired once");
  pthread_mutex_unlock(&mu);
  CHECK_RC(mllp_server_free(s), MLLP_OK);
  CHECK(released == 1, "user data released once");
  free(msg);
  printf("== summary: %d checks, %d failed\n", tu_checks, tu_failures);
  return tu_failures ? 1 : 0;
}
