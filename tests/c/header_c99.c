/* The header on its own (nothing included before it), twice, as strict C99 with -pedantic. */
#include "mllp.h"
#include "mllp.h"

const char *mllp_c99_probe(void);

const char *mllp_c99_probe(void) {
  mllp_connection_request_event ev;
  ev.address = "127.0.0.1";
  ev.port = 1;
  ev.accept = 1;
  (void)ev;
  return mllp_version();
}
