/*
 * mllp-listen - an MLLP (HL7 v2 over TCP) receiver built on the public C API of libmllp.
 *
 *   mllp-listen [--host ADDR] [--port N] [--version 1|2] [--ack mllp|hl7|none] [--out-dir DIR]
 *               [--config KEY=VALUE]... [--tls-cert FILE --tls-key FILE] [--client-ca FILE]
 *               [--client-crl FILE]
 *               [--reject-invalid] [--dedupe] [--batch] [--quiet]
 *               [--pg CONNINFO [--pg-table NAME] [--pg-batch N] [--pg-group N] [--pg-timeout S]]
 *               [--metrics ADDR:PORT] [--drain-timeout S] [--log-format text|json]
 *
 * Stdout: "listening on HOST:PORT", then one line per accepted message:
 *   <connection-id> <byte-count> <MSH-9 or -> <MSH-10 or ->
 * With --out-dir each accepted message (the bytes between start and end block) is written to
 * its own file, fsynced and renamed into place (directory fsynced too) before it is
 * acknowledged. SIGTERM drains (see "Connections and the drain"), SIGINT shuts down at once;
 * both exit 0. SIGHUP re-reads the TLS files (--tls-cert, --tls-key, --client-ca, --client-crl)
 * and applies them to new connections; a bad file keeps the old configuration. Usage errors, a
 * port in use or an unusable DIR exit 2. Every stderr line goes through log_line
 * (--log-format text|json). --metrics: /metrics, /healthz and /readyz over HTTP
 * (libmicrohttpd, MLLP_LISTEN_HTTP).
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
 * the data of the whole batch durable (one syncfs on ext4 and XFS, so one journal commit
 * serves the batch; fdatasync for a batch of one), gives every file its final name, fsyncs
 * the directory once, and only then acknowledges each message
 * (mllp_server_acknowledge) and prints its line. While a batch is being synced, new messages
 * gather for the next one, so many connections share each sync. When the queue is full
 * (bytes or count) AckOut waits, and the library stops reading. With --ack none nothing is
 * acknowledged, so messages are stored synchronously in the Message event as before.
 * Shutdown: stop listening, stop queueing, let the writer finish and acknowledge what is
 * queued (bounded in time), then close every connection. A message that was acknowledged is
 * on disk; one that was not may be lost, never half-stored (final names appear only for
 * complete, synced files).
 *
 * --dedupe: the library's DuplicateWindow (100000 messages) answers a resent message with the
 * acknowledgement its original got; with --out-dir the window also survives a restart through
 * the index DIR/.mllp-dedupe (see "--dedupe with --out-dir" below for its format and the
 * crash reasoning). --batch: ProcessBatch, each message of an FHS/BHS batch is delivered,
 * stored and printed on its own; the library sends the one batch reply.
 * --ack hl7 follows MSH-15/16 (enhanced mode): the library sends the accept acknowledgement
 * (CA/CE/CR) as MSH-15 says; mllp-listen, the application, sends the application
 * acknowledgement MSH-16 asks for (mllp_server_send_app_ack: AA once the message is stored,
 * AE when it could not be) after the accept acknowledgement, from the writer thread, which
 * then runs also without --out-dir.
 *
 * --pg CONNINFO: a PostgreSQL table instead of --out-dir, one row per message, committed in
 * groups across connections before the acknowledgements leave; duplicates are answered from
 * the table (see the --pg section). Built when CMake finds libpq (MLLP_LISTEN_PG).
 *
 * C11 + POSIX.1-2008; on Linux also sync_file_range (a hint), syncfs, renameat2 and flock
 * (--out-dir, see commit_batch and remove_leftovers).
 */
#if defined(__linux__)
#define _GNU_SOURCE /* sync_file_range, syncfs, renameat2, flock */
#endif
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
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
#if defined(__linux__)
#include <sys/file.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#endif

#include "mllp.h"
#ifdef MLLP_LISTEN_PG
#include <libpq-fe.h>
#endif
#ifdef MLLP_LISTEN_HTTP
#include <microhttpd.h>
#include <netdb.h>
#include <sys/socket.h>
#endif

#define PROG "mllp-listen"
#define EXIT_USAGE 2

static const char USAGE[] =
    "usage: " PROG " [--host ADDR] [--port N] [--version 1|2] [--ack mllp|hl7|none]\n"
    "                   [--out-dir DIR] [--config KEY=VALUE]... [--tls-cert FILE --tls-key FILE]\n"
    "                   [--client-ca FILE] [--client-crl FILE] [--reject-invalid] [--dedupe]\n"
    "                   [--batch] [--quiet]\n"
    "                   [--pg CONNINFO [--pg-table NAME] [--pg-batch N] [--pg-group N]\n"
    "                    [--pg-timeout S]]\n"
    "                   [--metrics ADDR:PORT] [--drain-timeout S] [--log-format text|json]\n"
    "                   [--idle-timeout S] [--max-buffered BYTES]\n"
    "\n"
    "Receives HL7 v2 messages over MLLP and acknowledges them.\n"
    "\n"
    "  --host ADDR         interface to listen on (default 127.0.0.1; \"\" = all)\n"
    "  --port N            TCP port (default 2575; 0 = any free port)\n"
    "  --version 1|2       MLLP version (default 2)\n"
    "  --ack MODE          mllp: commit ACK/NAK block (default for version 2)\n"
    "                      hl7:  HL7 ACK message (MSA-1 AA/AE/AR); a message with MSH-15\n"
    "                            or MSH-16 valued (enhanced mode) gets an accept ACK\n"
    "                            (CA/CE/CR) as MSH-15 says (AL/empty always, NE never, ER\n"
    "                            on error, SU on success), then, when MSH-16 asks for one,\n"
    "                            an application ACK as a message of its own (AA once\n"
    "                            stored, AE if it could not be)\n"
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
    "  --client-crl FILE   refuse client certificates revoked by the CRLs in FILE (PEM or\n"
    "                      DER; requires --client-ca); an expired CRL is reported\n"
    "  --reject-invalid    refuse (NAK / AR) messages not starting with MSH, FHS or BHS\n"
    "                      followed by a field separator\n"
    "  --dedupe            answer a resent message (same MSH-3, MSH-4, MSH-10 and bytes)\n"
    "                      with its original acknowledgement, without delivering or\n"
    "                      storing it again (last 100000 messages); with --out-dir this\n"
    "                      survives restarts (index DIR/.mllp-dedupe); needs\n"
    "                      acknowledgements (not --ack none)\n"
    "  --batch             split FHS/BHS batches: each message is stored and printed on\n"
    "                      its own; the batch gets one reply (ACK/NAK, or an HL7 batch ACK)\n"
    "  --pg CONNINFO       store each accepted message as a row of a PostgreSQL table\n"
    "                      (libpq connection string or postgresql:// URI), committed\n"
    "                      before it is acknowledged; a resent message (same MSH-3, MSH-4,\n"
    "                      MSH-10 and SHA-256) is stored once and gets its original\n"
    "                      acknowledgement, across every receiver sharing the table\n"
    "  --pg-table NAME     the table, created if missing (default hl7_message)\n"
    "  --pg-batch N        at most N messages per group commit (default 500)\n"
    "  --pg-group N        at most N messages per transaction (default: the whole group;\n"
    "                      1 = one transaction per message)\n"
    "  --pg-timeout S      refuse (NAK / AE) a message not committed within S seconds of\n"
    "                      its arrival (default 5); the database being down or slow is\n"
    "                      an outage, not an error: mllp-listen keeps reconnecting\n"
    "  --metrics ADDR:PORT serve /metrics (Prometheus text), /healthz and /readyz over\n"
    "                      HTTP on that address only (port 0: any free one, named on\n"
    "                      stderr); needs a build with libmicrohttpd\n"
    "  --drain-timeout S   on SIGTERM, wait up to S seconds (default 10) for connections in\n"
    "                      the middle of a message to finish it\n"
    "  --log-format F      stderr lines as text (default) or json (one object per line:\n"
    "                      time, level, connection, event, code, message)\n"
    "  --idle-timeout S    close connections without traffic for S seconds (IdleTimeout;\n"
    "                      default 0 = never)\n"
    "  --max-buffered BYTES  bound on partial-message bytes held across all connections\n"
    "                      (MaxBufferedBytes, default 1 GiB); past it the connections\n"
    "                      holding the most are closed (error 2013)\n"
    "  --quiet             no per-message lines, no error lines\n"
    "  --help              show this help\n"
    "\n"
    "Stdout: \"listening on HOST:PORT\", then per accepted message\n"
    "  <connection-id> <byte-count> <MSH-9 or -> <MSH-10 or ->\n"
    "(a duplicate answered by --dedupe gets no line; stderr says so unless --quiet)\n"
    "SIGTERM drains (stop listening, answer what was received, close idle connections,\n"
    "wait for messages in progress up to --drain-timeout), then exits 0; SIGINT stops at\n"
    "once (exit 0). SIGHUP re-reads --tls-cert, --tls-key, --client-ca and --client-crl for\n"
    "new connections (one stderr line: reloaded, or why not, the old configuration staying\n"
    "in use). Errors in arguments, a port in use or an\n"
    "unusable DIR or a malformed --pg CONNINFO exit with status 2.\n";

/* ------------------------------------------------------------------------------------------ */
/* State shared by the callbacks. They run one at a time, but the main thread prints the      */
/* "listening" line while the reactor may already run, so output and state go under a lock.  */

typedef struct {
    int quiet;
    int reject_invalid;
    int ack_none;          /* no acknowledgement: handle messages in the Message event, not AckOut */
    int ack_hl7;           /* AckMode=HL7: HL7 ACKs, MSH-15/16, application acknowledgements */
    int dir_fd;            /* --out-dir, opened; -1 without */
    const char *dir;       /* for messages */
    int use_syncfs;        /* a batch's data is synced with one syncfs (see commit_batch) */
    uint64_t file_counter; /* last number used for a stored file (under num_lock) */
    pthread_mutex_t num_lock;
    long pid;
    pthread_mutex_t lock;
} app_state;

static app_state app = {
    .dir_fd = -1,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .num_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* The server, once created: freed on an error exit during start-up, so nothing leaks. */
static mllp_server *startup_server;

/* ------------------------------------------------------------------------------------------ */
/* Logging: every line on stderr goes through log_line                                        */
/*
 * --log-format text (the default): the line as it always was, `prefix` then the message.
 * --log-format json: one object per line, {"time", "level", "connection", "event", "code",
 * "message"}: time RFC 3339 UTC with milliseconds, connection and code null when there is
 * none, message the text without its prefix (invalid UTF-8 replaced, so the line is valid
 * JSON). No line carries message content: at most a message's MSH-10 (its control id).
 */

enum { LOG_TEXT, LOG_JSON };
static int log_format = LOG_TEXT;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/* Length of the valid UTF-8 sequence (not NUL) at p, or 0. */
static size_t utf8_seq(const unsigned char *p) {
    size_t k;
    uint32_t cp, min;
    if (p[0] < 0x80) return p[0] ? 1 : 0;
    if ((p[0] & 0xE0) == 0xC0) {
        k = 1, cp = p[0] & 0x1Fu, min = 0x80;
    } else if ((p[0] & 0xF0) == 0xE0) {
        k = 2, cp = p[0] & 0x0Fu, min = 0x800;
    } else if ((p[0] & 0xF8) == 0xF0) {
        k = 3, cp = p[0] & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t j = 1; j <= k; j++) {
        if ((p[j] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[j] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k + 1;
}

static void json_string(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        unsigned char c = *p;
        size_t k;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", (unsigned)c);
            p++;
        } else if ((k = utf8_seq(p)) > 0) {
            fwrite(p, 1, k, f);
            p += k;
        } else {
            fputs("\\ufffd", f);
            p++;
        }
    }
    fputc('"', f);
}

/* One line on stderr. `level` "error", "warning" or "info"; `conn` 0 and `code` 0: none;
 * `event` a short fixed name; `prefix` begins the text line (not part of the JSON message). */
static void vlog_line(const char *level, uint64_t conn, const char *event, int code,
                      const char *prefix, const char *fmt, va_list ap) {
    if (log_format == LOG_TEXT) {
        pthread_mutex_lock(&log_lock);
        fputs(prefix, stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        pthread_mutex_unlock(&log_lock);
        return;
    }
    char small[512], *msg = small;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n >= (int)sizeof small && (msg = malloc((size_t)n + 1)) != NULL)
        vsnprintf(msg, (size_t)n + 1, fmt, again);
    else if (n >= (int)sizeof small)
        msg = small; /* out of memory: cut short */
    else if (n < 0)
        small[0] = '\0';
    va_end(again);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char when[40];
    size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof when - w, ".%03ldZ", now.tv_nsec / 1000000L);
    char *line = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&line, &len);
    if (f) {
        fprintf(f, "{\"time\":\"%s\",\"level\":\"%s\",\"connection\":", when, level);
        if (conn)
            fprintf(f, "%" PRIu64, conn);
        else
            fputs("null", f);
        fputs(",\"event\":", f);
        json_string(f, event);
        if (code)
            fprintf(f, ",\"code\":%d", code);
        else
            fputs(",\"code\":null", f);
        fputs(",\"message\":", f);
        json_string(f, msg);
        fputs("}\n", f);
        fclose(f);
    }
    pthread_mutex_lock(&log_lock);
    if (line) fwrite(line, 1, len, stderr);
    pthread_mutex_unlock(&log_lock);
    free(line);
    if (msg != small) free(msg);
}

#if defined(__GNUC__)
__attribute__((format(printf, 6, 7)))
#endif
static void log_line(const char *level, uint64_t conn, const char *event, int code,
                     const char *prefix, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog_line(level, conn, event, code, prefix, fmt, ap);
    va_end(ap);
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void die_usage(const char *fmt, ...) {
    va_list ap;
    if (startup_server) {
        mllp_server_free(startup_server);
        startup_server = NULL;
    }
    va_start(ap, fmt);
    vlog_line("error", 0, "usage", 0, PROG ": ", fmt, ap);
    va_end(ap);
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

/* Finds MSH-`k` (k >= 3) in the first MSH segment, split on that segment's own separator.
 * Splitting "MSH|^~\\&|A|B|..." on '|' gives "MSH", MSH-2, MSH-3, ...: piece k is MSH-(k+1).
 * Returns 1 when there is an MSH segment (the field may still be empty), else 0. */
static int msh_field(const uint8_t *m, size_t n, size_t k, span *out) {
    out->p = m;
    out->n = 0;
    for (size_t i = 0; i + 3 < n; i++) {
        if (i > 0 && m[i - 1] != '\r' && m[i - 1] != '\n') continue;
        if (memcmp(m + i, "MSH", 3) != 0 || !is_field_separator(m[i + 3])) continue;
        uint8_t sep = m[i + 3];
        size_t field = 2, start = i + 4;
        for (size_t j = start;; j++) {
            int end_seg = j >= n || m[j] == '\r' || m[j] == '\n';
            if (end_seg || m[j] == sep) {
                if (field == k) {
                    *out = (span){m + start, j - start};
                    return 1;
                }
                if (end_seg) return 1;
                field++;
                start = j + 1;
            }
        }
    }
    return 0;
}

static void msh_fields(const uint8_t *m, size_t n, span *f9, span *f10) {
    msh_field(m, n, 9, f9);
    msh_field(m, n, 10, f10);
}

static int span_is(span s, const char *text) {
    size_t n = strlen(text);
    return s.n == n && strncasecmp((const char *)s.p, text, n) == 0;
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

/* fsync of the directory `path`. Returns 0, or -1 with errno. */
static int fsync_dir_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* mkdir -p, durably: a directory it creates is fsynced, and so is its parent (the entry
 * naming it), before the next one is made, so after a crash DIR is either missing or
 * reachable, never a name that a power cut takes back while messages in it were
 * acknowledged. Directories that already exist are left alone. Returns 0, or -1 with errno
 * and *step ("create" or "fsync"). */
static int make_dirs(const char *path, const char **step) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 1);
    *step = "create";
    if (!tmp) return -1;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        int made = mkdir(tmp, 0777) == 0;
        if (!made && errno != EEXIST) goto fail;
        if (made) {
            /* A prefix that mkdir created never ends in '/' (a doubled or trailing slash names
             * the directory made one step before, EEXIST), so its parent is what precedes its
             * last slash. */
            *step = "fsync";
            if (fsync_dir_path(tmp) != 0) goto fail;
            char *slash = strrchr(tmp, '/');
            int rc;
            if (!slash) {
                rc = fsync_dir_path(".");
            } else if (slash == tmp) {
                rc = fsync_dir_path("/");
            } else {
                *slash = '\0';
                rc = fsync_dir_path(tmp);
                *slash = '/';
            }
            if (rc != 0) goto fail;
            *step = "create";
        }
        tmp[i] = saved;
    }
    free(tmp);
    return 0;
fail: {
    int e = errno;
    free(tmp);
    errno = e;
    return -1;
}
}

