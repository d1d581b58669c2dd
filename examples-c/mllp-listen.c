/*
 * mllp-listen - an MLLP (HL7 v2 over TCP) receiver built on the public C API of libmllp.
 *
 *   mllp-listen [--host ADDR] [--port N] [--version 1|2] [--ack mllp|hl7|none] [--out-dir DIR]
 *               [--config KEY=VALUE]... [--tls-cert FILE --tls-key FILE] [--client-ca FILE]
 *               [--reject-invalid] [--quiet]
 *
 * Stdout: "listening on HOST:PORT", then one line per accepted message:
 *   <connection-id> <byte-count> <MSH-9 or -> <MSH-10 or ->
 * With --out-dir each accepted message (the bytes between start and end block) is written to
 * its own file, fsynced and renamed into place (directory fsynced too) before it is
 * acknowledged. SIGINT/SIGTERM shut the server down and exit 0. Usage errors, a port in use
 * or an unusable DIR exit 2.
 *
 * Threads: by default the library calls the callbacks below on its reactor thread, one at a
 * time; the main thread only waits for a signal (sigwait). SIGINT and SIGTERM are blocked in
 * every thread (the mask is set before the library starts its thread, which inherits it), so
 * they are only ever consumed by sigwait: no work happens in a signal handler. With
 * --config EventMode=DoEvents the main thread delivers the events itself and checks for a
 * pending signal between rounds.
 *
 * Group commit (--out-dir with acknowledgements): AckOut does not touch the disk. It copies
 * the message into a bounded queue and defers the decision (ev->defer). A writer thread takes
 * everything queued as one batch, writes each message to its own hidden temporary file, makes
 * the data of the whole batch durable (fdatasync per file, after starting the write-back of
 * all of them, so one journal commit serves the batch), links every file to its final name,
 * fsyncs the directory once, and only then acknowledges each message
 * (mllp_server_acknowledge) and prints its line. While a batch is being synced, new messages
 * gather for the next one, so many connections share each sync. When the queue is full
 * (bytes or count) AckOut waits, and the library stops reading. With --ack none nothing is
 * acknowledged, so messages are stored synchronously in EndTransfer as before.
 * Shutdown: stop listening, stop queueing, let the writer finish and acknowledge what is
 * queued (bounded in time), then close every connection. A message that was acknowledged is
 * on disk; one that was not may be lost, never half-stored (final names appear only for
 * complete, synced files).
 *
 * C11 + POSIX.1-2008 (sync_file_range on Linux, as a hint only).
 */
#if defined(__linux__)
#define _GNU_SOURCE /* sync_file_range */
#endif
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mllp.h"

#define PROG "mllp-listen"
#define EXIT_USAGE 2

static const char USAGE[] =
    "usage: " PROG " [--host ADDR] [--port N] [--version 1|2] [--ack mllp|hl7|none]\n"
    "                   [--out-dir DIR] [--config KEY=VALUE]... [--tls-cert FILE --tls-key FILE]\n"
    "                   [--client-ca FILE] [--reject-invalid] [--quiet]\n"
    "\n"
    "Receives HL7 v2 messages over MLLP and acknowledges them.\n"
    "\n"
    "  --host ADDR         interface to listen on (default 127.0.0.1; \"\" = all)\n"
    "  --port N            TCP port (default 2575; 0 = any free port)\n"
    "  --version 1|2       MLLP version (default 2)\n"
    "  --ack MODE          mllp: commit ACK/NAK block (default for version 2)\n"
    "                      hl7:  HL7 application ACK message (MSA-1 AA/AE/AR)\n"
    "                      none: send nothing back (default for version 1)\n"
    "  --out-dir DIR       store each accepted message as its own file in DIR (created if\n"
    "                      missing), fsynced before it is acknowledged\n"
    "  --config KEY=VALUE  library setting, repeatable (e.g. ReceiveTimeout=2,\n"
    "                      MaxMessageSize=1024, StartBlockChar=0x02)\n"
    "  --tls-cert FILE     serve MLLP over TLS (1.2/1.3) with this certificate (PEM;\n"
    "                      may be followed by its chain); needs --tls-key\n"
    "  --tls-key FILE      the certificate's private key (PEM)\n"
    "  --client-ca FILE    mutual TLS: require a client certificate issued by a CA in FILE\n"
    "                      (PEM); clients without one are refused (requires --tls-cert)\n"
    "  --reject-invalid    refuse (NAK / AR) messages not starting with MSH, FHS or BHS\n"
    "                      followed by a field separator\n"
    "  --quiet             no per-message lines, no error lines\n"
    "  --help              show this help\n"
    "\n"
    "Stdout: \"listening on HOST:PORT\", then per accepted message\n"
    "  <connection-id> <byte-count> <MSH-9 or -> <MSH-10 or ->\n"
    "SIGINT/SIGTERM stop the server (exit 0). Errors in arguments, a port in use or an\n"
    "unusable DIR exit with status 2.\n";

/* ------------------------------------------------------------------------------------------ */
/* State shared by the callbacks. They run one at a time, but the main thread prints the      */
/* "listening" line while the reactor may already run, so output and state go under a lock.  */

typedef struct {
    uint64_t id;
    uint8_t *buf;
    size_t len, cap;
    int failed; /* out of memory: this message is lost */
} accumulator;

