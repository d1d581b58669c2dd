/* End-to-end harness for the mllp C ABI (include/mllp.h).
 *
 * Usage: mllp_c_harness [path/to/adt_a01.hl7] [section ...]
 * Sections: null stale buffer free roundtrip reentrant threads streams doevents  header tls client proxy
 * (all when none is named). Prints one line per check and a summary; exits 1 on any failure. */
#define _POSIX_C_SOURCE 200809L
#include "mllp.h"
#include "mllp.h" /* twice on purpose: the include guard must hold */

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#ifndef MLLP_SAMPLE_ADT_A01
#define MLLP_SAMPLE_ADT_A01 "adt_a01.hl7"
#endif

/* From header_cxx.cpp and header_c99.c: the header compiled as C++ and as strict C99. */
const char *mllp_cxx_probe(void);
const char *mllp_c99_probe(void);

static const char *g_sample_path = MLLP_SAMPLE_ADT_A01;
static uint8_t *g_msg;      /* the sample's bytes */
static size_t g_msg_len;

/* ======================================================================================== */
/* Event recording                                                                          */
/* ======================================================================================== */

enum {
  EV_REQUEST = 1,
  EV_CONNECTED,
  EV_DISCONNECTED,
  EV_START,
  EV_TRANSFER,
  EV_END,
  EV_ACKOUT,
  EV_ACKIN,
  EV_ERROR,
  EV_LOG,
  EV_COUNT
};
static const char *ev_names[EV_COUNT] = {"?",      "Request",  "Connected", "Disconnected",
                                         "Start",  "Transfer", "End",       "AckOut",
                                         "AckIn",  "Error",    "Log"};

typedef struct {
  int type;
  uint64_t conn;
  uint64_t seq;
  int code;
  pthread_t thread;
} ev_t;

#define MAX_EV 512

typedef struct ctx ctx_t;
struct ctx {
  pthread_mutex_t mu;
  mllp_server *srv;
  ev_t ev[MAX_EV];
  int nev;
  int counts[EV_COUNT];
  int wrong_user; /* callbacks that received another user pointer */
  /* ConnectionRequest */
  char cr_addr[64];
  uint16_t cr_port;
  uint8_t cr_accept; /* what to answer */
  /* Transfer */
  uint8_t *xfer;
  size_t xfer_len, xfer_cap;
  int bytes_cumulative_bad;
  /* Connected / AckOut / AckIn */
  uint64_t conn_id; /* last Connected */
  uint64_t disc_id; /* last Disconnected */
  uint8_t ackout_accept;
  int ackout_reject_code;
  int ackout_delay_ms;
  int ackout_returned;
  uint8_t *ackout_msg;
  size_t ackout_msg_len;
  int ackin_accepted; /* last AckIn value */
  int last_error_code;
  /* hooks run inside callbacks (NULL = none) */
  void (*on_connected)(ctx_t *, uint64_t id);
  void (*on_end)(ctx_t *, uint64_t id);
  void (*on_ackout)(ctx_t *, mllp_ack_out_event *);
  /* thread hooks */
  int thread_starts, thread_stops;
  /* release of the user pointer */
  int released;
};

static void ctx_init(ctx_t *c) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  c->cr_accept = 1;
  c->ackout_accept = 1;
  c->ackout_reject_code = MLLP_REJECT_AE;
  c->ackin_accepted = -1;
}

static void ctx_destroy(ctx_t *c) {
  free(c->xfer);
  free(c->ackout_msg);
  pthread_mutex_destroy(&c->mu);
}

static void record(ctx_t *c, void *user, int type, uint64_t conn, uint64_t seq, int code) {
  pthread_mutex_lock(&c->mu);
  if (user != c) c->wrong_user++;
  if (c->nev < MAX_EV) {
    ev_t *e = &c->ev[c->nev++];
    e->type = type;
    e->conn = conn;
    e->seq = seq;
    e->code = code;
    e->thread = pthread_self();
  }
  c->counts[type]++;
  pthread_mutex_unlock(&c->mu);
}

static int count(ctx_t *c, int type) {
  int n;
  pthread_mutex_lock(&c->mu);
  n = c->counts[type];
  pthread_mutex_unlock(&c->mu);
  return n;
}

static int get_int(ctx_t *c, const int *p) {
  int v;
  pthread_mutex_lock(&c->mu);
  v = *p;
  pthread_mutex_unlock(&c->mu);
  return v;
}

static uint64_t get_u64(ctx_t *c, const uint64_t *p) {
  uint64_t v;
  pthread_mutex_lock(&c->mu);
  v = *p;
  pthread_mutex_unlock(&c->mu);
  return v;
}

/* The events recorded so far as a string like "Request Connected Start ...", skipping Log. */
static void ev_sequence(ctx_t *c, char *out, size_t cap) {
  int i;
  size_t n = 0;
  out[0] = 0;
  pthread_mutex_lock(&c->mu);
  for (i = 0; i < c->nev && n + 16 < cap; i++) {
    if (c->ev[i].type == EV_LOG) continue;
    n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? " " : "", ev_names[c->ev[i].type]);
  }
  pthread_mutex_unlock(&c->mu);
}

static void ctx_clear_events(ctx_t *c) {
  pthread_mutex_lock(&c->mu);
  c->nev = 0;
  memset(c->counts, 0, sizeof c->counts);
  c->xfer_len = 0;
  c->bytes_cumulative_bad = 0;
  c->ackout_returned = 0;
  pthread_mutex_unlock(&c->mu);
}

/* ---- callbacks ------------------------------------------------------------------------- */

static void cb_request(void *user, mllp_connection_request_event *e) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  record(c, user, EV_REQUEST, 0, 0, 0);
  pthread_mutex_lock(&c->mu);
  snprintf(c->cr_addr, sizeof c->cr_addr, "%s", e->address ? e->address : "(null)");
  c->cr_port = e->port;
  e->accept = c->cr_accept;
  pthread_mutex_unlock(&c->mu);
}

static void cb_connected(void *user, const mllp_status_event *e) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  record(c, user, EV_CONNECTED, e->connection_id, 0, e->status_code);
  pthread_mutex_lock(&c->mu);
  c->conn_id = e->connection_id;
  pthread_mutex_unlock(&c->mu);
  if (c->on_connected) c->on_connected(c, e->connection_id);
}

static void cb_disconnected(void *user, const mllp_status_event *e) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  record(c, user, EV_DISCONNECTED, e->connection_id, 0, e->status_code);
  pthread_mutex_lock(&c->mu);
  c->disc_id = e->connection_id;
  pthread_mutex_unlock(&c->mu);
}

static void cb_start(void *user, const mllp_transfer_boundary_event *e) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  record(c, user, EV_START, e->connection_id, e->message_seq, 0);
  pthread_mutex_lock(&c->mu);
  c->xfer_len = 0;
  pthread_mutex_unlock(&c->mu);
}

static void cb_transfer(void *user, const mllp_transfer_event *e) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  record(c, user, EV_TRANSFER, e->connection_id, 0, 0);
  pthread_mutex_lock(&c->mu);
  if (c->xfer_len + e->len > c->xfer_cap) {
    size_t nc = (c->xfer_len + e->len) * 2;
    uint8_t *nb = (uint8_t *)realloc(c->xfer, nc);
    if (nb) {
      c->xfer = nb;
      c->xfer_cap = nc;
    }
  }
  if (c->xfer_len + e->len <= c->xfer_cap && e->len) {
    memcpy(c->xfer + c->xfer_len, e->data, e->len);
    c->xfer_len += e->len;
  }
  if (e->bytes_transferred != c->xfer_len) c->bytes_cumulative_bad++;
  pthread_mutex_unlock(&c->mu);
}

static void cb_end(void *user, const mllp_transfer_boundary_event *e) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  record(c, user, EV_END, e->connection_id, e->message_seq, 0);
  if (c->on_end) c->on_end(c, e->connection_id);
}

static void cb_ackout(void *user, mllp_ack_out_event *e) {
  ctx_t *c = (ctx_t *)user;
  int delay;
  if (!c) return;
  record(c, user, EV_ACKOUT, e->connection_id, e->message_seq, 0);
  pthread_mutex_lock(&c->mu);
  free(c->ackout_msg);
  c->ackout_msg = (uint8_t *)malloc(e->message_len + 1);
  if (c->ackout_msg) memcpy(c->ackout_msg, e->message, e->message_len);
  c->ackout_msg_len = e->message_len;
  e->accept = c->ackout_accept;
  e->reject_code = c->ackout_reject_code;
  delay = c->ackout_delay_ms;
  pthread_mutex_unlock(&c->mu);
  if (c->on_ackout) c->on_ackout(c, e);
  /* The acknowledgement must not reach the client before this callback returns. */
  if (delay) tu_sleep_ms(delay);
  pthread_mutex_lock(&c->mu);
  c->ackout_returned = 1;
  pthread_mutex_unlock(&c->mu);
}

static void cb_ackin(void *user, const mllp_ack_in_event *e) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  record(c, user, EV_ACKIN, e->connection_id, 0, e->accepted);
  pthread_mutex_lock(&c->mu);
  c->ackin_accepted = e->accepted;
  pthread_mutex_unlock(&c->mu);
}

static void cb_error(void *user, const mllp_error_event *e) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  record(c, user, EV_ERROR, e->connection_id, 0, e->error_code);
  pthread_mutex_lock(&c->mu);
  c->last_error_code = e->error_code;
  pthread_mutex_unlock(&c->mu);
  tu_note("Error event: connection %llu code %d: %s", (unsigned long long)e->connection_id,
          e->error_code, e->description ? e->description : "(null)");
}

static void cb_log(void *user, const mllp_log_event *e) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  record(c, user, EV_LOG, e->connection_id, 0, e->log_level);
}

static void cb_thread_start(void *user) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  c->thread_starts++;
  pthread_mutex_unlock(&c->mu);
}

static void cb_thread_stop(void *user) {
  ctx_t *c = (ctx_t *)user;
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  c->thread_stops++;
  pthread_mutex_unlock(&c->mu);
}

static void cb_release(void *user) {
  ctx_t *c = (ctx_t *)user;
  pthread_mutex_lock(&c->mu);
  c->released++;
  pthread_mutex_unlock(&c->mu);
}

/* A plain counter for release callbacks that are not a ctx. */
static pthread_mutex_t g_count_mu = PTHREAD_MUTEX_INITIALIZER;
static void cb_count(void *user) {
  pthread_mutex_lock(&g_count_mu);
  (*(int *)user)++;
  pthread_mutex_unlock(&g_count_mu);
}
static int counter(int *p) {
  int v;
  pthread_mutex_lock(&g_count_mu);
  v = *p;
  pthread_mutex_unlock(&g_count_mu);
  return v;
}

/* Registers every callback with `c` as user data (released into c->released). */
static void install(mllp_server *s, ctx_t *c) {
  c->srv = s;
  CHECK_RC(mllp_server_set_user_data(s, c, cb_release), MLLP_OK);
  mllp_server_on_connection_request(s, cb_request);
  mllp_server_on_connected(s, cb_connected);
  mllp_server_on_disconnected(s, cb_disconnected);
  mllp_server_on_start_transfer(s, cb_start);
  mllp_server_on_transfer(s, cb_transfer);
  mllp_server_on_end_transfer(s, cb_end);
  mllp_server_on_ack_out(s, cb_ackout);
  mllp_server_on_ack_in(s, cb_ackin);
  mllp_server_on_error(s, cb_error);
  mllp_server_on_log(s, cb_log);
  mllp_server_on_thread_start(s, cb_thread_start);
  mllp_server_on_thread_stop(s, cb_thread_stop);
}

/* A server on 127.0.0.1, an ephemeral port, every callback installed; port read back. */
static mllp_server *start_server(ctx_t *c, const char *config, uint16_t *port) {
  mllp_server *s = mllp_server_new();
  CHECK(s != NULL, "mllp_server_new() != NULL");
  if (!s) return NULL;
  install(s, c);
  CHECK_RC(mllp_server_set_local_host(s, "127.0.0.1"), MLLP_OK);
  CHECK_RC(mllp_server_set_local_port(s, 0), MLLP_OK);
  if (config) CHECK_RC(mllp_server_config(s, config, NULL, NULL), MLLP_OK);
  CHECK_RC(mllp_server_start_listening(s), MLLP_OK);
  *port = 0;
  CHECK_RC(mllp_server_get_local_port(s, port), MLLP_OK);
  CHECK(*port != 0, "LocalPort read back after listening on port 0: %u", *port);
  return s;
}

/* Frees the server and checks the user pointer was released exactly once. */
static void free_server(mllp_server *s, ctx_t *c) {
  CHECK_RC(mllp_server_free(s), MLLP_OK);
  CHECK(get_int(c, &c->released) == 1, "user data released exactly once on free (got %d)",
        get_int(c, &c->released));
  CHECK(get_int(c, &c->wrong_user) == 0, "every callback got the registered user pointer");
}

/* Connects a client and waits for its Connected event; returns the connection id or 0. */
static uint64_t connect_client(ctx_t *c, tu_client *cl, uint16_t port) {
  int before = count(c, EV_CONNECTED);
  if (!CHECK(tu_connect(cl, port) == 0, "client connects to 127.0.0.1:%u", port)) return 0;
  WAIT_UNTIL(count(c, EV_CONNECTED) > before, 5000);
  if (!CHECK(count(c, EV_CONNECTED) > before, "Connected fired for the client")) return 0;
  return get_u64(c, &c->conn_id);
}

/* ======================================================================================== */
/* 1. NULL server, NULL outputs, last error, descriptions, version                           */
/* ======================================================================================== */

static int g_null_close;
static void *thread_last_error(void *arg) {
  int *ok = (int *)arg;
  ok[0] = mllp_last_error_code() == 0;
  ok[1] = strcmp(mllp_last_error_message(), "") == 0;
  ok[2] = mllp_server_set_version(NULL, 2) == MLLP_ERR_INVALID_ARGUMENT &&
          mllp_last_error_code() == MLLP_ERR_INVALID_ARGUMENT;
  return NULL;
}

static ptrdiff_t rd_never(void *u, uint8_t *b, size_t n) {
  (void)u;
  (void)b;
  (void)n;
  return 0;
}
static int wr_never(void *u, const uint8_t *d, size_t n) {
  (void)u;
  (void)d;
  (void)n;
  return 0;
}

