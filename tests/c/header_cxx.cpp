// The header compiled as C++ (included twice: the guard and extern "C" must hold).
#include "mllp.h"
#include "mllp.h"

#include <cstddef>

static_assert(MLLP_OK == 0, "MLLP_OK is 0");
static_assert(sizeof(((mllp_transfer_event *)nullptr)->len) == sizeof(std::size_t),
              "len is a size_t");

// Callbacks with C linkage types, assignable from C++ lambdas without captures.
static mllp_status_cb cxx_status_cb = [](void *, const mllp_status_event *) {};

extern "C" const char *mllp_cxx_probe(void) {
  mllp_server *s = mllp_server_new();
  if (!s) return nullptr;
  int rc = mllp_server_on_connected(s, cxx_status_cb);
  rc |= mllp_server_free(s);
  return rc == MLLP_OK ? mllp_version() : nullptr;
}