typedef struct {
    int quiet;
    int reject_invalid;
    int ack_none;          /* no acknowledgement: handle messages in EndTransfer, not AckOut */
    int dir_fd;            /* --out-dir, opened; -1 without */
    const char *dir;       /* for messages */
    uint64_t file_counter; /* last number used for a stored file (under num_lock) */
    pthread_mutex_t num_lock;
    long pid;
    pthread_mutex_t lock;
    accumulator *acc; /* ack_none only: the message being received, per connection */
    size_t acc_count, acc_cap;
} app_state;

static app_state app = {
    .dir_fd = -1,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .num_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* The server, once created: freed on an error exit during start-up, so nothing leaks. */
static mllp_server *startup_server;

static void die_usage(const char *fmt, ...) {
    va_list ap;
    if (startup_server) {
        mllp_server_free(startup_server);
        startup_server = NULL;
    }
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(EXIT_USAGE);
}

/* ------------------------------------------------------------------------------------------ */
/* HL7 inspection                                                                             */

static int is_field_separator(uint8_t c) {
    return !(isalnum(c) && c < 0x80) && c != '\r' && c != '\n';
}

/* Begins with MSH, FHS or BHS followed by a field separator. */
static int looks_like_hl7(const uint8_t *m, size_t n) {
    if (n < 4) return 0;
    if (memcmp(m, "MSH", 3) != 0 && memcmp(m, "FHS", 3) != 0 && memcmp(m, "BHS", 3) != 0)
        return 0;
    return is_field_separator(m[3]);
}

typedef struct {
    const uint8_t *p;
    size_t n;
} span;

/* Finds MSH-9 and MSH-10 in the first MSH segment, split on that segment's own separator.
 * Splitting "MSH|^~\&|A|B|..." on '|' gives "MSH", MSH-2, MSH-3, ...: piece k is MSH-(k+1). */
static void msh_fields(const uint8_t *m, size_t n, span *f9, span *f10) {
    f9->n = f10->n = 0;
    for (size_t i = 0; i + 3 < n; i++) {
        if (i > 0 && m[i - 1] != '\r' && m[i - 1] != '\n') continue;
        if (memcmp(m + i, "MSH", 3) != 0 || !is_field_separator(m[i + 3])) continue;
        uint8_t sep = m[i + 3];
        size_t field = 2, start = i + 4;
        for (size_t j = start;; j++) {
            int end_seg = j >= n || m[j] == '\r' || m[j] == '\n';
            if (end_seg || m[j] == sep) {
                if (field == 9) *f9 = (span){m + start, j - start};
                if (field == 10) {
                    *f10 = (span){m + start, j - start};
                    return;
                }
                if (end_seg) return;
                field++;
                start = j + 1;
            }
        }
    }
}

/* Prints a field for the one-line-per-message format: "-" when empty; blanks and control
 * characters become '_' so the line keeps its four columns. */
static void put_field(span s) {
    if (s.n == 0) {
        fputc('-', stdout);
        return;
    }
    for (size_t i = 0; i < s.n; i++) {
        uint8_t c = s.p[i];
        fputc(c <= 0x20 || c == 0x7f ? '_' : c, stdout);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Durable storage                                                                            */

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

/* mkdir -p */
static int make_dirs(const char *path) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 1);
    if (!tmp) return -1;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            free(tmp);
            errno = e;
            return -1;
        }
        tmp[i] = saved;
    }
    free(tmp);
    return 0;
}

/* Opens (creating it if missing) the output directory and proves it writable; starts the
 * file counter after the highest number already used there so nothing is overwritten and
 * names keep sorting in arrival order across runs. */
