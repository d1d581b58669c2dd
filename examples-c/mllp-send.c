/*
 * mllp-send - an MLLP (HL7 v2 over TCP) sender built on the public C API of libmllp.
 *
 *   mllp-send [--host ADDR] [--port N] [--version 1|2] [--ack mllp|hl7|none] [--timeout S]
 *             [--retries N] [--retry-delay MS] [--config KEY=VALUE]... [--tls] [--tls-ca FILE]
 *             [--tls-cert FILE --tls-key FILE] [--server-name NAME] [--quiet] FILE... | -
 *
 * Input: each FILE (or standard input for "-") holds one or more HL7 v2 messages. Segments
 * may end in CR, LF or CRLF; a message starts at each segment beginning with "MSH" and is
 * sent with every segment ending in CR. Blank lines, a UTF-8 byte order mark at the start of
 * a file, MLLP framing bytes (so a captured MLLP stream can be replayed) and the batch
 * envelope segments FHS, BHS, BTS and FTS (each message is sent on its own) are dropped.
 * Anything else before the first MSH of a file, or a file without any MSH segment, is an
 * input error. Every file is read and split before the first connection is made, so bad
 * input never sends half of it.
 *
 * Output: one stdout line per message that got an answer (nothing else goes to stdout):
 *   <MSH-10 or -> <ACK|NAK|AA|AE|AR|CA|CE|CR|SENT> <attempts>
 * SENT means written with no acknowledgement expected (--ack none).
 *
 * Exit status: 0 every message positively acknowledged (or sent, --ack none); 1 at least one
 * got a negative acknowledgement (NAK, AE, AR, CE, CR) after its retries - the messages after
 * it are still sent, in order; 2 bad arguments or unusable files, input or TLS (a key that
 * does not match its certificate included: the library finds it before opening a socket) -
 * nothing was sent; 3 the server could not be reached, the TLS handshake failed, or a message got no
 * acknowledgement in time or lost its connection after its retries - the rest is not sent,
 * that message gets no stdout line, and stderr gets a one-line reason (also with --quiet).
 *
 * The library does the protocol: mllp_client_send blocks (on this thread - the client has no
 * thread of its own) until the message is acknowledged, refused after its retries, or failed;
 * it connects when needed, reconnects after a timeout or a lost connection, matches HL7
 * ACKs by MSA-2, and waits RetryDelay (doubling) between attempts. Its callbacks run inside
 * that call on this thread: SendDone gives the outcome (result code, last acknowledgement,
 * attempts), the others feed the stderr progress lines.
 *
 * C99 + POSIX.1-2008.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mllp.h"

#define PROG "mllp-send"
#define EXIT_NEGATIVE 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

static const char USAGE[] =
    "usage: " PROG " [--host ADDR] [--port N] [--version 1|2] [--ack mllp|hl7|none]\n"
    "                 [--timeout S] [--retries N] [--retry-delay MS] [--config KEY=VALUE]...\n"
    "                 [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]\n"
    "                 [--server-name NAME] [--quiet] FILE... | -\n"
    "\n"
    "Sends the HL7 v2 messages in each FILE (\"-\": standard input) over MLLP, one at a time\n"
    "and in order, and waits for each one's acknowledgement.\n"
    "\n"
    "  --host ADDR         server name or address (default 127.0.0.1)\n"
    "  --port N            server port (default 2575)\n"
    "  --version 1|2       MLLP version (default 2)\n"
    "  --ack MODE          what answers a message:\n"
    "                      mllp: the MLLP commit ACK/NAK block (default for version 2)\n"
    "                      hl7:  an HL7 ACK message whose MSA-2 is the message's MSH-10\n"
    "                            (MSA-1 AA/CA positive, AE/AR/CE/CR negative); every\n"
    "                            message needs an MSH-10\n"
    "                      none: nothing; a message counts once written (default for\n"
    "                            version 1)\n"
    "  --timeout S         seconds each attempt waits for its acknowledgement; also bounds\n"
    "                      the connect and the TLS handshake (default 10)\n"
    "  --retries N         resends after the first attempt, after a timeout, a lost\n"
    "                      connection or a negative acknowledgement (default 3)\n"
    "  --retry-delay MS    wait before the first resend, doubling for each further one up\n"
    "                      to 8 s (default 500)\n"
    "  --config KEY=VALUE  client library setting, repeatable, applied after the options\n"
    "                      above (e.g. RetryOnNegative=False, MaxMessageSize=4096,\n"
    "                      LogLevel=2)\n"
    "  --tls               use TLS; the server is verified against the system's roots\n"
    "  --tls-ca FILE       use TLS; trust the CA certificates in FILE (PEM) instead\n"
    "  --tls-cert FILE     use TLS and present this client certificate (PEM; may be\n"
    "                      followed by its chain) for mutual TLS; needs --tls-key\n"
    "  --tls-key FILE      the client certificate's private key (PEM)\n"
    "  --server-name NAME  the name the server certificate must carry (default --host);\n"
    "                      needs one of the TLS options\n"
    "  --quiet             no progress or log lines on stderr (the stdout lines and the\n"
    "                      one-line reason of a failure stay)\n"
    "  --help              show this help\n"
    "\n"
    "Input: a message starts at each segment beginning with MSH; segments may end in CR,\n"
    "LF or CRLF and are sent ending in CR. Blank lines, a UTF-8 byte order mark, MLLP\n"
    "framing bytes and FHS/BHS/BTS/FTS batch envelope segments are dropped. All input is\n"
    "read and checked before connecting.\n"
    "\n"
    "Stdout: one line per acknowledged message, in order:\n"
    "  <MSH-10 or -> <ACK|NAK|AA|AE|AR|CA|CE|CR|SENT> <attempts>\n"
    "Exit status: 0 all acknowledged positively; 1 some got a negative acknowledgement\n"
    "after the retries (the others are still sent); 2 bad arguments, input or TLS files\n"
    "(nothing sent); 3 server unreachable, TLS failure, no acknowledgement in time or\n"
    "connection lost after the retries (the rest is not sent; the reason is on stderr).\n";

/* ------------------------------------------------------------------------------------------ */

