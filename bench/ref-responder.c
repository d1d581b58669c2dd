/*
 * ref-responder - the reference ("the limit") for the mllp benchmarks.
 *
 * A minimal single-threaded epoll MLLP responder with no features: it answers every complete
 * frame (<SB> ... <EB><CR>) with the MLLP commit acknowledgement <SB><ACK><EB><CR> and does
 * nothing else: no message is kept, parsed, validated, logged or stored. Per connection it
 * keeps two bytes of framing state and a count of acknowledgements that could not be written
 * yet, in a table indexed by file descriptor, so an idle connection costs (almost) nothing in
 * user space.
 *
 *   ref-responder [--host ADDR] [--port N] [--ack mllp|none]
 *
 * Prints "listening on HOST:PORT" on stdout, then runs until SIGINT/SIGTERM.
 * Build: gcc -O2 -o ref-responder ref-responder.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SB 0x0B
#define EB 0x1C
#define CR 0x0D

enum { IDLE = 0, CONTENT = 1, AFTER_END = 2 };

typedef struct {
    uint8_t state;
    uint8_t open;
    uint8_t want_out; /* registered for EPOLLOUT */
    uint32_t pending; /* acknowledgements not yet written */
} conn;

static conn *conns;
static size_t nconns;
static int ack_none;
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static conn *get(int fd) {
    if ((size_t)fd >= nconns) {
        size_t n = nconns ? nconns : 1024;
        while (n <= (size_t)fd) n *= 2;
        conn *c = realloc(conns, n * sizeof *c);
        if (!c) {
            perror("realloc");
            exit(1);
        }
        memset(c + nconns, 0, (n - nconns) * sizeof *c);
        conns = c;
        nconns = n;
    }
    return &conns[fd];
}

static void close_conn(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    memset(&conns[fd], 0, sizeof conns[fd]);
}

/* Writes the pending acknowledgements; returns -1 if the connection failed. */
static int flush(int ep, int fd, conn *c) {
    static const uint8_t ack[4] = {SB, 0x06, EB, CR};
    static uint8_t many[4 * 1024];
    static int init;
    if (!init) {
        for (size_t i = 0; i < sizeof many; i += 4) memcpy(many + i, ack, 4);
        init = 1;
    }
    while (c->pending > 0) {
        size_t n = (size_t)c->pending * 4;
        if (n > sizeof many) n = sizeof many;
        ssize_t w = send(fd, many, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -1;
        }
        /* A partial ack block would need byte-level bookkeeping; with 4-byte blocks and a
         * fresh socket buffer this does not happen in practice, but keep it correct. */
        size_t whole = (size_t)w / 4, rest = (size_t)w % 4;
        c->pending -= (uint32_t)whole;
        if (rest) {
            /* finish the partial block with a blocking-ish retry loop */
            const uint8_t *p = ack + rest;
            size_t left = 4 - rest;
            while (left > 0) {
                ssize_t w2 = send(fd, p, left, MSG_NOSIGNAL);
                if (w2 < 0) {
                    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
                    return -1;
                }
                p += w2;
                left -= (size_t)w2;
            }
            c->pending--;
        }
    }
    uint8_t want = c->pending != 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        c->want_out = want;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 2576;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc) {
            host = argv[++i];
        } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--ack") && i + 1 < argc) {
            i++;
            ack_none = !strcmp(argv[i], "none");
        } else {
            fprintf(stderr, "usage: ref-responder [--host ADDR] [--port N] [--ack mllp|none]\n");
            return 2;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "ref-responder: bad host %s (IPv4 only)\n", host);
        return 2;
    }
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 4096) != 0) {
        perror("ref-responder: bind/listen");
        return 2;
    }
    socklen_t sl = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);

    static uint8_t buf[256 * 1024];
    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, 500);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            if (fd == ls) {
                for (;;) {
                    int cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) break;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *c = get(cfd);
                    memset(c, 0, sizeof *c);
                    c->open = 1;
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
                }
                continue;
            }
            conn *c = get(fd);
            if (!c->open) continue;
            if (evs[k].events & EPOLLOUT) {
                if (flush(ep, fd, c) != 0) {
                    close_conn(ep, fd);
                    continue;
                }
            }
            if (!(evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            /* Level-triggered: one read per wakeup keeps connections fair. */
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                close_conn(ep, fd);
                continue;
            }
            if (r < 0) continue;
            uint32_t before = c->pending;
            uint8_t st = c->state;
            const uint8_t *p = buf, *end = buf + r;
            while (p < end) {
                if (st == CONTENT) {
                    const uint8_t *e = memchr(p, EB, (size_t)(end - p));
                    if (!e) break;
                    p = e + 1;
                    st = AFTER_END;
                } else if (st == AFTER_END) {
                    if (*p == CR) {
                        c->pending++;
                        p++;
                        st = IDLE;
                    } else {
                        st = (*p == SB) ? CONTENT : IDLE;
                        p++;
                    }
                } else {
                    const uint8_t *s = memchr(p, SB, (size_t)(end - p));
                    if (!s) break;
                    p = s + 1;
                    st = CONTENT;
                }
            }
            c->state = st;
            if (ack_none) {
                c->pending = 0;
            } else if (c->pending != before && before == 0) {
                if (flush(ep, fd, c) != 0) close_conn(ep, fd);
            }
        }
    }
    return 0;
}