static void open_out_dir(const char *dir) {
    if (dir[0] == '\0') die_usage("--out-dir: empty path");
    if (make_dirs(dir) != 0) die_usage("--out-dir %s: cannot create: %s", dir, strerror(errno));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die_usage("--out-dir %s: cannot open: %s", dir, strerror(errno));
    char probe[64];
    snprintf(probe, sizeof probe, ".tmp-%ld-probe", app.pid);
    int pfd = openat(fd, probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (pfd < 0) die_usage("--out-dir %s: not writable: %s", dir, strerror(errno));
    close(pfd);
    unlinkat(fd, probe, 0);

    int dfd = dup(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) die_usage("--out-dir %s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(e->d_name, &end, 10);
        if (errno == 0 && *end == '-' && v > app.file_counter) app.file_counter = v;
    }
    closedir(d);
    app.dir_fd = fd;
    app.dir = dir;
}

static uint64_t next_file_number(void) {
    pthread_mutex_lock(&app.num_lock);
    uint64_t num = ++app.file_counter;
    pthread_mutex_unlock(&app.num_lock);
    return num;
}

/* Gives the complete (synced, closed) temporary file `tmp` a new final name, numbered from
 * `num`, written to `final`: link (never replaces an existing file), then remove the
 * temporary name; on a file system without hard links, rename after checking the name is
 * free (we are the only writer of our names, and only one thread names files: the writer
 * thread, or with --ack none the thread delivering events). The directory is not fsynced
 * here. Returns 0, or -1 with errno (the temporary file is then left to the caller). */
static int link_final(const char *tmp, uint64_t num, uint64_t conn, uint64_t seq, char *final,
                      size_t cap) {
    for (int tries = 0;; tries++) {
        snprintf(final, cap, "%010" PRIu64 "-%" PRIu64 "-%" PRIu64 ".hl7", num, conn, seq);
        if (linkat(app.dir_fd, tmp, app.dir_fd, final, 0) == 0) {
            unlinkat(app.dir_fd, tmp, 0);
            return 0;
        }
        if (errno == EEXIST) {
            if (tries >= 1000) return -1;
            num = next_file_number();
            continue;
        }
        if (faccessat(app.dir_fd, final, F_OK, 0) == 0) {
            if (tries >= 1000) {
                errno = EEXIST;
                return -1;
            }
            num = next_file_number();
            continue;
        }
        return renameat(app.dir_fd, tmp, app.dir_fd, final) == 0 ? 0 : -1;
    }
}

static void report_store_failure(uint64_t conn, uint64_t seq, const char *step, int err) {
    fprintf(stderr, "error: cannot store message %" PRIu64 " of connection %" PRIu64
                    " in %s (%s: %s); refusing it\n",
            seq, conn, app.dir, step, strerror(err));
}

/* Stores one message on its own (--ack none: nothing waits for an acknowledgement, so there
 * is nothing to batch): temporary hidden file, write, fsync, link to a new final name, fsync
 * the directory. Returns 0, or -1 with a reason on stderr (nothing is left under a final
 * name then). */
static int store_message(uint64_t conn, uint64_t seq, const uint8_t *m, size_t n) {
    char tmp[64], final[96];
    uint64_t num = next_file_number();
    snprintf(tmp, sizeof tmp, ".tmp-%ld-%" PRIu64, app.pid, num);
    const char *step = "create";
    int fd = openat(app.dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) goto fail;
    step = "write";
    if (write_all(fd, m, n) != 0) goto fail_fd;
    step = "fsync";
    if (fsync(fd) != 0) goto fail_fd;
    step = "close";
    if (close(fd) != 0) {
        fd = -1;
        goto fail_tmp;
    }
    fd = -1;
    step = "link";
    if (link_final(tmp, num, conn, seq, final, sizeof final) != 0) goto fail_tmp;
    step = "fsync directory";
    if (fsync(app.dir_fd) != 0) {
        int e = errno;
        unlinkat(app.dir_fd, final, 0);
        fsync(app.dir_fd);
        errno = e;
        goto fail;
    }
    return 0;

fail_fd: {
    int e = errno;
    close(fd);
    errno = e;
}
fail_tmp: {
    int e = errno;
    unlinkat(app.dir_fd, tmp, 0);
    errno = e;
}
fail:
    report_store_failure(conn, seq, step, errno);
    return -1;
}

/* Prints the line of an accepted message; the caller holds app.lock. */
static void put_message_line(uint64_t conn, const uint8_t *m, size_t n) {
    span f9, f10;
    msh_fields(m, n, &f9, &f10);
    printf("%" PRIu64 " %zu ", conn, n);
    put_field(f9);
    fputc(' ', stdout);
    put_field(f10);
    fputc('\n', stdout);
}

/* ------------------------------------------------------------------------------------------ */
/* Group commit: AckOut queues, the writer thread stores batches and acknowledges             */

typedef struct job {
    struct job *next;
    uint64_t conn, seq;
    uint64_t num;     /* file number of the temporary name */
    int fd;           /* the temporary file while it is open */
    const char *step; /* NULL while all is well, else the step that failed */
    int err;          /* errno of that step */
    char tmp[64], final[96];
    size_t len;
    uint8_t data[]; /* the message */
} job;

/* Memory held by queued and in-progress messages; AckOut waits past either bound (and then
 * the library stops reading). A single message larger than the byte bound still goes alone. */
#define QUEUE_MAX_BYTES ((size_t)64 << 20)
#define QUEUE_MAX_COUNT 4096
/* Messages per batch: each keeps a file open until the batch is synced. */
#define BATCH_MAX 512
/* Shutdown: how long the writer may take to finish and acknowledge what is queued, and how
 * long to wait for it to exit, counted from the signal (the contract is exit within 5 s). */
#define DRAIN_MS 3000
#define EXIT_WAIT_MS 4000

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;  /* writer: something queued, or stop */
    pthread_cond_t space; /* AckOut: room in the queue, or closing */
    pthread_cond_t idle;  /* main: nothing queued nor in hand, or the writer exited */
    job *head, *tail;
    size_t bytes, count; /* queued plus in the writer's hands */
    int busy;            /* the writer holds a batch */
    int closing;         /* shutting down: queue nothing more */
    int stop;            /* the writer exits once nothing is queued */
    int exited;
    int started;
    pthread_t thread;
    pthread_mutex_t server_lock; /* held while the writer calls into the server */
    mllp_server *server;         /* NULL once the main thread is about to free it */
} wq = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .server_lock = PTHREAD_MUTEX_INITIALIZER,
};

static size_t job_cost(const job *j) {
    return sizeof *j + j->len;
}

/* Records the first failure of a job (errno is read here). */
static void job_fail(job *j, const char *step) {
    if (!j->step) {
        j->step = step;
        j->err = errno;
    }
}

/* Closes and removes the temporary file of a failed job. */
static void job_discard(job *j) {
    if (j->fd >= 0) close(j->fd);
    j->fd = -1;
    unlinkat(app.dir_fd, j->tmp, 0);
}

/* Stores a batch durably, then prints and acknowledges (or refuses) each message in queue
 * order and frees the jobs. Durability of file data and of names, with as few syncs as the
 * order allows:
 *  1. write every message to its own new temporary file (and start its write-back);
 *  2. fdatasync each file: the data and what is needed to read it back (size, blocks). The
 *     write-back of all files was already started, so on a journaling file system the first
 *     fdatasync commits the allocations of the whole batch and the rest find it done;
 *  3. only then link each file to its final name: a final name never points to data that
 *     is not on disk yet;
 *  4. one fsync of the directory makes every new name (and removed temporary name) durable;
 *  5. acknowledge. */
