/* A program that links against an installed mllp: creates a server, listens on a free
 * port, reads the port back, and frees it. Exits 0 on success. */
#include <stdio.h>
#include <string.h>
#include <mllp.h>

int main(void) {
    mllp_server *s = mllp_server_new();
    uint16_t port = 0;
    if (!s) return 1;
    if (mllp_server_set_local_host(s, "127.0.0.1") != MLLP_OK) return 2;
    if (mllp_server_start_listening(s) != MLLP_OK) {
        fprintf(stderr, "start: %s\n", mllp_last_error_message());
        return 3;
    }
    if (mllp_server_get_local_port(s, &port) != MLLP_OK || port == 0) return 4;
    if (mllp_server_free(s) != MLLP_OK) return 5;
    printf("mllp %s listened on port %u\n", mllp_version(), (unsigned)port);
    return 0;
}
