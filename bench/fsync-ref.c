/*
 * fsync-ref - the "one fdatasync per message" baseline for the durable benchmarks
 * (bench/groups/durable.sh), the program a user would write without group commit.
 *
 * A single-threaded epoll MLLP responder like ref-responder.c, except that every complete
 * frame (<SB> message <EB><CR>) is stored before it is acknowledged, one message at a time:
 * the message is written to a new file DIR/.tmp-N, fdatasynced, closed, renamed to
 * DIR/N.hl7 and the directory fsynced; only then is <SB><ACK><EB><CR> sent. The same
 * contract as mllp-listen --out-dir (ACK only after the file's data and its final name are
 * durable), with no batching across messages or connections.
 *
 *   fsync-ref --dir DIR [--host ADDR] [--port N]
 *
 * Prints "listening on HOST:PORT" on stdout, then runs until SIGINT/SIGTERM. A message that
 * cannot be stored is answered with <SB><NAK><EB><CR>.
 * Build: gcc -O2 -o fsync-ref fsync-ref.c
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
#include <sys/stat.h>
#include <unistd.h>

#define SB 0x0B
#define EB 0x1C
#define CR 0x0D

enum { IDLE = 0, CONTENT = 1, AFTER_END = 2 };

typedef struct {
    uint8_t state;
    uint8_t open;
    uint8_t *msg; /* the message being received */
    size_t len, cap;
} conn;

static conn *conns;
static size_t nconns;
static int dir_fd = -1;
static unsigned long long counter;
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
    free(conns[fd].msg);
    memset(&conns[fd], 0, sizeof conns[fd]);
}

static int append(conn *c, const uint8_t *p, size_t n) {
    if (c->cap - c->len < n) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap - c->len < n) cap *= 2;
        uint8_t *q = realloc(c->msg, cap);
        if (!q) return -1;
        c->msg = q;
        c->cap = cap;
    }
    memcpy(c->msg + c->len, p, n);
    c->len += n;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Stores one message: new file, write, fdatasync, close, rename, fsync DIR. 0 or -1. */
static int store(const uint8_t *m, size_t n) {
    char tmp[64], final[64];
    unsigned long long num = ++counter;
    snprintf(tmp, sizeof tmp, ".tmp-%llu", num);
    snprintf(final, sizeof final, "%010llu.hl7", num);
    int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (write_all(fd, m, n) != 0 || fdatasync(fd) != 0) {
        close(fd);
        unlinkat(dir_fd, tmp, 0);
        return -1;
    }
    if (close(fd) != 0 || renameat(dir_fd, tmp, dir_fd, final) != 0) {
        unlinkat(dir_fd, tmp, 0);
        return -1;
    }
    return fsync(dir_fd);
}

/* Sends one reply frame; blocking-ish (the client reads its ACK before sending more). */
static int reply(int fd, uint8_t code) {
    const uint8_t frame[4] = {SB, code, EB, CR};
    size_t done = 0;
    while (done < sizeof frame) {
        ssize_t w = send(fd, frame + done, sizeof frame - done, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *dir = NULL;
    int port = 2576;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc) {
            host = argv[++i];
        } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "usage: fsync-ref --dir DIR [--host ADDR] [--port N]\n");
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: fsync-ref --dir DIR [--host ADDR] [--port N]\n");
        return 2;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        perror("fsync-ref: mkdir");
        return 2;
    }
    dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        perror("fsync-ref: open DIR");
        return 2;
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
        fprintf(stderr, "fsync-ref: bad host %s (IPv4 only)\n", host);
        return 2;
    }
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 4096) != 0) {
        perror("fsync-ref: bind/listen");
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
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                close_conn(ep, fd);
                continue;
            }
            if (r < 0) continue;
            const uint8_t *p = buf, *end = buf + r;
            int failed = 0;
            while (p < end && !failed) {
                if (c->state == CONTENT) {
                    const uint8_t *e = memchr(p, EB, (size_t)(end - p));
                    const uint8_t *stop_at = e ? e : end;
                    if (append(c, p, (size_t)(stop_at - p)) != 0) failed = 1;
                    p = stop_at;
                    if (e) {
                        p++;
                        c->state = AFTER_END;
                    }
                } else if (c->state == AFTER_END) {
                    if (*p == CR) {
                        uint8_t code = store(c->msg, c->len) == 0 ? 0x06 : 0x15;
                        if (reply(fd, code) != 0) failed = 1;
                        c->len = 0;
                        c->state = IDLE;
                    } else if (*p == SB) {
                        c->len = 0;
                        c->state = CONTENT;
                    } else {
                        c->len = 0;
                        c->state = IDLE;
                    }
                    p++;
                } else {
                    const uint8_t *s = memchr(p, SB, (size_t)(end - p));
                    if (!s) break;
                    p = s + 1;
                    c->len = 0;
                    c->state = CONTENT;
                }
            }
            if (failed) close_conn(ep, fd);
        }
    }
    return 0;
}