static void commit_batch(job *batch) {
    int pending = 0;
    for (job *j = batch; j; j = j->next) {
        j->num = next_file_number();
        snprintf(j->tmp, sizeof j->tmp, ".tmp-%ld-%" PRIu64, app.pid, j->num);
        j->fd = openat(app.dir_fd, j->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (j->fd < 0) {
            job_fail(j, "create");
            continue;
        }
        if (write_all(j->fd, j->data, j->len) != 0) {
            job_fail(j, "write");
            job_discard(j);
            continue;
        }
        pending++;
    }
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
    /* A hint: start the write-back of every file now, so the fdatasyncs below overlap instead
     * of each allocating and committing on its own. Errors show in fdatasync. */
    for (job *j = batch; j && pending > 1; j = j->next)
        if (!j->step && j->len > 0) (void)sync_file_range(j->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
    for (job *j = batch; j && pending; j = j->next) {
        if (j->step) continue;
        if (fdatasync(j->fd) != 0) {
            job_fail(j, "fsync");
            job_discard(j);
            continue;
        }
        int fd = j->fd;
        j->fd = -1;
        if (close(fd) != 0) {
            job_fail(j, "close");
            job_discard(j);
        }
    }
    int named = 0;
    for (job *j = batch; j; j = j->next) {
        if (j->step) continue;
        if (link_final(j->tmp, j->num, j->conn, j->seq, j->final, sizeof j->final) != 0) {
            job_fail(j, "link");
            job_discard(j);
            continue;
        }
        named++;
    }
    if (named > 0 && fsync(app.dir_fd) != 0) {
        /* The names may not survive a crash: refuse every message of the batch. */
        int e = errno;
        for (job *j = batch; j; j = j->next) {
            if (j->step) continue;
            unlinkat(app.dir_fd, j->final, 0);
            j->step = "fsync directory";
            j->err = e;
        }
        fsync(app.dir_fd);
    }

    /* Lines first (so a client holding its ACK finds the line printed), then the replies. */
    pthread_mutex_lock(&app.lock);
    for (job *j = batch; j; j = j->next) {
        if (j->step)
            report_store_failure(j->conn, j->seq, j->step, j->err);
        else if (!app.quiet)
            put_message_line(j->conn, j->data, j->len);
    }
    if (!app.quiet) fflush(stdout);
    pthread_mutex_unlock(&app.lock);
    pthread_mutex_lock(&wq.server_lock);
    for (job *j = batch; j; j = j->next) {
        /* MLLP_ERR_NO_SUCH_CONNECTION: the client left; the message is stored, not acknowledged. */
        if (wq.server)
            mllp_server_acknowledge(wq.server, j->conn, j->seq, j->step ? 0 : 1, MLLP_REJECT_AE);
    }
    pthread_mutex_unlock(&wq.server_lock);
}

static void *writer_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&wq.lock);
    for (;;) {
        while (!wq.head && !wq.stop) {
            wq.busy = 0;
            pthread_cond_broadcast(&wq.idle);
            pthread_cond_wait(&wq.work, &wq.lock);
        }
        if (!wq.head) break;
        /* Take what is queued (up to BATCH_MAX): everything that arrived while the previous
         * batch was being synced is committed together. */
        job *batch = wq.head, *last = wq.head;
        size_t n = 1;
        while (last->next && n < BATCH_MAX) {
            last = last->next;
            n++;
        }
        wq.head = last->next;
        if (!wq.head) wq.tail = NULL;
        last->next = NULL;
        wq.busy = 1;
        pthread_mutex_unlock(&wq.lock);

        commit_batch(batch);
        size_t bytes = 0;
        while (batch) {
            job *next = batch->next;
            bytes += job_cost(batch);
            free(batch);
            batch = next;
        }

        pthread_mutex_lock(&wq.lock);
        wq.bytes -= bytes;
        wq.count -= n;
        pthread_cond_broadcast(&wq.space);
    }
    wq.busy = 0;
    wq.exited = 1;
    pthread_cond_broadcast(&wq.idle);
    pthread_mutex_unlock(&wq.lock);
    return NULL;
}

static void writer_start(mllp_server *server) {
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0 || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0)
        die_usage("cannot set up the writer thread");
    if (pthread_cond_init(&wq.work, &attr) != 0 || pthread_cond_init(&wq.space, &attr) != 0 ||
        pthread_cond_init(&wq.idle, &attr) != 0)
        die_usage("cannot set up the writer thread");
    pthread_condattr_destroy(&attr);
    wq.server = server;
    int rc = pthread_create(&wq.thread, NULL, writer_main, NULL);
    if (rc != 0) die_usage("cannot start the writer thread: %s", strerror(rc));
    wq.started = 1;
}