static void test_null(void) {
  mllp_server *N = NULL;
  char buf[64];
  size_t len = sizeof buf;
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  int i32;
  size_t sz;
  uint64_t ids[4];
  int rel = 0;
  char want[32];

  tu_section("1. NULL server and NULL outputs -> MLLP_ERR_INVALID_ARGUMENT");
  CHECK_RC(mllp_server_on_connection_request(N, cb_request), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_connected(N, cb_connected), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_disconnected(N, cb_disconnected), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_start_transfer(N, cb_start), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_transfer(N, cb_transfer), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_end_transfer(N, cb_end), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_ack_out(N, cb_ackout), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_ack_in(N, cb_ackin), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_error(N, cb_error), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_log(N, cb_log), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_thread_start(N, cb_thread_start), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_thread_stop(N, cb_thread_stop), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_set_user_data(N, &rel, cb_count), MLLP_ERR_INVALID_ARGUMENT);
  CHECK(counter(&rel) == 0, "set_user_data(NULL server): release not called (got %d)",
        counter(&rel));

  CHECK_RC(mllp_connection_get_connected(N, 1, &u8), MLLP_ERR_INVALID_ARGUMENT);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_remote_host(N, 1, buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_connection_get_remote_port(N, 1, &u16), MLLP_ERR_INVALID_ARGUMENT);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_local_address(N, 1, buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_connection_get_timeout(N, 1, &u32), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_connection_set_timeout(N, 1, 5), MLLP_ERR_INVALID_ARGUMENT);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_input_data(N, 1, (uint8_t *)buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_connection_set_input_data(N, 1, (const uint8_t *)"x", 1),
           MLLP_ERR_INVALID_ARGUMENT);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_input_file_name(N, 1, buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_connection_set_input_file_name(N, 1, "/tmp/x"), MLLP_ERR_INVALID_ARGUMENT);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_output_data(N, 1, (uint8_t *)buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_output_file_name(N, 1, buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_connection_set_output_file_name(N, 1, "/tmp/x"), MLLP_ERR_INVALID_ARGUMENT);
  g_null_close = 0;
  CHECK_RC(mllp_connection_set_input_stream(N, 1, rd_never, cb_count, &g_null_close),
           MLLP_ERR_INVALID_ARGUMENT);
  CHECK(counter(&g_null_close) == 1, "set_input_stream(NULL server): close called once (got %d)",
        counter(&g_null_close));
  g_null_close = 0;
  CHECK_RC(mllp_connection_set_output_stream(N, 1, wr_never, cb_count, &g_null_close),
           MLLP_ERR_INVALID_ARGUMENT);
  CHECK(counter(&g_null_close) == 1,
        "set_output_stream(NULL server): close called once (got %d)", counter(&g_null_close));

  CHECK_RC(mllp_server_free(NULL), MLLP_OK);
  CHECK_RC(mllp_server_get_default_timeout(N, &u32), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_keep_alive(N, &u8), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_listening(N, &u8), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_local_port(N, &u16), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_version(N, &i32), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_connection_count(N, &sz), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_set_default_timeout(N, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_set_keep_alive(N, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_set_local_port(N, 0), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_set_version(N, 2), MLLP_ERR_INVALID_ARGUMENT);
  len = sizeof buf;
  CHECK_RC(mllp_server_get_local_host(N, buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_set_local_host(N, "127.0.0.1"), MLLP_ERR_INVALID_ARGUMENT);
  len = sizeof buf;
  CHECK_RC(mllp_server_config(N, "AckMode", buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_config(N, "AckMode=HL7", NULL, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_start_listening(N), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_stop_listening(N), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_shutdown(N), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_reset(N), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_disconnect(N, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_interrupt(N, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_send(N, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_send_bytes(N, 1, (const uint8_t *)"x", 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_do_events(N, 0, &sz), MLLP_ERR_INVALID_ARGUMENT);
  len = 4;
  CHECK_RC(mllp_server_get_connections(N, ids, &len), MLLP_ERR_INVALID_ARGUMENT);

  /* last error reflects the last failure */
  CHECK(mllp_last_error_code() == MLLP_ERR_INVALID_ARGUMENT,
        "mllp_last_error_code() == 2001 after a NULL server (got %d)", mllp_last_error_code());
  CHECK(mllp_last_error_message() != NULL && strlen(mllp_last_error_message()) > 0,
        "mllp_last_error_message() non-empty: \"%s\"",
        mllp_last_error_message() ? mllp_last_error_message() : "(null)");
  CHECK(mllp_last_error_message() && strstr(mllp_last_error_message(), "NULL") != NULL,
        "last error message mentions NULL");

  {
    mllp_server *s = mllp_server_new();
    CHECK(s != NULL, "mllp_server_new() != NULL");
    tu_section("1. NULL output pointers on a valid server");
    CHECK_RC(mllp_server_get_default_timeout(s, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_get_keep_alive(s, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_get_listening(s, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_get_local_port(s, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_get_version(s, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_get_connection_count(s, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_get_local_host(s, buf, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_set_local_host(s, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_config(s, NULL, buf, &len), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_config(s, "AckMode", buf, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_get_connections(s, ids, NULL), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_send_bytes(s, 1, NULL, 5), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_connection_set_input_data(s, 1, NULL, 5), MLLP_ERR_INVALID_ARGUMENT);
    CHECK_RC(mllp_server_do_events(s, 0, NULL), MLLP_OK); /* documented: may be NULL */

    tu_section("1. other failures and the per-thread last error");
    CHECK_RC(mllp_server_set_version(s, 3), MLLP_ERR_INVALID_VALUE);
    CHECK(mllp_last_error_code() == MLLP_ERR_INVALID_VALUE,
          "mllp_last_error_code() follows the last failure: 2005 (got %d)",
          mllp_last_error_code());
    CHECK_RC(mllp_server_config(s, "NoSuchSetting", buf, &len), MLLP_ERR_UNKNOWN_SETTING);
    CHECK(mllp_last_error_code() == MLLP_ERR_UNKNOWN_SETTING, "last error code now 2004");
    CHECK_RC(mllp_server_config(s, "NoSuchSetting=1", NULL, NULL), MLLP_ERR_UNKNOWN_SETTING);
    CHECK_RC(mllp_server_config(s, "AckMode=Maybe", NULL, NULL), MLLP_ERR_INVALID_VALUE);
    {
      int u = 0;
      CHECK_RC(mllp_server_get_listening(s, &u8), MLLP_OK);
      (void)u;
    }
    CHECK(mllp_last_error_code() == MLLP_ERR_INVALID_VALUE,
          "a successful call leaves the last failure in place (got %d)", mllp_last_error_code());
    {
      pthread_t t;
      int ok[3] = {0, 0, 0};
      pthread_create(&t, NULL, thread_last_error, ok);
      pthread_join(t, NULL);
      CHECK(ok[0], "a new thread sees mllp_last_error_code() == 0");
      CHECK(ok[1], "a new thread sees mllp_last_error_message() == \"\"");
      CHECK(ok[2], "a failure on that thread is recorded there");
      CHECK(mllp_last_error_code() == MLLP_ERR_INVALID_VALUE,
            "...and does not change this thread's last error (got %d)", mllp_last_error_code());
    }
    CHECK_RC(mllp_server_free(s), MLLP_OK);
  }

  tu_section("1. descriptions and version");
  CHECK(mllp_error_description(671) != NULL && strlen(mllp_error_description(671)) > 0,
        "mllp_error_description(671) = \"%s\"", mllp_error_description(671));
  CHECK(mllp_error_description(2006) != NULL && strlen(mllp_error_description(2006)) > 0,
        "mllp_error_description(2006) = \"%s\"", mllp_error_description(2006));
  CHECK(mllp_error_description(-123456) != NULL, "mllp_error_description(unknown) != NULL");
  CHECK(mllp_error_description(671) == mllp_error_description(671),
        "mllp_error_description returns static storage (same pointer twice)");
  snprintf(want, sizeof want, "%d.%d.%d", MLLP_VERSION_MAJOR, MLLP_VERSION_MINOR,
           MLLP_VERSION_PATCH);
  CHECK(mllp_version() != NULL && strcmp(mllp_version(), want) == 0,
        "mllp_version() \"%s\" == \"%s\"", mllp_version() ? mllp_version() : "(null)", want);
}

/* ======================================================================================== */
/* 2. Stale and unknown connection ids                                                      */
/* ======================================================================================== */

static void check_stale_id(mllp_server *s, uint64_t id) {
  char buf[64];
  size_t len;
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  int closes = 0;
  const int E = MLLP_ERR_NO_SUCH_CONNECTION;
  tu_note("connection id %llu (0x%llx)", (unsigned long long)id, (unsigned long long)id);
  CHECK_RC(mllp_connection_get_connected(s, id, &u8), E);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_remote_host(s, id, buf, &len), E);
  CHECK_RC(mllp_connection_get_remote_port(s, id, &u16), E);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_local_address(s, id, buf, &len), E);
  CHECK_RC(mllp_connection_get_timeout(s, id, &u32), E);
  CHECK_RC(mllp_connection_set_timeout(s, id, 3), E);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_input_data(s, id, (uint8_t *)buf, &len), E);
  CHECK_RC(mllp_connection_set_input_data(s, id, (const uint8_t *)"abc", 3), E);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_input_file_name(s, id, buf, &len), E);
  CHECK_RC(mllp_connection_set_input_file_name(s, id, "/tmp/none"), E);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_output_data(s, id, (uint8_t *)buf, &len), E);
  len = sizeof buf;
  CHECK_RC(mllp_connection_get_output_file_name(s, id, buf, &len), E);
  CHECK_RC(mllp_connection_set_output_file_name(s, id, "/tmp/none"), E);
  CHECK_RC(mllp_connection_set_input_stream(s, id, rd_never, cb_count, &closes), E);
  CHECK(counter(&closes) == 1, "input stream closed once after the failed call (got %d)",
        counter(&closes));
  closes = 0;
  CHECK_RC(mllp_connection_set_output_stream(s, id, wr_never, cb_count, &closes), E);
  CHECK(counter(&closes) == 1, "output stream closed once after the failed call (got %d)",
        counter(&closes));
  CHECK_RC(mllp_server_send(s, id), E);
  CHECK_RC(mllp_server_send_bytes(s, id, (const uint8_t *)"abc", 3), E);
  CHECK_RC(mllp_server_disconnect(s, id), E);
  CHECK_RC(mllp_server_interrupt(s, id), E);
  CHECK(mllp_last_error_code() == E, "last error code is 2002");
}

static void test_stale(void) {
  ctx_t c;
  uint16_t port;
  mllp_server *s;
  tu_client a, b;
  uint64_t ida, idb;
  uint8_t u8 = 9;

  tu_section("2. Stale and unknown connection ids -> MLLP_ERR_NO_SUCH_CONNECTION");
  ctx_init(&c);
  s = start_server(&c, NULL, &port);
  if (!s) return;
  ida = connect_client(&c, &a, port);
  CHECK(ida != 0, "connection id is not 0");
  CHECK_RC(mllp_connection_get_connected(s, ida, &u8), MLLP_OK);
  CHECK(u8 == 1, "Connected == 1 for the live connection");
  tu_close(&a);
  WAIT_UNTIL(count(&c, EV_DISCONNECTED) == 1, 5000);
  CHECK(count(&c, EV_DISCONNECTED) == 1, "Disconnected fired after the client closed");
  CHECK(get_u64(&c, &c.disc_id) == ida, "Disconnected carries the closed connection's id");
  /* a new connection may reuse the slot: the old id must still be unknown */
  idb = connect_client(&c, &b, port);
  CHECK(idb != 0 && idb != ida, "a new connection gets a new id (%llu != %llu)",
        (unsigned long long)idb, (unsigned long long)ida);
  check_stale_id(s, 0);
  check_stale_id(s, 12345);
  check_stale_id(s, ida);
  u8 = 9;
  CHECK_RC(mllp_connection_get_connected(s, idb, &u8), MLLP_OK);
  CHECK(u8 == 1, "the new connection is unaffected");
  tu_close(&b);
  free_server(s, &c);
  ctx_destroy(&c);
}

/* ======================================================================================== */
/* 3. The buffer rule                                                                       */
/* ======================================================================================== */

typedef int (*getbuf_fn)(mllp_server *s, uint64_t id, const char *arg, void *buf, size_t *len);

static int g_local_host(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)id;
  (void)a;
  return mllp_server_get_local_host(s, (char *)b, l);
}
static int g_config(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)id;
  return mllp_server_config(s, a, (char *)b, l);
}
static int g_remote_host(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)a;
  return mllp_connection_get_remote_host(s, id, (char *)b, l);
}
static int g_local_address(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)a;
  return mllp_connection_get_local_address(s, id, (char *)b, l);
}
static int g_input_data(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)a;
  return mllp_connection_get_input_data(s, id, (uint8_t *)b, l);
}
static int g_output_data(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)a;
  return mllp_connection_get_output_data(s, id, (uint8_t *)b, l);
}
static int g_input_file(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)a;
  return mllp_connection_get_input_file_name(s, id, (char *)b, l);
}
static int g_output_file(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)a;
  return mllp_connection_get_output_file_name(s, id, (char *)b, l);
}
static int g_connections(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)id;
  (void)a;
  return mllp_server_get_connections(s, (uint64_t *)b, l);
}

/* Checks the rule: NULL or small buffer -> 2008 with *len = need and nothing copied; then a
 * right-sized buffer -> OK with the value. `expect` has `need` units of `unit` bytes (strings:
 * including the NUL). When `expect` is NULL the value is only checked for its size. */
static void check_buffer_rule(const char *what, getbuf_fn f, mllp_server *s, uint64_t id,
                              const char *arg, const void *expect, size_t need, size_t unit) {
  size_t len;
  uint8_t *buf = (uint8_t *)malloc((need + 2) * unit + 1);
  size_t i;
  int untouched = 1;
  tu_note("buffer rule: %s (needs %zu)", what, need);
  len = 0;
  CHECK_RC(f(s, id, arg, NULL, &len), MLLP_ERR_BUFFER_TOO_SMALL);
  CHECK(len == need, "%s: NULL buffer, capacity 0 -> *len = %zu (got %zu)", what, need, len);
  len = 100000;
  CHECK_RC(f(s, id, arg, NULL, &len), MLLP_ERR_BUFFER_TOO_SMALL);
  CHECK(len == need, "%s: NULL buffer, large capacity -> *len = %zu (got %zu)", what, need, len);
  if (need > 0) {
    memset(buf, 0xA5, (need + 2) * unit);
    len = need - 1;
    CHECK_RC(f(s, id, arg, buf, &len), MLLP_ERR_BUFFER_TOO_SMALL);
    CHECK(len == need, "%s: capacity need-1 -> *len = %zu (got %zu)", what, need, len);
    for (i = 0; i < (need + 2) * unit; i++)
      if (buf[i] != 0xA5) untouched = 0;
    CHECK(untouched, "%s: nothing copied into the too-small buffer", what);
  }
  memset(buf, 0xA5, (need + 2) * unit);
  len = need;
  CHECK_RC(f(s, id, arg, buf, &len), MLLP_OK);
  CHECK(len == need, "%s: right-sized buffer -> *len = %zu (got %zu)", what, need, len);
  if (expect)
    CHECK(memcmp(buf, expect, need * unit) == 0, "%s: the value is copied exactly", what);
  CHECK(buf[need * unit] == 0xA5, "%s: nothing written past *len", what);
  len = need + 2;
  CHECK_RC(f(s, id, arg, buf, &len), MLLP_OK);
  CHECK(len == need, "%s: larger buffer -> *len = %zu (got %zu)", what, need, len);
  free(buf);
}

static void test_buffer(void) {
  ctx_t c;
  uint16_t port;
  mllp_server *s;
  tu_client a, b;
  uint64_t ida, idb;
  uint8_t *ack = NULL;
  long n;
  char path[64];

  tu_section("3. The buffer rule (MLLP_ERR_BUFFER_TOO_SMALL, *len = size needed)");
  ctx_init(&c);
  s = start_server(&c, NULL, &port);
  if (!s) return;
  check_buffer_rule("LocalHost", g_local_host, s, 0, NULL, "127.0.0.1", 10, 1);
  check_buffer_rule("Config(\"AckMode\")", g_config, s, 0, "AckMode", "MLLP", 5, 1);
  check_buffer_rule("Config(\"LocalHost\")", g_config, s, 0, "LocalHost", "127.0.0.1", 10, 1);
  ida = connect_client(&c, &a, port);
  check_buffer_rule("RemoteHost", g_remote_host, s, ida, NULL, "127.0.0.1", 10, 1);
  check_buffer_rule("LocalAddress", g_local_address, s, ida, NULL, "127.0.0.1", 10, 1);
  CHECK_RC(mllp_connection_set_input_data(s, ida, g_msg, g_msg_len), MLLP_OK);
  check_buffer_rule("InputData", g_input_data, s, ida, NULL, g_msg, g_msg_len, 1);
  snprintf(path, sizeof path, "/tmp/mllp-harness-%d-in.hl7", (int)getpid());
  CHECK_RC(mllp_connection_set_input_file_name(s, ida, path), MLLP_OK);
  check_buffer_rule("InputFileName", g_input_file, s, ida, NULL, path, strlen(path) + 1, 1);
  CHECK_RC(mllp_connection_set_input_file_name(s, ida, ""), MLLP_OK);
  snprintf(path, sizeof path, "/tmp/mllp-harness-%d-out.hl7", (int)getpid());
  CHECK_RC(mllp_connection_set_output_file_name(s, ida, path), MLLP_OK);
  check_buffer_rule("OutputFileName", g_output_file, s, ida, NULL, path, strlen(path) + 1, 1);
  CHECK_RC(mllp_connection_set_output_file_name(s, ida, ""), MLLP_OK);
  /* OutputData after a message */
  CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends the sample message");
  n = tu_recv_frame(&a, &ack, 5000);
  CHECK(n == 1 && ack && ack[0] == TU_ACK, "client receives the MLLP ACK (n=%ld)", n);
  free(ack);
  check_buffer_rule("OutputData", g_output_data, s, ida, NULL, g_msg, g_msg_len, 1);
  /* connections list with two clients */
  idb = connect_client(&c, &b, port);
  {
    uint64_t ids[2];
    size_t len = 2;
    int rc = mllp_server_get_connections(s, ids, &len);
    int found = rc == MLLP_OK && len == 2 &&
                ((ids[0] == ida && ids[1] == idb) || (ids[0] == idb && ids[1] == ida));
    CHECK(found, "get_connections lists both connection ids");
    if (found) check_buffer_rule("Connections", g_connections, s, 0, NULL, ids, 2, sizeof ids[0]);
  }
  tu_close(&a);
  tu_close(&b);
  free_server(s, &c);
  ctx_destroy(&c);
}

/* ======================================================================================== */
/* 4. Free in every state                                                                   */
/* ======================================================================================== */

static mllp_server *g_other;
static int g_other_rc;
static void hook_free_other(ctx_t *c, uint64_t id) {
  (void)c;
  (void)id;
  if (g_other) __atomic_store_n(&g_other_rc, mllp_server_free(g_other), __ATOMIC_SEQ_CST);
  g_other = NULL;
}

/* Frees a server (started with `config`) that has three clients connected and checks that
 * Disconnected fired exactly once for every connection id, with status 0, before free
 * returned; in DoEvents mode on the thread calling mllp_server_free. */
static void check_free_fires_disconnected(const char *config, int doevents) {
  enum { NCLIENTS = 3 };
  ctx_t c;
  uint16_t port;
  mllp_server *s;
  tu_client cl[NCLIENTS];
  uint64_t ids[NCLIENTS];
  int i, j, nconn = 0;
  pthread_t me = pthread_self();
  tu_note("free with three clients connected (%s): Disconnected for each", config);
  ctx_init(&c);
  s = start_server(&c, config, &port);
  if (!s) {
    ctx_destroy(&c);
    return;
  }
  for (i = 0; i < NCLIENTS; i++) CHECK(tu_connect(&cl[i], port) == 0, "client %d connects", i + 1);
  {
    long long dl = tu_now_ms() + 5000;
    while (count(&c, EV_CONNECTED) < NCLIENTS && tu_now_ms() < dl) {
      size_t d = 0;
      if (!doevents) tu_sleep_ms(2);
      else if (mllp_server_do_events(s, 50, &d) != MLLP_OK) break;
    }
  }
  pthread_mutex_lock(&c.mu);
  for (i = 0; i < c.nev && nconn < NCLIENTS; i++)
    if (c.ev[i].type == EV_CONNECTED && c.ev[i].code == 0) ids[nconn++] = c.ev[i].conn;
  pthread_mutex_unlock(&c.mu);
  ctx_clear_events(&c); /* from here on: what free delivers */
  CHECK(nconn == NCLIENTS, "Connected seen for every client (%d of %d)", nconn, NCLIENTS);
  free_server(s, &c);
  /* free has returned: the reactor thread is gone, nothing records any more. */
  CHECK(c.counts[EV_DISCONNECTED] == nconn, "free fired %d Disconnected (want %d)",
        c.counts[EV_DISCONNECTED], nconn);
  for (i = 0; i < nconn; i++) {
    int seen = 0, ok_status = 1, ok_thread = 1;
    for (j = 0; j < c.nev; j++) {
      if (c.ev[j].type != EV_DISCONNECTED || c.ev[j].conn != ids[i]) continue;
      seen++;
      if (c.ev[j].code != 0) ok_status = 0;
      if (!!pthread_equal(c.ev[j].thread, me) != doevents) ok_thread = 0;
    }
    CHECK(seen == 1 && ok_status, "connection %llu: Disconnected exactly once, status 0 (seen %d)",
          (unsigned long long)ids[i], seen);
    CHECK(ok_thread, "connection %llu: Disconnected ran on %s", (unsigned long long)ids[i],
          doevents ? "the thread calling mllp_server_free" : "the reactor thread");
  }
  for (i = 0; i < NCLIENTS; i++) {
    CHECK(tu_wait_closed(&cl[i], 3000), "client %d sees its socket closed", i + 1);
    tu_close(&cl[i]);
  }
  ctx_destroy(&c);
}

static void test_free(void) {
  tu_section("4. mllp_server_free in every state; user data released exactly once");
  { /* never started */
    int r = 0;
    mllp_server *s = mllp_server_new();
    tu_note("never started");
    CHECK_RC(mllp_server_set_user_data(s, &r, cb_count), MLLP_OK);
    CHECK(counter(&r) == 0, "not released while set");
    CHECK_RC(mllp_server_free(s), MLLP_OK);
    CHECK(counter(&r) == 1, "released once by free (got %d)", counter(&r));
  }
  { /* replacing the user data */
    int r1 = 0, r2 = 0, r3 = 0;
    mllp_server *s = mllp_server_new();
    tu_note("replacing the user data");
    CHECK_RC(mllp_server_set_user_data(s, &r1, cb_count), MLLP_OK);
    CHECK_RC(mllp_server_set_user_data(s, &r2, cb_count), MLLP_OK);
    CHECK(counter(&r1) == 1, "the replaced pointer is released once (got %d)", counter(&r1));
    CHECK(counter(&r2) == 0, "the new pointer is not released");
    CHECK_RC(mllp_server_on_log(s, cb_log), MLLP_OK); /* a callback change keeps the pointer */
    CHECK(counter(&r2) == 0, "changing a callback does not release the pointer");
    CHECK_RC(mllp_server_set_user_data(s, &r3, NULL), MLLP_OK); /* no release callback */
    CHECK(counter(&r2) == 1, "replaced again: released once (got %d)", counter(&r2));
    CHECK_RC(mllp_server_free(s), MLLP_OK);
    CHECK(counter(&r1) == 1 && counter(&r2) == 1 && counter(&r3) == 0,
          "free: no further releases (r1=%d r2=%d r3=%d)", counter(&r1), counter(&r2),
          counter(&r3));
  }
  { /* listening */
    ctx_t c;
    uint16_t port;
    mllp_server *s;
    tu_note("listening");
    ctx_init(&c);
    s = start_server(&c, NULL, &port);
    if (s) {
      uint8_t l = 0;
      CHECK_RC(mllp_server_get_listening(s, &l), MLLP_OK);
      CHECK(l == 1, "Listening == 1");
      WAIT_UNTIL(get_int(&c, &c.thread_starts) == 1, 2000);
      {
        ctx_t c2;
        ctx_init(&c2);
        c2.srv = s;
        CHECK_RC(mllp_server_set_user_data(s, &c2, cb_release), MLLP_OK);
        WAIT_UNTIL(get_int(&c, &c.released) == 1, 1000);
        CHECK(get_int(&c, &c.released) == 1,
              "idle listening server: the replaced pointer is released within 1 s (released %d "
              "times)",
              get_int(&c, &c.released));
        CHECK_RC(mllp_server_free(s), MLLP_OK);
        CHECK(get_int(&c, &c.released) == 1 && get_int(&c2, &c2.released) == 1,
              "after free: replaced and current pointers each released exactly once (%d/%d)",
              get_int(&c, &c.released), get_int(&c2, &c2.released));
        CHECK(c.thread_starts == 1 && c2.thread_stops == 1 && c.thread_stops == 0,
              "thread start hook ran once (old pointer), stop hook once (new pointer)");
        ctx_destroy(&c2);
      }
    }
    ctx_destroy(&c);
  }
  { /* with clients, mid-conversation */
    ctx_t c;
    uint16_t port;
    mllp_server *s;
    tu_client a, b;
    tu_note("with two clients, one of them mid-message");
    ctx_init(&c);
    s = start_server(&c, NULL, &port);
    if (s) {
      uint64_t ida = connect_client(&c, &a, port);
      uint64_t idb = connect_client(&c, &b, port);
      uint8_t sb = TU_SB;
      (void)ida;
      (void)idb;
      CHECK(tu_send_all(&a, &sb, 1) == 0 && tu_send_all(&a, g_msg, g_msg_len / 2) == 0,
            "client A sends half a frame");
      tu_sleep_ms(100);
      free_server(s, &c);
      CHECK(c.counts[EV_DISCONNECTED] == 2, "Disconnected fired for both clients (got %d)",
            c.counts[EV_DISCONNECTED]);
      CHECK(c.counts[EV_START] == 0 && c.counts[EV_END] == 0,
            "the partial message was not delivered");
      CHECK(tu_wait_closed(&a, 3000), "client A sees its socket closed");
      CHECK(tu_wait_closed(&b, 3000), "client B sees its socket closed");
      tu_close(&a);
      tu_close(&b);
    }
    ctx_destroy(&c);
  }
  check_free_fires_disconnected("EventMode=Thread", 0);
  { /* after shutdown */
    ctx_t c;
    uint16_t port;
    mllp_server *s;
    tu_client a;
    tu_note("after shutdown");
    ctx_init(&c);
    s = start_server(&c, NULL, &port);
    if (s) {
      uint8_t l = 1;
      connect_client(&c, &a, port);
      CHECK_RC(mllp_server_shutdown(s), MLLP_OK);
      WAIT_UNTIL(count(&c, EV_DISCONNECTED) == 1, 5000);
      CHECK(count(&c, EV_DISCONNECTED) == 1, "shutdown fired Disconnected");
      CHECK_RC(mllp_server_get_listening(s, &l), MLLP_OK);
      CHECK(l == 0, "Listening == 0 after shutdown");
      CHECK(tu_wait_closed(&a, 3000), "the client sees its socket closed");
      tu_close(&a);
      free_server(s, &c);
      CHECK(c.counts[EV_DISCONNECTED] == 1, "no second Disconnected on free");
    }
    ctx_destroy(&c);
  }
  { /* after a failed start (port in use) */
    ctx_t c1, c2;
    uint16_t port;
    mllp_server *s1, *s2;
    tu_note("after a failed start (address in use)");
    ctx_init(&c1);
    ctx_init(&c2);
    s1 = start_server(&c1, NULL, &port);
    s2 = mllp_server_new();
    install(s2, &c2);
    CHECK_RC(mllp_server_set_local_host(s2, "127.0.0.1"), MLLP_OK);
    CHECK_RC(mllp_server_set_local_port(s2, port), MLLP_OK);
    CHECK_RC(mllp_server_start_listening(s2), 10048);
    CHECK(mllp_last_error_code() == 10048, "last error code 10048 (got %d): \"%s\"",
          mllp_last_error_code(), mllp_last_error_message());
    {
      uint8_t l = 1;
      CHECK_RC(mllp_server_get_listening(s2, &l), MLLP_OK);
      CHECK(l == 0, "the failed server is not listening");
    }
    free_server(s2, &c2);
    free_server(s1, &c1);
    ctx_destroy(&c1);
    ctx_destroy(&c2);
  }
  { /* freeing server B from inside server A's callback is not re-entrant: it works */
    ctx_t ca, cb;
    uint16_t pa, pb;
    mllp_server *sa, *sb;
    tu_client cl;
    tu_note("free server B from inside a callback of server A");
    ctx_init(&ca);
    ctx_init(&cb);
    sa = start_server(&ca, NULL, &pa);
    sb = start_server(&cb, NULL, &pb);
    g_other = sb;
    g_other_rc = -1;
    ca.on_connected = hook_free_other;
    if (sa && sb) {
      connect_client(&ca, &cl, pa);
      /* The hook runs after Connected is recorded and joins B's reactor: wait for it. */
      for (int i = 0; i < 500 && __atomic_load_n(&g_other_rc, __ATOMIC_SEQ_CST) == -1; i++) tu_sleep_ms(10);
      CHECK_RC(__atomic_load_n(&g_other_rc, __ATOMIC_SEQ_CST), MLLP_OK);
      CHECK(get_int(&cb, &cb.released) == 1, "B's user data released once");
      tu_close(&cl);
      free_server(sa, &ca);
    }
    ctx_destroy(&ca);
    ctx_destroy(&cb);
  }
  { /* user data replaced while a callback that received it is running */
    ctx_t c, c2;
    uint16_t port;
    mllp_server *s;
    tu_client a;
    tu_note("user data replaced while a callback runs: released after it returns");
    ctx_init(&c);
    ctx_init(&c2);
    c.ackout_delay_ms = 400;
    s = start_server(&c, NULL, &port);
    if (s) {
      uint8_t *f = NULL;
      long n;
      connect_client(&c, &a, port);
      CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends a message");
      WAIT_UNTIL(count(&c, EV_ACKOUT) == 1, 5000);
      CHECK(count(&c, EV_ACKOUT) == 1, "AckOut is running (sleeps 400 ms)");
      c2.srv = s;
      CHECK_RC(mllp_server_set_user_data(s, &c2, cb_release), MLLP_OK);
      CHECK(get_int(&c, &c.released) == 0,
            "the old pointer is not released while the callback using it runs");
      n = tu_recv_frame(&a, &f, 5000);
      CHECK(n == 1 && f && f[0] == TU_ACK, "client receives the ACK");
      free(f);
      WAIT_UNTIL(get_int(&c, &c.released) == 1, 3000);
      CHECK(get_int(&c, &c.released) == 1 && get_int(&c, &c.ackout_returned) == 1,
            "old pointer released once, soon after the callback returned (released %d times "
            "within 3 s of the replacement)",
            get_int(&c, &c.released));
      tu_close(&a);
      WAIT_UNTIL(count(&c2, EV_DISCONNECTED) == 1, 5000);
      CHECK(count(&c2, EV_DISCONNECTED) == 1, "later events receive the new pointer");
      CHECK_RC(mllp_server_free(s), MLLP_OK);
      CHECK(get_int(&c, &c.released) == 1 && get_int(&c2, &c2.released) == 1,
            "after free: old released once, new released once (%d/%d)", c.released,
            c2.released);
    }
    ctx_destroy(&c);
    ctx_destroy(&c2);
  }
  { /* listening state changes, then free after stop_listening */
    ctx_t c;
    uint16_t port;
    mllp_server *s;
    tu_note("after stop_listening, port/host locked while listening");
    ctx_init(&c);
    s = start_server(&c, NULL, &port);
    if (s) {
      CHECK_RC(mllp_server_set_local_port(s, 1), MLLP_ERR_CANNOT_CHANGE_LOCAL_PORT);
      CHECK_RC(mllp_server_set_local_host(s, "0.0.0.0"), MLLP_ERR_CANNOT_CHANGE_LOCAL_HOST);
      CHECK_RC(mllp_server_stop_listening(s), MLLP_OK);
      CHECK_RC(mllp_server_reset(s), MLLP_OK);
      free_server(s, &c);
    }
    ctx_destroy(&c);
  }
}

/* ======================================================================================== */
/* 5. Round trip                                                                            */
/* ======================================================================================== */

static void test_roundtrip(void) {
  ctx_t c;
  uint16_t port;
  mllp_server *s;
  tu_client a;
  uint64_t id;
  uint8_t *f = NULL;
  long n;
  char seq[512];

  tu_section("5. Round trip: events in order, ACK after AckOut, OutputData");
  ctx_init(&c);
  s = start_server(&c, NULL, &port);
  if (!s) return;
  c.ackout_delay_ms = 250;
  id = connect_client(&c, &a, port);
  CHECK(strcmp(c.cr_addr, "127.0.0.1") == 0, "ConnectionRequest address \"%s\"", c.cr_addr);
  CHECK(c.cr_port == tu_local_port(&a), "ConnectionRequest port %u == client port %u", c.cr_port,
        tu_local_port(&a));
  {
    uint16_t rp = 0;
    CHECK_RC(mllp_connection_get_remote_port(s, id, &rp), MLLP_OK);
    CHECK(rp == tu_local_port(&a), "RemotePort == client port (%u)", rp);
  }
  CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends 0x0B + adt_a01.hl7 + 0x1C 0x0D");
  n = tu_recv_frame(&a, &f, 5000);
  CHECK(n == 1 && f && f[0] == TU_ACK, "client receives 0x0B 0x06 0x1C 0x0D (n=%ld)", n);
  CHECK(get_int(&c, &c.ackout_returned) == 1,
        "the ACK arrived only after the AckOut callback returned");
  free(f);
  f = NULL;
  ev_sequence(&c, seq, sizeof seq);
  CHECK(strcmp(seq, "Request Connected Start Transfer End AckOut") == 0,
        "events in order: \"%s\"", seq);
  pthread_mutex_lock(&c.mu);
  CHECK(c.xfer_len == g_msg_len && memcmp(c.xfer, g_msg, g_msg_len) == 0,
        "Transfer pieces concatenated == file bytes (%zu of %zu)", c.xfer_len, g_msg_len);
  CHECK(c.bytes_cumulative_bad == 0, "bytes_transferred is cumulative");
  CHECK(c.ackout_msg_len == g_msg_len && memcmp(c.ackout_msg, g_msg, g_msg_len) == 0,
        "AckOut carries the complete message");
  {
    int i, ok = 1;
    for (i = 0; i < c.nev; i++)
      if (c.ev[i].type != EV_REQUEST && c.ev[i].type != EV_LOG && c.ev[i].conn != id) ok = 0;
    CHECK(ok, "every event carries the connection id");
    for (i = 0; i < c.nev; i++)
      if ((c.ev[i].type == EV_START || c.ev[i].type == EV_END || c.ev[i].type == EV_ACKOUT) &&
          c.ev[i].seq != 1)
        ok = 0;
    CHECK(ok, "message_seq == 1 for the first message");
  }
  pthread_mutex_unlock(&c.mu);
  {
    uint8_t *out = (uint8_t *)malloc(g_msg_len + 1);
    size_t len = g_msg_len;
    CHECK_RC(mllp_connection_get_output_data(s, id, out, &len), MLLP_OK);
    CHECK(len == g_msg_len && memcmp(out, g_msg, g_msg_len) == 0,
          "get_output_data returns the message");
    free(out);
  }

  tu_section("5. A 2.5 MiB message arrives in several Transfer pieces");
  {
    size_t big_len = 2621440, pos = 0;
    uint8_t *big = (uint8_t *)malloc(big_len);
    const char *msh = "MSH|^~\\&|BIG|FAC|RCV|FAC|202611250830||ADT^A08|MSGBIG|P|2.5.1\r";
    size_t k = strlen(msh);
    memcpy(big, msh, k);
    pos = k;
    while (pos < big_len) {
      big[pos] = (uint8_t)((pos % 1000) == 999 ? '\r' : 'A' + (pos % 26));
      pos++;
    }
    ctx_clear_events(&c);
    c.ackout_delay_ms = 0;
    CHECK(tu_send_frame(&a, big, big_len) == 0, "client sends %zu bytes", big_len);
    n = tu_recv_frame(&a, &f, 20000);
    CHECK(n == 1 && f && f[0] == TU_ACK, "client receives the ACK (n=%ld)", n);
    free(f);
    f = NULL;
    pthread_mutex_lock(&c.mu);
    CHECK(c.counts[EV_TRANSFER] >= 3, "%d Transfer events", c.counts[EV_TRANSFER]);
    CHECK(c.xfer_len == big_len && memcmp(c.xfer, big, big_len) == 0,
          "the pieces concatenated == the message (%zu of %zu bytes)", c.xfer_len, big_len);
    CHECK(c.bytes_cumulative_bad == 0, "bytes_transferred is cumulative over the pieces");
    pthread_mutex_unlock(&c.mu);
    free(big);
  }

  tu_section("5. NULL output pointers on a live connection");
  {
    const int E = MLLP_ERR_INVALID_ARGUMENT;
    char buf[8];
    CHECK_RC(mllp_connection_get_connected(s, id, NULL), E);
    CHECK_RC(mllp_connection_get_remote_host(s, id, buf, NULL), E);
    CHECK_RC(mllp_connection_get_remote_port(s, id, NULL), E);
    CHECK_RC(mllp_connection_get_local_address(s, id, buf, NULL), E);
    CHECK_RC(mllp_connection_get_timeout(s, id, NULL), E);
    CHECK_RC(mllp_connection_get_input_data(s, id, (uint8_t *)buf, NULL), E);
    CHECK_RC(mllp_connection_set_input_data(s, id, NULL, 3), E);
    CHECK_RC(mllp_connection_get_input_file_name(s, id, buf, NULL), E);
    CHECK_RC(mllp_connection_set_input_file_name(s, id, NULL), E);
    CHECK_RC(mllp_connection_get_output_data(s, id, (uint8_t *)buf, NULL), E);
    CHECK_RC(mllp_connection_get_output_file_name(s, id, buf, NULL), E);
    CHECK_RC(mllp_connection_set_output_file_name(s, id, NULL), E);
    CHECK_RC(mllp_server_send_bytes(s, id, NULL, 3), E);
    CHECK_RC(mllp_connection_set_input_data(s, id, NULL, 0), MLLP_OK); /* NULL ok with len 0 */
    CHECK_RC(mllp_server_send_bytes(s, id, (const uint8_t *)"a\x0b" "b", 3), MLLP_ERR_INVALID_DATA);
    CHECK_RC(mllp_server_send_bytes(s, id, (const uint8_t *)"x", 0), MLLP_ERR_INVALID_VALUE);
  }

  tu_section("5. AckOut accept=0 -> NAK");
  ctx_clear_events(&c);
  c.ackout_delay_ms = 0;
  pthread_mutex_lock(&c.mu);
  c.ackout_accept = 0;
  pthread_mutex_unlock(&c.mu);
  CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends the message again");
  n = tu_recv_frame(&a, &f, 5000);
  CHECK(n == 1 && f && f[0] == TU_NAK, "client receives 0x0B 0x15 0x1C 0x0D (n=%ld, byte 0x%02x)",
        n, n > 0 && f ? f[0] : 0);
  free(f);
  f = NULL;
  {
    int i, ok = 0;
    pthread_mutex_lock(&c.mu);
    for (i = 0; i < c.nev; i++)
      if (c.ev[i].type == EV_START && c.ev[i].seq == 3) ok = 1;
    pthread_mutex_unlock(&c.mu);
    CHECK(ok, "message_seq == 3 for the third message on the connection");
  }

  tu_section("5. Config(\"AckMode=HL7\") -> HL7 ACK with MSA|AA|MSG00001");
  pthread_mutex_lock(&c.mu);
  c.ackout_accept = 1;
  pthread_mutex_unlock(&c.mu);
  CHECK_RC(mllp_server_config(s, "AckMode=HL7", NULL, NULL), MLLP_OK);
  {
    char v[16];
    size_t len = sizeof v;
    CHECK_RC(mllp_server_config(s, "ackmode", v, &len), MLLP_OK);
    CHECK(strcmp(v, "HL7") == 0, "Config(\"ackmode\") reads \"%s\" (names case-insensitive)", v);
  }
  CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends the message");
  n = tu_recv_frame(&a, &f, 5000);
  CHECK(n > 0 && f && strncmp((char *)f, "MSH|", 4) == 0, "client receives an HL7 message (n=%ld)",
        n);
  CHECK(n > 0 && f && strstr((char *)f, "MSA|AA|MSG00001") != NULL,
        "the ACK contains MSA|AA|MSG00001");
  free(f);
  f = NULL;
  pthread_mutex_lock(&c.mu);
  c.ackout_accept = 0;
  c.ackout_reject_code = MLLP_REJECT_AR;
  pthread_mutex_unlock(&c.mu);
  CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends the message (AckOut refuses, AR)");
  n = tu_recv_frame(&a, &f, 5000);
  CHECK(n > 0 && f && strstr((char *)f, "MSA|AR|MSG00001") != NULL,
        "the reply contains MSA|AR|MSG00001");
  free(f);
  f = NULL;
  tu_close(&a);

  tu_section("5. ConnectionRequest accept=0 -> socket closed, Connected never fires");
  WAIT_UNTIL(count(&c, EV_DISCONNECTED) >= 1, 5000);
  ctx_clear_events(&c);
  pthread_mutex_lock(&c.mu);
  c.cr_accept = 0;
  pthread_mutex_unlock(&c.mu);
  CHECK(tu_connect(&a, port) == 0, "client connects (TCP)");
  WAIT_UNTIL(count(&c, EV_REQUEST) == 1, 5000);
  CHECK(count(&c, EV_REQUEST) == 1, "ConnectionRequest fired");
  CHECK(tu_wait_closed(&a, 3000), "the refused client's socket is closed");
  tu_sleep_ms(200);
  CHECK(count(&c, EV_CONNECTED) == 0, "Connected never fired");
  {
    size_t nconn = 99;
    CHECK_RC(mllp_server_get_connection_count(s, &nconn), MLLP_OK);
    CHECK(nconn == 0, "connection count 0 (got %zu)", nconn);
  }
  tu_close(&a);
  free_server(s, &c);
  ctx_destroy(&c);
}

/* ======================================================================================== */
/* 6. Calls from inside callbacks                                                           */
/* ======================================================================================== */

static const uint8_t HELLO[] = "HELLO-FROM-CONNECTED";
static int in_cb_config_rc = -1, in_cb_port_rc = -1, in_cb_send_rc = -1, in_cb_free_rc = -1,
           in_cb_sync_rc = -1, in_cb_sync_bytes_rc = -1, in_cb_disc_rc = -1;
static char in_cb_config_val[32];
static uint16_t in_cb_port;

static void hook_connected(ctx_t *c, uint64_t id) {
  size_t len = sizeof in_cb_config_val;
  in_cb_config_rc = mllp_server_config(c->srv, "AckMode", in_cb_config_val, &len);
  in_cb_port_rc = mllp_connection_get_remote_port(c->srv, id, &in_cb_port);
  in_cb_send_rc = mllp_server_send_bytes(c->srv, id, HELLO, sizeof HELLO - 1);
  in_cb_free_rc = mllp_server_free(c->srv);
  mllp_connection_set_timeout(c->srv, id, 2);
  mllp_connection_set_input_data(c->srv, id, HELLO, sizeof HELLO - 1);
  in_cb_sync_rc = mllp_server_send(c->srv, id);
  in_cb_sync_bytes_rc = mllp_server_send_bytes(c->srv, id, HELLO, sizeof HELLO - 1);
  mllp_connection_set_timeout(c->srv, id, 0);
}

static ptrdiff_t mem_read(void *user, uint8_t *buf, size_t cap);
static void mem_close(void *user);
typedef struct {
  const uint8_t *data;
  size_t len, pos;
  int reads;
  int closes;
  pthread_t read_thread;
} memin_t;
static memin_t in_cb_stream;
static int in_cb_stream_rc = -1;

/* A synchronous send refused inside a callback must leave the input stream alone. */
static void hook_connected_stream(ctx_t *c, uint64_t id) {
  hook_connected(c, id);
  memset(&in_cb_stream, 0, sizeof in_cb_stream);
  in_cb_stream.data = g_msg;
  in_cb_stream.len = g_msg_len;
  mllp_connection_set_input_stream(c->srv, id, mem_read, mem_close, &in_cb_stream);
  mllp_connection_set_timeout(c->srv, id, 2);
  in_cb_stream_rc = mllp_server_send(c->srv, id);
  mllp_connection_set_timeout(c->srv, id, 0);
}

static void hook_end_disconnect(ctx_t *c, uint64_t id) {
  in_cb_disc_rc = mllp_server_disconnect(c->srv, id);
}

static void test_reentrant(void) {
  ctx_t c;
  uint16_t port;
  mllp_server *s;
  tu_client a;
  uint64_t id;
  uint8_t *f = NULL;
  long n;
  long long t0;

  tu_section("6. Calls from inside callbacks");
  ctx_init(&c);
  c.on_connected = hook_connected_stream;
  c.on_end = hook_end_disconnect;
  s = start_server(&c, NULL, &port);
  if (!s) return;
  t0 = tu_now_ms();
  id = connect_client(&c, &a, port);
  CHECK(tu_now_ms() - t0 < 1500, "Connected callback did not block (%lld ms)", tu_now_ms() - t0);
  CHECK_RC(in_cb_config_rc, MLLP_OK);
  CHECK(strcmp(in_cb_config_val, "MLLP") == 0, "Config read inside Connected: \"%s\"",
        in_cb_config_val);
  CHECK_RC(in_cb_port_rc, MLLP_OK);
  CHECK(in_cb_port == tu_local_port(&a), "RemotePort inside Connected == client port");
  CHECK_RC(in_cb_send_rc, MLLP_OK);
  CHECK_RC(in_cb_free_rc, MLLP_ERR_REENTRANT);
  CHECK_RC(in_cb_sync_rc, MLLP_ERR_REENTRANT);
  CHECK_RC(in_cb_sync_bytes_rc, MLLP_ERR_REENTRANT);
  n = tu_recv_frame(&a, &f, 5000);
  CHECK(n == (long)(sizeof HELLO - 1) && f && memcmp(f, HELLO, sizeof HELLO - 1) == 0,
        "client receives the frame sent from inside Connected (n=%ld)", n);
  free(f);
  f = NULL;
  CHECK_RC(in_cb_stream_rc, MLLP_ERR_REENTRANT);
  CHECK(tu_quiet_for(&a, 300), "no other frame was sent (the refused sends sent nothing)");
  CHECK(__atomic_load_n(&in_cb_stream.reads, __ATOMIC_SEQ_CST) == 0 &&
            __atomic_load_n(&in_cb_stream.closes, __ATOMIC_SEQ_CST) == 0,
        "the refused synchronous send left the input stream alone (read %d times, closed %d)",
        __atomic_load_n(&in_cb_stream.reads, __ATOMIC_SEQ_CST),
        __atomic_load_n(&in_cb_stream.closes, __ATOMIC_SEQ_CST));
  CHECK_RC(mllp_server_send(s, id), MLLP_OK); /* Timeout 0, from this thread */
  n = tu_recv_frame(&a, &f, 5000);
  CHECK(n == (long)g_msg_len && f && memcmp(f, g_msg, g_msg_len) == 0,
        "a later Send sends the input stream's bytes (got %ld bytes%s)", n,
        n == (long)(sizeof HELLO - 1) ? ": InputData instead, the stream was consumed" : "");
  free(f);
  f = NULL;
  CHECK(tu_send_ack(&a, TU_ACK) == 0, "client ACKs");
  WAIT_UNTIL(__atomic_load_n(&in_cb_stream.closes, __ATOMIC_SEQ_CST) >= 1, 2000);
  CHECK(__atomic_load_n(&in_cb_stream.closes, __ATOMIC_SEQ_CST) == 1,
        "the input stream is closed exactly once (%d)",
        __atomic_load_n(&in_cb_stream.closes, __ATOMIC_SEQ_CST));
  {
    uint8_t l = 0;
    size_t cnt = 0;
    CHECK_RC(mllp_server_get_listening(s, &l), MLLP_OK);
    CHECK(l == 1, "the server still works after the refused free");
    CHECK_RC(mllp_server_get_connection_count(s, &cnt), MLLP_OK);
    CHECK(cnt == 1, "connection count 1");
  }
  /* EndTransfer disconnects */
  CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends a message");
  CHECK(tu_wait_closed(&a, 5000), "the client is disconnected (from inside EndTransfer)");
  WAIT_UNTIL(count(&c, EV_DISCONNECTED) == 1, 5000);
  CHECK_RC(in_cb_disc_rc, MLLP_OK);
  CHECK(count(&c, EV_DISCONNECTED) == 1, "Disconnected fired");
  CHECK(get_u64(&c, &c.disc_id) == id, "for that connection");
  tu_close(&a);
  free_server(s, &c);
  ctx_destroy(&c);
}

/* ======================================================================================== */
/* 7. Calls from other threads                                                              */
/* ======================================================================================== */

typedef struct {
  mllp_server *s;
  uint64_t id;
  int which;
  int errors;
  int ops;
} worker_t;

#define FRAMES_PER_SENDER 50

static void *worker(void *arg) {
  worker_t *w = (worker_t *)arg;
  int i;
  for (i = 0; i < FRAMES_PER_SENDER * 2; i++) {
    if (w->which < 2) {
      char p[32];
      int rc;
      if (i >= FRAMES_PER_SENDER) break;
      snprintf(p, sizeof p, "T%d-%03d", w->which, i);
      rc = mllp_server_send_bytes(w->s, w->id, (const uint8_t *)p, strlen(p));
      if (rc != MLLP_OK) w->errors++;
    } else if (w->which == 2) {
      char v[32];
      size_t len = sizeof v;
      uint16_t port = 0;
      if (mllp_server_config(w->s, "AckMode", v, &len) != MLLP_OK || strcmp(v, "MLLP") != 0)
        w->errors++;
      len = sizeof v;
      if (mllp_server_config(w->s, "LocalPort", v, &len) != MLLP_OK) w->errors++;
      if (mllp_server_get_local_port(w->s, &port) != MLLP_OK || port == 0) w->errors++;
      if (mllp_server_config(w->s, "LogLevel=1", NULL, NULL) != MLLP_OK) w->errors++;
    } else {
      uint64_t ids[4];
      size_t len = 4, cnt = 0;
      char h[32];
      if (mllp_server_get_connections(w->s, ids, &len) != MLLP_OK || len != 1 || ids[0] != w->id)
        w->errors++;
      if (mllp_server_get_connection_count(w->s, &cnt) != MLLP_OK || cnt != 1) w->errors++;
      len = sizeof h;
      if (mllp_connection_get_remote_host(w->s, w->id, h, &len) != MLLP_OK) w->errors++;
    }
    w->ops++;
  }
  return NULL;
}

typedef struct {
  tu_client *cl;
  uint8_t reply; /* TU_ACK, TU_NAK or 0 for none */
  long got;      /* length of the frame received */
} responder_t;

static void *responder(void *arg) {
  responder_t *r = (responder_t *)arg;
  uint8_t *f = NULL;
  r->got = tu_recv_frame(r->cl, &f, 5000);
  free(f);
  if (r->got > 0 && r->reply) tu_send_ack(r->cl, r->reply);
  return NULL;
}

typedef struct {
  mllp_server *s;
  uint64_t id;
  int delay_ms;
  int rc;
} interrupter_t;

static void *interrupter(void *arg) {
  interrupter_t *it = (interrupter_t *)arg;
  tu_sleep_ms(it->delay_ms);
  it->rc = mllp_server_interrupt(it->s, it->id);
  return NULL;
}

static int sync_send(mllp_server *s, uint64_t id, tu_client *cl, uint8_t reply, long *elapsed,
                     long *got) {
  pthread_t t;
  responder_t r;
  int rc;
  long long t0;
  r.cl = cl;
  r.reply = reply;
  r.got = 0;
  pthread_create(&t, NULL, responder, &r);
  t0 = tu_now_ms();
  rc = mllp_server_send(s, id);
  *elapsed = (long)(tu_now_ms() - t0);
  pthread_join(t, NULL);
  *got = r.got;
  return rc;
}

static void test_threads(void) {
  ctx_t c;
  uint16_t port;
  mllp_server *s;
  tu_client a;
  uint64_t id;
  int i;

  tu_section("7. Calls from other threads");
  ctx_init(&c);
  s = start_server(&c, NULL, &port);
  if (!s) return;
  id = connect_client(&c, &a, port);
  {
    pthread_t t[4];
    worker_t w[4];
    int seen[2][FRAMES_PER_SENDER];
    int frames = 0, bad = 0, dup = 0, out_of_order = 0, last[2] = {-1, -1};
    memset(seen, 0, sizeof seen);
    for (i = 0; i < 4; i++) {
      w[i].s = s;
      w[i].id = id;
      w[i].which = i;
      w[i].errors = 0;
      w[i].ops = 0;
      pthread_create(&t[i], NULL, worker, &w[i]);
    }
    while (frames < 2 * FRAMES_PER_SENDER) {
      uint8_t *f = NULL;
      long n = tu_recv_frame(&a, &f, 5000);
      int th, k;
      if (n < 0) break;
      tu_send_ack(&a, TU_ACK); /* a well-behaved v2 client acknowledges every message */
      if (n == 6 && sscanf((char *)f, "T%d-%d", &th, &k) == 2 && th >= 0 && th < 2 && k >= 0 &&
          k < FRAMES_PER_SENDER) {
        if (seen[th][k]++) dup++;
        if (k < last[th]) out_of_order++;
        last[th] = k;
      } else {
        bad++;
      }
      free(f);
      frames++;
    }
    for (i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(w[0].errors == 0 && w[1].errors == 0, "2 threads: send_bytes x %d each returned OK",
          FRAMES_PER_SENDER);
    CHECK(w[2].errors == 0, "1 thread: %d config reads/writes all OK", w[2].ops);
    CHECK(w[3].errors == 0, "1 thread: %d get_connections/count/remote_host all OK", w[3].ops);
    CHECK(frames == 2 * FRAMES_PER_SENDER && bad == 0 && dup == 0,
          "client received all %d frames intact (got %d, bad %d, duplicates %d)",
          2 * FRAMES_PER_SENDER, frames, bad, dup);
    WAIT_UNTIL(count(&c, EV_ACKIN) == 2 * FRAMES_PER_SENDER, 5000);
    CHECK(count(&c, EV_ACKIN) == 2 * FRAMES_PER_SENDER, "AckIn fired for each of the client's %d ACKs (got %d)",
          2 * FRAMES_PER_SENDER, count(&c, EV_ACKIN));
    CHECK(out_of_order == 0, "each sender's frames arrived in the order it sent them (%d out of order)",
          out_of_order);
  }

  tu_section("7. Synchronous send (Timeout 2) from a host thread");
  {
    long el, got;
    uint32_t t = 0;
    CHECK_RC(mllp_connection_set_timeout(s, id, 2), MLLP_OK);
    CHECK_RC(mllp_connection_get_timeout(s, id, &t), MLLP_OK);
    CHECK(t == 2, "Timeout reads back 2");
    CHECK_RC(mllp_connection_set_input_data(s, id, g_msg, g_msg_len), MLLP_OK);
    ctx_clear_events(&c);
    CHECK_RC(sync_send(s, id, &a, TU_ACK, &el, &got), MLLP_OK);
    CHECK(got == (long)g_msg_len, "client received the message (%ld bytes)", got);
    WAIT_UNTIL(count(&c, EV_ACKIN) == 1, 2000);
    CHECK(count(&c, EV_ACKIN) == 1 && get_int(&c, &c.ackin_accepted) == 1,
          "AckIn fired with accepted=1");
    ctx_clear_events(&c);
    CHECK_RC(sync_send(s, id, &a, TU_NAK, &el, &got), MLLP_ERR_NAK_RECEIVED);
    WAIT_UNTIL(count(&c, EV_ACKIN) == 1, 2000);
    CHECK(count(&c, EV_ACKIN) == 1 && get_int(&c, &c.ackin_accepted) == 0,
          "AckIn fired with accepted=0");
    CHECK_RC(sync_send(s, id, &a, 0, &el, &got), MLLP_ERR_TIMEOUT);
    CHECK(el >= 1800 && el <= 4000, "timed out after ~2 s (%ld ms)", el);
    {
      pthread_t ti;
      interrupter_t it;
      it.s = s;
      it.id = id;
      it.delay_ms = 300;
      it.rc = -1;
      pthread_create(&ti, NULL, interrupter, &it);
      CHECK_RC(sync_send(s, id, &a, 0, &el, &got), MLLP_ERR_SEND_INTERRUPTED);
      pthread_join(ti, NULL);
      CHECK_RC(it.rc, MLLP_OK);
      CHECK(el >= 250 && el < 1500, "interrupted promptly (%ld ms)", el);
    }
    {
      uint8_t on = 0;
      CHECK_RC(mllp_connection_get_connected(s, id, &on), MLLP_OK);
      CHECK(on == 1, "the connection stays open after Interrupt");
    }
    CHECK_RC(mllp_connection_set_timeout(s, id, 0), MLLP_OK);
  }
  tu_close(&a);
  free_server(s, &c);
  ctx_destroy(&c);
}

/* ======================================================================================== */
/* 8. Streams and files                                                                     */
/* ======================================================================================== */

static ptrdiff_t mem_read(void *user, uint8_t *buf, size_t cap) {
  memin_t *m = (memin_t *)user;
  size_t n = m->len - m->pos;
  if (n > cap) n = cap;
  if (n > 37) n = 37; /* small pieces: the library must read until 0 */
  memcpy(buf, m->data + m->pos, n);
  m->pos += n;
  m->reads++;
  m->read_thread = pthread_self();
  return (ptrdiff_t)n;
}
static ptrdiff_t mem_read_fail(void *user, uint8_t *buf, size_t cap) {
  (void)user;
  (void)buf;
  (void)cap;
  return -1;
}
static void mem_close(void *user) {
  memin_t *m = (memin_t *)user;
  __atomic_add_fetch(&m->closes, 1, __ATOMIC_SEQ_CST);
}

typedef struct {
  uint8_t *data;
  size_t len;
  int writes;
  int closes;
  int fail;
} memout_t;

static int mem_write(void *user, const uint8_t *d, size_t n) {
  memout_t *m = (memout_t *)user;
  uint8_t *nb;
  m->writes++;
  if (m->fail) return -1;
  nb = (uint8_t *)realloc(m->data, m->len + n + 1);
  if (!nb) return -1;
  m->data = nb;
  memcpy(m->data + m->len, d, n);
  m->len += n;
  return 0;
}
static void memout_close(void *user) {
  memout_t *m = (memout_t *)user;
  __atomic_add_fetch(&m->closes, 1, __ATOMIC_SEQ_CST);
}
static int atomic_get(int *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }

static void test_streams(void) {
  ctx_t c;
  uint16_t port;
  mllp_server *s;
  tu_client a;
  uint64_t id;
  uint8_t *f = NULL;
  long n;
  char inpath[96], outpath[96];

  tu_section("8. Input/output streams and files");
  ctx_init(&c);
  s = start_server(&c, NULL, &port);
  if (!s) return;
  id = connect_client(&c, &a, port);
  { /* input stream */
    memin_t m;
    memset(&m, 0, sizeof m);
    m.data = g_msg;
    m.len = g_msg_len;
    CHECK_RC(mllp_connection_set_input_stream(s, id, mem_read, mem_close, &m), MLLP_OK);
    CHECK(atomic_get(&m.closes) == 0, "input stream not closed yet");
    CHECK_RC(mllp_server_send(s, id), MLLP_OK);
    CHECK(m.reads >= 2 && pthread_equal(m.read_thread, pthread_self()),
          "read callback ran %d times on the thread calling Send", m.reads);
    n = tu_recv_frame(&a, &f, 5000);
    CHECK(n == (long)g_msg_len && f && memcmp(f, g_msg, g_msg_len) == 0,
          "client receives the stream's bytes as one frame (n=%ld)", n);
    free(f);
    f = NULL;
    CHECK(tu_send_ack(&a, TU_ACK) == 0, "client ACKs");
    WAIT_UNTIL(atomic_get(&m.closes) == 1, 2000);
    CHECK(atomic_get(&m.closes) == 1, "input stream closed exactly once after the send (%d)",
          atomic_get(&m.closes));
  }
  { /* replaced, cleared, failing stream */
    memin_t m1, m2, m3;
    memset(&m1, 0, sizeof m1);
    memset(&m2, 0, sizeof m2);
    memset(&m3, 0, sizeof m3);
    CHECK_RC(mllp_connection_set_input_stream(s, id, mem_read, mem_close, &m1), MLLP_OK);
    CHECK_RC(mllp_connection_set_input_stream(s, id, mem_read, mem_close, &m2), MLLP_OK);
    CHECK(atomic_get(&m1.closes) == 1, "a replaced input stream is closed once");
    CHECK_RC(mllp_connection_set_input_stream(s, id, NULL, NULL, NULL), MLLP_OK);
    CHECK(atomic_get(&m2.closes) == 1, "clearing with NULL read closes the old stream once");
    CHECK_RC(mllp_connection_set_input_stream(s, id, NULL, mem_close, &m3), MLLP_OK);
    CHECK(atomic_get(&m3.closes) == 1, "NULL read: close called at once");
    memset(&m3, 0, sizeof m3);
    CHECK_RC(mllp_connection_set_input_stream(s, id, mem_read_fail, mem_close, &m3), MLLP_OK);
    CHECK_RC(mllp_server_send(s, id), MLLP_ERR_IO);
    CHECK(atomic_get(&m3.closes) == 1, "a failing stream is closed once (%d)",
          atomic_get(&m3.closes));
    CHECK(tu_quiet_for(&a, 200), "nothing was sent for the failed read");
  }
  { /* output stream */
    memout_t o;
    memset(&o, 0, sizeof o);
    CHECK_RC(mllp_connection_set_output_stream(s, id, mem_write, memout_close, &o), MLLP_OK);
    CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends the message");
    n = tu_recv_frame(&a, &f, 5000);
    CHECK(n == 1 && f && f[0] == TU_ACK, "client receives the ACK");
    free(f);
    f = NULL;
    CHECK(o.len == g_msg_len && o.data && memcmp(o.data, g_msg, g_msg_len) == 0,
          "the write callback got the message bytes (%zu in %d writes)", o.len, o.writes);
    WAIT_UNTIL(atomic_get(&o.closes) == 1, 2000);
    CHECK(atomic_get(&o.closes) == 1, "output stream closed exactly once after the message");
    free(o.data);
  }
  { /* failing output stream: the message is refused */
    memout_t o;
    memset(&o, 0, sizeof o);
    o.fail = 1;
    CHECK_RC(mllp_connection_set_output_stream(s, id, mem_write, memout_close, &o), MLLP_OK);
    CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends the message (stream fails)");
    n = tu_recv_frame(&a, &f, 5000);
    CHECK(n == 1 && f && f[0] == TU_NAK, "client receives a NAK");
    free(f);
    f = NULL;
    WAIT_UNTIL(atomic_get(&o.closes) == 1, 2000);
    CHECK(atomic_get(&o.closes) == 1, "the failing output stream is closed once");
  }
  { /* files */
    size_t len;
    uint8_t *content;
    snprintf(inpath, sizeof inpath, "/tmp/mllp-harness-%d-input.hl7", (int)getpid());
    snprintf(outpath, sizeof outpath, "/tmp/mllp-harness-%d-output.hl7", (int)getpid());
    CHECK(tu_write_file(inpath, g_msg, g_msg_len) == 0, "wrote %s", inpath);
    CHECK_RC(mllp_connection_set_input_file_name(s, id, inpath), MLLP_OK);
    CHECK_RC(mllp_server_send(s, id), MLLP_OK);
    n = tu_recv_frame(&a, &f, 5000);
    CHECK(n == (long)g_msg_len && f && memcmp(f, g_msg, g_msg_len) == 0,
          "client receives the InputFileName content");
    free(f);
    f = NULL;
    CHECK(tu_send_ack(&a, TU_ACK) == 0, "client ACKs");
    CHECK_RC(mllp_connection_set_input_file_name(s, id, "/nonexistent/dir/x.hl7"), MLLP_OK);
    CHECK_RC(mllp_server_send(s, id), MLLP_ERR_CANNOT_OPEN_FILE);
    CHECK_RC(mllp_connection_set_input_file_name(s, id, ""), MLLP_OK);
    unlink(outpath);
    CHECK_RC(mllp_connection_set_output_file_name(s, id, outpath), MLLP_OK);
    CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends the message");
    n = tu_recv_frame(&a, &f, 5000);
    CHECK(n == 1 && f && f[0] == TU_ACK, "client receives the ACK");
    free(f);
    f = NULL;
    content = tu_read_file(outpath, &len);
    CHECK(content && len == g_msg_len && memcmp(content, g_msg, g_msg_len) == 0,
          "OutputFileName content == message bytes (%zu bytes)", content ? len : 0);
    free(content);
    unlink(inpath);
    unlink(outpath);
  }
  { /* streams still set when the connection closes */
    memin_t m;
    memout_t o;
    memset(&m, 0, sizeof m);
    memset(&o, 0, sizeof o);
    CHECK_RC(mllp_connection_set_input_stream(s, id, mem_read, mem_close, &m), MLLP_OK);
    CHECK_RC(mllp_connection_set_output_stream(s, id, mem_write, memout_close, &o), MLLP_OK);
    tu_close(&a);
    WAIT_UNTIL(atomic_get(&m.closes) == 1 && atomic_get(&o.closes) == 1, 5000);
    CHECK(atomic_get(&m.closes) == 1 && atomic_get(&o.closes) == 1,
          "both streams closed once when the connection closed (%d/%d)", atomic_get(&m.closes),
          atomic_get(&o.closes));
    WAIT_UNTIL(count(&c, EV_DISCONNECTED) == 1, 5000);
  }
  free_server(s, &c);
  ctx_destroy(&c);
}

/* ======================================================================================== */
/* 9. EventMode=DoEvents                                                                    */
/* ======================================================================================== */

static int g_doevents_free_rc = -1;
static void hook_free_in_doevents(ctx_t *c, uint64_t id) {
  (void)id;
  g_doevents_free_rc = mllp_server_free(c->srv);
}

static void pump(mllp_server *s, int *cond_count, ctx_t *c, int type, int want, int ms) {
  long long dl = tu_now_ms() + ms;
  (void)cond_count;
  while (count(c, type) < want && tu_now_ms() < dl) {
    size_t d = 0;
    if (mllp_server_do_events(s, 50, &d) != MLLP_OK) break;
  }
}

static void test_doevents(void) {
  ctx_t c;
  uint16_t port;
  mllp_server *s;
  tu_client a;
  uint8_t *f = NULL;
  long n;
  size_t d = 0;
  pthread_t me = pthread_self();

  tu_section("9. EventMode=DoEvents: events only inside mllp_server_do_events");
  ctx_init(&c);
  c.on_connected = hook_free_in_doevents;
  s = start_server(&c, "EventMode=DoEvents", &port);
  if (!s) return;
  CHECK_RC(mllp_server_config(s, "EventMode=Thread", NULL, NULL), MLLP_ERR_BAD_STATE);
  CHECK(tu_connect(&a, port) == 0, "client connects");
  tu_sleep_ms(300);
  CHECK(count(&c, EV_REQUEST) == 0 && count(&c, EV_CONNECTED) == 0,
        "no event fires without do_events");
  pump(s, NULL, &c, EV_CONNECTED, 1, 5000);
  CHECK(count(&c, EV_REQUEST) == 1 && count(&c, EV_CONNECTED) == 1,
        "ConnectionRequest and Connected delivered by do_events");
  CHECK_RC(g_doevents_free_rc, MLLP_ERR_REENTRANT);
  CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends the message");
  CHECK(tu_quiet_for(&a, 400), "no ACK before do_events runs AckOut");
  CHECK(count(&c, EV_START) == 0 && count(&c, EV_ACKOUT) == 0, "no transfer event yet");
  pump(s, NULL, &c, EV_ACKOUT, 1, 5000);
  CHECK(count(&c, EV_ACKOUT) == 1, "AckOut delivered by do_events");
  n = tu_recv_frame(&a, &f, 5000);
  CHECK(n == 1 && f && f[0] == TU_ACK, "client receives the ACK after do_events (n=%ld)", n);
  free(f);
  f = NULL;
  pthread_mutex_lock(&c.mu);
  CHECK(c.xfer_len == g_msg_len && memcmp(c.xfer, g_msg, g_msg_len) == 0,
        "Transfer data == message");
  {
    int i, ok = 1;
    for (i = 0; i < c.nev; i++)
      if (!pthread_equal(c.ev[i].thread, me)) ok = 0;
    CHECK(ok, "all %d events ran on the thread calling do_events", c.nev);
  }
  pthread_mutex_unlock(&c.mu);
  {
    char seq[256];
    ev_sequence(&c, seq, sizeof seq);
    CHECK(strcmp(seq, "Request Connected Start Transfer End AckOut") == 0, "events in order: \"%s\"",
          seq);
  }
  /* free with events still queued */
  CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends again (left queued)");
  tu_sleep_ms(200);
  CHECK_RC(mllp_server_do_events(s, 0, &d), MLLP_OK);
  CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "client sends a third time (left queued)");
  tu_sleep_ms(200);
  free_server(s, &c);
  CHECK(tu_wait_closed(&a, 3000), "the client sees its socket closed");
  tu_close(&a);
  ctx_destroy(&c);
  check_free_fires_disconnected("EventMode=DoEvents", 1);
}

/* ======================================================================================== */
/* 11. TLS: certificates, SSL properties, SSL events, negotiated values                     */
/* ======================================================================================== */

/* Certificates are made by the openssl command line tool when the section runs, in a fresh
 * temporary directory that is removed afterwards (no key is committed). */
static char g_tls_dir[64];

/* Runs a shell command in g_tls_dir; 1 on success. */
static int tls_sh(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int tls_sh(const char *fmt, ...) {
  char cmd[2048];
  int n;
  va_list ap;
  n = snprintf(cmd, sizeof cmd, "cd '%s' && ( ", g_tls_dir);
  va_start(ap, fmt);
  n += vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
  va_end(ap);
  snprintf(cmd + n, sizeof cmd - (size_t)n, " ) >/dev/null 2>&1");
  return system(cmd) == 0;
}

static uint8_t *tls_file(const char *name, size_t *len) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", g_tls_dir, name);
  return tu_read_file(path, len);
}

/* A certificate field read under the buffer rule (malloc'd; NULL on failure). */
static char *cert_field(const mllp_certificate *cert, int field) {
  size_t len = 0;
  char *buf;
  if (mllp_certificate_get_field(cert, field, NULL, &len) != MLLP_ERR_BUFFER_TOO_SMALL) return NULL;
  buf = (char *)malloc(len);
  if (buf && mllp_certificate_get_field(cert, field, buf, &len) != MLLP_OK) {
    free(buf);
    buf = NULL;
  }
  return buf;
}

static int is_lower_hex(const char *s, size_t n) {
  size_t i;
  if (!s || strlen(s) != n) return 0;
  for (i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

/* "23-Jan-2000 15:00:00" */
static int is_ref_date(const char *s) {
  int d, y, h, m, sec;
  char mon[4];
  return s && strlen(s) == 20 &&
         sscanf(s, "%2d-%3[A-Za-z]-%4d %2d:%2d:%2d", &d, mon, &y, &h, &m, &sec) == 6 && d >= 1 &&
         d <= 31 && y >= 2000;
}

/* openssl's "sha256 Fingerprint=AB:CD:..." turned into lowercase hex. */
static void fingerprint_hex(const uint8_t *text, size_t len, char *out, size_t cap) {
  const char *p = memchr(text, '=', len) ? (const char *)memchr(text, '=', len) + 1 : "";
  size_t n = 0;
  for (; p < (const char *)text + len && *p && *p != '\n' && n + 1 < cap; p++) {
    char ch = *p;
    if (ch == ':') continue;
    if (ch >= 'A' && ch <= 'F') ch = (char)(ch - 'A' + 'a');
    out[n++] = ch;
  }
  out[n] = 0;
}

typedef struct {
  pthread_mutex_t mu;
  int status_count, handshake_done, request_count, auth_count;
  int auth_accept_in;  /* the library's recommendation */
  int auth_had_cert;   /* cert_encoded != NULL */
  int auth_set_accept; /* what the host answers */
  int suites_ok;
  const mllp_certificate *choose; /* certificate to present from SSLConnectionRequest */
  char status_text[256];
} tls_ctx_t;
static tls_ctx_t g_tls = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, 0, NULL, {0}};

static void cb_ssl_status(void *user, const mllp_ssl_status_event *e) {
  (void)user;
  pthread_mutex_lock(&g_tls.mu);
  g_tls.status_count++;
  if (e->message && strncmp(e->message, "handshake complete", 18) == 0) g_tls.handshake_done++;
  pthread_mutex_unlock(&g_tls.mu);
}

static void cb_ssl_request(void *user, mllp_ssl_connection_request_event *e) {
  (void)user;
  pthread_mutex_lock(&g_tls.mu);
  g_tls.request_count++;
  g_tls.suites_ok = e->supported_cipher_suites &&
                    strstr(e->supported_cipher_suites, "TLS_AES_128_GCM_SHA256") != NULL &&
                    e->supported_signature_algs && e->supported_signature_algs[0] != 0;
  e->certificate = g_tls.choose;
  pthread_mutex_unlock(&g_tls.mu);
}

static void cb_ssl_auth(void *user, mllp_ssl_client_authentication_event *e) {
  (void)user;
  pthread_mutex_lock(&g_tls.mu);
  g_tls.auth_count++;
  g_tls.auth_accept_in = e->accept;
  g_tls.auth_had_cert = e->cert_encoded != NULL || e->cert_encoded_len != 0;
  snprintf(g_tls.status_text, sizeof g_tls.status_text, "%s", e->status ? e->status : "(null)");
  e->accept = (uint8_t)g_tls.auth_set_accept;
  pthread_mutex_unlock(&g_tls.mu);
}

static int tls_get(const int *p) {
  int v;
  pthread_mutex_lock(&g_tls.mu);
  v = *p;
  pthread_mutex_unlock(&g_tls.mu);
  return v;
}

/* Starts `openssl s_client` sending frame.mllp; its stdout (the server's reply) goes to
 * `outname`. Returns the popen handle (wait with pclose after the server closed). */
static FILE *s_client_start(uint16_t port, const char *opts, const char *outname) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && timeout 20 openssl s_client -connect 127.0.0.1:%u %s -quiet "
           "< frame.mllp > %s 2>s_client.err",
           g_tls_dir, port, opts, outname);
  return popen(cmd, "w");
}

static void test_tls(void) {
  mllp_certificate *cert = NULL, *other = NULL, *pub = NULL, *got = NULL, *mixed = NULL;
  uint8_t *pem = NULL, *key2 = NULL, *der = NULL, *fp = NULL;
  size_t pem_len = 0, key2_len = 0, der_len = 0, fp_len = 0, len;
  char *v;
  char path[160], sha256_openssl[80];
  uint8_t u8;
  int rc;

  tu_section("11. TLS: certificates, SSL properties and events (C ABI)");
  snprintf(g_tls_dir, sizeof g_tls_dir, "/tmp/mllp-harness-tls-XXXXXX");
  if (!mkdtemp(g_tls_dir)) {
    CHECK(0, "mkdtemp");
    return;
  }
  if (!tls_sh("openssl version")) {
    tu_note("SKIPPED: the openssl command line tool is not installed");
    tls_sh("cd / && rm -rf '%s'", g_tls_dir);
    return;
  }
  CHECK(tls_sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
               "-keyout key.pem -out cert.pem -days 30 -set_serial 0x0102ABCD "
               "-subj '/CN=harness.test/O=mllp harness' "
               "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 && "
               "cat cert.pem key.pem > server.pem && "
               "openssl x509 -in cert.pem -outform DER -out cert.der && "
               "openssl x509 -in cert.pem -noout -fingerprint -sha256 > cert.sha256 && "
               "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key2.pem && "
               "openssl pkcs12 -export -in cert.pem -inkey key.pem -out server.pfx "
               "-passout pass:s3cret && "
               "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
               "-keyout other.key -out other.crt -days 30 -subj /CN=other.test "
               "-addext subjectAltName=DNS:localhost && cat other.crt other.key > other.pem"),
        "openssl made the test certificates in %s", g_tls_dir);
  pem = tls_file("server.pem", &pem_len);
  key2 = tls_file("key2.pem", &key2_len);
  der = tls_file("cert.der", &der_len);
  fp = tls_file("cert.sha256", &fp_len);
  if (!CHECK(pem && key2 && der && fp, "certificate files readable")) goto done;
  fingerprint_hex(fp, fp_len, sha256_openssl, sizeof sha256_openssl);

  /* ---- loading ---- */
  CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, pem, pem_len, NULL, "*", &cert), MLLP_OK);
  if (!CHECK(cert != NULL, "PEM key blob loaded")) goto done;
  snprintf(path, sizeof path, "%s/server.pem", g_tls_dir);
  {
    /* the path need not be NUL-terminated: pass it inside a larger buffer */
    char padded[200];
    memset(padded, 'X', sizeof padded);
    memcpy(padded, path, strlen(path));
    CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_FILE, (const uint8_t *)padded, strlen(path),
                                   "", NULL, &other),
             MLLP_OK);
    v = other ? cert_field(other, MLLP_CERT_FIELD_THUMBPRINT_SHA256) : NULL;
    CHECK(v && strcmp(v, sha256_openssl) == 0, "PEM key file: same certificate");
    free(v);
    mllp_certificate_free(other);
    other = NULL;
  }
  CHECK_RC(mllp_certificate_load(MLLP_CERT_AUTO, (const uint8_t *)path, strlen(path), NULL,
                                 "harness", &other),
           MLLP_OK);
  mllp_certificate_free(other);
  other = NULL;
  snprintf(path, sizeof path, "%s/server.pfx", g_tls_dir);
  CHECK_RC(mllp_certificate_load(MLLP_CERT_PFX_FILE, (const uint8_t *)path, strlen(path), "s3cret",
                                 "*", &other),
           MLLP_OK);
  u8 = 0;
  CHECK(other && mllp_certificate_get_private_key_available(other, &u8) == MLLP_OK && u8 == 1,
        "PFX file with the right password: key available");
  mllp_certificate_free(other);
  other = NULL;
  CHECK_RC(mllp_certificate_load(MLLP_CERT_PFX_FILE, (const uint8_t *)path, strlen(path), "wrong",
                                 "*", &other),
           MLLP_ERR_CERTIFICATE);
  CHECK(other == NULL, "no handle on failure");
  CHECK(strstr(mllp_last_error_message(), "password") != NULL,
        "wrong PFX password: \"%s\"", mllp_last_error_message());
  CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_FILE, (const uint8_t *)"/nonexistent/x.pem", 18,
                                 NULL, NULL, &other),
           MLLP_ERR_CANNOT_OPEN_FILE);
  CHECK(strstr(mllp_last_error_message(), "/nonexistent/x.pem") != NULL,
        "unreadable file named: \"%s\"", mllp_last_error_message());
  CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, (const uint8_t *)"garbage", 7, NULL, NULL,
                                 &other),
           MLLP_ERR_CERTIFICATE);
  CHECK_RC(mllp_certificate_load(0, (const uint8_t *)"MY", 2, NULL, NULL, &other),
           MLLP_ERR_NOT_SUPPORTED);
  CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, pem, pem_len, NULL, "CN=nobody", &other),
           MLLP_ERR_CERTIFICATE);
  {
    char sel[120];
    snprintf(sel, sizeof sel, "Thumbprint=%s", sha256_openssl);
    CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, pem, pem_len, NULL, sel, &other),
             MLLP_OK);
    mllp_certificate_free(other);
    other = NULL;
  }
  CHECK_RC(mllp_certificate_load(MLLP_CERT_PUBLIC_KEY_BLOB, der, der_len, NULL, NULL, &pub),
           MLLP_OK);
  u8 = 1;
  CHECK(pub && mllp_certificate_get_private_key_available(pub, &u8) == MLLP_OK && u8 == 0,
        "public key blob: no private key");

  /* ---- NULL checks ---- */
  CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, pem, pem_len, NULL, NULL, NULL),
           MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, NULL, 10, NULL, NULL, &other),
           MLLP_ERR_INVALID_ARGUMENT);
  len = 10;
  CHECK_RC(mllp_certificate_get_field(NULL, MLLP_CERT_FIELD_SUBJECT, NULL, &len),
           MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_certificate_get_field(cert, MLLP_CERT_FIELD_SUBJECT, NULL, NULL),
           MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_certificate_get_encoded(NULL, NULL, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_certificate_get_encoded(cert, NULL, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_certificate_get_private_key_available(NULL, &u8), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_certificate_get_private_key_available(cert, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_set_ssl_cert(NULL, cert), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_ssl_cert(NULL, &got), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_set_ssl_enabled(NULL, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_ssl_enabled(NULL, &u8), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_set_ssl_authenticate_clients(NULL, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_ssl_authenticate_clients(NULL, &u8), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_connection_get_ssl_negotiated(NULL, 1, "SSLNegotiatedVersion", NULL, &len),
           MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_on_ssl_status(NULL, cb_ssl_status), MLLP_ERR_INVALID_ARGUMENT);
  mllp_certificate_free(NULL);
  CHECK(1, "mllp_certificate_free(NULL) is a no-op");

  /* ---- fields ---- */
  v = cert_field(cert, MLLP_CERT_FIELD_SUBJECT);
  CHECK(v && strstr(v, "CN=harness.test") && strstr(v, "O=mllp harness"), "Subject: \"%s\"",
        v ? v : "(null)");
  {
    char *iss = cert_field(cert, MLLP_CERT_FIELD_ISSUER);
    CHECK(v && iss && strcmp(v, iss) == 0, "Issuer of a self-signed certificate = Subject");
    free(iss);
  }
  free(v);
  v = cert_field(cert, MLLP_CERT_FIELD_SERIAL_NUMBER);
  CHECK(v && strcmp(v, "0102ABCD") == 0, "SerialNumber: \"%s\"", v ? v : "(null)");
  free(v);
  v = cert_field(cert, MLLP_CERT_FIELD_EFFECTIVE_DATE);
  CHECK(is_ref_date(v), "EffectiveDate: \"%s\"", v ? v : "(null)");
  free(v);
  v = cert_field(cert, MLLP_CERT_FIELD_EXPIRATION_DATE);
  CHECK(is_ref_date(v), "ExpirationDate: \"%s\"", v ? v : "(null)");
  free(v);
  v = cert_field(cert, MLLP_CERT_FIELD_THUMBPRINT_SHA1);
  CHECK(is_lower_hex(v, 40), "Thumbprint SHA-1: \"%s\"", v ? v : "(null)");
  free(v);
  v = cert_field(cert, MLLP_CERT_FIELD_THUMBPRINT_SHA256);
  CHECK(v && strcmp(v, sha256_openssl) == 0, "Thumbprint SHA-256 = openssl's fingerprint (%s)",
        sha256_openssl);
  free(v);
  len = 0;
  CHECK_RC(mllp_certificate_get_field(cert, 0, NULL, &len), MLLP_ERR_INVALID_VALUE);
  CHECK_RC(mllp_certificate_get_field(cert, 8, NULL, &len), MLLP_ERR_INVALID_VALUE);
  /* buffer rule on a field: "0102ABCD" needs 9 bytes */
  {
    char small[16];
    len = 8;
    memset(small, '#', sizeof small);
    CHECK_RC(mllp_certificate_get_field(cert, MLLP_CERT_FIELD_SERIAL_NUMBER, small, &len),
             MLLP_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 9 && small[0] == '#', "too small by one: *len = 9, buffer untouched");
    len = 9;
    CHECK_RC(mllp_certificate_get_field(cert, MLLP_CERT_FIELD_SERIAL_NUMBER, small, &len), MLLP_OK);
    CHECK(len == 9 && strcmp(small, "0102ABCD") == 0, "exact size: copied with its NUL");
  }
  /* Encoded: the buffer rule on bytes */
  {
    uint8_t *enc;
    len = 0;
    CHECK_RC(mllp_certificate_get_encoded(cert, NULL, &len), MLLP_ERR_BUFFER_TOO_SMALL);
    CHECK(len == der_len, "Encoded size = openssl's DER size (%zu, %zu)", len, der_len);
    enc = (uint8_t *)malloc(der_len + 1);
    len = der_len - 1;
    CHECK_RC(mllp_certificate_get_encoded(cert, enc, &len), MLLP_ERR_BUFFER_TOO_SMALL);
    len = der_len + 1;
    CHECK_RC(mllp_certificate_get_encoded(cert, enc, &len), MLLP_OK);
    CHECK(len == der_len && memcmp(enc, der, der_len) == 0, "Encoded = openssl's DER");
    free(enc);
  }

  /* ---- server properties ---- */
  {
    mllp_server *s = mllp_server_new();
    u8 = 9;
    CHECK(mllp_server_get_ssl_enabled(s, &u8) == MLLP_OK && u8 == 0, "SSLEnabled defaults to 0");
    u8 = 9;
    CHECK(mllp_server_get_ssl_authenticate_clients(s, &u8) == MLLP_OK && u8 == 0,
          "SSLAuthenticateClients defaults to 0");
    got = (mllp_certificate *)1;
    CHECK(mllp_server_get_ssl_cert(s, &got) == MLLP_OK && got == NULL, "SSLCert unset: NULL");
    CHECK_RC(mllp_server_set_ssl_enabled(s, 1), MLLP_OK);
    CHECK(mllp_server_get_ssl_enabled(s, &u8) == MLLP_OK && u8 == 1, "SSLEnabled set to 1");
    CHECK_RC(mllp_server_set_ssl_authenticate_clients(s, 1), MLLP_OK);
    CHECK(mllp_server_get_ssl_authenticate_clients(s, &u8) == MLLP_OK && u8 == 1,
          "SSLAuthenticateClients set to 1");
    CHECK_RC(mllp_server_set_local_host(s, "127.0.0.1"), MLLP_OK);
    CHECK_RC(mllp_server_start_listening(s), MLLP_ERR_CERTIFICATE);
    CHECK(strstr(mllp_last_error_message(), "SSLCert") != NULL,
          "SSLEnabled without SSLCert: \"%s\"", mllp_last_error_message());
    /* the key of another certificate */
    {
      size_t n = pem_len + key2_len;
      uint8_t *blob = (uint8_t *)malloc(n);
      const char *end = strstr((const char *)pem, "-----END CERTIFICATE-----");
      size_t cert_only = end ? (size_t)(end - (const char *)pem) + 26 : 0;
      memcpy(blob, pem, cert_only);
      memcpy(blob + cert_only, key2, key2_len);
      CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, blob, cert_only + key2_len, NULL, NULL,
                                     &mixed),
               MLLP_OK);
      free(blob);
      (void)n;
    }
    CHECK_RC(mllp_server_set_ssl_cert(s, mixed), MLLP_OK);
    CHECK_RC(mllp_server_start_listening(s), MLLP_ERR_CERTIFICATE);
    CHECK(strstr(mllp_last_error_message(), "does not match") != NULL,
          "key mismatch from start_listening: \"%s\"", mllp_last_error_message());
    CHECK_RC(mllp_server_set_ssl_cert(s, pub), MLLP_OK);
    CHECK_RC(mllp_server_start_listening(s), MLLP_ERR_CERTIFICATE);
    CHECK(strstr(mllp_last_error_message(), "no private key") != NULL,
          "certificate without key: \"%s\"", mllp_last_error_message());
    CHECK_RC(mllp_server_set_ssl_cert(s, cert), MLLP_OK);
    got = NULL;
    CHECK_RC(mllp_server_get_ssl_cert(s, &got), MLLP_OK);
    v = got ? cert_field(got, MLLP_CERT_FIELD_THUMBPRINT_SHA256) : NULL;
    CHECK(v && strcmp(v, sha256_openssl) == 0, "SSLCert read back: a handle to the same certificate");
    free(v);
    mllp_certificate_free(got);
    got = NULL;
    CHECK_RC(mllp_server_set_ssl_cert(s, NULL), MLLP_OK);
    got = (mllp_certificate *)1;
    CHECK(mllp_server_get_ssl_cert(s, &got) == MLLP_OK && got == NULL, "SSLCert cleared with NULL");
    CHECK_RC(mllp_server_config(s, "SSLEnabledProtocols=192", NULL, NULL), MLLP_ERR_INVALID_VALUE);
    CHECK_RC(mllp_server_free(s), MLLP_OK);
  }

  /* ---- TLS round trips with openssl s_client ---- */
  {
    static const uint8_t frame[] = "\x0bMSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5\r\x1c\r";
    ctx_t c;
    uint16_t port = 0;
    mllp_server *s;
    FILE *cl;
    uint64_t id;
    uint8_t *out;
    size_t out_len = 0;
    char val[64];
    snprintf(path, sizeof path, "%s/frame.mllp", g_tls_dir);
    tu_write_file(path, frame, sizeof frame - 1);
    ctx_init(&c);
    s = mllp_server_new();
    install(s, &c);
    mllp_server_on_ssl_status(s, cb_ssl_status);
    mllp_server_on_ssl_connection_request(s, cb_ssl_request);
    mllp_server_on_ssl_client_authentication(s, cb_ssl_auth);
    CHECK_RC(mllp_server_set_local_host(s, "127.0.0.1"), MLLP_OK);
    CHECK_RC(mllp_server_set_ssl_cert(s, cert), MLLP_OK);
    mllp_certificate_free(cert); /* the server keeps its own reference */
    cert = NULL;
    CHECK_RC(mllp_server_set_ssl_enabled(s, 1), MLLP_OK);
    CHECK_RC(mllp_server_start_listening(s), MLLP_OK);
    mllp_server_get_local_port(s, &port);

    /* TLS 1.3; the certificate chosen in SSLConnectionRequest is presented */
    CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, (const uint8_t *)"", 0, NULL, NULL,
                                   &other),
             MLLP_ERR_CERTIFICATE);
    {
      size_t olen = 0;
      uint8_t *opem = tls_file("other.pem", &olen);
      CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, opem, olen, NULL, NULL, &other),
               MLLP_OK);
      free(opem);
    }
    pthread_mutex_lock(&g_tls.mu);
    g_tls.choose = other;
    pthread_mutex_unlock(&g_tls.mu);
    cl = s_client_start(port, "-tls1_3 -CAfile other.crt -verify_return_error", "out13.bin");
    WAIT_UNTIL(count(&c, EV_ACKOUT) == 1, 20000);
    CHECK(count(&c, EV_ACKOUT) == 1,
          "TLS 1.3 via openssl s_client trusting only other.crt: the certificate chosen in "
          "SSLConnectionRequest was presented and the message delivered");
    id = get_u64(&c, &c.conn_id);
    len = sizeof val;
    rc = mllp_connection_get_ssl_negotiated(s, id, "SSLNegotiatedVersion", val, &len);
    CHECK(rc == MLLP_OK && strcmp(val, "TLS1.3") == 0, "SSLNegotiatedVersion = TLS1.3 (%s)",
          rc == MLLP_OK ? val : "?");
    len = 3;
    CHECK_RC(mllp_connection_get_ssl_negotiated(s, id, "SSLNegotiatedVersion", val, &len),
             MLLP_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 7, "buffer rule: \"TLS1.3\" needs 7 bytes (%zu)", len);
    len = sizeof val;
    rc = mllp_connection_get_ssl_negotiated(s, id, "SSLNegotiatedCipherSuite", val, &len);
    CHECK(rc == MLLP_OK && strncmp(val, "TLS_", 4) == 0, "SSLNegotiatedCipherSuite: %s",
          rc == MLLP_OK ? val : "?");
    {
      char name[64];
      snprintf(name, sizeof name, "SSLNegotiatedVersion[%llu]", (unsigned long long)id);
      len = sizeof val;
      rc = mllp_server_config(s, name, val, &len);
      CHECK(rc == MLLP_OK && strcmp(val, "TLS1.3") == 0, "Config(\"%s\")", name);
    }
    CHECK_RC(mllp_connection_get_ssl_negotiated(s, id, "NoSuchValue", val, &len),
             MLLP_ERR_UNKNOWN_SETTING);
    tu_sleep_ms(200);
    CHECK_RC(mllp_server_disconnect(s, id), MLLP_OK);
    pclose(cl);
    out = tls_file("out13.bin", &out_len);
    CHECK(out && out_len >= 4 && memcmp(out, "\x0b\x06\x1c\r", 4) == 0,
          "s_client received the ACK over TLS 1.3 (%zu bytes)", out_len);
    free(out);
    CHECK(tls_get(&g_tls.request_count) == 1 && tls_get(&g_tls.suites_ok),
          "SSLConnectionRequest fired with the client's suites and signature algorithms");
    CHECK(tls_get(&g_tls.handshake_done) == 1, "SSLStatus reported the completed handshake");
    CHECK(tls_get(&g_tls.auth_count) == 0, "no SSLClientAuthentication without SSLAuthenticateClients");
    pthread_mutex_lock(&g_tls.mu);
    g_tls.choose = NULL;
    pthread_mutex_unlock(&g_tls.mu);
    mllp_certificate_free(other); /* the server took its own reference in the callback */
    other = NULL;

    /* TLS 1.2, client authentication: no certificate, recommendation "refuse", host accepts */
    CHECK_RC(mllp_server_free(s), MLLP_OK);
    ctx_destroy(&c);
    ctx_init(&c);
    s = mllp_server_new();
    install(s, &c);
    mllp_server_on_ssl_client_authentication(s, cb_ssl_auth);
    CHECK_RC(mllp_server_set_local_host(s, "127.0.0.1"), MLLP_OK);
    CHECK_RC(mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, pem, pem_len, NULL, NULL, &cert),
             MLLP_OK);
    CHECK_RC(mllp_server_set_ssl_cert(s, cert), MLLP_OK);
    CHECK_RC(mllp_server_set_ssl_enabled(s, 1), MLLP_OK);
    CHECK_RC(mllp_server_set_ssl_authenticate_clients(s, 1), MLLP_OK);
    CHECK_RC(mllp_server_start_listening(s), MLLP_OK);
    mllp_server_get_local_port(s, &port);
    pthread_mutex_lock(&g_tls.mu);
    g_tls.auth_set_accept = 1;
    pthread_mutex_unlock(&g_tls.mu);
    cl = s_client_start(port, "-tls1_2 -CAfile cert.pem", "out12.bin");
    WAIT_UNTIL(count(&c, EV_ACKOUT) == 1, 20000);
    CHECK(count(&c, EV_ACKOUT) == 1, "TLS 1.2 with client authentication overridden: delivered");
    id = get_u64(&c, &c.conn_id);
    len = sizeof val;
    rc = mllp_connection_get_ssl_negotiated(s, id, "SSLNegotiatedVersion", val, &len);
    CHECK(rc == MLLP_OK && strcmp(val, "TLS1.2") == 0, "SSLNegotiatedVersion = TLS1.2");
    tu_sleep_ms(200);
    mllp_server_disconnect(s, id);
    pclose(cl);
    out = tls_file("out12.bin", &out_len);
    CHECK(out && out_len >= 4 && memcmp(out, "\x0b\x06\x1c\r", 4) == 0,
          "s_client received the ACK over TLS 1.2");
    free(out);
    pthread_mutex_lock(&g_tls.mu);
    CHECK(g_tls.auth_count == 1 && g_tls.auth_accept_in == 0 && !g_tls.auth_had_cert,
          "SSLClientAuthentication: no certificate, recommendation 0 (status \"%s\")",
          g_tls.status_text);
    g_tls.auth_set_accept = 0;
    pthread_mutex_unlock(&g_tls.mu);

    /* the host refuses: Error 2022, Disconnected, no ACK */
    {
      int errors_before = count(&c, EV_ERROR);
      cl = s_client_start(port, "-tls1_3 -CAfile cert.pem", "out-refused.bin");
      WAIT_UNTIL(count(&c, EV_DISCONNECTED) >= 2, 20000);
      pclose(cl);
      CHECK(count(&c, EV_ERROR) > errors_before && get_int(&c, &c.last_error_code) == 2022,
            "refused client: Error 2022 (last %d)", get_int(&c, &c.last_error_code));
      out = tls_file("out-refused.bin", &out_len);
      CHECK(out_len == 0, "refused client got no reply (%zu bytes)", out_len);
      free(out);
      CHECK(count(&c, EV_ACKOUT) == 1, "nothing delivered from the refused client");
    }
    free_server(s, &c);
    ctx_destroy(&c);
  }