/* Leftovers of an earlier run: temporary files are named ".tmp-<pid>-<something>" (messages
 * being stored, the start-up and health probes). A process killed or crashed between
 * creating one and giving it its final name leaves it behind; it was never acknowledged
 * (acknowledgements leave only after the final name is durable), so it is removed, never
 * renamed to a final name. */
static int leftover_name(const char *name) {
    if (strncmp(name, ".tmp-", 5) != 0 || !isdigit((unsigned char)name[5])) return 0;
    const char *p = name + 5;
    while (isdigit((unsigned char)*p)) p++;
    return *p == '-';
}

/* Start-up, before this process creates any temporary file: removes the leftovers (above) in
 * DIR, unless another mllp-listen is using DIR now (its temporary files are live).
 * Which processes use DIR is told by a lock on DIR itself, not by process ids: every
 * mllp-listen holds a shared flock on its open DIR for its whole life; here we first try for
 * the exclusive lock without waiting. Got it: nobody else is running on DIR, so every
 * .tmp-<pid>-* file is a leftover (our own pid included: a restarted container often gets the
 * same pid, and we have created none yet). Not got it: everything is kept (one line says so);
 * the next start-up with DIR to itself removes them. Then we take the shared lock (waiting
 * while another starter holds the exclusive one: it only removes leftovers, and ours do not
 * exist yet). A lock rather than "is that pid alive": pids are reused and mean nothing
 * across pid namespaces (two containers sharing a volume), the lock is released by the
 * kernel whatever way a process ends. Logs one line with the count when there were any. */
static void remove_leftovers(int fd, const char *dir) {
#if defined(__linux__)
    int exclusive = flock(fd, LOCK_EX | LOCK_NB) == 0;
    int lock_err = exclusive ? 0 : errno;
    int dfd = dup(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) die_usage("--out-dir %s: cannot list: %s", dir, strerror(errno));
    rewinddir(d);
    size_t removed = 0, kept = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!leftover_name(e->d_name)) continue;
        if (!exclusive)
            kept++;
        else if (unlinkat(fd, e->d_name, 0) == 0)
            removed++;
        else
            failed++;
    }
    closedir(d);
    /* Durable removal is not needed for safety (a removal lost in a crash is redone at the
     * next start-up); one fsync keeps that from happening. */
    if (removed > 0) (void)fsync(fd);
    if (removed > 0 || failed > 0)
        log_line("info", 0, "leftovers_removed", 0, "out-dir: ",
                 "%s: removed %zu temporary file(s) left by an earlier run (never acknowledged, "
                 "not given final names)%s",
                 dir, removed, failed ? "; some could not be removed" : "");
    if (kept > 0)
        log_line("info", 0, "leftovers_kept", 0, "out-dir: ",
                 "%s: kept %zu temporary file(s): %s", dir, kept,
                 lock_err == EWOULDBLOCK ? "another mllp-listen is using this directory"
                                         : "cannot lock the directory");
    if (lock_err == 0 || lock_err == EWOULDBLOCK) {
        while (flock(fd, LOCK_SH) != 0 && errno == EINTR) {
        }
    }
#else
    (void)fd;
    (void)dir;
#endif
}

/* Whether the data of a batch of files may be made durable with one syncfs of DIR's file
 * system instead of one fdatasync per file (see commit_batch): only on ext4 and XFS, whose
 * sync_fs commits the journal / forces the log with a cache flush, and only from Linux 5.8,
 * which reports write-back errors of the file system to syncfs (the superblock's errseq,
 * sampled when DIR was opened). Elsewhere, or on an older kernel, fdatasync per file. */
static int syncfs_usable(int fd) {
#if defined(__linux__)
    struct utsname u;
    unsigned major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2) return 0;
    if (major < 5 || (major == 5 && minor < 8)) return 0;
    struct statfs sf;
    if (fstatfs(fd, &sf) != 0) return 0;
    return sf.f_type == 0xEF53 /* EXT4_SUPER_MAGIC (also ext2/3 driven by ext4) */ ||
           sf.f_type == 0x58465342 /* XFS_SUPER_MAGIC */;
#else
    (void)fd;
    return 0;
#endif
}

/* Opens (creating it if missing) the output directory, removes what an earlier crash left in
 * it and proves it writable; starts the file counter after the highest number already used
 * there so nothing is overwritten and names keep sorting in arrival order across runs. */
static void open_out_dir(const char *dir) {
    if (dir[0] == '\0') die_usage("--out-dir: empty path");
    const char *step;
    if (make_dirs(dir, &step) != 0)
        die_usage("--out-dir %s: cannot %s: %s", dir, step, strerror(errno));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die_usage("--out-dir %s: cannot open: %s", dir, strerror(errno));
    remove_leftovers(fd, dir);
    char probe[64];
    snprintf(probe, sizeof probe, ".tmp-%ld-probe", app.pid);
    int pfd = openat(fd, probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (pfd < 0) die_usage("--out-dir %s: not writable: %s", dir, strerror(errno));
    close(pfd);
    unlinkat(fd, probe, 0);

    int dfd = dup(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) die_usage("--out-dir %s: cannot list: %s", dir, strerror(errno));
    rewinddir(d); /* the dup shares fd's offset, which remove_leftovers' listing moved */
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(e->d_name, &end, 10);
        if (errno == 0 && *end == '-' && v > app.file_counter) app.file_counter = v;
    }
    closedir(d);
    app.use_syncfs = syncfs_usable(fd);
    app.dir_fd = fd;
    app.dir = dir;
}

static uint64_t next_file_number(void) {
    pthread_mutex_lock(&app.num_lock);
    uint64_t num = ++app.file_counter;
    pthread_mutex_unlock(&app.num_lock);
    return num;
}

/* Gives the complete (synced, closed) temporary file `tmp` the final name `final`, never
 * replacing an existing file: on Linux one renameat2(RENAME_NOREPLACE) (ext4, XFS, btrfs,
 * tmpfs...); where the file system does not support that flag, link, then remove the
 * temporary name; on a file system without hard links, rename after checking the name is
 * free (we are the only writer of our names, and only one thread names files: the writer
 * thread, or with --ack none the thread delivering events). The directory is not fsynced
 * here. Returns 0, or -1 with errno (EEXIST: the name is taken; the temporary file is then
 * left to the caller). */