static struct timespec after_ms(const struct timespec *t0, long ms) {
    struct timespec t = *t0;
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* AckOut with --out-dir: queue a copy for the writer and leave the decision open. */
static void queue_message(mllp_ack_out_event *ev) {
    size_t n = ev->message_len;
    job *j = malloc(sizeof *j + n);
    if (!j) {
        fprintf(stderr, "error: out of memory storing message %" PRIu64 " of connection %" PRIu64
                        "; refusing it\n", ev->message_seq, ev->connection_id);
        ev->accept = 0;
        ev->reject_code = MLLP_REJECT_AE;
        return;
    }
    *j = (job){.conn = ev->connection_id, .seq = ev->message_seq, .fd = -1, .len = n};
    if (n > 0) memcpy(j->data, ev->message, n);
    size_t cost = job_cost(j);
    pthread_mutex_lock(&wq.lock);
    while (!wq.closing && wq.count > 0 &&
           (wq.count >= QUEUE_MAX_COUNT || wq.bytes + cost > QUEUE_MAX_BYTES))
        pthread_cond_wait(&wq.space, &wq.lock);
    if (wq.closing) {
        /* Shutting down: not stored, never acknowledged; the connection closes unanswered. */
        pthread_mutex_unlock(&wq.lock);
        free(j);
        ev->defer = 1;
        return;
    }
    if (wq.tail)
        wq.tail->next = j;
    else
        wq.head = j;
    wq.tail = j;
    wq.bytes += cost;
    wq.count++;
    pthread_cond_signal(&wq.work);
    pthread_mutex_unlock(&wq.lock);
    ev->defer = 1;
}

/* Shutdown, step 1 (before the connections close): queue nothing more and give the writer
 * until `t0` + DRAIN_MS to store and acknowledge what is queued. */
static void writer_drain(const struct timespec *t0) {
    if (!wq.started) return;
    struct timespec deadline = after_ms(t0, DRAIN_MS);
    pthread_mutex_lock(&wq.lock);
    wq.closing = 1;
    pthread_cond_broadcast(&wq.space);
    while ((wq.head || wq.busy) && !wq.exited)
        if (pthread_cond_timedwait(&wq.idle, &wq.lock, &deadline) == ETIMEDOUT) break;
    pthread_mutex_unlock(&wq.lock);
}

/* Shutdown, step 2 (before the server is freed): the writer no longer calls into the server,
 * exits when done, and is joined if that happens by `t0` + EXIT_WAIT_MS. Returns 1 when
 * joined (else it is still syncing a slow disk; exit ends it, its file under a hidden
 * temporary name at worst). */
static int writer_stop(const struct timespec *t0) {
    if (!wq.started) return 1;
    pthread_mutex_lock(&wq.server_lock);
    wq.server = NULL;
    pthread_mutex_unlock(&wq.server_lock);
    struct timespec deadline = after_ms(t0, EXIT_WAIT_MS);
    pthread_mutex_lock(&wq.lock);
    wq.stop = 1;
    pthread_cond_signal(&wq.work);
    while (!wq.exited)
        if (pthread_cond_timedwait(&wq.idle, &wq.lock, &deadline) == ETIMEDOUT) break;
    int exited = wq.exited;
    pthread_mutex_unlock(&wq.lock);
    if (exited) pthread_join(wq.thread, NULL);
    return exited;
}

/* ------------------------------------------------------------------------------------------ */
/* Per message                                                                                */

enum { ACCEPTED, REJECTED_INVALID, REJECTED_STORAGE };

static int rejected_as_invalid(uint64_t conn, uint64_t seq, const uint8_t *m, size_t n) {
    if (!app.reject_invalid || looks_like_hl7(m, n)) return 0;
    if (!app.quiet) {
        pthread_mutex_lock(&app.lock);
        fprintf(stderr, "rejected: message %" PRIu64 " of connection %" PRIu64
                        " (%zu bytes) does not begin with MSH, FHS or BHS\n",
                seq, conn, n);
        pthread_mutex_unlock(&app.lock);
    }
    return 1;
}

/* Validates, stores and prints one complete message, exactly once, synchronously: called from
 * AckOut without --out-dir, or from EndTransfer when nothing is sent back. */
static int handle_message(uint64_t conn, uint64_t seq, const uint8_t *m, size_t n) {
    if (rejected_as_invalid(conn, seq, m, n)) return REJECTED_INVALID;
    int result = ACCEPTED;
    pthread_mutex_lock(&app.lock);
    if (app.dir_fd >= 0 && store_message(conn, seq, m, n) != 0) {
        result = REJECTED_STORAGE;
    } else if (!app.quiet) {
        put_message_line(conn, m, n);
        fflush(stdout);
    }
    pthread_mutex_unlock(&app.lock);
    return result;
}

static void on_ack_out(void *user, mllp_ack_out_event *ev) {
    (void)user;
    if (wq.started) {
        /* --out-dir: the writer thread stores and acknowledges (group commit). */
        if (rejected_as_invalid(ev->connection_id, ev->message_seq, ev->message, ev->message_len)) {
            ev->accept = 0;
            ev->reject_code = MLLP_REJECT_AR;
        } else {
            queue_message(ev);
        }
        return;
    }
    switch (handle_message(ev->connection_id, ev->message_seq, ev->message, ev->message_len)) {
    case ACCEPTED:
        break;
    case REJECTED_INVALID:
        ev->accept = 0;
        ev->reject_code = MLLP_REJECT_AR;
        break;
    default:
        ev->accept = 0;
        ev->reject_code = MLLP_REJECT_AE;
        break;
    }
}

/* Ack mode none: AckOut does not fire, so gather the message from Transfer events. */

static accumulator *find_acc(uint64_t id, int create) {
    for (size_t i = 0; i < app.acc_count; i++)
        if (app.acc[i].id == id) return &app.acc[i];
    if (!create) return NULL;
    if (app.acc_count == app.acc_cap) {
        size_t cap = app.acc_cap ? app.acc_cap * 2 : 8;
        accumulator *a = realloc(app.acc, cap * sizeof *a);
        if (!a) return NULL;
        app.acc = a;
        app.acc_cap = cap;
    }
    accumulator *a = &app.acc[app.acc_count++];
    *a = (accumulator){.id = id};
    return a;
}

static void drop_acc(uint64_t id) {
    for (size_t i = 0; i < app.acc_count; i++) {
        if (app.acc[i].id != id) continue;
        free(app.acc[i].buf);
        app.acc[i] = app.acc[--app.acc_count];
        return;
    }
}

static void on_start_transfer(void *user, const mllp_transfer_boundary_event *ev) {
    (void)user;
    pthread_mutex_lock(&app.lock);
    accumulator *a = find_acc(ev->connection_id, 1);
    if (a) {
        a->len = 0;
        a->failed = 0;
    }
    pthread_mutex_unlock(&app.lock);
}

static void on_transfer(void *user, const mllp_transfer_event *ev) {
    (void)user;
    pthread_mutex_lock(&app.lock);
    accumulator *a = find_acc(ev->connection_id, 1);
    if (a && !a->failed && a->cap - a->len < ev->len) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap - a->len < ev->len) cap *= 2;
        uint8_t *b = realloc(a->buf, cap);
        if (b) {
            a->buf = b;
            a->cap = cap;
        } else {
            a->failed = 1;
        }
    }
    if (a && !a->failed && ev->len > 0) {
        memcpy(a->buf + a->len, ev->data, ev->len);
        a->len += ev->len;
    }
    pthread_mutex_unlock(&app.lock);
}

