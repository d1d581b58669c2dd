/* hello-server: the smallest useful MLLP server. Listens on 127.0.0.1:2575 (or argv[1]),
 * prints the MSH segment of every message it receives, acknowledges it, and stops on Ctrl-C. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mllp.h"

/* Runs on the library's thread just before the ACK is sent; accept = 0 would send a NAK. */
static void on_ack_out(void *user, mllp_ack_out_event *ev) {
    (void)user;
    const uint8_t *cr = memchr(ev->message, '\r', ev->message_len);
    int first = (int)(cr ? (size_t)(cr - ev->message) : ev->message_len);
    printf("connection %" PRIu64 ": %zu bytes: %.*s\n", ev->connection_id, ev->message_len,
           first, (const char *)ev->message);
    fflush(stdout);
}

int main(int argc, char **argv) {
    sigset_t stop;                              /* block Ctrl-C before the library starts its */
    sigemptyset(&stop);                         /* thread; wait for it below                  */
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    mllp_server *server = mllp_server_new();
    mllp_server_set_local_host(server, "127.0.0.1");
    mllp_server_set_local_port(server, (uint16_t)(argc > 1 ? atoi(argv[1]) : 2575));
    mllp_server_on_ack_out(server, on_ack_out);
    if (mllp_server_start_listening(server) != MLLP_OK) {
        fprintf(stderr, "cannot listen: %s\n", mllp_last_error_message());
        mllp_server_free(server);
        return 1;
    }
    printf("listening; Ctrl-C to stop\n");
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    mllp_server_free(server);                   /* closes the connections, stops the thread */
    return 0;
}