static int link_named(const char *tmp, const char *final) {
#if defined(__linux__) && defined(RENAME_NOREPLACE)
    if (renameat2(app.dir_fd, tmp, app.dir_fd, final, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return -1;
#endif
    if (linkat(app.dir_fd, tmp, app.dir_fd, final, 0) == 0) {
        unlinkat(app.dir_fd, tmp, 0);
        return 0;
    }
    if (errno == EEXIST) return -1;
    if (faccessat(app.dir_fd, final, F_OK, 0) == 0) {
        errno = EEXIST;
        return -1;
    }
    return renameat(app.dir_fd, tmp, app.dir_fd, final) == 0 ? 0 : -1;
}

static void final_name(char *final, size_t cap, uint64_t num, uint64_t conn, uint64_t seq) {
    snprintf(final, cap, "%010" PRIu64 "-%" PRIu64 "-%" PRIu64 ".hl7", num, conn, seq);
}

/* Links `tmp` to a new final name, numbered from `num` (the next free number when that one
 * is taken), written to `final`. Returns 0, or -1 with errno. */
static int link_final(const char *tmp, uint64_t num, uint64_t conn, uint64_t seq, char *final,
                      size_t cap) {
    for (int tries = 0;; tries++) {
        final_name(final, cap, num, conn, seq);
        if (link_named(tmp, final) == 0) return 0;
        if (errno != EEXIST || tries >= 1000) return -1;
        num = next_file_number();
    }
}

/* Chooses a final name that is free now, numbered from `num`, for a file that will be linked
 * later (--dedupe records the name before the file gets it). Returns 0, or -1 with errno. */
static int choose_final(uint64_t num, uint64_t conn, uint64_t seq, char *final, size_t cap) {
    for (int tries = 0;; tries++) {
        final_name(final, cap, num, conn, seq);
        struct stat st;
        if (fstatat(app.dir_fd, final, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) return 0;
            return -1;
        }
        if (tries >= 1000) {
            errno = EEXIST;
            return -1;
        }
        num = next_file_number();
    }
}

static void report_store_failure(uint64_t conn, uint64_t seq, const char *step, int err) {
    log_line("error", conn, "store_failed", 0, "error: ",
             "cannot store message %" PRIu64 " of connection %" PRIu64 " in %s (%s: %s); refusing it",
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
/* --dedupe with --out-dir: the duplicate window, kept across restarts                        */
/*
 * The library's DuplicateWindow answers a resent message with its original acknowledgement,
 * but it lives in memory: after a restart (kill -9 included) it is empty. mllp-listen keeps
 * what a database host would keep, and feeds it back through the host-side hook (AckOut,
 * deferred, then mllp_server_acknowledge_with): an index of every message it stored, in the
 * hidden append-only file DIR/.mllp-dedupe.
 *
 * File format: the line "mllp-listen dedupe index 1\n", then one record per stored message:
 *   "<n3> <n4> <n10> <nname> <msglen> <nack> <fnv>\n" <payload> "\n"
 * where the header numbers are decimal, <fnv> is the FNV-1a 32-bit hash of the payload as 8
 * hex digits, and the payload is MSH-3, MSH-4, MSH-10 (raw bytes as received, n3/n4/n10
 * bytes), the stored file's name (nname bytes) and the exact acknowledgement sent (nack
 * bytes, unframed: an HL7 ACK message, or the one byte 0x06 in MLLP mode; 0 bytes when the
 * library decides the reply itself: enhanced mode with MSH-15 NE or ER, where none is sent).
 * Binary-safe: nothing is escaped, the lengths say where each part ends. A record that is
 * cut short or does not match its hash (a crash in the middle of an append) ends the file:
 * start-up truncates it there. At start-up the last DEDUPE_WINDOW records are loaded into an
 * in-memory table (a hash table over a ring, oldest evicted); when the file holds more than
 * twice that many it is rewritten with only those (new file, fsync, rename, fsync DIR).
 *
 * A message hits when a record has its MSH-3, MSH-4 and MSH-10 AND the file the record names
 * holds exactly the message's bytes (compared, not hashed). Then it is answered with the
 * recorded acknowledgement and nothing is stored or printed (a line on stderr says so).
 * Same key with other bytes (a reused control id): stored as a new message. Messages without
 * an MSH segment or with an empty MSH-10 are never recorded nor looked up (the library's rule).
 *
 * Order in a group commit batch (see commit_batch), and why a crash anywhere stores a resent
 * message at most once and answers it with the acknowledgement it got (or would have got):
 *   1. each new message is written to a hidden temporary file and fdatasynced;
 *   2. its final name is chosen (free now; only the writer thread names files) and its
 *      acknowledgement is built (mllp_hl7_build_ack, or 0x06);
 *   3. the records of the batch are appended to the index, and the index fdatasynced;
 *   4. only then each temporary file is linked to its final name, and DIR fsynced;
 *   5. only then the acknowledgements leave (mllp_server_acknowledge_with).
 * - Crash before 3 is durable: no final name exists, nothing was acknowledged; at worst a
 *   record names a file that does not exist. A resend finds no record, or a record whose file
 *   is missing, which counts as no hit: it is stored now, once.
 * - Crash after 3, before 4 is durable: a record names a missing file: the same as above. (If
 *   the name did survive, the file is complete, because it was synced before it was linked:
 *   the resend is a hit and gets the acknowledgement recorded for it, never sent before.)
 * - Crash after 4, before or during 5: file and record exist: the resend is a hit, answered
 *   with the recorded acknowledgement, and no second file appears.
 * A final name is therefore never visible without its record, so no stored message can be
 * stored a second time after a restart; a record without its file is harmless, because a
 * hit needs the file's content. Stale records may name a number a later run reuses; the
 * content comparison keeps them from matching, and start-up also counts file numbers on from
 * the highest one named in the index.
 *
 * Within one run the library itself answers duplicates (from its own DuplicateWindow, which
 * remembers every positive reply given through mllp_server_acknowledge_with, including the
 * hits above), refuses a resend while its original is still undecided on another connection
 * and holds one back on the same connection; so two copies never meet in one batch here.
 * A duplicate is answered with its original (accept) acknowledgement only; an application
 * acknowledgement (--ack hl7, MSH-16) is not sent again.
 *
 * The table is filled before the server starts and afterwards used only by the writer thread.
 */

#define DEDUPE_WINDOW 100000
#define DEDUPE_BUCKETS ((size_t)1 << 18)
#define DEDUPE_FILE ".mllp-dedupe"
#define DEDUPE_MAGIC "mllp-listen dedupe index 1\n"
#define DEDUPE_HEADER_MAX 128

typedef struct {
    uint8_t *blob; /* MSH-3, MSH-4, MSH-10, name, NUL, ack */
    uint64_t hash;
    int32_t next; /* next slot in the bucket's chain, -1 at the end */
    uint32_t l3, l4, l10, lname, lack;
    uint64_t msg_len;
} dd_rec;

typedef struct {
    span f3, f4, f10;
} dd_key;

static struct {
    int enabled; /* --dedupe with --out-dir (and acknowledgements) */
    int fd;      /* the index, open for appending */
    off_t size;  /* its length: where the next record goes (a failed append is cut back) */
    dd_rec *recs; /* ring of DEDUPE_WINDOW slots */
    size_t first, count;
    int32_t *buckets;
    uint64_t hits;
} dd = {.fd = -1};

typedef struct {
    uint8_t *p;
    size_t len, cap;
} dbuf;

static int dbuf_put(dbuf *b, const void *p, size_t n) {
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static uint32_t fnv32(const uint8_t *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static uint64_t dd_hash(const uint8_t *f3, size_t l3, const uint8_t *f4, size_t l4,
                        const uint8_t *f10, size_t l10) {
    uint64_t h = 14695981039346656037ull;
    const uint8_t *parts[3] = {f3, f4, f10};
    size_t lens[3] = {l3, l4, l10};
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < lens[k]; i++) h = (h ^ parts[k][i]) * 1099511628211ull;
        h = (h ^ 0x100u) * 1099511628211ull; /* field boundary */
    }
    return h;
}

/* The key of a message: 0 when it has none (no MSH, empty MSH-10, absurdly long fields). */
static int dd_key_of(const uint8_t *m, size_t n, dd_key *k) {
    *k = (dd_key){{m, 0}, {m, 0}, {m, 0}};
    if (!msh_field(m, n, 3, &k->f3)) return 0;
    msh_field(m, n, 4, &k->f4);
    msh_field(m, n, 10, &k->f10);
    return k->f10.n > 0 && k->f3.n < 65536 && k->f4.n < 65536 && k->f10.n < 65536;
}

static void dd_unchain(size_t slot) {
    dd_rec *r = &dd.recs[slot];
    int32_t *link = &dd.buckets[r->hash & (DEDUPE_BUCKETS - 1)];
    while (*link >= 0 && (size_t)*link != slot) link = &dd.recs[*link].next;
    if (*link >= 0) *link = r->next;
}

/* Adds a record to the table (the oldest goes when it is full). Returns 0, or -1 (memory). */
static int dd_insert(const uint8_t *f3, uint32_t l3, const uint8_t *f4, uint32_t l4,
                     const uint8_t *f10, uint32_t l10, const char *name, uint32_t lname,
                     uint64_t msg_len, const uint8_t *ack, uint32_t lack) {
    size_t total = (size_t)l3 + l4 + l10 + lname + 1 + lack;
    uint8_t *blob = malloc(total ? total : 1);
    if (!blob) return -1;
    uint8_t *w = blob;
    memcpy(w, f3, l3), w += l3;
    memcpy(w, f4, l4), w += l4;
    memcpy(w, f10, l10), w += l10;
    memcpy(w, name, lname), w += lname;
    *w++ = '\0';
    if (lack) memcpy(w, ack, lack);
    if (dd.count == DEDUPE_WINDOW) {
        dd_unchain(dd.first);
        free(dd.recs[dd.first].blob);
        dd.first = (dd.first + 1) % DEDUPE_WINDOW;
        dd.count--;
    }
    size_t slot = (dd.first + dd.count) % DEDUPE_WINDOW;
    dd.count++;
    dd_rec *r = &dd.recs[slot];
    *r = (dd_rec){.blob = blob, .l3 = l3, .l4 = l4, .l10 = l10, .lname = lname, .lack = lack,
                  .msg_len = msg_len};
    r->hash = dd_hash(f3, l3, f4, l4, f10, l10);
    size_t b = r->hash & (DEDUPE_BUCKETS - 1);
    r->next = dd.buckets[b];
    dd.buckets[b] = (int32_t)slot;
    return 0;
}

static const char *dd_name(const dd_rec *r) {
    return (const char *)r->blob + r->l3 + r->l4 + r->l10;
}

static const uint8_t *dd_ack(const dd_rec *r) {
    return r->blob + r->l3 + r->l4 + r->l10 + r->lname + 1;
}

/* 1 when DIR/name is a regular file holding exactly m[0..n). */
static int file_equals(const char *name, const uint8_t *m, size_t n) {
    int fd = openat(app.dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return 0;
    struct stat st;
    int same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == n;
    uint8_t buf[65536];
    size_t off = 0;
    while (same && off < n) {
        ssize_t r = read(fd, buf, n - off < sizeof buf ? n - off : sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || memcmp(buf, m + off, (size_t)r) != 0) same = 0;
        off += r > 0 ? (size_t)r : 0;
    }
    close(fd);
    return same;
}

/* The record of a stored message with this key and exactly these bytes, or NULL. Newest
 * first: the chain starts with the latest record. */
static const dd_rec *dd_lookup(const uint8_t *m, size_t n, const dd_key *k) {
    uint64_t h = dd_hash(k->f3.p, k->f3.n, k->f4.p, k->f4.n, k->f10.p, k->f10.n);
    for (int32_t i = dd.buckets[h & (DEDUPE_BUCKETS - 1)]; i >= 0; i = dd.recs[i].next) {
        const dd_rec *r = &dd.recs[i];
        if (r->hash != h || r->msg_len != n || r->l3 != k->f3.n || r->l4 != k->f4.n ||
            r->l10 != k->f10.n)
            continue;
        const uint8_t *b = r->blob;
        if (memcmp(b, k->f3.p, r->l3) != 0 || memcmp(b + r->l3, k->f4.p, r->l4) != 0 ||
            memcmp(b + r->l3 + r->l4, k->f10.p, r->l10) != 0)
            continue;
        if (file_equals(dd_name(r), m, n)) return r;
    }
    return NULL;
}

/* Appends the record of one message to `out` (the file format above). */
static int dd_serialize(dbuf *out, const uint8_t *f3, size_t l3, const uint8_t *f4, size_t l4,
                        const uint8_t *f10, size_t l10, const char *name, size_t lname,
                        uint64_t msg_len, const uint8_t *ack, size_t lack) {
    dbuf payload = {0};
    int rc = dbuf_put(&payload, f3, l3) | dbuf_put(&payload, f4, l4) |
             dbuf_put(&payload, f10, l10) | dbuf_put(&payload, name, lname) |
             dbuf_put(&payload, ack, lack);
    char head[DEDUPE_HEADER_MAX];
    if (rc == 0) {
        int hn = snprintf(head, sizeof head, "%zu %zu %zu %zu %" PRIu64 " %zu %08" PRIx32 "\n",
                          l3, l4, l10, lname, msg_len, lack, fnv32(payload.p, payload.len));
        rc = dbuf_put(out, head, (size_t)hn) | dbuf_put(out, payload.p, payload.len) |
             dbuf_put(out, "\n", 1);
    }
    free(payload.p);
    return rc ? -1 : 0;
}

/* Appends `b` to the index and makes it durable. On failure the index is cut back to where
 * it was (so a later record never follows a torn one) and -1 is returned with errno. */
static int dd_append(const dbuf *b) {
    if (b->len == 0) return 0;
    ssize_t w;
    size_t done = 0;
    while (done < b->len) {
        w = pwrite(dd.fd, b->p + done, b->len - done, dd.size + (off_t)done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) goto fail;
        done += (size_t)w;
    }
    if (fdatasync(dd.fd) != 0) goto fail;
    dd.size += (off_t)b->len;
    return 0;
fail: {
    int e = errno ? errno : EIO;
    if (ftruncate(dd.fd, dd.size) == 0) (void)fdatasync(dd.fd);
    errno = e;
    return -1;
}
}

/* The leading number of a stored file's name ("0000000042-1-1.hl7" -> 42), 0 if none. */
static uint64_t name_number(const char *name) {
    if (!isdigit((unsigned char)name[0])) return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(name, &end, 10);
    return errno == 0 && *end == '-' ? v : 0;
}

static int valid_record_name(const uint8_t *p, size_t n) {
    if (n == 0 || n > 200 || p[0] == '.') return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '/' || p[i] == '\0') return 0;
    return 1;
}

/* Writes the records now in the table as a new index (DIR/.mllp-dedupe.new, synced, renamed
 * over the old one, DIR synced) and reopens it. Exits 2 when that fails. */
static void dd_rewrite(void) {
    static const char tmp[] = DEDUPE_FILE ".new";
    dbuf b = {0};
    if (dbuf_put(&b, DEDUPE_MAGIC, strlen(DEDUPE_MAGIC)) != 0) die_usage("out of memory");
    for (size_t i = 0; i < dd.count; i++) {
        const dd_rec *r = &dd.recs[(dd.first + i) % DEDUPE_WINDOW];
        const uint8_t *p = r->blob;
        if (dd_serialize(&b, p, r->l3, p + r->l3, r->l4, p + r->l3 + r->l4, r->l10, dd_name(r),
                         r->lname, r->msg_len, dd_ack(r), r->lack) != 0)
            die_usage("out of memory");
    }
    int fd = openat(app.dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, b.p, b.len) != 0 || fsync(fd) != 0 || close(fd) != 0 ||
        renameat(app.dir_fd, tmp, app.dir_fd, DEDUPE_FILE) != 0 || fsync(app.dir_fd) != 0)
        die_usage("--dedupe: %s/%s: cannot rewrite: %s", app.dir, DEDUPE_FILE, strerror(errno));
    free(b.p);
    close(dd.fd);
    dd.fd = openat(app.dir_fd, DEDUPE_FILE, O_RDWR | O_CLOEXEC);
    if (dd.fd < 0) die_usage("--dedupe: %s/%s: cannot open: %s", app.dir, DEDUPE_FILE, strerror(errno));
    struct stat st;
    if (fstat(dd.fd, &st) != 0) die_usage("--dedupe: %s/%s: %s", app.dir, DEDUPE_FILE, strerror(errno));
    dd.size = st.st_size;
}

/* Start-up (after open_out_dir, before the server starts): opens or creates the index, loads
 * its last DEDUPE_WINDOW records, cuts off a torn tail, compacts a long file, and counts file
 * numbers on past every name it holds. Exits 2 when the index is unusable. */
static void dd_open(void) {
    dd.recs = calloc(DEDUPE_WINDOW, sizeof *dd.recs);
    dd.buckets = malloc(DEDUPE_BUCKETS * sizeof *dd.buckets);
    if (!dd.recs || !dd.buckets) die_usage("out of memory");
    for (size_t i = 0; i < DEDUPE_BUCKETS; i++) dd.buckets[i] = -1;

    int created = 0;
    dd.fd = openat(app.dir_fd, DEDUPE_FILE, O_RDWR | O_CLOEXEC);
    if (dd.fd < 0 && errno == ENOENT) {
        dd.fd = openat(app.dir_fd, DEDUPE_FILE, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        created = 1;
    }
    if (dd.fd < 0) die_usage("--dedupe: %s/%s: cannot open: %s", app.dir, DEDUPE_FILE, strerror(errno));
    struct stat st;
    if (fstat(dd.fd, &st) != 0 || !S_ISREG(st.st_mode))
        die_usage("--dedupe: %s/%s: not a regular file", app.dir, DEDUPE_FILE);
    size_t size = (size_t)st.st_size;
    uint8_t *data = malloc(size ? size : 1);
    if (!data) die_usage("--dedupe: %s/%s: out of memory", app.dir, DEDUPE_FILE);
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(dd.fd, data + got, size - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die_usage("--dedupe: %s/%s: cannot read: %s", app.dir, DEDUPE_FILE,
                              r < 0 ? strerror(errno) : "file shrank");
        got += (size_t)r;
    }
    size_t magic = strlen(DEDUPE_MAGIC);
    size_t valid = 0, records = 0;
    if (size >= magic && memcmp(data, DEDUPE_MAGIC, magic) == 0) {
        valid = magic;
    } else if (size > 0 && !(size < magic && memcmp(data, DEDUPE_MAGIC, size) == 0)) {
        die_usage("--dedupe: %s/%s: not an mllp-listen index", app.dir, DEDUPE_FILE);
    }
    uint64_t top = 0;
    while (valid > 0 && valid < size) {
        /* header line */
        size_t i = valid, lim = size - valid < DEDUPE_HEADER_MAX ? size : valid + DEDUPE_HEADER_MAX;
        while (i < lim && data[i] != '\n') i++;
        if (i >= lim) break;
        char head[DEDUPE_HEADER_MAX + 1];
        memcpy(head, data + valid, i - valid);
        head[i - valid] = '\0';
        unsigned long long n3, n4, n10, nname, msglen, nack;
        unsigned int sum;
        char extra;
        if (sscanf(head, "%llu %llu %llu %llu %llu %llu %8x%c", &n3, &n4, &n10, &nname, &msglen,
                   &nack, &sum, &extra) != 7)
            break;
        if (n3 >= 65536 || n4 >= 65536 || n10 >= 65536 || nname > 200 || nack > ((size_t)16 << 20))
            break;
        size_t plen = (size_t)(n3 + n4 + n10 + nname + nack);
        const uint8_t *p = data + i + 1;
        if (size - (i + 1) < plen + 1 || p[plen] != '\n' || fnv32(p, plen) != sum) break;
        const uint8_t *name = p + n3 + n4 + n10;
        if (n10 > 0 && valid_record_name(name, (size_t)nname)) {
            char nm[256];
            memcpy(nm, name, (size_t)nname);
            nm[nname] = '\0';
            uint64_t num = name_number(nm);
            if (num > top) top = num;
            if (dd_insert(p, (uint32_t)n3, p + n3, (uint32_t)n4, p + n3 + n4, (uint32_t)n10, nm,
                          (uint32_t)nname, msglen, name + nname, (uint32_t)nack) != 0)
                die_usage("--dedupe: %s/%s: out of memory", app.dir, DEDUPE_FILE);
        }
        records++;
        valid = i + 1 + plen + 1;
    }
    free(data);
    if (top > app.file_counter) app.file_counter = top;

    if (valid == 0) {
        /* new (or cut short while being created): write the first line */
        if (ftruncate(dd.fd, 0) != 0 ||
            pwrite(dd.fd, DEDUPE_MAGIC, magic, 0) != (ssize_t)magic || fsync(dd.fd) != 0)
            die_usage("--dedupe: %s/%s: cannot write: %s", app.dir, DEDUPE_FILE, strerror(errno));
        valid = magic;
        created = 1;
    } else if (valid < size) {
        /* a torn last record (crash while appending): never acknowledged, cut it off */
        if (ftruncate(dd.fd, (off_t)valid) != 0 || fsync(dd.fd) != 0)
            die_usage("--dedupe: %s/%s: cannot truncate: %s", app.dir, DEDUPE_FILE, strerror(errno));
    }
    if (created && fsync(app.dir_fd) != 0)
        die_usage("--dedupe: %s: cannot fsync: %s", app.dir, strerror(errno));
    dd.size = (off_t)valid;
    if (records > 2 * (size_t)DEDUPE_WINDOW) dd_rewrite();
    dd.enabled = 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections and the drain on SIGTERM                                                       */
/*
 * Per open connection (Connected adds it, Disconnected removes it): how many of its messages
 * wait for a decision (queued for the writer: AckOut deferred), and whether it is closing.
 * SIGTERM drains: the server stops listening (new connections are refused, /readyz says
 * "draining"), then each connection is closed as soon as it is quiescent: nothing pending
 * and no message partly received (mllp_connection_get_receiving). A connection in the middle
 * of a message gets up to --drain-timeout seconds to finish it; its message is stored and
 * acknowledged like any other, then the connection closes. Once a connection is marked
 * closing, nothing more of it is stored (AckOut defers and drops it: never stored without
 * being acknowledged), and mllp_server_disconnect flushes the replies already queued.
 * The check runs where a connection can become quiescent: in the main thread's drain loop
 * (idle ones, those whose message was answered synchronously) and after the writer answered
 * a connection's last pending message (ct_release).
 */

#define CT_BUCKETS 1024

typedef struct conn_entry {
    struct conn_entry *next;
    uint64_t id;
    uint32_t pending; /* deferred, not yet acknowledged */
    int closing;      /* disconnect requested: store nothing more */
} conn_entry;

static struct {
    pthread_mutex_t lock;
    conn_entry *buckets[CT_BUCKETS];
    size_t open;          /* entries */
    int draining;         /* SIGTERM: closing connections as they become quiescent */
    mllp_server *server;  /* set before listening; NULL once shutdown begins */
} ct = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The entry of `id` (added when `add` and missing), or NULL; ct.lock held. */
static conn_entry *ct_find(uint64_t id, int add) {
    conn_entry **b = &ct.buckets[id % CT_BUCKETS];
    for (conn_entry *e = *b; e; e = e->next)
        if (e->id == id) return e;
    if (!add) return NULL;
    conn_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->id = id;
    e->next = *b;
    *b = e;
    ct.open++;
    return e;
}

static void on_connected(void *user, const mllp_status_event *ev) {
    (void)user;
    pthread_mutex_lock(&ct.lock);
    conn_entry *e = ct_find(ev->connection_id, 1);
    /* a connection that got in just before the listener closed is drained like the others */
    if (e && ct.draining && e->pending == 0) e->closing = 1;
    int close_it = e && e->closing;
    pthread_mutex_unlock(&ct.lock);
    if (close_it && ct.server) mllp_server_disconnect(ct.server, ev->connection_id);
}

static void on_disconnected(void *user, const mllp_status_event *ev) {
    (void)user;
    pthread_mutex_lock(&ct.lock);
    for (conn_entry **link = &ct.buckets[ev->connection_id % CT_BUCKETS]; *link; link = &(*link)->next) {
        if ((*link)->id != ev->connection_id) continue;
        conn_entry *e = *link;
        *link = e->next;
        free(e);
        ct.open--;
        break;
    }
    pthread_mutex_unlock(&ct.lock);
}

/* AckOut: 1 when the message may be handled (and, `hold`, counts it as pending until
 * ct_release), 0 when its connection is closing (the message is dropped unanswered). */
static int ct_admit(uint64_t id, int hold) {
    pthread_mutex_lock(&ct.lock);
    conn_entry *e = ct_find(id, 1);
    int ok = !e || !e->closing;
    if (ok && e && hold) e->pending++;
    pthread_mutex_unlock(&ct.lock);
    return ok;
}

static int receiving(uint64_t id) {
    uint8_t r = 0;
    return ct.server && mllp_connection_get_receiving(ct.server, id, &r) == MLLP_OK && r;
}

/* A pending message of `id` was answered (after its acknowledgement was queued). While
 * draining, its connection closes when that was the last one and nothing else arrives. */
static void ct_release(uint64_t id) {
    pthread_mutex_lock(&ct.lock);
    conn_entry *e = ct_find(id, 0);
    if (e && e->pending > 0) e->pending--;
    int check = e && ct.draining && e->pending == 0 && !e->closing;
    pthread_mutex_unlock(&ct.lock);
    if (!check || receiving(id)) return;
    pthread_mutex_lock(&ct.lock);
    e = ct_find(id, 0);
    int close_it = e && e->pending == 0 && !e->closing;
    if (close_it) e->closing = 1;
    pthread_mutex_unlock(&ct.lock);
    if (close_it && ct.server) mllp_server_disconnect(ct.server, id);
}

/* One round of the drain (main thread): closes the quiescent connections; returns how many
 * are still open. In DoEvents mode the events queued so far are delivered between sampling
 * `receiving` and deciding, so a message complete at the sample has reached AckOut. */
static size_t drain_round(mllp_server *server, int do_events) {
    size_t n = 0;
    if (mllp_server_get_connections(server, NULL, &n) != MLLP_ERR_BUFFER_TOO_SMALL || n == 0) {
        if (do_events) mllp_server_do_events(server, 0, NULL);
        return 0;
    }
    n += 16; /* room for a few more */
    uint64_t *ids = malloc(n * sizeof *ids);
    uint8_t *busy = malloc(n);
    if (!ids || !busy || mllp_server_get_connections(server, ids, &n) != MLLP_OK) {
        free(ids);
        free(busy);
        return 1; /* try again next round */
    }
    for (size_t i = 0; i < n; i++) busy[i] = (uint8_t)receiving(ids[i]);
    if (do_events) mllp_server_do_events(server, 0, NULL);
    size_t open = 0;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&ct.lock);
        conn_entry *e = ct_find(ids[i], 1);
        int close_it = 0;
        if (e && !e->closing && !busy[i] && e->pending == 0) e->closing = close_it = 1;
        if (!e || !e->closing) open++;
        pthread_mutex_unlock(&ct.lock);
        if (close_it) mllp_server_disconnect(server, ids[i]);
    }
    free(ids);
    free(busy);
    return open;
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
    int keyed;        /* --dedupe: has a key (MSH-3/4/10), so it is looked up and recorded */
    int duplicate;    /* --dedupe: already stored (a record and its file): answer, store nothing */
    char dup_of[96];  /* the file holding it */
    uint8_t *reply;   /* the acknowledgement to send as is (mllp_server_acknowledge_with);
                         NULL: mllp_server_acknowledge decides */
    size_t reply_len;
    /* --pg */
    struct timespec deadline; /* monotonic: refused when not committed by then */
    int64_t received_us;      /* arrival, microseconds since the epoch */
    char peer[64];
    uint16_t peer_port;
    int decided;              /* answered (under wq.lock), by the writer or the reaper */
    int mine;                 /* the writer answers it (pg_answer) */
    int pg_outcome;           /* in the transaction: new, duplicate, or to be looked up */
    int reply_built;
    int64_t row_id;
    uint8_t *stored_ack;      /* a duplicate's stored acknowledgement */
    size_t stored_ack_len;
    int stored_ack_null;      /* the original's reply was the library's own (MSH-15 NE/ER) */
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

/* Closes a job's complete temporary file; a failed close fails the job (the data may not be
 * what was written) and removes the file. Returns 0, or -1 when the job failed. */
static int job_close(job *j) {
    int fd = j->fd;
    j->fd = -1;
    if (close(fd) == 0) return 0;
    job_fail(j, "close");
    job_discard(j);
    return -1;
}

/* The acknowledgement --dedupe records and then sends for a stored message: 0x06 in MLLP
 * mode; in HL7 mode an ACK built here (mllp_hl7_build_ack, a fresh MSH-10), MSA-1 AA, or in
 * enhanced mode (MSH-15 or MSH-16 valued) the accept acknowledgement CA when MSH-15 says one
 * is sent on success (AL, SU or empty). MSH-15 NE or ER (no accept acknowledgement on
 * success), or any other value: NULL, the library applies its own MSH-15 rule to
 * mllp_server_acknowledge (nothing is sent for NE and ER), and the record holds no bytes. */
static uint8_t *build_reply(const uint8_t *m, size_t n, size_t *len) {
    *len = 0;
    if (!app.ack_hl7) {
        uint8_t *p = malloc(1);
        if (p) {
            p[0] = 0x06;
            *len = 1;
        }
        return p;
    }
    span f15, f16;
    msh_field(m, n, 15, &f15);
    msh_field(m, n, 16, &f16);
    int code = MLLP_ACK_AA;
    if (f15.n > 0 || f16.n > 0) {
        if (!(f15.n == 0 || span_is(f15, "AL") || span_is(f15, "SU"))) return NULL;
        code = MLLP_ACK_CA;
    }
    size_t cap = 512;
    for (int tries = 0; tries < 2; tries++) {
        uint8_t *p = malloc(cap);
        if (!p) return NULL;
        size_t got = cap;
        int rc = mllp_hl7_build_ack(m, n, code, NULL, p, &got);
        if (rc == MLLP_OK) {
            *len = got;
            return p;
        }
        free(p);
        if (rc != MLLP_ERR_BUFFER_TOO_SMALL) break;
        cap = got;
    }
    return NULL; /* cannot build one: the library's own reply, not recorded as bytes */
}

/* Step 2 of commit_batch: makes the data of the batch's `pending` new files durable (and
 * closes them, when `by_syncfs` is not set: commit_batch closed them already then); a file
 * that fails is refused (job_fail) and its temporary name removed.
 *
 * Two or more files on ext4 or XFS (app.use_syncfs; commit_batch sets `by_syncfs`): one
 * syncfs(DIR) for all of them. Before
 * this, each file had its own fdatasync, and on ext4 each fdatasync is a journal commit plus
 * a device cache flush of its own (~140 us here), even when the write-back of all of them
 * had been started together; a batch of 50 cost 50 of them. syncfs (fs/sync.c
 * sync_filesystem) starts the write-back of every dirty inode of the file system, waits for
 * all of it (sync_inodes_sb), then calls the file system's sync_fs with wait: ext4_sync_fs
 * commits the running journal transaction (the blocks allocated for the batch's data, the
 * sizes) and waits for it, the commit carrying the cache flush (or issues a flush itself
 * when there was nothing to commit); xfs_fs_sync_fs forces the log synchronously, the log
 * write carrying the flush (REQ_PREFLUSH|REQ_FUA) that makes the data written before it
 * stable. So when syncfs returns 0, every file's data and what is needed to read it back
 * are on stable storage, for one commit and one flush per batch.
 * Errors: since Linux 5.8 (kernel commit "vfs: track per-sb writeback errors and report
 * them to syncfs"; syncfs(2): "since Linux 5.8, syncfs() will also report an error if one or
 * more inodes failed to be written back since the last syncfs() call") a write-back error
 * anywhere on the file system is recorded in the superblock's errseq and syncfs returns it
 * once to each open file (DIR's, sampled when it was opened), so a failed write of one of
 * our files fails the call; before 5.8 syncfs returned 0 regardless (only EBADF), hence
 * syncfs_usable's version check. Since 5.17 ("vfs: make sync_filesystem return errors from
 * ->sync_fs") a failed journal commit / log force is returned as well; before that it is
 * not, but it aborts the journal (ext4) or shuts the file system down (XFS), so the
 * directory fsync of step 5 fails and the batch is still refused. (ext4 means with its
 * journal, the default: ext4 made without one has no crash consistency to keep, fsck
 * repairs it, fdatasync or not.) On an error the whole batch is refused and its temporary files
 * removed: syncfs does not say which file failed (the error may even be another program's on
 * the same file system: refusing then is only cautious; the sender resends).
 * Cost: syncfs also writes back whatever else is dirty on that file system. The first batch
 * pays for what had piled up; after that each syncfs finds only what other programs dirtied
 * since the previous one (a few ms earlier under load), which the kernel would have written
 * within dirty_expire_centisecs anyway. It slows batches down only when other programs write
 * to the same file system at a good part of the device's bandwidth: then put DIR on a file
 * system of its own.
 *
 * One file (or another file system): fdatasync. For a single file it is never worse than
 * syncfs: the same one commit and flush, without the write-back of other programs' data;
 * at low load, when batches hold one message, latency stays that of one fdatasync. For more
 * files there, the write-back of all of them is started first (a hint) so they overlap. */
static void sync_batch_data(job *batch, int pending, int by_syncfs) {
    if (pending == 0) return;
#if defined(__linux__)
    if (by_syncfs) { /* the files are closed already */
        if (syncfs(app.dir_fd) != 0) {
            for (job *j = batch; j; j = j->next) {
                if (j->step || j->duplicate) continue;
                job_fail(j, "syncfs");
                job_discard(j);
            }
        }
        return;
    }
#endif
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
    /* A hint: start the write-back of every file now, so the fdatasyncs below overlap instead
     * of each allocating and committing on its own. Errors show in fdatasync. */
    for (job *j = batch; j && pending > 1; j = j->next)
        if (!j->step && !j->duplicate && j->len > 0)
            (void)sync_file_range(j->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
    for (job *j = batch; j; j = j->next) {
        if (j->step || j->duplicate) continue;
        if (fdatasync(j->fd) != 0) {
            job_fail(j, "fsync");
            job_discard(j);
            continue;
        }
        (void)job_close(j);
    }
}

/* Stores a batch durably, then prints and acknowledges (or refuses) each message in queue
 * order and frees the jobs. Durability of file data and of names, with as few syncs as the
 * order allows:
 *  1. write every message to its own new temporary file;
 *  2. make the data of all of them durable (sync_batch_data: one syncfs for the batch on
 *     ext4 and XFS, fdatasync for a single file or elsewhere): the data and what is needed
 *     to read it back (size, blocks). If that fails, the whole batch is refused;
 *  3. --dedupe: choose each final name, build each acknowledgement, append the records of
 *     the batch to the index and fdatasync it once (see the --dedupe section for why before 4);
 *  4. only then give each file its final name (renameat2 RENAME_NOREPLACE, or link): a final
 *     name never points to data that is not on disk yet;
 *  5. one fsync of the directory makes every new name (and removed temporary name) durable;
 *     if it fails, the names are removed again and the whole batch refused;
 *  6. acknowledge, then send the application acknowledgements MSH-16 asks for (--ack hl7).
 * So a batch of N messages costs two journal commits (three with --dedupe) instead of N + 1.
 * --dedupe: before 1, a message whose record and file are found is marked a duplicate; it is
 * not stored and is answered with the recorded acknowledgement in 6.
 * Without --out-dir (the writer runs for --ack hl7's application acknowledgements) only 6. */
static void commit_batch(job *batch) {
    int storing = app.dir_fd >= 0;
    if (dd.enabled) {
        for (job *j = batch; j; j = j->next) {
            dd_key k;
            j->keyed = dd_key_of(j->data, j->len, &k);
            if (!j->keyed) continue;
            const dd_rec *r = dd_lookup(j->data, j->len, &k);
            if (!r) continue;
            j->duplicate = 1;
            snprintf(j->dup_of, sizeof j->dup_of, "%s", dd_name(r));
            if (r->lack > 0 && (j->reply = malloc(r->lack)) != NULL) {
                memcpy(j->reply, dd_ack(r), r->lack);
                j->reply_len = r->lack;
            } else if (r->lack > 0) {
                job_fail(j, "out of memory"); /* refused; it is stored, a resend will do */
                j->err = ENOMEM;
            }
        }
    }
    /* One syncfs for the batch (sync_batch_data) when it holds more than one new file; then
     * each file is closed as soon as it is written (syncfs needs no descriptor of it), so a
     * batch holds one descriptor at a time however large it is. */
    int fresh = 0;
    for (job *j = batch; j && storing; j = j->next)
        if (!j->duplicate) fresh++;
    int by_syncfs = app.use_syncfs && fresh > 1;
    int pending = 0;
    for (job *j = batch; j && storing; j = j->next) {
        if (j->duplicate) continue;
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
        if (by_syncfs && job_close(j) != 0) continue;
        pending++;
    }
    sync_batch_data(batch, pending, by_syncfs);
    if (dd.enabled) {
        /* 3: the records, durable before any of their files gets its final name */
        dbuf records = {0};
        int any = 0;
        for (job *j = batch; j; j = j->next) {
            if (j->step || j->duplicate || !j->keyed) continue;
            if (choose_final(j->num, j->conn, j->seq, j->final, sizeof j->final) != 0) {
                job_fail(j, "name");
                job_discard(j);
                continue;
            }
            j->reply = build_reply(j->data, j->len, &j->reply_len);
            dd_key k;
            dd_key_of(j->data, j->len, &k);
            if (dd_serialize(&records, k.f3.p, k.f3.n, k.f4.p, k.f4.n, k.f10.p, k.f10.n, j->final,
                             strlen(j->final), j->len, j->reply, j->reply_len) != 0) {
                errno = ENOMEM;
                job_fail(j, "index");
                job_discard(j);
                continue;
            }
            any = 1;
        }
        if (any && dd_append(&records) != 0) {
            int e = errno;
            for (job *j = batch; j; j = j->next) {
                if (j->step || j->duplicate || !j->keyed) continue;
                errno = e;
                job_fail(j, "write " DEDUPE_FILE);
                job_discard(j);
            }
        } else if (any) {
            for (job *j = batch; j; j = j->next) {
                if (j->step || j->duplicate || !j->keyed) continue;
                dd_key k;
                dd_key_of(j->data, j->len, &k);
                /* out of memory: only this run's table misses it (the library's window and
                 * the index have it) */
                (void)dd_insert(k.f3.p, (uint32_t)k.f3.n, k.f4.p, (uint32_t)k.f4.n, k.f10.p,
                                (uint32_t)k.f10.n, j->final, (uint32_t)strlen(j->final), j->len,
                                j->reply, (uint32_t)j->reply_len);
            }
        }
        free(records.p);
    }
    int named = 0;
    for (job *j = batch; j && storing; j = j->next) {
        if (j->step || j->duplicate) continue;
        /* --dedupe: the name recorded in the index, exactly (taken meanwhile: refused) */
        int rc = dd.enabled && j->keyed
                     ? link_named(j->tmp, j->final)
                     : link_final(j->tmp, j->num, j->conn, j->seq, j->final, sizeof j->final);
        if (rc != 0) {
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
            if (j->step || j->duplicate) continue;
            unlinkat(app.dir_fd, j->final, 0);
            j->step = "fsync directory";
            j->err = e;
        }
        fsync(app.dir_fd);
    }

    /* Lines first (so a client holding its ACK finds the line printed), then the replies. */
    pthread_mutex_lock(&app.lock);
    for (job *j = batch; j; j = j->next) {
        if (j->step) {
            report_store_failure(j->conn, j->seq, j->step, j->err);
        } else if (j->duplicate) {
            if (!app.quiet) {
                span f10;
                msh_field(j->data, j->len, 10, &f10);
                log_line("info", j->conn, "duplicate", 0, "duplicate: ",
                         "message %" PRIu64 " of connection %" PRIu64 " (MSH-10 %.*s) is stored as %s; %s",
                         j->seq, j->conn, (int)(f10.n > 64 ? 64 : f10.n), (const char *)f10.p,
                         j->dup_of,
                         j->reply ? "original acknowledgement sent again"
                                  : "answered as its original was");
            }
        } else if (!app.quiet) {
            put_message_line(j->conn, j->data, j->len);
        }
    }
    if (!app.quiet) fflush(stdout);
    pthread_mutex_unlock(&app.lock);
    pthread_mutex_lock(&wq.server_lock);
    for (job *j = batch; j && wq.server; j = j->next) {
        /* MLLP_ERR_NO_SUCH_CONNECTION: the client left; the message is stored, not acknowledged. */
        if (!j->step && j->reply)
            mllp_server_acknowledge_with(wq.server, j->conn, j->seq, j->reply, j->reply_len);
        else
            mllp_server_acknowledge(wq.server, j->conn, j->seq, j->step ? 0 : 1, MLLP_REJECT_AE);
        /* --ack hl7: mllp-listen is the application; MSH-16 says whether it answers (AL; ER only
         * on failure; SU only on success). Not again for a duplicate. */
        span f16;
        if (app.ack_hl7 && !j->duplicate && msh_field(j->data, j->len, 16, &f16) && f16.n > 0)
            mllp_server_send_app_ack(wq.server, j->conn, j->data, j->len,
                                     j->step ? MLLP_ACK_AE : MLLP_ACK_AA,
                                     j->step ? "message could not be stored" : NULL, NULL);
        ct_release(j->conn);
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
            free(batch->reply);
            free(batch->stored_ack);
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

static void writer_start_with(mllp_server *server, void *(*main_fn)(void *)) {
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0 || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0)
        die_usage("cannot set up the writer thread");
    if (pthread_cond_init(&wq.work, &attr) != 0 || pthread_cond_init(&wq.space, &attr) != 0 ||
        pthread_cond_init(&wq.idle, &attr) != 0)
        die_usage("cannot set up the writer thread");
    pthread_condattr_destroy(&attr);
    wq.server = server;
    int rc = pthread_create(&wq.thread, NULL, main_fn, NULL);
    if (rc != 0) die_usage("cannot start the writer thread: %s", strerror(rc));
    wq.started = 1;
}

static void writer_start(mllp_server *server) {
    writer_start_with(server, writer_main);
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

static void pg_stamp(job *j);
static int pg_enabled(void);

/* AckOut with --out-dir (or --pg): queue a copy for the writer and leave the decision open. */
static void queue_message(mllp_ack_out_event *ev) {
    size_t n = ev->message_len;
    job *j = malloc(sizeof *j + n);
    if (!j) {
        log_line("error", ev->connection_id, "store_failed", 0, "error: ",
                 "out of memory storing message %" PRIu64 " of connection %" PRIu64 "; refusing it",
                 ev->message_seq, ev->connection_id);
        ev->accept = 0;
        ev->reject_code = MLLP_REJECT_AE;
        return;
    }
    *j = (job){.conn = ev->connection_id, .seq = ev->message_seq, .fd = -1, .len = n};
    if (!ct_admit(j->conn, 1)) {
        /* draining and its connection is closing: not stored, never acknowledged */
        free(j);
        ev->defer = 1;
        return;
    }
    if (n > 0) memcpy(j->data, ev->message, n);
    if (pg_enabled()) pg_stamp(j);
    size_t cost = job_cost(j);
    pthread_mutex_lock(&wq.lock);
    while (!wq.closing && wq.count > 0 &&
           (wq.count >= QUEUE_MAX_COUNT || wq.bytes + cost > QUEUE_MAX_BYTES))
        pthread_cond_wait(&wq.space, &wq.lock);
    if (wq.closing) {
        /* Shutting down: not stored, never acknowledged; the connection closes unanswered. */
        pthread_mutex_unlock(&wq.lock);
        ct_release(j->conn);
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
/* --pg: a PostgreSQL table as the store (libpq), group commit across connections            */
/*
 * One row per stored message in the table --pg-table (default hl7_message; created when
 * missing): id, received_at (arrival), peer_host/peer_port, MSH-3, MSH-4, MSH-9, MSH-10,
 * MSH-18 (text: UTF-8 as received, other bytes read as ISO-8859-1), sha256 (of the message,
 * computed by PostgreSQL from the bytea parameter, so no hash code here), message (the bytes
 * as received, bytea) and ack (the acknowledgement sent, unframed, bytea; NULL when the
 * library decided the reply itself: enhanced mode with MSH-15 NE/ER, see build_reply).
 * UNIQUE (msh3, msh4, msh10, sha256) makes "stored once" a property of the table, shared by
 * every receiver writing to it: an INSERT ... ON CONFLICT DO NOTHING that inserts nothing
 * finds the row already there and answers with its ack bytes (mllp_server_acknowledge_with:
 * byte for byte the original acknowledgement, the ACK byte in MLLP mode). A message without
 * an MSH segment or with an empty MSH-10 gets msh10 NULL, which never conflicts: such
 * messages are always stored (the library's rule for keys).
 *
 * Group commit: AckOut queues a copy and defers (as with --out-dir); the writer thread takes
 * what is queued (at most --pg-batch messages and PG_BATCH_BYTES) and runs it as ONE
 * transaction in libpq's pipeline mode: BEGIN, one PQsendQueryPrepared per message, COMMIT
 * and a sync point, sent together and read back in one round trip. Pipeline mode rather than
 * COPY into a temporary table: each INSERT returns its own row (inserted, or the stored ack
 * of the original) in the order sent, so mapping results to messages needs nothing else,
 * and there is no temporary table per session to manage; the cost per message is a few
 * hundred bytes of protocol, not a round trip. Each message is acknowledged only after the
 * COMMIT containing it returned COMMIT. --pg-group N splits a round into transactions of at
 * most N messages, each its own round trip and COMMIT (--pg-group 1: one transaction per
 * message, the benchmark's baseline).
 *
 * Faults. Every message carries a deadline: arrival + --pg-timeout seconds. A reaper thread
 * refuses (NAK; AE in HL7 mode) every message still undecided at its deadline, queued or in
 * a transaction whose COMMIT has not come back: never an acknowledgement without a COMMIT.
 * A transaction that failed on a statement (so nothing was committed) is retried message by
 * message, so one bad message does not refuse its neighbours. A connection that broke while
 * a transaction was under way leaves its outcome unknown (the COMMIT may have been applied):
 * its messages are refused. If the COMMIT did happen, the sender's resend is answered from
 * the table with the stored acknowledgement instead of being stored twice: that is what the
 * unique key is for (the same holds for a message refused by the reaper whose COMMIT came
 * through later). Reconnection: 100 ms doubling up to min(5 s, --pg-timeout / 2), also in
 * the background while nothing is queued, so an outage ends soon after the database is back;
 * one line on stderr per change of state, never per message. A database that is down at
 * start-up is such an outage: mllp-listen listens and refuses until it is up. Connection
 * defaults (CONNINFO overrides them): connect_timeout and tcp_user_timeout from --pg-timeout,
 * keepalives, application_name=mllp-listen, client_encoding=UTF8; each session sets
 * statement_timeout to --pg-timeout. Two receivers inserting the same key at once: the second
 * INSERT waits for the first transaction; if that commits, the row is not in the waiting
 * statement's snapshot, so the ack is read after our COMMIT with a fresh SELECT.
 * Durability is the server's: keep fsync=on and synchronous_commit=on, or an ACK may stand
 * for a message that a crash of PostgreSQL loses.
 */

#define PG_DEFAULT_TABLE "hl7_message"
#define PG_BATCH_BYTES ((size_t)32 << 20) /* per round (a single larger message goes alone) */
#define PG_REAP_MS 50                     /* how often the reaper looks for expired messages */
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000

static struct {
    const char *conninfo; /* --pg; NULL: not used */
    const char *table;    /* --pg-table */
    char qtable[160];     /* quoted for SQL: "name" or "schema"."name" */
    long batch;           /* --pg-batch: messages per round */
    long group;           /* --pg-group: messages per transaction (0: the whole round) */
    long timeout_s;       /* --pg-timeout */
    mllp_server *server;  /* for the peer address in AckOut */
} pgo = {.table = PG_DEFAULT_TABLE, .batch = 500, .timeout_s = 5};

/* AckOut (reactor thread), --pg: the deadline and the peer of a message being queued. */
static void pg_stamp(job *j) {
    clock_gettime(CLOCK_MONOTONIC, &j->deadline);
    j->deadline.tv_sec += pgo.timeout_s;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    j->received_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    size_t len = sizeof j->peer;
    if (mllp_connection_get_remote_host(pgo.server, j->conn, j->peer, &len) != MLLP_OK)
        j->peer[0] = '\0';
    if (mllp_connection_get_remote_port(pgo.server, j->conn, &j->peer_port) != MLLP_OK)
        j->peer_port = 0;
}

#ifdef MLLP_LISTEN_PG

/* --pg-table: [schema.]name, each part [a-z_][a-z0-9_]* of at most 63 bytes (lower case, so
 * the quoted name is the one psql shows unquoted). Writes the quoted form; 0, or -1. */
static int pg_table_name(const char *name, char *quoted, size_t cap) {
    const char *dot = strchr(name, '.');
    if (dot && strchr(dot + 1, '.')) return -1;
    size_t w = 0;
    for (int part = 0; part < (dot ? 2 : 1); part++) {
        const char *p = part == 0 ? name : dot + 1;
        size_t n = part == 0 && dot ? (size_t)(dot - name) : strlen(p);
        if (n == 0 || n > 63 || isdigit((unsigned char)p[0])) return -1;
        for (size_t i = 0; i < n; i++)
            if (!((p[i] >= 'a' && p[i] <= 'z') || isdigit((unsigned char)p[i]) || p[i] == '_'))
                return -1;
        int k = snprintf(quoted + w, cap - w, "%s\"%.*s\"", part ? "." : "", (int)n, p);
        if (k < 0 || (size_t)k >= cap - w) return -1;
        w += (size_t)k;
    }
    return 0;
}

static int valid_utf8(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c == 0) return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

/* An MSH field as column text: the bytes when they are UTF-8 without NUL, else each byte read
 * as ISO-8859-1 (HL7's most common other charset) and NUL as U+FFFD. Malloc'd, NUL-terminated;
 * NULL when out of memory. */
static char *pg_field_text(span s) {
    int utf8 = valid_utf8(s.p, s.n);
    char *out = malloc(utf8 ? s.n + 1 : s.n * 3 + 1);
    if (!out) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < s.n; i++) {
        uint8_t c = s.p[i];
        if (utf8 || (c != 0 && c < 0x80)) {
            out[w++] = (char)c;
        } else if (c == 0) {
            memcpy(out + w, "\xEF\xBF\xBD", 3);
            w += 3;
        } else {
            out[w++] = (char)(0xC0 | (c >> 6));
            out[w++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[w] = '\0';
    return out;
}

/* Checks CONNINFO at start-up: libpq's own parser (unknown keywords, bad syntax, a malformed
 * URI), then every port, which libpq only reads when connecting: a number 1-65535 or empty
 * (the default), one per host. Returns NULL, or a one-line reason in `buf`. */
static const char *pg_check_conninfo(const char *conninfo, char *buf, size_t cap) {
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (!opts) {
        snprintf(buf, cap, "%s", err ? err : "cannot parse the connection string");
        PQfreemem(err);
        buf[strcspn(buf, "\n")] = '\0';
        return buf;
    }
    const char *bad = NULL;
    for (PQconninfoOption *o = opts; o->keyword && !bad; o++) {
        if (strcmp(o->keyword, "port") != 0 || !o->val) continue;
        for (const char *p = o->val;;) {
            size_t n = strcspn(p, ",");
            long v = 0;
            int ok = n <= 5;
            for (size_t i = 0; i < n && ok; i++) {
                ok = isdigit((unsigned char)p[i]);
                v = v * 10 + (p[i] - '0');
            }
            if (!ok || (n > 0 && (v < 1 || v > 65535))) {
                snprintf(buf, cap, "invalid port \"%.*s\" (expected 1-65535)", (int)(n > 20 ? 20 : n), p);
                bad = buf;
                break;
            }
            if (p[n] == '\0') break;
            p += n + 1;
        }
    }
    PQconninfoFree(opts);
    return bad;
}

static struct {
    PGconn *conn;
    int state;                 /* -1 not tried yet, 0 down, 1 up (under wq.lock; set by the writer) */
    long backoff_ms;
    struct timespec next_try;  /* monotonic: the next connection attempt */
    job *inflight;             /* the round in the writer's hands (under wq.lock) */
    int reaper_started, reaper_stop;
    pthread_t reaper;
    pthread_cond_t reap;
    uint64_t refused;          /* refused by the reaper since the last state line */
} pgs = {.state = -1, .backoff_ms = PG_BACKOFF_MIN_MS};

static int timespec_before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* State lines: one per change (up/down), never per message. */
static void pg_set_state(int up, const char *why) {
    pthread_mutex_lock(&wq.lock); /* the reaper reads the state */
    int was = pgs.state;
    pgs.state = up;
    uint64_t refused = pgs.refused;
    if (was != up) pgs.refused = 0;
    pthread_mutex_unlock(&wq.lock);
    if (was == up || app.quiet) return;
    pthread_mutex_lock(&app.lock);
    if (up && was == -1)
        log_line("info", 0, "pg_connected", 0, PROG ": ", "pg: connected, storing into %s", pgo.qtable);
    else if (up)
        log_line("info", 0, "pg_available", 0, PROG ": ",
                 "pg: database available again (%" PRIu64 " messages refused meanwhile)", refused);
    else
        log_line("error", 0, "pg_unavailable", 0, PROG ": ",
                 "pg: database unavailable (%s); refusing messages until it is back",
                 why && why[0] ? why : "unknown error");
    pthread_mutex_unlock(&app.lock);
}

/* The first line of libpq's error message, for a state line. */
static void pg_reason(PGconn *c, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", c ? PQerrorMessage(c) : "out of memory");
    buf[strcspn(buf, "\n")] = '\0';
}

static void pg_close(void) {
    if (pgs.conn) PQfinish(pgs.conn);
    pgs.conn = NULL;
}

static int pg_exec_ok(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* Session set-up: statement_timeout, the table (CREATE TABLE IF NOT EXISTS can still lose a
 * race against another receiver creating it: then once more), the two statements. */
static int pg_setup(PGconn *c) {
    char sql[2048];
    snprintf(sql, sizeof sql, "SET statement_timeout = %ld", pgo.timeout_s * 1000);
    if (!pg_exec_ok(c, sql)) return 0;
    snprintf(sql, sizeof sql,
             "CREATE TABLE IF NOT EXISTS %s ("
             "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
             "received_at timestamptz NOT NULL, "
             "peer_host text, peer_port integer, "
             "msh3 text NOT NULL, msh4 text NOT NULL, msh9 text NOT NULL, msh10 text, "
             "msh18 text NOT NULL, "
             "sha256 bytea NOT NULL, message bytea NOT NULL, ack bytea, "
             "UNIQUE (msh3, msh4, msh10, sha256))",
             pgo.qtable);
    if (!pg_exec_ok(c, sql) && !pg_exec_ok(c, sql)) return 0;
    snprintf(sql, sizeof sql,
             "WITH ins AS (INSERT INTO %s (received_at, peer_host, peer_port, msh3, msh4, msh9, "
             "msh10, msh18, sha256, message, ack) VALUES (to_timestamp($1::bigint / 1000000.0), "
             "$2, $3::integer, $4, $5, $6, $7, $8, sha256($9::bytea), $9::bytea, $10::bytea) "
             "ON CONFLICT (msh3, msh4, msh10, sha256) DO NOTHING RETURNING id) "
             "SELECT true, id, NULL::bytea FROM ins UNION ALL "
             "SELECT false, t.id, t.ack FROM %s t WHERE NOT EXISTS (SELECT 1 FROM ins) "
             "AND t.msh3 = $4 AND t.msh4 = $5 AND t.msh10 = $7 AND t.sha256 = sha256($9::bytea)",
             pgo.qtable, pgo.qtable);
    PGresult *r = PQprepare(c, "mllp_insert", sql, 0, NULL);
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) return 0;
    snprintf(sql, sizeof sql,
             "SELECT id, ack FROM %s WHERE msh3 = $1 AND msh4 = $2 AND msh10 = $3 "
             "AND sha256 = sha256($4::bytea)",
             pgo.qtable);
    r = PQprepare(c, "mllp_lookup", sql, 0, NULL);
    ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

static void pg_no_notice(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

/* One connection attempt (writer thread, no lock held). On failure the next one is due after
 * the backoff, which doubles. Returns 1 when connected. */
static int pg_connect(void) {
    char timeout[32], user_timeout[32];
    snprintf(timeout, sizeof timeout, "%ld", pgo.timeout_s < 2 ? 2 : pgo.timeout_s);
    snprintf(user_timeout, sizeof user_timeout, "%ld", pgo.timeout_s * 1000);
    /* defaults first: the connection string (expanded from dbname) overrides them */
    const char *const keys[] = {"connect_timeout", "keepalives", "keepalives_idle",
                                "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                                "application_name", "client_encoding", "dbname", NULL};
    const char *const vals[] = {timeout, "1", "10", "2", "3", user_timeout, "mllp-listen",
                                "UTF8", pgo.conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c) PQsetNoticeProcessor(c, pg_no_notice, NULL); /* NOTICEs and the like: not ours to print */
    char why[256];
    if (c && PQstatus(c) == CONNECTION_OK && pg_setup(c)) {
        pgs.conn = c;
        pgs.backoff_ms = PG_BACKOFF_MIN_MS;
        pg_set_state(1, NULL);
        return 1;
    }
    pg_reason(c, why, sizeof why);
    if (c) PQfinish(c);
    pg_set_state(0, why);
    clock_gettime(CLOCK_MONOTONIC, &pgs.next_try);
    pgs.next_try = after_ms(&pgs.next_try, pgs.backoff_ms);
    long cap = pgo.timeout_s * 500 < PG_BACKOFF_MAX_MS ? pgo.timeout_s * 500 : PG_BACKOFF_MAX_MS;
    if (cap < PG_BACKOFF_MIN_MS) cap = PG_BACKOFF_MIN_MS;
    pgs.backoff_ms = pgs.backoff_ms * 2 > cap ? cap : pgs.backoff_ms * 2;
    return 0;
}

/* Before a round on a connection that has been idle: a server that went away (restart,
 * fast shutdown) has usually said so or closed the socket; notice it now rather than lose a
 * round to it. Returns 1 when the connection still looks usable. */
static int pg_alive(void) {
    if (!pgs.conn || PQstatus(pgs.conn) != CONNECTION_OK) return 0;
    /* a fast shutdown sends an error and closes: read the error, then see the end of file */
    for (int i = 0; i < 4; i++) {
        struct pollfd p = {.fd = PQsocket(pgs.conn), .events = POLLIN};
        if (p.fd < 0) return 0;
        if (poll(&p, 1, 0) <= 0) break;
        if (!PQconsumeInput(pgs.conn) || PQstatus(pgs.conn) != CONNECTION_OK) return 0;
        PGnotify *n;
        while ((n = PQnotifies(pgs.conn)) != NULL) PQfreemem(n);
    }
    return PQstatus(pgs.conn) == CONNECTION_OK && PQtransactionStatus(pgs.conn) == PQTRANS_IDLE;
}

/* Outcome of a message in a transaction. */
enum { PG_NEW = 1, PG_DUP, PG_LOOKUP };

static uint64_t be64(const char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | (uint8_t)p[i];
    return v;
}

/* Sends the INSERT of one message (pipeline mode). Returns 0, or -1. */
static int pg_send_insert(job *j) {
    span f3, f4, f9, f10, f18;
    msh_field(j->data, j->len, 3, &f3);
    msh_field(j->data, j->len, 4, &f4);
    msh_field(j->data, j->len, 9, &f9);
    int has_msh = msh_field(j->data, j->len, 10, &f10);
    msh_field(j->data, j->len, 18, &f18);
    if (!j->reply_built) {
        j->reply = build_reply(j->data, j->len, &j->reply_len);
        j->reply_built = 1;
    }
    char *t3 = pg_field_text(f3), *t4 = pg_field_text(f4), *t9 = pg_field_text(f9);
    char *t10 = pg_field_text(f10), *t18 = pg_field_text(f18);
    char us[32], port[16];
    snprintf(us, sizeof us, "%" PRId64, j->received_us);
    snprintf(port, sizeof port, "%u", (unsigned)j->peer_port);
    const char *values[10] = {us, j->peer[0] ? j->peer : NULL, j->peer[0] ? port : NULL, t3, t4,
                              t9, has_msh && f10.n > 0 ? t10 : NULL, t18,
                              (const char *)j->data, (const char *)j->reply};
    int lengths[10] = {0, 0, 0, 0, 0, 0, 0, 0, (int)j->len, (int)j->reply_len};
    int formats[10] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
    int rc = -1;
    if (t3 && t4 && t9 && t10 && t18 && j->len <= INT_MAX)
        rc = PQsendQueryPrepared(pgs.conn, "mllp_insert", 10, values, lengths, formats, 1) ? 0 : -1;
    free(t3), free(t4), free(t9), free(t10), free(t18);
    return rc;
}

/* Reads the results of one command of the pipeline (until the NULL that ends them); the
 * last non-NULL result is returned (the caller clears it), NULL when there was none. */
static PGresult *pg_command_result(void) {
    PGresult *last = NULL, *r;
    while ((r = PQgetResult(pgs.conn)) != NULL) {
        PQclear(last);
        last = r;
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) break; /* no NULL follows a sync */
        if (PQstatus(pgs.conn) == CONNECTION_BAD) break;
    }
    return last;
}

/* One transaction for the `n` jobs from `first` (skipping none: the caller chose them), in
 * pipeline mode. Returns 1 committed (each job's pg_outcome set), 0 not committed with the
 * connection usable (a statement failed: nothing was stored), -1 connection lost (outcome
 * unknown). `why` gets a one-line reason when not committed. */
static int pg_transaction(job *first, size_t n, char *why, size_t cap) {
    PGconn *c = pgs.conn;
    why[0] = '\0';
    if (!PQenterPipelineMode(c)) goto lost;
    int sent = PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    size_t k = 0;
    for (job *j = first; sent && k < n; j = j->next, k++) sent = pg_send_insert(j) == 0;
    if (sent) sent = PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
    if (!sent || !PQpipelineSync(c)) {
        /* nothing can have been committed unless COMMIT went out: only a broken connection
         * makes sending fail, and then its outcome is unknown */
        goto lost;
    }
    int ok = 1;
    PGresult *r = pg_command_result(); /* BEGIN */
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) ok = 0;
    if (r && PQresultStatus(r) == PGRES_FATAL_ERROR && !why[0]) snprintf(why, cap, "%s", PQresultErrorMessage(r));
    PQclear(r);
    k = 0;
    for (job *j = first; k < n; j = j->next, k++) {
        r = pg_command_result();
        j->pg_outcome = 0;
        if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQnfields(r) == 3) {
            if (PQntuples(r) == 0) {
                j->pg_outcome = PG_LOOKUP; /* the original is in a transaction that committed meanwhile */
            } else if (PQgetlength(r, 0, 0) == 1 && PQgetlength(r, 0, 1) == 8) {
                int inserted = PQgetvalue(r, 0, 0)[0] != 0;
                j->row_id = (int64_t)be64(PQgetvalue(r, 0, 1));
                j->pg_outcome = inserted ? PG_NEW : PG_DUP;
                if (!inserted) {
                    j->stored_ack_null = PQgetisnull(r, 0, 2);
                    int len = PQgetlength(r, 0, 2);
                    free(j->stored_ack);
                    j->stored_ack = NULL;
                    j->stored_ack_len = 0;
                    if (len > 0 && (j->stored_ack = malloc((size_t)len)) != NULL) {
                        memcpy(j->stored_ack, PQgetvalue(r, 0, 2), (size_t)len);
                        j->stored_ack_len = (size_t)len;
                    } else if (len > 0) {
                        ok = 0;
                        snprintf(why, cap, "out of memory");
                    }
                }
            } else {
                ok = 0;
            }
        } else {
            ok = 0;
            if (r && PQresultStatus(r) == PGRES_FATAL_ERROR && !why[0])
                snprintf(why, cap, "%s", PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    r = pg_command_result(); /* COMMIT */
    int committed = r && PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (r && PQresultStatus(r) == PGRES_FATAL_ERROR && !why[0]) snprintf(why, cap, "%s", PQresultErrorMessage(r));
    PQclear(r);
    if (committed && !ok) {
        /* committed, but a row came back unreadable (out of memory): treated as not
         * committed, so the messages are sent again one by one and found as duplicates */
        committed = 0;
        if (!why[0]) snprintf(why, cap, "unexpected result");
    }
    r = pg_command_result(); /* the sync point */
    int synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
    PQclear(r);
    if (!synced || PQstatus(c) == CONNECTION_BAD || !PQexitPipelineMode(c)) {
        if (committed) return 1; /* COMMIT came back: it happened; the connection is dropped later */
        goto lost;
    }
    why[strcspn(why, "\n")] = '\0';
    if (committed) return 1;
    if (!why[0]) snprintf(why, cap, "transaction not committed");
    return 0;
lost:
    pg_reason(c, why, cap);
    return -1;
}

/* After COMMIT: the ack of an original another receiver committed while we waited. */
static void pg_lookup(job *j) {
    span f3, f4, f10;
    msh_field(j->data, j->len, 3, &f3);
    msh_field(j->data, j->len, 4, &f4);
    msh_field(j->data, j->len, 10, &f10);
    char *t3 = pg_field_text(f3), *t4 = pg_field_text(f4), *t10 = pg_field_text(f10);
    const char *values[4] = {t3, t4, t10, (const char *)j->data};
    int lengths[4] = {0, 0, 0, (int)j->len};
    int formats[4] = {0, 0, 0, 1};
    PGresult *r = t3 && t4 && t10 ? PQexecPrepared(pgs.conn, "mllp_lookup", 4, values, lengths, formats, 1) : NULL;
    j->pg_outcome = 0;
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetlength(r, 0, 0) == 8) {
        j->row_id = (int64_t)be64(PQgetvalue(r, 0, 0));
        j->stored_ack_null = PQgetisnull(r, 0, 1);
        int len = PQgetlength(r, 0, 1);
        if (len == 0 || (j->stored_ack = malloc((size_t)len)) != NULL) {
            if (len > 0) memcpy(j->stored_ack, PQgetvalue(r, 0, 1), (size_t)len);
            j->stored_ack_len = (size_t)len;
            j->pg_outcome = PG_DUP;
        }
    }
    PQclear(r);
    free(t3), free(t4), free(t10);
}

/* Answers the `n` jobs from `first` that nobody answered yet (the reaper may have refused
 * some at their deadline): accepted ones as their outcome says, the others refused. Lines
 * first, then the replies, as commit_batch does. */
static void pg_answer(job *first, size_t n, int accepted, const char *why) {
    size_t k = 0;
    pthread_mutex_lock(&wq.lock);
    for (job *j = first; k < n; j = j->next, k++) {
        j->mine = !j->decided;
        j->decided = 1;
        if (j->mine && (!accepted || !j->pg_outcome)) pgs.refused++;
    }
    pthread_mutex_unlock(&wq.lock);
    pthread_mutex_lock(&app.lock);
    k = 0;
    for (job *j = first; k < n; j = j->next, k++) {
        if (!j->mine) continue;
        if (!accepted || !j->pg_outcome) {
            if (!app.quiet && why)
                log_line("error", j->conn, "store_failed", 0, "error: ",
                         "cannot store message %" PRIu64 " of connection %" PRIu64
                         " in PostgreSQL (%s); refusing it",
                         j->seq, j->conn, why);
        } else if (j->pg_outcome == PG_DUP) {
            if (!app.quiet) {
                span f10;
                msh_field(j->data, j->len, 10, &f10);
                log_line("info", j->conn, "duplicate", 0, "duplicate: ",
                         "message %" PRIu64 " of connection %" PRIu64
                         " (MSH-10 %.*s) is stored as row %" PRId64 "; %s",
                         j->seq, j->conn, (int)(f10.n > 64 ? 64 : f10.n), (const char *)f10.p,
                         j->row_id,
                         j->stored_ack_null ? "answered as its original was"
                                            : "original acknowledgement sent again");
            }
        } else if (!app.quiet) {
            put_message_line(j->conn, j->data, j->len);
        }
    }
    if (!app.quiet) fflush(stdout);
    pthread_mutex_unlock(&app.lock);
    pthread_mutex_lock(&wq.server_lock);
    k = 0;
    for (job *j = first; k < n && wq.server; j = j->next, k++) {
        if (!j->mine) continue;
        int ok = accepted && j->pg_outcome;
        int dup = ok && j->pg_outcome == PG_DUP;
        if (dup && !j->stored_ack_null)
            mllp_server_acknowledge_with(wq.server, j->conn, j->seq, j->stored_ack, j->stored_ack_len);
        else if (ok && !dup && j->reply)
            mllp_server_acknowledge_with(wq.server, j->conn, j->seq, j->reply, j->reply_len);
        else
            mllp_server_acknowledge(wq.server, j->conn, j->seq, ok ? 1 : 0, MLLP_REJECT_AE);
        span f16;
        if (app.ack_hl7 && !dup && msh_field(j->data, j->len, 16, &f16) && f16.n > 0)
            mllp_server_send_app_ack(wq.server, j->conn, j->data, j->len,
                                     ok ? MLLP_ACK_AA : MLLP_ACK_AE,
                                     ok ? NULL : "message could not be stored", NULL);
        ct_release(j->conn);
    }
    pthread_mutex_unlock(&wq.server_lock);
}

/* 1 when every job of the list from `j` on has been answered (by the reaper). */
static int pg_all_decided(job *j) {
    pthread_mutex_lock(&wq.lock);
    while (j && j->decided) j = j->next;
    pthread_mutex_unlock(&wq.lock);
    return j == NULL;
}

/* Waits (writer thread) until the next connection attempt is due, the round is all answered
 * by the reaper, or the writer is told to stop. Returns 0 to give up on the round. */
static int pg_wait_for_connection(job *rest) {
    for (;;) {
        if (pg_all_decided(rest)) return 0;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!timespec_before(&now, &pgs.next_try)) {
            if (pg_connect()) return 1;
            continue;
        }
        pthread_mutex_lock(&wq.lock);
        int stop = wq.stop;
        if (!stop) {
            struct timespec t = pgs.next_try;
            pthread_cond_timedwait(&wq.work, &wq.lock, &t);
            stop = wq.stop;
        }
        pthread_mutex_unlock(&wq.lock);
        if (stop) return 0;
    }
}

/* One round (writer thread): transactions of at most --pg-group messages, each answered as
 * soon as its COMMIT is back. */
static void pg_run_round(job *round) {
    size_t group = pgo.group > 0 ? (size_t)pgo.group : (size_t)-1;
    size_t singles = 0; /* after a failed statement: that many messages one by one */
    job *next = round;
    while (next) {
        /* skip what the reaper answered */
        pthread_mutex_lock(&wq.lock);
        while (next && next->decided) {
            next = next->next;
            if (singles) singles--;
        }
        pthread_mutex_unlock(&wq.lock);
        if (!next) break;
        if (!pg_alive()) {
            if (pgs.conn) {
                pg_close();
                pg_set_state(0, "connection lost");
                clock_gettime(CLOCK_MONOTONIC, &pgs.next_try); /* at once */
            }
            if (!pg_wait_for_connection(next)) return;
        }
        size_t n = 0, want = singles ? 1 : group;
        job *after = next;
        while (after && n < want) after = after->next, n++;
        char why[512];
        int rc = pg_transaction(next, n, why, sizeof why);
        if (rc == 0 && n > 1) {
            /* nothing was stored: the same messages again, one per transaction, so that a
             * message the database refuses does not take its neighbours with it */
            singles = n;
            continue;
        }
        if (singles) singles--;
        if (rc == 1) {
            size_t k = 0;
            for (job *j = next; k < n; j = j->next, k++)
                if (j->pg_outcome == PG_LOOKUP) pg_lookup(j);
            pg_answer(next, n, 1, NULL);
            if (PQstatus(pgs.conn) == CONNECTION_BAD || PQpipelineStatus(pgs.conn) != PQ_PIPELINE_OFF)
                pg_close(); /* pg_alive reconnects before the next transaction */
        } else {
            /* rc < 0: lost, outcome unknown; the state line says why (once) */
            pg_answer(next, n, 0, rc < 0 ? NULL : why);
            if (rc < 0) {
                pg_close();
                pg_set_state(0, why);
                clock_gettime(CLOCK_MONOTONIC, &pgs.next_try);
            }
        }
        next = after;
    }
}

static void free_job(job *j) {
    free(j->reply);
    free(j->stored_ack);
    free(j);
}

static void *pg_writer_main(void *arg) {
    (void)arg;
    pg_connect(); /* the first state line; a database down now is an outage, not an error */
    pthread_mutex_lock(&wq.lock);
    for (;;) {
        while (!wq.head && !wq.stop) {
            wq.busy = 0;
            pthread_cond_broadcast(&wq.idle);
            if (pgs.conn) {
                pthread_cond_wait(&wq.work, &wq.lock);
                continue;
            }
            /* down: keep trying in the background, so the outage ends when the database is back */
            struct timespec t = pgs.next_try, now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (timespec_before(&now, &t)) {
                pthread_cond_timedwait(&wq.work, &wq.lock, &t);
                continue;
            }
            pthread_mutex_unlock(&wq.lock);
            pg_connect();
            pthread_mutex_lock(&wq.lock);
        }
        if (!wq.head) break;
        job *round = wq.head, *last = wq.head;
        size_t n = 1, bytes = job_cost(round);
        while (last->next && n < (size_t)pgo.batch && bytes + job_cost(last->next) <= PG_BATCH_BYTES) {
            last = last->next;
            bytes += job_cost(last);
            n++;
        }
        wq.head = last->next;
        if (!wq.head) wq.tail = NULL;
        last->next = NULL;
        wq.busy = 1;
        pgs.inflight = round;
        pthread_mutex_unlock(&wq.lock);

        pg_run_round(round);

        pthread_mutex_lock(&wq.lock);
        pgs.inflight = NULL; /* the reaper no longer sees these */
        while (round) {
            job *next = round->next;
            free_job(round);
            round = next;
        }
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

/* A refusal the reaper sends once it has let go of wq.lock. */
typedef struct refusal {
    struct refusal *next;
    uint64_t conn, seq;
    size_t len;
    uint8_t data[]; /* the message, kept only when an application ACK must follow (MSH-16) */
} refusal;

static refusal *pg_refusal(const job *j) {
    span f16;
    int app_ack = app.ack_hl7 && msh_field(j->data, j->len, 16, &f16) && f16.n > 0;
    size_t len = app_ack ? j->len : 0;
    refusal *r = malloc(sizeof *r + len);
    if (!r) return NULL;
    *r = (refusal){.conn = j->conn, .seq = j->seq, .len = len};
    if (len) memcpy(r->data, j->data, len);
    return r;
}

/* The reaper: every PG_REAP_MS, refuses the messages past their deadline, queued ones
 * (removed from the queue) and those of the round in the writer's hands (marked answered;
 * the writer skips them). */
static void *pg_reaper_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&wq.lock);
    while (!pgs.reaper_stop) {
        struct timespec now, t;
        clock_gettime(CLOCK_MONOTONIC, &now);
        t = after_ms(&now, PG_REAP_MS);
        pthread_cond_timedwait(&pgs.reap, &wq.lock, &t);
        clock_gettime(CLOCK_MONOTONIC, &now);
        refusal *list = NULL, **tail = &list;
        size_t count = 0;
        int freed = 0;
        /* queued: in arrival order, so the expired ones are at the head */
        while (wq.head && !timespec_before(&now, &wq.head->deadline)) {
            job *j = wq.head;
            wq.head = j->next;
            if (!wq.head) wq.tail = NULL;
            wq.bytes -= job_cost(j);
            wq.count--;
            refusal *r = pg_refusal(j);
            if (r) *tail = r, tail = &r->next;
            count++;
            free_job(j);
            freed = 1;
        }
        for (job *j = pgs.inflight; j; j = j->next) {
            if (j->decided || timespec_before(&now, &j->deadline)) continue;
            refusal *r = pg_refusal(j);
            if (!r) continue; /* out of memory: left to the writer */
            j->decided = 1;
            *tail = r, tail = &r->next;
            count++;
        }
        if (freed) pthread_cond_broadcast(&wq.space);
        if (count) {
            pthread_cond_broadcast(&wq.work); /* a writer waiting to reconnect may give up */
            pthread_cond_broadcast(&wq.idle);
            pgs.refused += count;
        }
        int up = pgs.state == 1;
        pthread_mutex_unlock(&wq.lock);
        if (count) {
            pthread_mutex_lock(&wq.server_lock);
            for (refusal *r = list; r && wq.server; r = r->next) {
                mllp_server_acknowledge(wq.server, r->conn, r->seq, 0, MLLP_REJECT_AE);
                if (r->len)
                    mllp_server_send_app_ack(wq.server, r->conn, r->data, r->len, MLLP_ACK_AE,
                                             "message could not be stored in time", NULL);
                ct_release(r->conn);
            }
            pthread_mutex_unlock(&wq.server_lock);
            while (list) {
                refusal *next = list->next;
                free(list);
                list = next;
            }
            if (up && !app.quiet) {
                /* connected but too slow: say so (an outage has its state line instead) */
                pthread_mutex_lock(&app.lock);
                log_line("error", 0, "pg_timeout", 0, "error: ",
                         "%zu message(s) not committed within %ld s; refused", count, pgo.timeout_s);
                pthread_mutex_unlock(&app.lock);
            }
        }
        pthread_mutex_lock(&wq.lock);
    }
    pthread_mutex_unlock(&wq.lock);
    return NULL;
}

static void pg_writer_start(mllp_server *server) {
    writer_start_with(server, pg_writer_main);
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0 || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&pgs.reap, &attr) != 0)
        die_usage("cannot set up the reaper thread");
    pthread_condattr_destroy(&attr);
    int rc = pthread_create(&pgs.reaper, NULL, pg_reaper_main, NULL);
    if (rc != 0) die_usage("cannot start the reaper thread: %s", strerror(rc));
    pgs.reaper_started = 1;
}

/* Shutdown, after writer_stop: the reaper exits (it never blocks for long). */
static void pg_stop(int writer_joined) {
    if (pgs.reaper_started) {
        pthread_mutex_lock(&wq.lock);
        pgs.reaper_stop = 1;
        pthread_cond_signal(&pgs.reap);
        pthread_mutex_unlock(&wq.lock);
        pthread_join(pgs.reaper, NULL);
        pgs.reaper_started = 0;
    }
    if (writer_joined) pg_close();
}

#endif /* MLLP_LISTEN_PG */

static int pg_enabled(void) {
    return pgo.conninfo != NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Per message                                                                                */

enum { ACCEPTED, REJECTED_INVALID, REJECTED_STORAGE };

static int rejected_as_invalid(uint64_t conn, uint64_t seq, const uint8_t *m, size_t n) {
    if (!app.reject_invalid || looks_like_hl7(m, n)) return 0;
    if (!app.quiet) {
        pthread_mutex_lock(&app.lock);
        log_line("warning", conn, "rejected", 0, "rejected: ",
                 "message %" PRIu64 " of connection %" PRIu64
                 " (%zu bytes) does not begin with MSH, FHS or BHS",
                 seq, conn, n);
        pthread_mutex_unlock(&app.lock);
    }
    return 1;
}

/* Validates, stores and prints one complete message, exactly once, synchronously: called from
 * AckOut without --out-dir, or from the Message event when nothing is sent back. */
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
        /* --out-dir or --pg: the writer thread stores and acknowledges (group commit). */
        if (rejected_as_invalid(ev->connection_id, ev->message_seq, ev->message, ev->message_len)) {
            ev->accept = 0;
            ev->reject_code = MLLP_REJECT_AR;
        } else {
            queue_message(ev);
        }
        return;
    }
    if (!ct_admit(ev->connection_id, 0)) {
        ev->defer = 1; /* draining and its connection is closing: dropped unanswered */
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

/* Ack mode none: AckOut does not fire; the Message event carries the whole message. */
static void on_message(void *user, const mllp_message_event *ev) {
    (void)user;
    handle_message(ev->connection_id, ev->message_seq, ev->data ? ev->data : (const uint8_t *)"", ev->len);
}

/* --dedupe: the library answered a duplicate from its own window (this run). */
static void on_duplicate(void *user, const mllp_duplicate_event *ev) {
    (void)user;
    if (app.quiet) return;
    const char *id = ev->control_id ? ev->control_id : "";
    pthread_mutex_lock(&app.lock);
    log_line("info", ev->connection_id, "duplicate", 0, "duplicate: ",
             "a message of connection %" PRIu64 " (MSH-10 %.64s); %s", ev->connection_id, id,
             ev->reply_len ? "original acknowledgement sent again"
                           : "answered as its original was (no acknowledgement, MSH-15)");
    pthread_mutex_unlock(&app.lock);
}

static void on_error(void *user, const mllp_error_event *ev) {
    (void)user;
    if (app.quiet) return;
    if (ev->connection_id)
        log_line("error", ev->connection_id, "error", ev->error_code, "error: ",
                 "%d %s (connection %" PRIu64 ")", ev->error_code, ev->description,
                 ev->connection_id);
    else
        log_line("error", 0, "error", ev->error_code, "error: ", "%d %s", ev->error_code,
                 ev->description);
}

/* --config LogLevel=2 or more: one line per connection with the client's address (behind a
 * PROXY protocol load balancer, the original client's). */
static void on_connection_request(void *user, mllp_connection_request_event *ev) {
    (void)user;
    log_line("info", 0, "connection_request", 0, "", "connection from %s:%u", ev->address,
             (unsigned)ev->port);
}

/* ------------------------------------------------------------------------------------------ */
/* --metrics ADDR:PORT: /metrics, /healthz, /readyz over HTTP (GNU libmicrohttpd)              */
/*
 * libmicrohttpd's own thread serves the requests (MHD_USE_INTERNAL_POLLING_THREAD), one at a
 * time; nothing here parses HTTP. GET and HEAD only (405 otherwise, with Allow), unknown
 * paths 404. /metrics: mllp_server_get_metrics_text, the Prometheus text format 0.0.4.
 * /healthz: 200 "ok" while listening (or draining) and able to store: with --out-dir a probe
 * file can be created in DIR (and removed), with --pg the database connection is up; else
 * 503 with the reason. /readyz: 200 "ok" while accepting connections, 503 "draining" after
 * SIGTERM. The daemon is stopped before the server is freed.
 */

static struct {
    const char *metrics;   /* --metrics ADDR:PORT; NULL: no HTTP endpoint */
    long drain_timeout_s;  /* --drain-timeout */
} ops = {.drain_timeout_s = 10};

#ifdef MLLP_LISTEN_HTTP

static long parse_long(const char *opt, const char *v, long lo, long hi);

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

static struct {
    struct MHD_Daemon *daemon;
    mllp_server *server;
} http;

static int draining_now(void) {
    pthread_mutex_lock(&ct.lock);
    int d = ct.draining;
    pthread_mutex_unlock(&ct.lock);
    return d;
}

/* 1 when healthy, else 0 with the reason in `why`. */
static int healthy(char *why, size_t cap) {
    uint8_t listening = 0;
    mllp_server_get_listening(http.server, &listening);
    if (!listening && !draining_now()) {
        snprintf(why, cap, "not listening");
        return 0;
    }
    if (app.dir_fd >= 0) {
        char probe[64];
        snprintf(probe, sizeof probe, ".tmp-%ld-health", app.pid);
        int fd = openat(app.dir_fd, probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            snprintf(why, cap, "--out-dir %s not writable: %s", app.dir, strerror(errno));
            return 0;
        }
        close(fd);
        unlinkat(app.dir_fd, probe, 0);
    }
#ifdef MLLP_LISTEN_PG
    if (pg_enabled()) {
        pthread_mutex_lock(&wq.lock);
        int state = pgs.state;
        pthread_mutex_unlock(&wq.lock);
        if (state != 1) {
            snprintf(why, cap, "%s", state < 0 ? "database not connected yet" : "database unavailable");
            return 0;
        }
    }
#endif
    return 1;
}

static mhd_result http_reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, size_t len, int must_free) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (must_free) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    mhd_result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static mhd_result http_text(struct MHD_Connection *c, unsigned status, const char *text) {
    char body[600];
    int n = snprintf(body, sizeof body, "%s\n", text);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof body ? sizeof body - 1 : (size_t)n;
    return http_reply(c, status, "text/plain; charset=utf-8", body, len, 0);
}

static mhd_result on_http(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                          const char *version, const char *upload_data, size_t *upload_data_size,
                          void **req) {
    (void)cls, (void)version, (void)upload_data, (void)upload_data_size, (void)req;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return http_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
    if (strcmp(url, "/healthz") == 0) {
        char why[512];
        if (healthy(why, sizeof why)) return http_text(c, MHD_HTTP_OK, "ok");
        return http_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, why);
    }
    if (strcmp(url, "/readyz") == 0) {
        uint8_t listening = 0;
        mllp_server_get_listening(http.server, &listening);
        if (draining_now()) return http_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "draining");
        if (!listening) return http_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not listening");
        return http_text(c, MHD_HTTP_OK, "ok");
    }
    if (strcmp(url, "/metrics") == 0) {
        size_t len = 0;
        char *buf = NULL;
        int rc = mllp_server_get_metrics_text(http.server, NULL, &len);
        for (int tries = 0; rc == MLLP_ERR_BUFFER_TOO_SMALL && tries < 4; tries++) {
            free(buf);
            len += 1024; /* counters may grow between the two calls */
            if (!(buf = malloc(len))) break;
            rc = mllp_server_get_metrics_text(http.server, buf, &len);
        }
        if (rc != MLLP_OK || !buf || len == 0) {
            free(buf);
            return http_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics unavailable");
        }
        return http_reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4", buf, len - 1, 1);
    }
    return http_text(c, MHD_HTTP_NOT_FOUND, "not found");
}

/* Starts the endpoint on --metrics ADDR:PORT ([ADDR]:PORT for IPv6; PORT 0: any free port)
 * and logs where it listens. Exits 2 when it cannot. */
static void http_start(mllp_server *server) {
    const char *spec = ops.metrics;
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec) die_usage("--metrics: expected ADDR:PORT, got '%s'", spec);
    char host[256];
    size_t hn = (size_t)(colon - spec);
    if (spec[0] == '[' && hn >= 2 && spec[hn - 1] == ']') {
        spec++;
        hn -= 2;
    }
    if (hn == 0 || hn >= sizeof host) die_usage("--metrics: invalid address in '%s'", ops.metrics);
    memcpy(host, spec, hn);
    host[hn] = '\0';
    long port = parse_long("--metrics", colon + 1, 0, 65535);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res = NULL;
    char service[16];
    snprintf(service, sizeof service, "%ld", port);
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0 || !res) die_usage("--metrics %s: %s", ops.metrics, gai ? gai_strerror(gai) : "no address");
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (res->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct sockaddr_storage addr;
    memcpy(&addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    http.server = server;
    http.daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_http, NULL,
                                   MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                                   MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64,
                                   MHD_OPTION_END);
    if (!http.daemon) die_usage("--metrics %s: cannot listen: %s", ops.metrics, strerror(errno));
    unsigned bound = (unsigned)port;
#if MHD_VERSION >= 0x00097100
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(http.daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info && info->port) bound = info->port;
#endif
    if (!app.quiet)
        log_line("info", 0, "metrics_listening", 0, PROG ": ", "metrics on %s%s%s:%u (/metrics, /healthz, /readyz)",
                 strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", bound);
}

static void http_stop(void) {
    if (http.daemon) MHD_stop_daemon(http.daemon);
    http.daemon = NULL;
}

#else /* !MLLP_LISTEN_HTTP */

static void http_start(mllp_server *server) {
    (void)server;
}

static void http_stop(void) {
}

#endif /* MLLP_LISTEN_HTTP */

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
    const char *tls_cert, *tls_key, *client_ca, *client_crl;
    int dedupe, batch;
    long idle_timeout;      /* -1: not given */
    long long max_buffered; /* -1: not given */
    const char *pg_extra; /* a --pg-* option given (needs --pg) */
} options;

static void parse_args(int argc, char **argv, options *o) {
    o->host = "127.0.0.1";
    o->port = 2575;
    o->version = 2;
    o->idle_timeout = -1;
    o->max_buffered = -1;
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
        if (strcmp(arg, "--dedupe") == 0) {
            o->dedupe = 1;
            continue;
        }
        if (strcmp(arg, "--batch") == 0) {
            o->batch = 1;
            continue;
        }
        /* Options with a value: "--opt VALUE" or "--opt=VALUE". */
        static const char *const with_value[] = {"--host",     "--port",     "--version",
                                                 "--ack",      "--out-dir",  "--config",
                                                 "--tls-cert", "--tls-key",  "--client-ca",
                                                 "--pg",       "--pg-table", "--pg-batch",
                                                 "--pg-group", "--pg-timeout", "--client-crl",
                                                 "--metrics",  "--drain-timeout", "--log-format",
                                                 "--idle-timeout", "--max-buffered"};
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
        } else if (strcmp(name, "--client-crl") == 0) {
            o->client_crl = value;
        } else if (strcmp(name, "--pg") == 0) {
            pgo.conninfo = value;
        } else if (strcmp(name, "--pg-table") == 0) {
            pgo.table = value;
            o->pg_extra = name;
        } else if (strcmp(name, "--pg-batch") == 0) {
            pgo.batch = parse_long(name, value, 1, 100000);
            o->pg_extra = name;
        } else if (strcmp(name, "--pg-group") == 0) {
            pgo.group = parse_long(name, value, 1, 100000);
            o->pg_extra = name;
        } else if (strcmp(name, "--pg-timeout") == 0) {
            pgo.timeout_s = parse_long(name, value, 1, 3600);
            o->pg_extra = name;
        } else if (strcmp(name, "--metrics") == 0) {
#ifdef MLLP_LISTEN_HTTP
            ops.metrics = value;
#else
            die_usage("--metrics: this mllp-listen was built without libmicrohttpd (HTTP support)");
#endif
        } else if (strcmp(name, "--idle-timeout") == 0) {
            o->idle_timeout = parse_long(name, value, 0, 86400L * 365);
        } else if (strcmp(name, "--max-buffered") == 0) {
            char *end = NULL;
            errno = 0;
            long long x = strtoll(value, &end, 10);
            if (value[0] == '\0' || *end != '\0' || errno != 0 || x < 1)
                die_usage("%s: invalid value '%s' (expected a number of bytes, at least 1)", name, value);
            o->max_buffered = x;
        } else if (strcmp(name, "--drain-timeout") == 0) {
            ops.drain_timeout_s = parse_long(name, value, 0, 3600);
        } else if (strcmp(name, "--log-format") == 0) {
            if (strcmp(value, "text") == 0)
                log_format = LOG_TEXT;
            else if (strcmp(value, "json") == 0)
                log_format = LOG_JSON;
            else
                die_usage("--log-format: invalid value '%s' (expected text or json)", value);
        } else {
            o->client_ca = value;
        }
    }
    if (o->client_ca && !o->tls_cert) die_usage("--client-ca requires --tls-cert and --tls-key");
    if (o->client_crl && !o->client_ca) die_usage("--client-crl requires --client-ca");
    if (!o->tls_cert != !o->tls_key) die_usage("--tls-cert and --tls-key must be given together");
    if (o->pg_extra && !pgo.conninfo) die_usage("%s needs --pg", o->pg_extra);
    if (pgo.conninfo) {
#ifdef MLLP_LISTEN_PG
        if (o->out_dir) die_usage("--pg and --out-dir cannot be used together");
        if (pg_table_name(pgo.table, pgo.qtable, sizeof pgo.qtable) != 0)
            die_usage("--pg-table: invalid name '%s' (expected [schema.]name, each of a-z, 0-9 "
                      "and _, not starting with a digit, at most 63 characters)", pgo.table);
        char why[256];
        if (pg_check_conninfo(pgo.conninfo, why, sizeof why))
            die_usage("--pg: invalid connection string: %s", why);
#else
        die_usage("--pg: this mllp-listen was built without libpq (PostgreSQL support)");
#endif
    }
}

static void check(int rc, const char *what) {
    if (rc != MLLP_OK) {
        const char *msg = mllp_last_error_message();
        die_usage("%s: %s", what, msg[0] ? msg : mllp_error_description(rc));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* TLS                                                                                        */

/* Reads a whole file, NUL-terminated (its length in *len_out). NULL when it cannot, with why
 * in err. */
static char *read_file_err(const char *opt, const char *path, size_t *len_out, char *err,
                           size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s %s: cannot read: %s", opt, path, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (cap - len < 4096) {
            char *b = cap > ((size_t)64 << 20) ? NULL : realloc(buf, cap * 2);
            if (!b) {
                snprintf(err, errlen, "%s %s: file too large", opt, path);
                fclose(f);
                free(buf);
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
    }
    int failed = !buf || ferror(f);
    int e = errno;
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "%s %s: cannot read: %s", opt, path,
                 buf ? strerror(e) : "out of memory");
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

/* Base64 of n bytes (for DER CRLs, which a Config value cannot hold as they are). */
static char *base64(const unsigned char *p, size_t n) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned long v = (unsigned long)p[i] << 16;
        if (i + 1 < n) v |= (unsigned long)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        *o++ = a[v >> 18 & 63];
        *o++ = a[v >> 12 & 63];
        *o++ = i + 1 < n ? a[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? a[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* "KEY=" followed by value, malloc'ed. */
static char *setting_of(const char *key, const char *value) {
    size_t n = strlen(key) + strlen(value) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", key, value);
    return s;
}

/* The TLS files, read and checked as far as they can be without the server: the certificate
 * with its key, and the Config settings for the client CAs and CRLs (NULL: not given). */
typedef struct {
    mllp_certificate *cert;
    char *ca_setting;  /* SSLClientCACerts=<PEM text> */
    char *crl_setting; /* SSLClientCRLs=<PEM text, or base64 of DER> */
} tls_files;

static void tls_files_free(tls_files *t) {
    if (t->cert) mllp_certificate_free(t->cert);
    free(t->ca_setting);
    free(t->crl_setting);
    memset(t, 0, sizeof *t);
}

/* Reads --tls-cert/--tls-key (one PEM key blob), --client-ca and --client-crl. 0, or -1 with
 * one line's worth of why in err (nothing kept). */
static int tls_files_read(const options *o, tls_files *t, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    size_t cert_len = 0, key_len = 0;
    char *cert_pem = read_file_err("--tls-cert", o->tls_cert, &cert_len, err, errlen);
    char *key_pem = cert_pem ? read_file_err("--tls-key", o->tls_key, &key_len, err, errlen) : NULL;
    int ok = cert_pem && key_pem;
    if (ok && !strstr(cert_pem, "-----BEGIN CERTIFICATE-----")) {
        snprintf(err, errlen,
                 "--tls-cert %s: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
                 o->tls_cert);
        ok = 0;
    }
    if (ok && !strstr(key_pem, "PRIVATE KEY-----")) {
        snprintf(err, errlen, "--tls-key %s: no PEM private key in the file", o->tls_key);
        ok = 0;
    }
    char *blob = ok ? malloc(cert_len + 1 + key_len + 1) : NULL;
    if (ok && !blob) {
        snprintf(err, errlen, "out of memory");
        ok = 0;
    }
    if (ok) {
        size_t blob_len = cert_len + 1 + key_len;
        memcpy(blob, cert_pem, cert_len);
        blob[cert_len] = '\n';
        memcpy(blob + cert_len + 1, key_pem, key_len);
        blob[blob_len] = '\0';
        int rc = mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, (const uint8_t *)blob, blob_len,
                                       NULL, "*", &t->cert);
        /* the key's bytes are not kept around longer than needed */
        memset(blob, 0, blob_len);
        if (rc != MLLP_OK) {
            const char *msg = mllp_last_error_message();
            snprintf(err, errlen, "--tls-cert %s / --tls-key %s: %s (%d)", o->tls_cert, o->tls_key,
                     msg[0] ? msg : mllp_error_description(rc), rc);
            ok = 0;
        }
    }
    free(blob);
    if (key_pem) memset(key_pem, 0, key_len);
    free(key_pem);
    free(cert_pem);
    if (ok && o->client_ca) {
        char *ca = read_file_err("--client-ca", o->client_ca, NULL, err, errlen);
        if (!ca) {
            ok = 0;
        } else if (!strstr(ca, "-----BEGIN CERTIFICATE-----")) {
            snprintf(err, errlen,
                     "--client-ca %s: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
                     o->client_ca);
            ok = 0;
        } else if (!(t->ca_setting = setting_of("SSLClientCACerts=", ca))) {
            snprintf(err, errlen, "out of memory");
            ok = 0;
        }
        free(ca);
    }
    if (ok && o->client_crl) {
        /* PEM goes as its text; DER (binary) as base64. The library parses either. */
        size_t len = 0;
        char *crl = read_file_err("--client-crl", o->client_crl, &len, err, errlen);
        char *b64 = NULL;
        if (!crl) {
            ok = 0;
        } else if (len == 0) {
            snprintf(err, errlen, "--client-crl %s: the file is empty", o->client_crl);
            ok = 0;
        } else {
            int pem = strlen(crl) == len && strstr(crl, "-----BEGIN");
            if (!pem) b64 = base64((const unsigned char *)crl, len);
            if (pem || b64) t->crl_setting = setting_of("SSLClientCRLs=", pem ? crl : b64);
            if (!t->crl_setting) {
                snprintf(err, errlen, "out of memory");
                ok = 0;
            }
        }
        free(b64);
        free(crl);
    }
    if (!ok) tls_files_free(t);
    return ok ? 0 : -1;
}

/* Applies the files to the server: SSLCert, then SSLClientCACerts, then SSLClientCRLs. While
 * listening each call rebuilds the TLS configuration for new connections and refuses a bad
 * value; when one is refused the earlier ones are put back, so the old configuration stays
 * (new connections accepted in that instant may have seen the new certificate). 0, or -1 with
 * why in err. */
static int tls_apply(mllp_server *server, const options *o, const tls_files *t, char *err,
                     size_t errlen) {
    mllp_certificate *old_cert = NULL;
    mllp_server_get_ssl_cert(server, &old_cert);
    char *old_ca = config_get(server, "SSLClientCACerts");
    const char *what = "--tls-cert";
    const char *file = o->tls_cert;
    int step = 0;
    int rc = mllp_server_set_ssl_cert(server, t->cert);
    if (rc == MLLP_OK && t->ca_setting) {
        step = 1;
        what = "--client-ca";
        file = o->client_ca;
        rc = mllp_server_config(server, t->ca_setting, NULL, NULL);
    }
    if (rc == MLLP_OK && t->crl_setting) {
        step = 2;
        what = "--client-crl";
        file = o->client_crl;
        rc = mllp_server_config(server, t->crl_setting, NULL, NULL);
    }
    if (rc != MLLP_OK) {
        const char *msg = mllp_last_error_message();
        snprintf(err, errlen, "%s %s: %s (%d)", what, file,
                 msg[0] ? msg : mllp_error_description(rc), rc);
        if (step >= 2 && old_ca) {
            char *back = setting_of("SSLClientCACerts=", old_ca);
            if (back) mllp_server_config(server, back, NULL, NULL);
            free(back);
        }
        if (step >= 1) mllp_server_set_ssl_cert(server, old_cert);
    }
    if (old_cert) mllp_certificate_free(old_cert);
    free(old_ca);
    return rc == MLLP_OK ? 0 : -1;
}

/* --tls-cert/--tls-key: SSLCert from the two PEM files (one PEM key blob), SSLEnabled.
 * --client-ca: SSLClientCACerts (the file's PEM text) and SSLAuthenticateClients; no
 * SSLClientAuthentication callback, so the library's verdict stands: a client without a
 * certificate that chains to one of those CAs (and is valid now, and not revoked by
 * --client-crl: SSLClientCRLs) is refused.
 * Problems the library finds later (expired certificate, key not matching) come from
 * mllp_server_start_listening. */
static void setup_tls(mllp_server *server, const options *o) {
    char err[1024];
    tls_files t;
    if (tls_files_read(o, &t, err, sizeof err) != 0) die_usage("%s", err);
    if (tls_apply(server, o, &t, err, sizeof err) != 0) die_usage("%s", err);
    tls_files_free(&t);
    check(mllp_server_set_ssl_enabled(server, 1), "--tls-cert");
    if (o->client_ca) check(mllp_server_set_ssl_authenticate_clients(server, 1), "--client-ca");
}

/* SIGHUP: re-reads the TLS files and applies them to connections accepted from now on;
 * established ones keep theirs. Exactly one stderr line either way. */
static void reload_tls(mllp_server *server, const options *o) {
    char err[1024];
    tls_files t;
    int rc = -1;
    if (o->tls_cert && tls_files_read(o, &t, err, sizeof err) == 0) {
        rc = tls_apply(server, o, &t, err, sizeof err);
        tls_files_free(&t);
    }
    if (rc == 0 && app.quiet) return;
    if (!o->tls_cert)
        log_line("warning", 0, "reload", 0, PROG ": ", "SIGHUP: nothing to reload (no --tls-cert)");
    else if (rc == 0)
        log_line("info", 0, "reload", 0, PROG ": ", "SIGHUP: reloaded TLS configuration");
    else
        log_line("error", 0, "reload_failed", 0, PROG ": ",
                 "SIGHUP: TLS configuration not reloaded, the old one stays: %s", err);
}

/* The options SIGHUP reloads from (set once in main, before any signal is taken). */
static const options *reload_options;

/* ------------------------------------------------------------------------------------------ */
/* Signals: blocked in every thread, taken synchronously by the main thread                   */

/* What a signal asks for. */
enum { SIG_ACT_NONE, SIG_ACT_STOP_NOW, SIG_ACT_DRAIN, SIG_ACT_RELOAD };

/* The one place a signal is turned into an action (nothing runs in a signal handler).
 * SIGINT: shut down at once. SIGTERM: drain, then shut down. SIGHUP: reload the TLS files. */
static int dispatch_signal(int sig) {
    switch (sig) {
    case SIGINT:
        return SIG_ACT_STOP_NOW;
    case SIGTERM:
        return SIG_ACT_DRAIN;
    case SIGHUP:
        return SIG_ACT_RELOAD;
    default:
        return SIG_ACT_NONE;
    }
}

/* Waits for a signal in `set` that asks for an action and returns it; `timeout_ms` >= 0
 * returns SIG_ACT_NONE after that long. With DoEvents the events are delivered meanwhile. */
static int wait_for_signal(mllp_server *server, int do_events, const sigset_t *set, long timeout_ms) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int sig = 0;
        long left = -1;
        if (timeout_ms >= 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            left = timeout_ms - ((long)(now.tv_sec - start.tv_sec) * 1000 +
                                 (now.tv_nsec - start.tv_nsec) / 1000000L);
            if (left < 0) left = 0;
        }
        if (do_events) {
            /* Events are delivered here, on the main thread, between checks for a signal. */
            const struct timespec zero = {0, 0};
            mllp_server_do_events(server, left >= 0 && left < 100 ? (uint32_t)left : 100, NULL);
            sig = sigtimedwait(set, NULL, &zero);
        } else if (left >= 0) {
            struct timespec t = {left / 1000, (left % 1000) * 1000000L};
            sig = sigtimedwait(set, NULL, &t);
        } else if (sigwait(set, &sig) != 0) {
            sig = -1;
        }
        if (sig > 0) {
            int action = dispatch_signal(sig);
            if (action == SIG_ACT_RELOAD) {
                if (reload_options) reload_tls(server, reload_options);
            } else if (action != SIG_ACT_NONE) {
                return action;
            }
        }
        if (left == 0) return SIG_ACT_NONE;
    }
}

int main(int argc, char **argv) {
    options o = {0};
    app.pid = (long)getpid();
    /* --log-format first, so that even a usage error is logged in the format asked for */
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--log-format") == 0 && strcmp(argv[i + 1], "json") == 0) log_format = LOG_JSON;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--log-format=json") == 0) log_format = LOG_JSON;
    parse_args(argc, argv, &o);
    reload_options = &o;

    /* Signals: SIGINT/SIGTERM blocked here, before the library starts a thread (threads
     * inherit the mask), and taken synchronously with sigwait below. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP); /* reload_tls, then wait on */
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
    if (o.dedupe) check(mllp_server_config(server, "DuplicateWindow=100000", NULL, NULL), "--dedupe");
    if (o.batch) check(mllp_server_config(server, "ProcessBatch=True", NULL, NULL), "--batch");
    /* OutputData is never read here: no copy of the last message is kept per connection. */
    check(mllp_server_config(server, "KeepOutputData=False", NULL, NULL), "KeepOutputData");
    if (o.idle_timeout >= 0) {
        char kv[64];
        snprintf(kv, sizeof kv, "IdleTimeout=%ld", o.idle_timeout);
        check(mllp_server_config(server, kv, NULL, NULL), "--idle-timeout");
    }
    if (o.max_buffered >= 0) {
        char kv[64];
        snprintf(kv, sizeof kv, "MaxBufferedBytes=%lld", o.max_buffered);
        check(mllp_server_config(server, kv, NULL, NULL), "--max-buffered");
    }
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
     * the Message event when none does (AckOut never fires then). Read the mode back from the
     * library, which derives it from Version and AckMode (also when set with --config). */
    char *mode = config_get(server, "AckMode");
    char *event_mode = config_get(server, "EventMode");
    app.ack_none = mode && strcasecmp(mode, "None") == 0;
    app.ack_hl7 = mode && strcasecmp(mode, "HL7") == 0;
    int do_events = event_mode && strcasecmp(event_mode, "DoEvents") == 0;
    free(mode);
    free(event_mode);
    if (o.dedupe && app.ack_none)
        die_usage("--dedupe needs acknowledgements (--ack mllp or hl7; --version 1 defaults to none)");
    if (pgo.conninfo && app.ack_none)
        die_usage("--pg needs acknowledgements (--ack mllp or hl7; --version 1 defaults to none)");
    if (o.dedupe && app.dir_fd >= 0) dd_open(); /* the window kept across restarts */
    if (o.dedupe) mllp_server_on_duplicate(server, on_duplicate);
    if (app.ack_none) {
        mllp_server_on_message(server, on_message);
    } else {
        mllp_server_on_ack_out(server, on_ack_out);
        /* group commit; --ack hl7 also for the application acknowledgements, which follow
         * the accept acknowledgement, so they are sent after the decision */
#ifdef MLLP_LISTEN_PG
        if (pgo.conninfo) {
            pgo.server = server;
            pg_writer_start(server); /* --pg: group commit into PostgreSQL */
        } else
#endif
        if (app.dir_fd >= 0 || app.ack_hl7) writer_start(server);
    }
    mllp_server_on_error(server, on_error);
    /* the drain tracks connections (and SIGTERM needs it whatever the options) */
    ct.server = server;
    mllp_server_on_connected(server, on_connected);
    mllp_server_on_disconnected(server, on_disconnected);
    char *level = config_get(server, "LogLevel");
    if (level && atoi(level) >= 2 && !app.quiet) mllp_server_on_connection_request(server, on_connection_request);
    free(level);

    /* --metrics: up before the server listens (/healthz and /readyz say 503 until it does) */
    if (ops.metrics) http_start(server);

    /* Hold the lock so no message line can come before the "listening" line. */
    pthread_mutex_lock(&app.lock);
    int rc = mllp_server_start_listening(server);
    if (rc != MLLP_OK) {
        const char *msg = mllp_last_error_message();
        if (o.tls_cert && rc == MLLP_ERR_CERTIFICATE)
            /* expired or not yet valid certificate, key not matching, bad client CA list */
            log_line("error", 0, "listen_failed", rc, PROG ": ",
                     "cannot listen with TLS (--tls-cert %s, --tls-key %s%s%s%s%s): %s (%d)",
                     o.tls_cert, o.tls_key, o.client_ca ? ", --client-ca " : "",
                     o.client_ca ? o.client_ca : "", o.client_crl ? ", --client-crl " : "",
                     o.client_crl ? o.client_crl : "", msg[0] ? msg : mllp_error_description(rc), rc);
        else
            log_line("error", 0, "listen_failed", rc, PROG ": ", "cannot listen on %s:%ld: %s (%d)",
                     o.host, o.port, msg[0] ? msg : mllp_error_description(rc), rc);
        pthread_mutex_unlock(&app.lock);
        http_stop();
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

    /* Wait for a signal; SIGTERM drains first (see "Connections and the drain"). */
    int action = wait_for_signal(server, do_events, &stop_signals, -1);
    if (action == SIG_ACT_DRAIN) {
        if (!app.quiet)
            log_line("info", 0, "drain", 0, PROG ": ",
                     "SIGTERM received, draining (at most %ld s for messages in progress)",
                     ops.drain_timeout_s);
        pthread_mutex_lock(&ct.lock);
        ct.draining = 1;
        pthread_mutex_unlock(&ct.lock);
        mllp_server_stop_listening(server);
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            size_t open = drain_round(server, do_events);
            if (open == 0) break;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long ms = (long)(now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000L;
            if (ms >= ops.drain_timeout_s * 1000) {
                if (!app.quiet)
                    log_line("warning", 0, "drain_timeout", 0, PROG ": ",
                             "drain timeout: closing %zu connection(s) still in a message", open);
                break;
            }
            if (wait_for_signal(server, do_events, &stop_signals, 20) == SIG_ACT_STOP_NOW) {
                action = SIG_ACT_STOP_NOW; /* SIGINT during the drain: at once */
                break;
            }
        }
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!app.quiet)
        log_line("info", 0, "shutdown", 0, PROG ": ", "%s, shutting down",
                 action == SIG_ACT_STOP_NOW ? "SIGINT received" : "drained");

    /* Stop listening; let the writer store and acknowledge what is already queued (its
     * replies are queued before the shutdown below, so they are flushed before the
     * connections close); then close every connection. free waits for the reactor thread, so
     * a message being stored in a callback is finished (and acknowledged or not) first. */
    mllp_server_stop_listening(server);
    writer_drain(&t0);
    mllp_server_shutdown(server);
    if (do_events) mllp_server_do_events(server, 0, NULL);
    int joined = writer_stop(&t0);
#ifdef MLLP_LISTEN_PG
    pg_stop(joined);
#endif
    http_stop();
    rc = mllp_server_free(server);
    ct.server = NULL;
    if (rc != MLLP_OK) log_line("error", 0, "shutdown", rc, PROG ": ", "mllp_server_free: %d", rc);

    free(o.configs);
    if (app.dir_fd >= 0 && joined) close(app.dir_fd);
    if (dd.fd >= 0 && joined) close(dd.fd);
    if (dd.recs && joined) {
        for (size_t i = 0; i < dd.count; i++) free(dd.recs[(dd.first + i) % DEDUPE_WINDOW].blob);
        free(dd.recs);
        free(dd.buckets);
    }
    return 0;
}