static void on_end_transfer(void *user, const mllp_transfer_boundary_event *ev) {
    (void)user;
    pthread_mutex_lock(&app.lock);
    accumulator *a = find_acc(ev->connection_id, 0);
    int ok = a && !a->failed;
    /* Take the buffer: handle_message takes the lock itself. */
    uint8_t *buf = a ? a->buf : NULL;
    size_t len = a ? a->len : 0;
    if (a) *a = (accumulator){.id = a->id};
    pthread_mutex_unlock(&app.lock);
    if (ok)
        handle_message(ev->connection_id, ev->message_seq, buf ? buf : (const uint8_t *)"", len);
    else
        fprintf(stderr, "error: out of memory receiving message %" PRIu64 " of connection %" PRIu64
                        "; dropped\n", ev->message_seq, ev->connection_id);
    free(buf);
}

static void on_disconnected(void *user, const mllp_status_event *ev) {
    (void)user;
    pthread_mutex_lock(&app.lock);
    drop_acc(ev->connection_id);
    pthread_mutex_unlock(&app.lock);
}

static void on_error(void *user, const mllp_error_event *ev) {
    (void)user;
    if (app.quiet) return;
    if (ev->connection_id)
        fprintf(stderr, "error: %d %s (connection %" PRIu64 ")\n", ev->error_code,
                ev->description, ev->connection_id);
    else
        fprintf(stderr, "error: %d %s\n", ev->error_code, ev->description);
}

/* ------------------------------------------------------------------------------------------ */
/* Setup                                                                                      */

/* Reads a Config setting (buffer rule) into a malloc'd string, or NULL. */
static char *config_get(mllp_server *s, const char *name) {
    size_t len = 0;
    int rc = mllp_server_config(s, name, NULL, &len);
    if (rc != MLLP_ERR_BUFFER_TOO_SMALL || len == 0) return NULL;
    char *buf = malloc(len);
    if (buf && mllp_server_config(s, name, buf, &len) != MLLP_OK) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

static char *local_host(mllp_server *s) {
    size_t len = 0;
    if (mllp_server_get_local_host(s, NULL, &len) != MLLP_ERR_BUFFER_TOO_SMALL) return NULL;
    char *buf = malloc(len);
    if (buf && mllp_server_get_local_host(s, buf, &len) != MLLP_OK) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

static long parse_long(const char *opt, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || x < lo || x > hi)
        die_usage("%s: invalid value '%s' (expected %ld-%ld)", opt, v, lo, hi);
    return x;
}

typedef struct {
    const char *host;
    long port;
    long version;
    const char *ack; /* NULL = the library's default for the version */
    const char *out_dir;
    const char **configs;
    size_t config_count;
    const char *tls_cert, *tls_key, *client_ca;
} options;

static void parse_args(int argc, char **argv, options *o) {
    o->host = "127.0.0.1";
    o->port = 2575;
    o->version = 2;
    o->configs = calloc((size_t)argc, sizeof *o->configs);
    if (!o->configs) die_usage("out of memory");
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(USAGE, stdout);
            exit(0);
        }
        if (strcmp(arg, "--reject-invalid") == 0) {
            app.reject_invalid = 1;
            continue;
        }
        if (strcmp(arg, "--quiet") == 0) {
            app.quiet = 1;
            continue;
        }
        /* Options with a value: "--opt VALUE" or "--opt=VALUE". */
        static const char *const with_value[] = {"--host",    "--port",     "--version",
                                                 "--ack",     "--out-dir",  "--config",
                                                 "--tls-cert", "--tls-key", "--client-ca"};
        const char *name = NULL, *value = NULL;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) {
            size_t n = strlen(with_value[k]);
            if (strncmp(arg, with_value[k], n) != 0) continue;
            if (arg[n] == '\0') {
                if (i + 1 >= argc) die_usage("%s needs a value (see --help)", with_value[k]);
                name = with_value[k];
                value = argv[++i];
            } else if (arg[n] == '=') {
                name = with_value[k];
                value = arg + n + 1;
            } else {
                continue;
            }
            break;
        }
        if (!name) die_usage("unknown argument '%s' (see --help)", arg);
        if (strcmp(name, "--host") == 0) {
            o->host = value;
        } else if (strcmp(name, "--port") == 0) {
            o->port = parse_long(name, value, 0, 65535);
        } else if (strcmp(name, "--version") == 0) {
            o->version = parse_long(name, value, 1, 2);
        } else if (strcmp(name, "--ack") == 0) {
            if (strcasecmp(value, "mllp") == 0)
                o->ack = "AckMode=MLLP";
            else if (strcasecmp(value, "hl7") == 0)
                o->ack = "AckMode=HL7";
            else if (strcasecmp(value, "none") == 0)
                o->ack = "AckMode=None";
            else
                die_usage("--ack: invalid value '%s' (expected mllp, hl7 or none)", value);
        } else if (strcmp(name, "--out-dir") == 0) {
            o->out_dir = value;
        } else if (strcmp(name, "--config") == 0) {
            const char *eq = strchr(value, '=');
            if (!eq || eq == value) die_usage("--config: expected KEY=VALUE, got '%s'", value);
            o->configs[o->config_count++] = value;
        } else if (strcmp(name, "--tls-cert") == 0) {
            o->tls_cert = value;
        } else if (strcmp(name, "--tls-key") == 0) {
            o->tls_key = value;
        } else {
            o->client_ca = value;
        }
    }
    if (o->client_ca && !o->tls_cert) die_usage("--client-ca requires --tls-cert and --tls-key");
    if (!o->tls_cert != !o->tls_key) die_usage("--tls-cert and --tls-key must be given together");
}