done:
  mllp_certificate_free(cert);
  mllp_certificate_free(other);
  mllp_certificate_free(pub);
  mllp_certificate_free(mixed);
  free(pem);
  free(key2);
  free(der);
  free(fp);
  tls_sh("cd / && rm -rf '%s'", g_tls_dir);
}

/* ======================================================================================== */
/* 10. Header as C++ and strict C99                                                         */
/* ======================================================================================== */

static void test_header(void) {
  tu_section("10. Header compiled as C++ and as strict C99 (included twice)");
  CHECK(mllp_cxx_probe() != NULL && strcmp(mllp_cxx_probe(), mllp_version()) == 0,
        "C++ translation unit calls mllp_version(): \"%s\"", mllp_cxx_probe());
  CHECK(mllp_c99_probe() != NULL && strcmp(mllp_c99_probe(), mllp_version()) == 0,
        "C99 translation unit calls mllp_version()");
}

/* ======================================================================================== */
/* 12. The client (sender)                                                                   */
/* ======================================================================================== */

typedef struct {
  mllp_client *cl;
  int connected, disconnected, acks, done, errors, released, wrong_user;
  int last_result, last_kind;
  uint32_t last_attempts;
  uint64_t last_id;
  int reentrant_send, reentrant_free, async_from_cb;
  int reenter; /* SendDone calls back in once */
} cctx_t;