static int quiet;
static mllp_client *client; /* once created: freed on an error exit */

static void say(const char *fmt, ...) {
    va_list ap;
    if (quiet) return;
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void die_usage(const char *fmt, ...) {
    va_list ap;
    if (client) {
        mllp_client_free(client);
        client = NULL;
    }
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(EXIT_USAGE);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die_usage("out of memory");
    return q;
}

/* The library's message for the last failure, or the code's description. */
static const char *reason(int rc) {
    const char *msg = mllp_last_error_message();
    return msg && msg[0] ? msg : mllp_error_description(rc);
}

static void check(int rc, const char *what) {
    if (rc != MLLP_OK) die_usage("%s: %s (%d)", what, reason(rc), rc);
}

/* ------------------------------------------------------------------------------------------ */
/* Input: files read whole, split into messages                                               */

typedef struct {
    uint8_t *data; /* segments, each ending in CR */
    size_t len;
    char id[64];       /* MSH-10 made printable ("-" when empty); for the stdout line */
    const char *where; /* the file it came from, for messages on stderr */
    size_t index;      /* its number in that file, from 1 */
} message;

static message *messages;
static size_t message_count, message_cap;

/* Reads all of `f`; exits 2 when it cannot. */
static uint8_t *read_all(FILE *f, const char *name, size_t *len_out) {
    size_t cap = 65536, len = 0;
    uint8_t *buf = xrealloc(NULL, cap);
    for (;;) {
        if (len == cap) {
            if (cap > ((size_t)1 << 30)) die_usage("%s: file too large", name);
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    if (ferror(f)) die_usage("%s: cannot read: %s", name, strerror(errno));
    *len_out = len;
    return buf;
}

static int is_blank_line(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t') return 0;
    return 1;
}

static int starts_with(const uint8_t *p, size_t n, const char *tag) {
    return n >= 3 && memcmp(p, tag, 3) == 0 && (n == 3 || !isalnum(p[3]));
}

/* MSH-10 of an MSH segment, split on its own field separator (MSH-1, the 4th character):
 * pieces are "MSH", MSH-2, MSH-3, ..., so MSH-10 is piece 9. Blanks and control characters
 * become '_' so the stdout line keeps its three columns; "-" when empty. */
static void control_id(const uint8_t *seg, size_t n, char *out, size_t cap) {
    size_t piece = 0, start = 4, o = 0;
    if (n > 4) {
        uint8_t sep = seg[3];
        piece = 1;
        for (size_t j = 4; j <= n; j++) {
            if (j < n && seg[j] != sep) continue;
            if (piece == 9) {
                for (size_t k = start; k < j && o + 1 < cap; k++)
                    out[o++] = (char)(seg[k] <= 0x20 || seg[k] == 0x7f ? '_' : seg[k]);
                break;
            }
            piece++;
            start = j + 1;
        }
    }
    if (o == 0) out[o++] = '-';
    out[o] = '\0';
}

/* Splits one input into messages (appended to `messages`); exits 2 on bad input. */
static void split(const char *name, const uint8_t *buf, size_t len) {
    size_t i = 0, line_no = 0, before = message_count;
    message *cur = NULL;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) i = 3; /* UTF-8 byte order mark */
    while (i < len) {
        /* one line: up to CR, LF or CRLF; the MLLP framing bytes VT and FS end lines too */
        size_t start = i;
        while (i < len && buf[i] != '\r' && buf[i] != '\n' && buf[i] != 0x0b && buf[i] != 0x1c)
            i++;
        const uint8_t *seg = buf + start;
        size_t n = i - start, this_line = line_no + 1;
        if (i < len && buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n') i++;
        if (i < len && (buf[i] == '\n' || buf[i] == '\r')) line_no++;
        if (i < len) i++;
        if (is_blank_line(seg, n)) continue;
        if (starts_with(seg, n, "FHS") || starts_with(seg, n, "BHS") || starts_with(seg, n, "BTS") ||
            starts_with(seg, n, "FTS")) {
            cur = NULL; /* a batch trailer ends the message before it */
            continue;
        }
        if (n >= 3 && memcmp(seg, "MSH", 3) == 0) {
            if (message_count == message_cap) {
                message_cap = message_cap ? message_cap * 2 : 16;
                messages = xrealloc(messages, message_cap * sizeof *messages);
            }
            cur = &messages[message_count++];
            memset(cur, 0, sizeof *cur);
            cur->where = name;
            cur->index = message_count - before;
            control_id(seg, n, cur->id, sizeof cur->id);
        } else if (!cur) {
            char shown[24];
            size_t k = 0;
            for (; k < n && k + 1 < sizeof shown; k++)
                shown[k] = (char)(seg[k] < 0x20 || seg[k] >= 0x7f ? '?' : seg[k]);
            shown[k] = '\0';
            die_usage("%s: line %zu: \"%s%s\" is not in a message (no MSH segment before it)",
                      name, this_line, shown, k < n ? "..." : "");
        }
        cur->data = xrealloc(cur->data, cur->len + n + 1);
        memcpy(cur->data + cur->len, seg, n);
        cur->len += n;
        cur->data[cur->len++] = '\r';
    }
    if (message_count == before)
        die_usage("%s: no HL7 message in it (no segment starts with MSH)", name);
}

static void read_inputs(char **files, size_t count) {
    int stdin_used = 0;
    for (size_t k = 0; k < count; k++) {
        const char *path = files[k];
        size_t len;
        uint8_t *buf;
        if (strcmp(path, "-") == 0) {
            if (stdin_used) die_usage("\"-\" (standard input) given more than once");
            stdin_used = 1;
            buf = read_all(stdin, "standard input", &len);
            split("standard input", buf, len);
        } else {
            FILE *f = fopen(path, "rb");
            if (!f) die_usage("%s: cannot open: %s", path, strerror(errno));
            buf = read_all(f, path, &len);
            fclose(f);
            split(path, buf, len);
        }
        free(buf);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Events (all run inside mllp_client_send, on this thread)                                   */

/* The outcome of the last message, from SendDone. */
static struct {
    int seen;
    uint64_t message_id;
    int result_code;
    int ack_kind;
    uint32_t attempts;
    char description[512];
} done;

static void on_send_done(void *user, const mllp_send_done_event *ev) {
    (void)user;
    done.seen = 1;
    done.message_id = ev->message_id;
    done.result_code = ev->result_code;
    done.ack_kind = ev->ack_kind;
    done.attempts = ev->attempts;
    snprintf(done.description, sizeof done.description, "%s",
             ev->description ? ev->description : "");
}

/* (A successful connect is already a Log line of the library's.) */
static void on_connected(void *user, const mllp_status_event *ev) {
    (void)user;
    if (ev->status_code != 0) say("connect failed: %s (%d)", ev->description, ev->status_code);
}

static void on_disconnected(void *user, const mllp_status_event *ev) {
    (void)user;
    if (ev->status_code == 0)
        say("disconnected (connection %" PRIu64 ")", ev->connection_id);
    else
        say("disconnected (connection %" PRIu64 "): %s (%d)", ev->connection_id, ev->description,
            ev->status_code);
}

/* Errors on a connection (a lost connection, an acknowledgement matching no message, ...).
 * Failures to connect (connection 0) are left out: the library's Log line about the failed
 * attempt says the same. */
static void on_error(void *user, const mllp_error_event *ev) {
    (void)user;
    if (ev->connection_id != 0)
        say("error: %d %s (connection %" PRIu64 ")", ev->error_code, ev->description,
            ev->connection_id);
}

static void on_log(void *user, const mllp_log_event *ev) {
    (void)user;
    say("%s: %s", ev->log_type, ev->message);
}

static const char *kind_name(int kind) {
    switch (kind) {
    case MLLP_ACK_AA: return "AA";
    case MLLP_ACK_AE: return "AE";
    case MLLP_ACK_AR: return "AR";
    case MLLP_ACK_CA: return "CA";
    case MLLP_ACK_CE: return "CE";
    case MLLP_ACK_CR: return "CR";
    case MLLP_ACK_ACK: return "ACK";
    case MLLP_ACK_NAK: return "NAK";
    default: return NULL;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments                                                                                  */

typedef struct {
    const char *host;
    long port;
    long version;
    const char *ack; /* NULL = the library's default for the version */
    long timeout;
    long retries;
    long retry_delay; /* -1 = the library's default */
    const char **configs;
    size_t config_count;
    int tls;
    const char *tls_ca, *tls_cert, *tls_key, *server_name;
    char **files;
    size_t file_count;
} options;

static long parse_long(const char *opt, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || x < lo || x > hi)
        die_usage("%s: invalid value '%s' (expected %ld-%ld)", opt, v, lo, hi);
    return x;
}

static void parse_args(int argc, char **argv, options *o) {
    o->host = "127.0.0.1";
    o->port = 2575;
    o->version = 2;
    o->timeout = 10;
    o->retries = 3;
    o->retry_delay = -1;
    o->configs = xrealloc(NULL, (size_t)argc * sizeof *o->configs);
    o->files = xrealloc(NULL, (size_t)argc * sizeof *o->files);
    int only_files = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (only_files || arg[0] != '-' || strcmp(arg, "-") == 0) {
            o->files[o->file_count++] = argv[i];
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_files = 1;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(USAGE, stdout);
            exit(0);
        }
        if (strcmp(arg, "--quiet") == 0 || strcmp(arg, "-q") == 0) {
            quiet = 1;
            continue;
        }
        if (strcmp(arg, "--tls") == 0) {
            o->tls = 1;
            continue;
        }
        /* Options with a value: "--opt VALUE" or "--opt=VALUE". */
        static const char *const with_value[] = {
            "--host",        "--port",   "--version", "--ack",      "--timeout", "--retries",
            "--retry-delay", "--config", "--tls-ca",  "--tls-cert", "--tls-key", "--server-name"};
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
            if (value[0] == '\0') die_usage("--host: empty");
            o->host = value;
        } else if (strcmp(name, "--port") == 0) {
            o->port = parse_long(name, value, 1, 65535);
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
        } else if (strcmp(name, "--timeout") == 0) {
            o->timeout = parse_long(name, value, 1, 86400);
        } else if (strcmp(name, "--retries") == 0) {
            o->retries = parse_long(name, value, 0, 1000);
        } else if (strcmp(name, "--retry-delay") == 0) {
            o->retry_delay = parse_long(name, value, 0, 3600000);
        } else if (strcmp(name, "--config") == 0) {
            const char *eq = strchr(value, '=');
            if (!eq || eq == value) die_usage("--config: expected KEY=VALUE, got '%s'", value);
            o->configs[o->config_count++] = value;
        } else if (strcmp(name, "--tls-ca") == 0) {
            o->tls_ca = value;
        } else if (strcmp(name, "--tls-cert") == 0) {
            o->tls_cert = value;
        } else if (strcmp(name, "--tls-key") == 0) {
            o->tls_key = value;
        } else {
            if (value[0] == '\0') die_usage("--server-name: empty");
            o->server_name = value;
        }
    }
    if (!o->tls_cert != !o->tls_key) die_usage("--tls-cert and --tls-key must be given together");
    if (o->tls_ca || o->tls_cert) o->tls = 1;
    if (o->server_name && !o->tls)
        die_usage("--server-name needs TLS (--tls, --tls-ca or --tls-cert/--tls-key)");
    if (o->file_count == 0) die_usage("no input: give one or more FILEs, or - for standard input");
}

/* ------------------------------------------------------------------------------------------ */
/* TLS                                                                                        */

/* Reads a whole (text) file, NUL-terminated; exits 2 with one line on stderr when it cannot. */
static char *read_text_file(const char *opt, const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) die_usage("%s %s: cannot read: %s", opt, path, strerror(errno));
    size_t len;
    uint8_t *buf = read_all(f, path, &len);
    fclose(f);
    buf = xrealloc(buf, len + 1);
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return (char *)buf;
}

/* --tls-ca: the server must chain to a CA in FILE (SSLAcceptServerCertStore); without it the
 * system's roots. --tls-cert/--tls-key: the client certificate, one PEM key blob as
 * mllp-listen loads its server certificate. --server-name: SSLServerName (default: the host). */
static void setup_tls(const options *o) {
    check(mllp_client_set_ssl_enabled(client, 1), "TLS");
    if (o->tls_ca) {
        char *ca = read_text_file("--tls-ca", o->tls_ca, NULL);
        int has_cert = strstr(ca, "-----BEGIN CERTIFICATE-----") != NULL;
        free(ca);
        if (!has_cert)
            die_usage("--tls-ca %s: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
                      o->tls_ca);
        static const char key[] = "SSLAcceptServerCertStore=";
        size_t n = strlen(key) + strlen(o->tls_ca) + 1;
        char *setting = xrealloc(NULL, n);
        snprintf(setting, n, "%s%s", key, o->tls_ca);
        int rc = mllp_client_config(client, setting, NULL, NULL);
        free(setting);
        if (rc != MLLP_OK) die_usage("--tls-ca %s: %s (%d)", o->tls_ca, reason(rc), rc);
    }
    if (o->tls_cert) {
        size_t cert_len, key_len;
        char *cert_pem = read_text_file("--tls-cert", o->tls_cert, &cert_len);
        char *key_pem = read_text_file("--tls-key", o->tls_key, &key_len);
        if (!strstr(cert_pem, "-----BEGIN CERTIFICATE-----"))
            die_usage("--tls-cert %s: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
                      o->tls_cert);
        if (!strstr(key_pem, "PRIVATE KEY-----"))
            die_usage("--tls-key %s: no PEM private key in the file", o->tls_key);
        size_t blob_len = cert_len + 1 + key_len;
        char *blob = xrealloc(NULL, blob_len + 1);
        memcpy(blob, cert_pem, cert_len);
        blob[cert_len] = '\n';
        memcpy(blob + cert_len + 1, key_pem, key_len);
        blob[blob_len] = '\0';
        mllp_certificate *cert = NULL;
        int rc = mllp_certificate_load(MLLP_CERT_PEM_KEY_BLOB, (const uint8_t *)blob, blob_len,
                                       NULL, "*", &cert);
        /* the key's bytes are not kept around longer than needed */
        memset(blob, 0, blob_len);
        memset(key_pem, 0, key_len);
        free(blob);
        free(key_pem);
        free(cert_pem);
        if (rc != MLLP_OK)
            die_usage("--tls-cert %s / --tls-key %s: %s (%d)", o->tls_cert, o->tls_key, reason(rc),
                      rc);
        rc = mllp_client_set_ssl_cert(client, cert);
        mllp_certificate_free(cert); /* the client keeps its own reference */
        check(rc, "--tls-cert");
    }
    if (o->server_name) {
        static const char key[] = "SSLServerName=";
        size_t n = strlen(key) + strlen(o->server_name) + 1;
        char *setting = xrealloc(NULL, n);
        snprintf(setting, n, "%s%s", key, o->server_name);
        int rc = mllp_client_config(client, setting, NULL, NULL);
        free(setting);
        if (rc != MLLP_OK) die_usage("--server-name %s: %s (%d)", o->server_name, reason(rc), rc);
    }
}

/* ------------------------------------------------------------------------------------------ */

static void config_or_die(const char *setting, const char *what) {
    int rc = mllp_client_config(client, setting, NULL, NULL);
    if (rc != MLLP_OK) die_usage("%s: %s (%d)", what, reason(rc), rc);
}

/* Reads a Config setting (buffer rule) into a malloc'd string, or NULL. */
static char *config_get(const char *name) {
    size_t len = 0;
    if (mllp_client_config(client, name, NULL, &len) != MLLP_ERR_BUFFER_TOO_SMALL || len == 0)
        return NULL;
    char *buf = xrealloc(NULL, len);
    if (mllp_client_config(client, name, buf, &len) != MLLP_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Negative acknowledgements: the message was answered, and refused. */
static int is_negative(int rc) {
    return rc == MLLP_ERR_NAK_RECEIVED || rc == MLLP_ERR_APP_ERROR || rc == MLLP_ERR_APP_REJECT;
}

int main(int argc, char **argv) {
    options o;
    memset(&o, 0, sizeof o);
    parse_args(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);

    /* All input first: bad input exits 2 before anything is sent. */
    read_inputs(o.files, o.file_count);

    client = mllp_client_new();
    if (!client) die_usage("out of memory");
    check(mllp_client_set_remote_host(client, o.host), "--host");
    check(mllp_client_set_remote_port(client, (uint16_t)o.port), "--port");
    check(mllp_client_set_version(client, (int)o.version), "--version");
    check(mllp_client_set_timeout(client, (uint32_t)o.timeout), "--timeout");
    if (o.ack) config_or_die(o.ack, "--ack");
    char setting[64];
    snprintf(setting, sizeof setting, "MaxRetries=%ld", o.retries);
    config_or_die(setting, "--retries");
    if (o.retry_delay >= 0) {
        snprintf(setting, sizeof setting, "RetryDelay=%ld", o.retry_delay);
        config_or_die(setting, "--retry-delay");
    }
    if (o.tls) setup_tls(&o);
    for (size_t i = 0; i < o.config_count; i++) config_or_die(o.configs[i], "--config");

    /* With HL7 acknowledgements a message is matched by its MSH-10, so one without it cannot
     * be sent (the library refuses it): an input error, found before anything is sent. The
     * mode is read back from the library, which derives it from Version and AckMode (also
     * when set with --config). */
    char *mode = config_get("AckMode");
    if (mode && strcasecmp(mode, "HL7") == 0) {
        for (size_t k = 0; k < message_count; k++)
            if (strcmp(messages[k].id, "-") == 0) {
                free(mode);
                die_usage("%s: message %zu has no MSH-10 (control id), which HL7 acknowledgements "
                          "(--ack hl7) are matched by",
                          messages[k].where, messages[k].index);
            }
    }
    free(mode);

    mllp_client_on_send_done(client, on_send_done);
    mllp_client_on_error(client, on_error);
    mllp_client_on_connected(client, on_connected);
    mllp_client_on_disconnected(client, on_disconnected);
    mllp_client_on_log(client, on_log);

    say("%zu message%s to %s:%ld%s", message_count, message_count == 1 ? "" : "s", o.host, o.port,
        o.tls ? " (TLS)" : "");

    int status = 0;
    for (size_t k = 0; k < message_count; k++) {
        message *m = &messages[k];
        mllp_send_result res;
        memset(&res, 0, sizeof res);
        res.ack_kind = MLLP_ACK_NONE;
        done.seen = 0;
        int rc = mllp_client_send(client, m->data, m->len, &res);
        const char *why = rc == MLLP_OK ? "OK" : reason(rc);
        /* SendDone is the outcome; the result struct when the event did not come */
        int code = rc, kind = res.ack_kind;
        uint32_t attempts = res.attempts;
        if (done.seen && (res.message_id == 0 || done.message_id == res.message_id)) {
            code = done.result_code;
            kind = done.ack_kind;
            attempts = done.attempts;
            if (done.description[0]) why = done.description;
        }
        if (code == MLLP_OK) {
            const char *name = kind_name(kind);
            printf("%s %s %" PRIu32 "\n", m->id, name ? name : "SENT", attempts);
            fflush(stdout);
        } else if (is_negative(code) && kind_name(kind)) {
            printf("%s %s %" PRIu32 "\n", m->id, kind_name(kind), attempts);
            fflush(stdout);
            say("message %s (%s): %s (%d)", m->id, m->where, why, code);
            status = EXIT_NEGATIVE;
        } else if (code == MLLP_ERR_CERTIFICATE && k == 0) {
            /* our own TLS files are unusable (a key that does not match its certificate, a CA
             * file without a usable certificate): the library finds that when it builds the
             * TLS configuration, before any socket is opened, so nothing was sent */
            fprintf(stderr, PROG ": unusable TLS configuration%s%s%s%s: %s (%d); nothing sent\n",
                    o.tls_cert ? " --tls-cert " : "", o.tls_cert ? o.tls_cert : "",
                    o.tls_ca ? " --tls-ca " : "", o.tls_ca ? o.tls_ca : "", why, code);
            status = EXIT_USAGE;
            break;
        } else {
            size_t left = message_count - k - 1;
            char rest[64] = "";
            if (left > 0)
                snprintf(rest, sizeof rest, "; %zu more message%s not sent", left,
                         left == 1 ? "" : "s");
            fprintf(stderr,
                    PROG ": message %s (%zu of %zu, %s): %s (%d) after %" PRIu32 " attempt%s"
                         " to %s:%ld%s\n",
                    m->id, k + 1, message_count, m->where, why, code, attempts,
                    attempts == 1 ? "" : "s", o.host, o.port, rest);
            status = EXIT_UNREACHABLE;
            break;
        }
    }

    int rc = mllp_client_free(client);
    client = NULL;
    if (rc != MLLP_OK) say("mllp_client_free: %d", rc);
    for (size_t k = 0; k < message_count; k++) free(messages[k].data);
    free(messages);
    free(o.configs);
    free(o.files);
    return status;
}