static void check(int rc, const char *what) {
    if (rc != MLLP_OK) {
        const char *msg = mllp_last_error_message();
        die_usage("%s: %s", what, msg[0] ? msg : mllp_error_description(rc));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* TLS                                                                                        */

/* Reads a whole (text) file, NUL-terminated; exits 2 with one line on stderr when it cannot. */
static char *read_text_file(const char *opt, const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) die_usage("%s %s: cannot read: %s", opt, path, strerror(errno));
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    if (!buf) die_usage("out of memory");
    for (;;) {
        if (cap - len < 4096) {
            if (cap > ((size_t)64 << 20)) die_usage("%s %s: file too large", opt, path);
            char *b = realloc(buf, cap * 2);
            if (!b) die_usage("out of memory");
            buf = b;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
    }
    int err = ferror(f);
    int e = errno;
    fclose(f);
    if (err) die_usage("%s %s: cannot read: %s", opt, path, strerror(e));
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

/* --tls-cert/--tls-key: SSLCert from the two PEM files (one PEM key blob), SSLEnabled.
 * --client-ca: SSLClientCACerts (the file's PEM text) and SSLAuthenticateClients; no
 * SSLClientAuthentication callback, so the library's verdict stands: a client without a
 * certificate that chains to one of those CAs (and is valid now) is refused.
 * Problems the library finds later (expired certificate, key not matching) come from
 * mllp_server_start_listening. */
static void setup_tls(mllp_server *server, const options *o) {
    size_t cert_len, key_len;
    char *cert_pem = read_text_file("--tls-cert", o->tls_cert, &cert_len);
    char *key_pem = read_text_file("--tls-key", o->tls_key, &key_len);
    if (!strstr(cert_pem, "-----BEGIN CERTIFICATE-----"))
        die_usage("--tls-cert %s: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
                  o->tls_cert);
    if (!strstr(key_pem, "PRIVATE KEY-----"))
        die_usage("--tls-key %s: no PEM private key in the file", o->tls_key);
    size_t blob_len = cert_len + 1 + key_len;
    char *blob = malloc(blob_len + 1);
    if (!blob) die_usage("out of memory");
    memcpy(blob, cert_pem, cert_len);
    blob[cert_len] = '\n';
    memcpy(blob + cert_len + 1, key_pem, key_len);
    blob[blob_len] = '\0';
    mllp_certificate *cert = NULL;
    int rc = mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, (const uint8_t *)blob, blob_len, NULL,
                                   "*", &cert);
    /* the key's bytes are not kept around longer than needed */
    memset(blob, 0, blob_len);
    memset(key_pem, 0, key_len);
    free(blob);
    free(key_pem);
    free(cert_pem);
    if (rc != MLLP_OK) {
        const char *msg = mllp_last_error_message();
        die_usage("--tls-cert %s / --tls-key %s: %s (%d)", o->tls_cert, o->tls_key,
                  msg[0] ? msg : mllp_error_description(rc), rc);
    }
    check(mllp_server_set_ssl_cert(server, cert), "--tls-cert");
    mllp_certificate_free(cert); /* the server keeps its own reference */
    check(mllp_server_set_ssl_enabled(server, 1), "--tls-cert");

    if (o->client_ca) {
        char *ca = read_text_file("--client-ca", o->client_ca, NULL);
        if (!strstr(ca, "-----BEGIN CERTIFICATE-----"))
            die_usage("--client-ca %s: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
                      o->client_ca);
        static const char key[] = "SSLClientCACerts=";
        size_t n = strlen(key) + strlen(ca) + 1;
        char *setting = malloc(n);
        if (!setting) die_usage("out of memory");
        snprintf(setting, n, "%s%s", key, ca);
        rc = mllp_server_config(server, setting, NULL, NULL);
        free(setting);
        free(ca);
        if (rc != MLLP_OK) {
            const char *msg = mllp_last_error_message();
            die_usage("--client-ca %s: %s (%d)", o->client_ca,
                      msg[0] ? msg : mllp_error_description(rc), rc);
        }
        check(mllp_server_set_ssl_authenticate_clients(server, 1), "--client-ca");
    }
}

int main(int argc, char **argv) {
    options o = {0};
    app.pid = (long)getpid();
    parse_args(argc, argv, &o);

    /* Signals: SIGINT/SIGTERM blocked here, before the library starts a thread (threads
     * inherit the mask), and taken synchronously with sigwait below. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &stop_signals, NULL) != 0) die_usage("cannot block signals");
    signal(SIGPIPE, SIG_IGN);

    if (o.out_dir) open_out_dir(o.out_dir);

    mllp_server *server = mllp_server_new();
    if (!server) die_usage("out of memory");
    startup_server = server;
    check(mllp_server_set_local_host(server, o.host), "--host");
    check(mllp_server_set_local_port(server, (uint16_t)o.port), "--port");
    check(mllp_server_set_version(server, (int)o.version), "--version");
    if (o.ack) check(mllp_server_config(server, o.ack, NULL, NULL), "--ack");
    for (size_t i = 0; i < o.config_count; i++) {
        int rc = mllp_server_config(server, o.configs[i], NULL, NULL);
        if (rc != MLLP_OK) {
            const char *msg = mllp_last_error_message();
            die_usage("--config %s: %s (%d)", o.configs[i], msg[0] ? msg : mllp_error_description(rc),
                      rc);
        }
    }

    if (o.tls_cert) setup_tls(server, &o);

    /* Where each message is handled exactly once: AckOut when an acknowledgement follows,
     * EndTransfer when none does (AckOut never fires then). Read the mode back from the
     * library, which derives it from Version and AckMode (also when set with --config). */
    char *mode = config_get(server, "AckMode");
    char *event_mode = config_get(server, "EventMode");
    app.ack_none = mode && strcasecmp(mode, "None") == 0;
    int do_events = event_mode && strcasecmp(event_mode, "DoEvents") == 0;
    free(mode);
    free(event_mode);
    if (app.ack_none) {
        mllp_server_on_start_transfer(server, on_start_transfer);
        mllp_server_on_transfer(server, on_transfer);
        mllp_server_on_end_transfer(server, on_end_transfer);
    } else {
        mllp_server_on_ack_out(server, on_ack_out);
        if (app.dir_fd >= 0) writer_start(server); /* group commit */
    }
    mllp_server_on_disconnected(server, on_disconnected);
    mllp_server_on_error(server, on_error);

    /* Hold the lock so no message line can come before the "listening" line. */
    pthread_mutex_lock(&app.lock);
    int rc = mllp_server_start_listening(server);
    if (rc != MLLP_OK) {
        const char *msg = mllp_last_error_message();
        if (o.tls_cert && rc == MLLP_ERR_CERTIFICATE)
            /* expired or not yet valid certificate, key not matching, bad client CA list */
            fprintf(stderr, PROG ": cannot listen with TLS (--tls-cert %s, --tls-key %s%s%s): %s (%d)\n",
                    o.tls_cert, o.tls_key, o.client_ca ? ", --client-ca " : "",
                    o.client_ca ? o.client_ca : "", msg[0] ? msg : mllp_error_description(rc), rc);
        else
            fprintf(stderr, PROG ": cannot listen on %s:%ld: %s (%d)\n", o.host, o.port,
                    msg[0] ? msg : mllp_error_description(rc), rc);
        pthread_mutex_unlock(&app.lock);
        mllp_server_free(server);
        free(o.configs);
        return EXIT_USAGE;
    }
    uint16_t port = 0;
    mllp_server_get_local_port(server, &port);
    char *host = local_host(server);
    const char *h = host ? host : o.host;
    if (strchr(h, ':'))
        printf("listening on [%s]:%u\n", h, (unsigned)port);
    else
        printf("listening on %s:%u\n", h, (unsigned)port);
    fflush(stdout);
    free(host);
    pthread_mutex_unlock(&app.lock);

    int sig = 0;
    if (do_events) {
        /* Events are delivered here, on the main thread, between checks for a signal. */
        const struct timespec zero = {0, 0};
        for (;;) {
            mllp_server_do_events(server, 100, NULL);
            sig = sigtimedwait(&stop_signals, NULL, &zero);
            if (sig > 0) break;
        }
    } else {
        while (sigwait(&stop_signals, &sig) != 0) {
        }
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!app.quiet) {
        pthread_mutex_lock(&app.lock);
        fprintf(stderr, PROG ": %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        pthread_mutex_unlock(&app.lock);
    }

    /* Stop listening; let the writer store and acknowledge what is already queued (its
     * replies are queued before the shutdown below, so they are flushed before the
     * connections close); then close every connection. free waits for the reactor thread, so
     * a message being stored in a callback is finished (and acknowledged or not) first. */
    mllp_server_stop_listening(server);
    writer_drain(&t0);
    mllp_server_shutdown(server);
    if (do_events) mllp_server_do_events(server, 0, NULL);
    int joined = writer_stop(&t0);
    rc = mllp_server_free(server);
    if (rc != MLLP_OK) fprintf(stderr, PROG ": mllp_server_free: %d\n", rc);

    for (size_t i = 0; i < app.acc_count; i++) free(app.acc[i].buf);
    free(app.acc);
    free(o.configs);
    if (app.dir_fd >= 0 && joined) close(app.dir_fd);
    return 0;
}