static void ccb_connected(void *u, const mllp_status_event *e) {
  (void)e;
  ((cctx_t *)u)->connected++;
}
static void ccb_disconnected(void *u, const mllp_status_event *e) {
  (void)e;
  ((cctx_t *)u)->disconnected++;
}
static void ccb_ack_in(void *u, const mllp_client_ack_in_event *e) {
  cctx_t *c = u;
  c->acks++;
  if (!e->data || e->len == 0 || !e->control_id || !e->text) c->wrong_user++;
}
static void ccb_done(void *u, const mllp_send_done_event *e) {
  cctx_t *c = u;
  c->done++;
  c->last_result = e->result_code;
  c->last_kind = e->ack_kind;
  c->last_attempts = e->attempts;
  c->last_id = e->message_id;
  if (!e->control_id || !e->description) c->wrong_user++;
  if (c->reenter) {
    c->reenter = 0;
    c->reentrant_send = mllp_client_send(c->cl, g_msg, g_msg_len, NULL);
    c->reentrant_free = mllp_client_free(c->cl);
    c->async_from_cb = mllp_client_send_async(c->cl, g_msg, g_msg_len, NULL);
  }
}
static void ccb_error(void *u, const mllp_error_event *e) {
  (void)e;
  ((cctx_t *)u)->errors++;
}
static void ccb_release(void *u) { ((cctx_t *)u)->released++; }

static mllp_client *new_client(cctx_t *c, uint16_t port) {
  mllp_client *cl = mllp_client_new();
  memset(c, 0, sizeof *c);
  if (!CHECK(cl != NULL, "mllp_client_new() != NULL")) return NULL;
  c->cl = cl;
  CHECK_RC(mllp_client_set_user_data(cl, c, ccb_release), MLLP_OK);
  CHECK_RC(mllp_client_on_connected(cl, ccb_connected), MLLP_OK);
  CHECK_RC(mllp_client_on_disconnected(cl, ccb_disconnected), MLLP_OK);
  CHECK_RC(mllp_client_on_ack_in(cl, ccb_ack_in), MLLP_OK);
  CHECK_RC(mllp_client_on_send_done(cl, ccb_done), MLLP_OK);
  CHECK_RC(mllp_client_on_error(cl, ccb_error), MLLP_OK);
  CHECK_RC(mllp_client_set_remote_port(cl, port), MLLP_OK);
  CHECK_RC(mllp_client_config(cl, "RetryDelay=10", NULL, NULL), MLLP_OK);
  return cl;
}

static void test_client(void) {
  mllp_client *N = NULL, *cl;
  cctx_t c;
  ctx_t sc;
  mllp_server *s;
  uint16_t port = 0, u16;
  uint8_t u8;
  uint32_t u32;
  int i32;
  size_t sz, len;
  uint64_t id = 0;
  char buf[128];
  mllp_send_result r;

  tu_section("12. Client: NULL handle and outputs, send/ack, async, re-entrancy, free");
  CHECK_RC(mllp_client_free(N), MLLP_OK);
  CHECK_RC(mllp_client_set_user_data(N, NULL, NULL), MLLP_ERR_INVALID_ARGUMENT);
  len = sizeof buf;
  CHECK_RC(mllp_client_get_remote_host(N, buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_set_remote_host(N, "x"), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_get_remote_port(N, &u16), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_set_remote_port(N, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_get_local_host(N, buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_set_local_host(N, ""), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_get_version(N, &i32), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_set_version(N, 2), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_get_timeout(N, &u32), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_set_timeout(N, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_get_keep_alive(N, &u8), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_set_keep_alive(N, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_get_connected(N, &u8), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_get_ssl_enabled(N, &u8), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_set_ssl_enabled(N, 1), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_set_ssl_cert(N, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_get_pending(N, &sz), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_config(N, "Timeout", buf, &len), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_connect(N), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_disconnect(N), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_send(N, g_msg, g_msg_len, &r), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_send_async(N, g_msg, g_msg_len, &id), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_do_events(N, 0, &sz), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_on_connected(N, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_on_disconnected(N, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_on_ack_in(N, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_on_send_done(N, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_on_error(N, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_on_log(N, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_on_ssl_server_authentication(N, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_on_ssl_status(N, NULL), MLLP_ERR_INVALID_ARGUMENT);

  /* Never connected: NULL outputs, bad arguments, then free releases the user pointer once. */
  cl = new_client(&c, 1);
  if (!cl) return;
  CHECK_RC(mllp_client_get_remote_port(cl, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_send(cl, NULL, 5, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_send(cl, g_msg, 0, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_client_set_version(cl, 3), MLLP_ERR_INVALID_VALUE);
  CHECK_RC(mllp_client_config(cl, "NoSuchSetting=1", NULL, NULL), MLLP_ERR_UNKNOWN_SETTING);
  len = 2;
  CHECK_RC(mllp_client_get_remote_host(cl, buf, &len), MLLP_ERR_BUFFER_TOO_SMALL);
  CHECK(len == strlen("127.0.0.1") + 1, "buffer rule: the size needed (%zu)", len);
  len = sizeof buf;
  CHECK_RC(mllp_client_config(cl, "AckMode", buf, &len), MLLP_OK);
  CHECK(strcmp(buf, "MLLP") == 0, "AckMode defaults to MLLP with version 2 (\"%s\")", buf);
  CHECK_RC(mllp_client_free(cl), MLLP_OK);
  CHECK(c.released == 1, "user data released exactly once on free (got %d)", c.released);

  /* A server of this library as the receiver. */
  ctx_init(&sc);
  s = start_server(&sc, NULL, &port);
  if (!s) return;
  cl = new_client(&c, port);
  if (!cl) return;
  memset(&r, 0, sizeof r);
  CHECK_RC(mllp_client_send(cl, g_msg, g_msg_len, &r), MLLP_OK);
  CHECK(r.ack_kind == MLLP_ACK_ACK && r.attempts == 1 && r.message_id != 0,
        "send: commit ACK, 1 attempt (kind %d, attempts %u)", r.ack_kind, r.attempts);
  CHECK(c.connected == 1 && c.acks == 1 && c.done == 1 && c.last_result == 0,
        "Connected, AckIn, SendDone fired (%d %d %d, result %d)", c.connected, c.acks, c.done,
        c.last_result);
  CHECK_RC(mllp_client_get_connected(cl, &u8), MLLP_OK);
  CHECK(u8 == 1, "Connected = 1 after send");

  /* Asynchronous sends progress in do_events. */
  for (int k = 0; k < 5; k++) CHECK_RC(mllp_client_send_async(cl, g_msg, g_msg_len, &id), MLLP_OK);
  CHECK_RC(mllp_client_get_pending(cl, &sz), MLLP_OK);
  CHECK(sz == 5, "5 pending before do_events (%zu)", sz);
  sz = 99;
  for (int k = 0; k < 50 && sz != 0; k++) CHECK_RC(mllp_client_do_events(cl, 100, &sz), MLLP_OK);
  CHECK(sz == 0 && c.done == 6 && c.last_id == id, "do_events finished them in order (done %d)",
        c.done);

  /* From inside SendDone: send and free are refused, send_async works. */
  c.reenter = 1;
  CHECK_RC(mllp_client_send(cl, g_msg, g_msg_len, NULL), MLLP_OK);
  CHECK(c.reentrant_send == MLLP_ERR_REENTRANT, "send inside a callback -> REENTRANT (%d)",
        c.reentrant_send);
  CHECK(c.reentrant_free == MLLP_ERR_REENTRANT, "free inside a callback -> REENTRANT (%d)",
        c.reentrant_free);
  CHECK(c.async_from_cb == MLLP_OK, "send_async inside a callback works (%d)", c.async_from_cb);
  sz = 99;
  for (int k = 0; k < 50 && sz != 0; k++) CHECK_RC(mllp_client_do_events(cl, 100, &sz), MLLP_OK);
  CHECK(sz == 0, "the message queued from the callback was sent");

  CHECK_RC(mllp_client_disconnect(cl), MLLP_OK);
  CHECK(c.disconnected == 1, "Disconnected fired on disconnect");
  CHECK_RC(mllp_client_free(cl), MLLP_OK);
  CHECK(c.released == 1, "connected client freed: user data released once");

  /* Freed while connected with a message queued. */
  cl = new_client(&c, port);
  if (cl) {
    CHECK_RC(mllp_client_connect(cl), MLLP_OK);
    CHECK_RC(mllp_client_send_async(cl, g_msg, g_msg_len, NULL), MLLP_OK);
    CHECK_RC(mllp_client_free(cl), MLLP_OK);
    CHECK(c.released == 1, "freed with a message queued: user data released once");
  }
  free_server(s, &sc);
  ctx_destroy(&sc);

  /* Nobody listening: the socket code, after the retries. */
  cl = new_client(&c, port);
  if (cl) {
    CHECK_RC(mllp_client_config(cl, "MaxRetries=1", NULL, NULL), MLLP_OK);
    memset(&r, 0, sizeof r);
    CHECK_RC(mllp_client_send(cl, g_msg, g_msg_len, &r), 10061);
    CHECK(r.attempts == 2 && r.ack_kind == MLLP_ACK_NONE,
          "refused: result written, 2 attempts, no ack (%u, %d)", r.attempts, r.ack_kind);
    CHECK(strlen(mllp_last_error_message()) > 0, "last error message: %s", mllp_last_error_message());
    CHECK_RC(mllp_client_free(cl), MLLP_OK);
  }
}

/* ======================================================================================== */
/* 13. PROXY protocol through the C ABI                                                       */
/* ======================================================================================== */

static void test_proxy(void) {
  ctx_t c;
  uint16_t port, rport = 0;
  mllp_server *s;
  tu_client a;
  uint8_t *f = NULL;
  long n;
  uint64_t id;
  char host[64];
  size_t len = sizeof host;
  const char *v1 = "PROXY TCP4 203.0.113.7 127.0.0.1 40123 2575\r\n";

  tu_section("13. PROXY protocol: ConnectionRequest and RemoteHost name the original client");
  ctx_init(&c);
  s = start_server(&c, "ProxyProtocol=Any", &port);
  if (!s) return;
  CHECK_RC(mllp_server_config(s, "ProxyHeaderTimeout=0", NULL, NULL), MLLP_ERR_INVALID_VALUE);
  if (CHECK(tu_connect(&a, port) == 0, "client connects")) {
    CHECK(tu_send_all(&a, v1, strlen(v1)) == 0, "sends a PROXY v1 header");
    CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "then a message");
    n = tu_recv_frame(&a, &f, 5000);
    CHECK(n == 1 && f && f[0] == TU_ACK, "the message is acknowledged (n=%ld)", n);
    free(f);
    CHECK(strcmp(c.cr_addr, "203.0.113.7") == 0 && c.cr_port == 40123,
          "ConnectionRequest: %s:%u from the header", c.cr_addr, c.cr_port);
    id = get_u64(&c, &c.conn_id);
    CHECK_RC(mllp_connection_get_remote_host(s, id, host, &len), MLLP_OK);
    CHECK_RC(mllp_connection_get_remote_port(s, id, &rport), MLLP_OK);
    CHECK(strcmp(host, "203.0.113.7") == 0 && rport == 40123, "RemoteHost/RemotePort %s:%u", host, rport);
    tu_close(&a);
  }
  if (CHECK(tu_connect(&a, port) == 0, "a second client connects")) {
    int before = count(&c, EV_ERROR);
    /* The server may close as soon as it sees the first byte, so a later part of this send
     * can fail: its result is not the point. */
    (void)tu_send_frame(&a, g_msg, g_msg_len);
    tu_note("sent a message with no header");
    CHECK(tu_wait_closed(&a, 5000), "the connection is closed");
    WAIT_UNTIL(count(&c, EV_ERROR) > before, 5000);
    CHECK(get_int(&c, &c.last_error_code) == MLLP_ERR_PROXY_HEADER, "Error %d (MLLP_ERR_PROXY_HEADER)",
          get_int(&c, &c.last_error_code));
    tu_close(&a);
  }
  free_server(s, &c);
  ctx_destroy(&c);
}

/* ======================================================================================== */
/* 14. Metrics through the C ABI                                                              */
/* ======================================================================================== */

static int g_metrics_text(mllp_server *s, uint64_t id, const char *a, void *b, size_t *l) {
  (void)id;
  (void)a;
  return mllp_server_get_metrics_text(s, (char *)b, l);
}

/* The value of the sample line `series` in a metrics text, -1 when it is missing. */
static double metric_value(const char *text, const char *series) {
  size_t n = strlen(series);
  const char *p = text;
  while ((p = strstr(p, series)) != NULL) {
    if ((p == text || p[-1] == '\n') && p[n] == ' ') return strtod(p + n + 1, NULL);
    p += n;
  }
  return -1;
}

static void test_metrics(void) {
  ctx_t c;
  uint16_t port;
  mllp_server *s;
  tu_client a;
  mllp_metrics m;
  uint8_t *f = NULL;
  long n;
  char *text;
  size_t len = 0;
  uint8_t empty[1];

  tu_section("14. Metrics: mllp_server_get_metrics and the Prometheus text");
  CHECK_RC(mllp_server_get_metrics(NULL, &m), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_metrics_text(NULL, NULL, &len), MLLP_ERR_INVALID_ARGUMENT);
  ctx_init(&c);
  s = start_server(&c, NULL, &port);
  if (!s) return;
  CHECK_RC(mllp_server_get_metrics(s, NULL), MLLP_ERR_INVALID_ARGUMENT);
  CHECK_RC(mllp_server_get_metrics_text(s, NULL, NULL), MLLP_ERR_INVALID_ARGUMENT);
  memset(&m, 0xA5, sizeof m);
  CHECK_RC(mllp_server_get_metrics(s, &m), MLLP_OK);
  CHECK(m.connections_accepted == 0 && m.messages_received == 0 && m.bytes_in == 0 &&
            m.ack_latency_count == 0 && m.ack_latency_sum_seconds == 0.0,
        "a new server counts nothing");
  if (CHECK(tu_connect(&a, port) == 0, "client connects")) {
    CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "sends the sample");
    n = tu_recv_frame(&a, &f, 5000);
    CHECK(n == 1 && f && f[0] == TU_ACK, "ACK (n=%ld)", n);
    free(f);
    f = NULL;
    pthread_mutex_lock(&c.mu);
    c.ackout_accept = 0;
    pthread_mutex_unlock(&c.mu);
    CHECK(tu_send_frame(&a, g_msg, g_msg_len) == 0, "sends it again, AckOut refuses it");
    n = tu_recv_frame(&a, &f, 5000);
    CHECK(n == 1 && f && f[0] == TU_NAK, "NAK (n=%ld)", n);
    free(f);
    f = NULL;
    CHECK(tu_send_frame(&a, empty, 0) == 0, "sends an empty frame (refused, 671)");
    n = tu_recv_frame(&a, &f, 5000);
    CHECK(n == 1 && f && f[0] == TU_NAK, "NAK (n=%ld)", n);
    free(f);
    f = NULL;
    /* Replies are counted once their write call returned: wait for the third. */
    WAIT_UNTIL(mllp_server_get_metrics(s, &m) == MLLP_OK && m.acks_sent + m.naks_sent == 3, 5000);
    CHECK(m.connections_accepted == 1 && m.connections_refused == 0 && m.connections_open == 1,
          "connections: accepted %llu, refused %llu, open %llu", (unsigned long long)m.connections_accepted,
          (unsigned long long)m.connections_refused, (unsigned long long)m.connections_open);
    CHECK(m.messages_received == 3 && m.messages_accepted == 1 && m.messages_refused == 2 &&
              m.messages_duplicate == 0,
          "messages: received %llu, accepted %llu, refused %llu, duplicate %llu",
          (unsigned long long)m.messages_received, (unsigned long long)m.messages_accepted,
          (unsigned long long)m.messages_refused, (unsigned long long)m.messages_duplicate);
    CHECK(m.bytes_in == 2 * (g_msg_len + 3) + 3 && m.bytes_out == 12, "bytes in %llu, out %llu",
          (unsigned long long)m.bytes_in, (unsigned long long)m.bytes_out);
    CHECK(m.acks_sent == 1 && m.naks_sent == 2, "ACKs %llu, NAKs %llu", (unsigned long long)m.acks_sent,
          (unsigned long long)m.naks_sent);
    CHECK(m.errors == 1, "one Error event (671), got %llu", (unsigned long long)m.errors);
    CHECK(m.tls_handshakes_completed == 0 && m.tls_handshakes_failed == 0, "no TLS");
    CHECK(m.ack_latency_count == 3 && m.ack_latency_sum_seconds > 0.0, "latency: %llu measured, sum %g s",
          (unsigned long long)m.ack_latency_count, m.ack_latency_sum_seconds);
    /* The text form: the buffer rule, and the same numbers. Nothing moves meanwhile. */
    CHECK_RC(mllp_server_get_metrics_text(s, NULL, &len), MLLP_ERR_BUFFER_TOO_SMALL);
    check_buffer_rule("metrics text", g_metrics_text, s, 0, NULL, NULL, len, 1);
    text = (char *)malloc(len);
    if (text && CHECK_RC(mllp_server_get_metrics_text(s, text, &len), MLLP_OK)) {
      CHECK(strlen(text) + 1 == len, "NUL-terminated, *len counts the NUL");
      CHECK(strstr(text, "# TYPE mllp_ack_latency_seconds histogram\n") != NULL, "histogram family");
      CHECK(metric_value(text, "mllp_messages_received_total") == 3, "mllp_messages_received_total 3");
      CHECK(metric_value(text, "mllp_messages_total{result=\"refused\"}") == 2, "refused 2");
      CHECK(metric_value(text, "mllp_acks_sent_total{kind=\"nak\"}") == 2, "NAKs 2");
      CHECK(metric_value(text, "mllp_errors_total{code=\"671\"}") == 1, "errors{code=671} 1");
      CHECK(metric_value(text, "mllp_ack_latency_seconds_bucket{le=\"+Inf\"}") == 3, "+Inf bucket 3");
      CHECK(metric_value(text, "mllp_ack_latency_seconds_count") == 3, "_count 3");
    }
    free(text);
    tu_close(&a);
    WAIT_UNTIL(mllp_server_get_metrics(s, &m) == MLLP_OK && m.connections_open == 0, 5000);
    CHECK(m.connections_open == 0 && m.connections_accepted == 1, "closed: open 0, accepted still 1");
  }
  free_server(s, &c);
  ctx_destroy(&c);
}

/* ======================================================================================== */

typedef struct {
  const char *name;
  void (*fn)(void);
} section_t;

static const section_t sections[] = {
    {"null", test_null},       {"stale", test_stale},       {"buffer", test_buffer},
    {"free", test_free},       {"roundtrip", test_roundtrip}, {"reentrant", test_reentrant},
    {"threads", test_threads}, {"streams", test_streams},   {"doevents", test_doevents},
    {"header", test_header},   {"tls", test_tls},           {"client", test_client},
    {"proxy", test_proxy},     {"metrics", test_metrics},
};

int main(int argc, char **argv) {
  int i, j, first = 1;
  size_t k;
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && strchr(argv[1], '/') != NULL) {
    g_sample_path = argv[1];
    first = 2;
  }
  g_msg = tu_read_file(g_sample_path, &g_msg_len);
  if (!g_msg || g_msg_len == 0) {
    fprintf(stderr, "cannot read the sample %s\n", g_sample_path);
    return 2;
  }
  printf("mllp C harness: library %s, sample %s (%zu bytes)\n", mllp_version(), g_sample_path,
         g_msg_len);
  for (k = 0; k < sizeof sections / sizeof sections[0]; k++) {
    int run = argc <= first;
    for (j = first; j < argc; j++)
      if (strcmp(argv[j], sections[k].name) == 0) run = 1;
    if (run) sections[k].fn();
  }
  for (i = first; i < argc; i++) {
    int known = 0;
    for (k = 0; k < sizeof sections / sizeof sections[0]; k++)
      if (strcmp(argv[i], sections[k].name) == 0) known = 1;
    if (!known) {
      fprintf(stderr, "unknown section %s\n", argv[i]);
      tu_failures++;
    }
  }
  free(g_msg);
  printf("\n== summary: %d checks, %d failed\n", tu_checks, tu_failures);
  return tu_failures ? 1 : 0;
}
