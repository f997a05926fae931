/* webfusectl: the admin API of webfused from the command line.
 *
 * A small HTTP/1.1 client over plain sockets or TLS (OpenSSL; one request per connection),
 * jansson for the answers, tables for people and the daemon's JSON for scripts (--json). Exit
 * status: 0 ok, 1 the daemon answered with an error, 2 bad usage, 3 the daemon cannot be reached
 * (or answered something that is not HTTP), 4 the token was refused or cannot be read.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "auth.h"
#include "log.h"

#define PROGRAM "webfusectl"
#define DEFAULT_URL "http://127.0.0.1:8082"
#define DEFAULT_TOKEN_FILE "/var/lib/webfuse/admin-token"
#define DEFAULT_TIMEOUT_S 10
/* Largest answer read from the daemon. */
#define MAX_RESPONSE (64u * 1024 * 1024)
#define MAX_TOKEN 256

enum exit_code {
    EXIT_OK = 0,
    EXIT_DAEMON = 1,
    EXIT_USAGE = 2,
    EXIT_UNREACHABLE = 3,
    EXIT_AUTH = 4,
};

static const char usage_text[] =
    "Usage: " PROGRAM
    " [--url URL] [--ca FILE] [--token-file FILE] [--json] [--timeout SEC] COMMAND\n"
    "\n"
    "Shows and steers the sessions and mounts of a webfused gateway over its admin API.\n"
    "\n"
    "Commands:\n"
    "  sessions [--all] [--limit N] [--offset N]\n"
    "                         live provider sessions; --all adds closed ones from history\n"
    "                         (--limit 1-1000, 100 by default with --all)\n"
    "  session ID             one live session with its filesystems\n"
    "  filesystems            mounted filesystems\n"
    "  detach NAME [--reason TEXT]\n"
    "                         unmount filesystem NAME (readers get EIO; the provider is told\n"
    "                         the reason, 1-120 bytes; a webfuse2 provider is disconnected)\n"
    "  disconnect ID [--reason TEXT]\n"
    "                         close session ID and unmount its filesystems (a provider with\n"
    "                         --reconnect takes it as final)\n"
    "  events [--since ID] [--limit N]\n"
    "                         history of attaches, detaches, disconnects and errors (the newest\n"
    "                         N, 1-1000, or those after event ID)\n"
    "  health                 whether the daemon answers (needs no token)\n"
    "  metrics                the Prometheus metrics, as they are\n"
    "  passwd NAME [--fs LIST]\n"
    "                         print a line for webfused's --auth-file: user NAME, a yescrypt\n"
    "                         hash of the password (asked twice on the terminal, or taken\n"
    "                         from $WEBFUSE_PASSWORD) and the filesystems NAME may attach:\n"
    "                         LIST is comma-separated names or * (the default) for any.\n"
    "                         Needs no daemon.\n"
    "\n"
    "Options:\n"
    "  -u, --url URL          the admin API, http://HOST[:PORT] or https://HOST[:PORT]\n"
    "                         (default " DEFAULT_URL ", or $WEBFUSE_ADMIN_URL)\n"
    "  -c, --ca FILE          https: also trust the certificates in FILE (PEM), e.g. the\n"
    "                         daemon's self-signed one; the host must match the certificate\n"
    "  -t, --token-file FILE  the admin token (default " DEFAULT_TOKEN_FILE ",\n"
    "                         or $WEBFUSE_ADMIN_TOKEN_FILE)\n"
    "  -j, --json             print the daemon's JSON answer instead of a table\n"
    "  -T, --timeout SEC      give up on the daemon after SEC seconds (default 10)\n"
    "  -h, --help             show this help and exit\n"
    "  -V, --version          show the version and exit\n"
    "\n"
    "Exit status: 0 ok; 1 the daemon answered with an error (e.g. no such session); 2 bad\n"
    "usage; 3 the daemon cannot be reached; 4 the token is wrong or cannot be read.\n";

struct options {
    const char *url;
    const char *ca_file;
    const char *token_file;
    bool json;
    int timeout_s;
};

struct target {
    char host[256];
    char port[8];
    char base[256]; /* path prefix without the trailing slash, usually "" */
    bool tls;       /* https */
};

/* One connection: a socket, with TLS on it for https. */
struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int64_t deadline_ms; /* CLOCK_MONOTONIC: the whole request has --timeout */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct response {
    int status;
    char *body;
    size_t len;
};

static void error_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void error_message(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROGRAM ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROGRAM ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '" PROGRAM " --help' for more information.\n");
    return EXIT_USAGE;
}

/* ---- URL and token ----------------------------------------------------------------------------
 */

static int parse_url(const char *url, struct target *t)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0) {
        p += 7;
    } else if (strncmp(p, "https://", 8) == 0) {
        p += 8;
        t->tls = true;
    } else {
        return -EINVAL;
    }
    const char *host_end;
    const char *host = p;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (!host_end)
            return -EINVAL;
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        p = host_end;
    }
    if (host_end == host || (size_t)(host_end - host) >= sizeof(t->host))
        return -EINVAL;
    snprintf(t->host, sizeof(t->host), "%.*s", (int)(host_end - host), host);
    snprintf(t->port, sizeof(t->port), t->tls ? "443" : "80");
    if (*p == ':') {
        p++;
        size_t n = strspn(p, "0123456789");
        long port = n > 0 && n < 6 ? strtol(p, NULL, 10) : 0;
        if (port < 1 || port > 65535)
            return -EINVAL;
        snprintf(t->port, sizeof(t->port), "%ld", port);
        p += n;
    }
    if (*p != '\0' && *p != '/')
        return -EINVAL;
    size_t n = strlen(p);
    while (n > 0 && p[n - 1] == '/')
        n--;
    if (n >= sizeof(t->base))
        return -EINVAL;
    snprintf(t->base, sizeof(t->base), "%.*s", (int)n, p);
    return 0;
}

static int read_token(const char *path, char *token, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        error_message("cannot read the admin token file %s: %s%s", path, strerror(e),
                      e == EACCES ? " (run as root, or pass --token-file)" : "");
        return EXIT_AUTH;
    }
    char buf[MAX_TOKEN + 64];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *start = buf + strspn(buf, " \t\r\n");
    size_t len = strcspn(start, " \t\r\n");
    if (len == 0 || len >= cap) {
        error_message("the admin token file %s holds no usable token", path);
        return EXIT_AUTH;
    }
    memcpy(token, start, len);
    token[len] = '\0';
    return 0;
}

/* ---- HTTP -------------------------------------------------------------------------------------
 */

/* Milliseconds left until `deadline_ms`, at least 0. */
static int ms_left(int64_t deadline_ms)
{
    int64_t left = deadline_ms - now_ms();
    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits until the socket is ready for `events` or the deadline passes: 0, -ETIMEDOUT or a
 * negative errno. Every wait of a request takes from one budget, --timeout: a server that sends
 * a byte now and then (also inside a TLS record) cannot keep us longer. */
static int wait_ready(int fd, short events, int64_t deadline_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&pfd, 1, ms_left(deadline_ms));
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/* Connects before the deadline; returns the socket (non-blocking) or -1 with a message in err. */
static int connect_to(const struct target *t, int64_t deadline_ms, char *err, size_t cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list;
    int rc = getaddrinfo(t->host, t->port, &hints, &list);
    if (rc != 0) {
        snprintf(err, cap, "cannot resolve %s: %s", t->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    int last = ECONNREFUSED;
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            int rc = wait_ready(fd, POLLOUT, deadline_ms);
            int so_error = 0;
            socklen_t len = sizeof(so_error);
            if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) == 0 &&
                so_error == 0)
                break;
            last = rc != 0 ? -rc : so_error ? so_error : errno;
        } else {
            last = errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(list);
    if (fd < 0) {
        snprintf(err, cap,
                 "cannot connect to %s port %s: %s (is webfused running with its admin "
                 "API there?)",
                 t->host, t->port, strerror(last));
        return -1;
    }
    return fd;
}

/* After an SSL call that returned `rc`: waits for what OpenSSL needs. 0 to call again, or a
 * negative errno (-EPROTO for a TLS failure). */
static int tls_wait(struct conn *c, int rc)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return wait_ready(c->fd, POLLIN, c->deadline_ms);
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_ready(c->fd, POLLOUT, c->deadline_ms);
    if (e == SSL_ERROR_ZERO_RETURN)
        return -ENODATA;
    if (e == SSL_ERROR_SYSCALL && errno != 0)
        return -errno;
    return e == SSL_ERROR_SYSCALL ? -ENODATA : -EPROTO;
}

/* The reason OpenSSL gives for the last failure, for messages. */
static const char *tls_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    return reason ? reason : "handshake failed";
}

/* TLS on the connected socket c->fd: the peer's certificate must chain to a trusted one (the
 * system's, or --ca) and name the host (or address) of the URL. */
static int tls_start(struct conn *c, const struct target *t, const char *ca_file, char *err,
                     size_t cap)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx) {
        snprintf(err, cap, "cannot set up TLS: %s", tls_reason());
        return -1;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    /* lws may close without a close_notify; the answer is complete by its Content-Length. */
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_set_default_verify_paths(c->ctx) != 1 ||
        (ca_file && SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1)) {
        snprintf(err, cap, "cannot load the trusted certificates%s%s: %s", ca_file ? " of " : "",
                 ca_file ? ca_file : "", tls_reason());
        return -1;
    }
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        snprintf(err, cap, "cannot set up TLS: %s", tls_reason());
        return -1;
    }
    unsigned char addr[sizeof(struct in6_addr)];
    bool literal =
        inet_pton(AF_INET, t->host, addr) == 1 || inet_pton(AF_INET6, t->host, addr) == 1;
    X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
    if (literal) {
        X509_VERIFY_PARAM_set1_ip_asc(param, t->host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, t->host);
        X509_VERIFY_PARAM_set1_host(param, t->host, 0);
    }
    int rc;
    while ((rc = SSL_connect(c->ssl)) != 1) {
        int waited = tls_wait(c, rc);
        if (waited == 0)
            continue;
        long verify = SSL_get_verify_result(c->ssl);
        if (waited == -ETIMEDOUT)
            snprintf(err, cap, "TLS with %s port %s: no answer within --timeout", t->host, t->port);
        else if (verify != X509_V_OK)
            snprintf(err, cap, "TLS with %s port %s failed: the certificate is not trusted: %s%s",
                     t->host, t->port, X509_verify_cert_error_string(verify),
                     ca_file ? "" : " (a self-signed one is trusted with --ca FILE)");
        else
            snprintf(err, cap, "TLS with %s port %s failed: %s (does it speak https?)", t->host,
                     t->port, tls_reason());
        return -1;
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
}

/* 0, or a negative errno. */
static int send_all(struct conn *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n;
        int rc = 0;
        if (c->ssl) {
            int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
            n = SSL_write(c->ssl, data, chunk);
            if (n <= 0)
                rc = tls_wait(c, (int)n);
        } else {
            n = send(c->fd, data, len, MSG_NOSIGNAL);
            if (n < 0)
                rc = errno == EAGAIN  ? wait_ready(c->fd, POLLOUT, c->deadline_ms)
                     : errno == EINTR ? 0
                                      : -errno;
        }
        if (rc != 0)
            return rc;
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

/* Up to `len` bytes: their count, 0 at the end, or a negative errno. Each read waits only for
 * what is left of the request's time: a server that sends a byte now and then must not keep
 * us past --timeout. */
static ssize_t conn_read(struct conn *c, char *buf, size_t len)
{
    for (;;) {
        int rc;
        if (!c->ssl) {
            ssize_t n = recv(c->fd, buf, len, 0);
            if (n >= 0)
                return n;
            rc = errno == EAGAIN  ? wait_ready(c->fd, POLLIN, c->deadline_ms)
                 : errno == EINTR ? 0
                                  : -errno;
        } else {
            int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
            int n = SSL_read(c->ssl, buf, chunk);
            if (n > 0)
                return n;
            rc = tls_wait(c, n);
            if (rc == -ENODATA) /* the peer closed (with or without close_notify) */
                return 0;
        }
        if (rc != 0)
            return rc;
    }
}

/* Reads until the peer closes (we sent "Connection: close"). */
static int recv_all(struct conn *c, char **out, size_t *out_len)
{
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_RESPONSE) {
                free(buf);
                return -EMSGSIZE;
            }
            cap *= 2;
            char *bigger = realloc(buf, cap + 1);
            if (!bigger) {
                free(buf);
                return -ENOMEM;
            }
            buf = bigger;
        }
        ssize_t n = conn_read(c, buf + len, cap - len);
        if (n < 0) {
            free(buf);
            return (int)n;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

/* Undoes chunked transfer coding in place; returns the body's length or -1. */
static long dechunk(char *data, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long size = strtoul(data + in, &end, 16);
        char *line_end = strstr(data + in, "\r\n");
        if (end == data + in || !line_end)
            return -1;
        in = (size_t)(line_end - data) + 2;
        if (size == 0)
            return (long)out;
        if (size > len - in)
            return -1;
        memmove(data + out, data + in, size);
        out += size;
        in += size + 2;
        if (in > len)
            return -1;
    }
}

/* Splits a raw answer into status and body. 0, or -1 when it is not HTTP. */
static int parse_response(char *raw, size_t len, struct response *resp)
{
    int major, minor, status;
    if (sscanf(raw, "HTTP/%d.%d %d", &major, &minor, &status) != 3)
        return -1;
    char *headers_end = strstr(raw, "\r\n\r\n");
    if (!headers_end)
        return -1;
    *headers_end = '\0';
    char *body = headers_end + 4;
    size_t body_len = len - (size_t)(body - raw);
    bool chunked = false;
    long content_length = -1;
    for (char *line = strstr(raw, "\r\n"); line && line < headers_end;
         line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, "content-length:", 15) == 0)
            content_length = strtol(line + 15, NULL, 10);
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strstr(line, "chunked"))
            chunked = true;
    }
    if (chunked) {
        long n = dechunk(body, body_len);
        if (n < 0)
            return -1;
        body_len = (size_t)n;
    } else if (content_length >= 0 && (size_t)content_length < body_len) {
        body_len = (size_t)content_length;
    }
    resp->status = status;
    resp->len = body_len;
    resp->body = malloc(body_len + 1);
    if (!resp->body)
        return -1;
    memcpy(resp->body, body, body_len);
    resp->body[body_len] = '\0';
    return 0;
}

/* One request. Returns 0 with *resp filled (the caller frees resp->body), or EXIT_UNREACHABLE
 * after saying why. */
static int http_request(const struct options *opt, const struct target *t, const char *token,
                        const char *method, const char *path, const char *body,
                        struct response *resp)
{
    char err[512];
    int64_t deadline = now_ms() + (int64_t)opt->timeout_s * 1000;
    struct conn c = {.fd = connect_to(t, deadline, err, sizeof(err)), .deadline_ms = deadline};
    if (c.fd < 0 || (t->tls && tls_start(&c, t, opt->ca_file, err, sizeof(err)) != 0)) {
        error_message("%s", err);
        conn_close(&c);
        return EXIT_UNREACHABLE;
    }
    bool v6 = strchr(t->host, ':') != NULL;
    char auth[MAX_TOKEN + 32] = "";
    if (token)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", token);
    char length[96] = "";
    if (body)
        snprintf(length, sizeof(length),
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n", strlen(body));
    char *request = NULL;
    int n = asprintf(&request,
                     "%s %s%s HTTP/1.1\r\n"
                     "Host: %s%s%s:%s\r\n"
                     "User-Agent: " PROGRAM "/" WEBFUSE_VERSION "\r\n"
                     "Accept: application/json\r\n"
                     "Connection: close\r\n"
                     "%s%s\r\n%s",
                     method, t->base, path, v6 ? "[" : "", t->host, v6 ? "]" : "", t->port, auth,
                     length, body ? body : "");
    explicit_bzero(auth, sizeof(auth));
    if (n < 0) {
        conn_close(&c);
        error_message("out of memory");
        return EXIT_UNREACHABLE;
    }
    char *raw = NULL;
    size_t raw_len = 0;
    int rc = send_all(&c, request, (size_t)n);
    if (rc == 0)
        rc = recv_all(&c, &raw, &raw_len);
    explicit_bzero(request, (size_t)n);
    free(request);
    conn_close(&c);
    if (rc != 0) {
        /* A TLS server drops a plain request unanswered. */
        error_message("no answer from %s port %s: %s%s", t->host, t->port, strerror(-rc),
                      !t->tls && rc == -ECONNRESET ? " (does the admin API take https://?)" : "");
        return EXIT_UNREACHABLE;
    }
    if (raw_len == 0) {
        free(raw);
        error_message("%s port %s closed the connection without an answer%s", t->host, t->port,
                      t->tls ? "" : " (does the admin API take https://?)");
        return EXIT_UNREACHABLE;
    }
    rc = parse_response(raw, raw_len, resp);
    free(raw);
    if (rc != 0) {
        error_message("%s port %s did not answer in HTTP (is that the admin port of webfused?)",
                      t->host, t->port);
        return EXIT_UNREACHABLE;
    }
    return 0;
}

/* ---- output -----------------------------------------------------------------------------------
 */

/* Text from the daemon as it may reach a terminal: control characters (a hostile or
 * impersonated daemon could send escape sequences) and bytes outside UTF-8 as \xNN. The caller
 * frees it; NULL when out of memory. */
static char *escaped(const char *text)
{
    size_t len = strlen(text);
    char *out = malloc(4 * len + 1);
    if (out)
        log_escape(out, 4 * len + 1, text, len);
    return out;
}

/* printf("%s") of daemon text, escaped. */
static void print_text(const char *format, const char *text)
{
    char *e = escaped(text);
    printf(format, e ? e : "-");
    free(e);
}

/* A table: rows of cells (owned strings), printed with columns as wide as their widest cell. */
#define MAX_COLUMNS 12

struct table {
    size_t columns;
    size_t rows;
    char **cells; /* rows * columns */
};

static void table_add(struct table *t, const char *const *cells)
{
    char **grown = realloc(t->cells, (t->rows + 1) * t->columns * sizeof(char *));
    if (!grown)
        return;
    t->cells = grown;
    for (size_t c = 0; c < t->columns; c++)
        t->cells[t->rows * t->columns + c] = escaped(cells[c] ? cells[c] : "-");
    t->rows++;
}

static void table_print(struct table *t)
{
    size_t width[MAX_COLUMNS] = {0};
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->columns; c++) {
            const char *cell = t->cells[r * t->columns + c];
            size_t w = cell ? strlen(cell) : 0;
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->rows; r++) {
        for (size_t c = 0; c < t->columns; c++) {
            const char *cell = t->cells[r * t->columns + c];
            bool last = c + 1 == t->columns;
            printf("%-*s%s", last ? 0 : (int)width[c], cell ? cell : "", last ? "\n" : "  ");
        }
    }
    for (size_t i = 0; i < t->rows * t->columns; i++)
        free(t->cells[i]);
    free(t->cells);
}

/* JSON value as a cell: strings as they are, numbers in decimal, null as "-". */
static const char *cell(json_t *value, char *buf, size_t cap)
{
    if (json_is_string(value))
        return json_string_value(value);
    if (json_is_integer(value)) {
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        return buf;
    }
    if (json_is_true(value))
        return "yes";
    if (json_is_false(value))
        return "no";
    return "-";
}

static const char *bytes_cell(json_t *value, char *buf, size_t cap)
{
    if (!json_is_integer(value))
        return "-";
    double v = (double)json_integer_value(value);
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%.0f %s", v, units[u]);
    else
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}

/* "2024-05-01T10:00:00Z" -> "2024-05-01 10:00:00" (UTC, as the daemon keeps it). */
static const char *time_cell(json_t *value, char *buf, size_t cap)
{
    const char *text = json_string_value(value);
    if (!text)
        return "-";
    snprintf(buf, cap, "%.10s %.8s", text, strlen(text) > 11 ? text + 11 : "");
    return buf;
}

static void print_sessions(json_t *root)
{
    json_t *sessions = json_object_get(root, "sessions");
    /* Ids count from 1 in every run of the daemon: with --all, the run tells them apart. */
    struct table t = {.columns = 11};
    const char *head[] = {"ID",        "RUN",      "STATE", "PROTOCOL", "REMOTE",     "USER",
                          "CONNECTED", "REQUESTS", "IN",    "OUT",      "FILESYSTEMS"};
    table_add(&t, head);
    size_t i;
    json_t *s;
    json_array_foreach(sessions, i, s)
    {
        char b[11][96];
        char names[512] = "";
        size_t k;
        json_t *fs;
        json_array_foreach(json_object_get(s, "filesystems"), k, fs)
        {
            const char *name = json_is_string(fs) ? json_string_value(fs)
                                                  : json_string_value(json_object_get(fs, "name"));
            if (!name)
                continue;
            size_t used = strlen(names);
            snprintf(names + used, sizeof(names) - used, "%s%s", used ? "," : "", name);
        }
        const char *row[] = {
            cell(json_object_get(s, "id"), b[0], sizeof(b[0])),
            cell(json_object_get(s, "run"), b[1], sizeof(b[1])),
            cell(json_object_get(s, "state"), b[2], sizeof(b[2])),
            cell(json_object_get(s, "protocol"), b[3], sizeof(b[3])),
            cell(json_object_get(s, "remote"), b[4], sizeof(b[4])),
            cell(json_object_get(s, "user"), b[5], sizeof(b[5])),
            time_cell(json_object_get(s, "connected_since"), b[6], sizeof(b[6])),
            cell(json_object_get(s, "requests"), b[7], sizeof(b[7])),
            bytes_cell(json_object_get(s, "bytes_in"), b[8], sizeof(b[8])),
            bytes_cell(json_object_get(s, "bytes_out"), b[9], sizeof(b[9])),
            names[0] ? names : "-",
        };
        table_add(&t, row);
    }
    table_print(&t);
    json_int_t total = json_integer_value(json_object_get(root, "total"));
    if ((size_t)total > json_array_size(sessions))
        printf("(%zu of %" JSON_INTEGER_FORMAT " shown; use --limit/--offset)\n",
               json_array_size(sessions), total);
}

static void fs_row(struct table *t, json_t *fs)
{
    char b[9][96];
    const char *row[] = {
        cell(json_object_get(fs, "name"), b[0], sizeof(b[0])),
        cell(json_object_get(fs, "state"), b[1], sizeof(b[1])),
        cell(json_object_get(fs, "session"), b[2], sizeof(b[2])),
        cell(json_object_get(fs, "protocol"), b[3], sizeof(b[3])),
        cell(json_object_get(fs, "mountpoint"), b[4], sizeof(b[4])),
        cell(json_object_get(fs, "open_files"), b[5], sizeof(b[5])),
        cell(json_object_get(fs, "requests"), b[6], sizeof(b[6])),
        bytes_cell(json_object_get(fs, "bytes_read"), b[7], sizeof(b[7])),
        bytes_cell(json_object_get(fs, "bytes_written"), b[8], sizeof(b[8])),
    };
    table_add(t, row);
}

static const char *const fs_head[] = {"NAME", "STATE",    "SESSION", "PROTOCOL", "MOUNTPOINT",
                                      "OPEN", "REQUESTS", "READ",    "WRITTEN"};

static void print_filesystems(json_t *root)
{
    struct table t = {.columns = 9};
    table_add(&t, fs_head);
    size_t i;
    json_t *fs;
    json_array_foreach(json_object_get(root, "filesystems"), i, fs) fs_row(&t, fs);
    table_print(&t);
}

static void print_session(json_t *s)
{
    char b[96];
    print_text("session %s\n", cell(json_object_get(s, "id"), b, sizeof(b)));
    static const char *const fields[] = {"state",           "protocol", "remote",   "user",
                                         "connected_since", "requests", "bytes_in", "bytes_out"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        printf("  %-16s ", fields[i]);
        print_text("%s\n", cell(json_object_get(s, fields[i]), b, sizeof(b)));
    }
    json_t *filesystems = json_object_get(s, "filesystems");
    if (json_array_size(filesystems) == 0)
        return;
    printf("\n");
    struct table t = {.columns = 9};
    table_add(&t, fs_head);
    size_t i;
    json_t *fs;
    json_array_foreach(filesystems, i, fs) fs_row(&t, fs);
    table_print(&t);
}

static void print_events(json_t *root)
{
    struct table t = {.columns = 7};
    const char *head[] = {"ID", "TIME", "KIND", "SESSION", "RUN", "FILESYSTEM", "DETAIL"};
    table_add(&t, head);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(root, "events"), i, e)
    {
        char b[7][96];
        const char *row[] = {
            cell(json_object_get(e, "id"), b[0], sizeof(b[0])),
            cell(json_object_get(e, "time"), b[1], sizeof(b[1])),
            cell(json_object_get(e, "kind"), b[2], sizeof(b[2])),
            cell(json_object_get(e, "session"), b[3], sizeof(b[3])),
            cell(json_object_get(e, "run"), b[4], sizeof(b[4])),
            cell(json_object_get(e, "filesystem"), b[5], sizeof(b[5])),
            cell(json_object_get(e, "detail"), b[6], sizeof(b[6])),
        };
        table_add(&t, row);
    }
    table_print(&t);
}

/* ---- commands ---------------------------------------------------------------------------------
 */

enum command_kind {
    CMD_SESSIONS,
    CMD_SESSION,
    CMD_FILESYSTEMS,
    CMD_DETACH,
    CMD_DISCONNECT,
    CMD_EVENTS,
    CMD_HEALTH,
    CMD_METRICS
};

struct command {
    enum command_kind kind;
    char path[512];
    const char *method;
    char *body; /* owned */
    bool needs_token;
    const char *subject; /* NAME or ID, for messages */
};

static bool is_number(const char *text)
{
    return text[0] && strspn(text, "0123456789") == strlen(text) && strlen(text) <= 18;
}

static bool name_ok(const char *text)
{
    size_t n = strlen(text);
    return n >= 1 && n <= 64 &&
           strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n &&
           strcmp(text, ".") != 0 && strcmp(text, "..") != 0;
}

/* The admin API's bounds, checked here too so that a slip is a usage error (status 2). */
#define API_LIMIT_MAX 1000
#define API_REASON_MAX 120

/* Parses the command and its own options from argv[0..argc). */
static int parse_command(int argc, char **argv, struct command *cmd)
{
    static const struct option sub_options[] = {
        {"all", no_argument, NULL, 'a'},          {"limit", required_argument, NULL, 'n'},
        {"offset", required_argument, NULL, 'o'}, {"since", required_argument, NULL, 's'},
        {"reason", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0},
    };
    const char *name = argv[0];
    bool all = false;
    const char *limit = NULL, *offset = NULL, *since = NULL, *reason = NULL;
    optind = 0; /* glibc: 0 starts getopt afresh (the first parse used "+") */
    int c;
    /* Options may come before or after the argument (GNU getopt permutes); "--" ends them. */
    while ((c = getopt_long(argc, argv, "", sub_options, NULL)) != -1) {
        switch (c) {
        case 'a':
            all = true;
            break;
        case 'n':
            limit = optarg;
            break;
        case 'o':
            offset = optarg;
            break;
        case 's':
            since = optarg;
            break;
        case 'r':
            reason = optarg;
            break;
        default:
            return usage_error("bad option for '%s'", name);
        }
    }
    char **args = argv + optind;
    int nargs = argc - optind;
    if ((limit && !is_number(limit)) || (offset && !is_number(offset)) ||
        (since && !is_number(since)))
        return usage_error("--limit, --offset and --since take a number");

    cmd->method = "GET";
    cmd->needs_token = true;
    bool takes_arg = false;
    bool allowed_paging = false, allowed_since = false, allowed_reason = false, allowed_all = false;
    if (strcmp(name, "sessions") == 0) {
        cmd->kind = CMD_SESSIONS;
        allowed_paging = allowed_all = true;
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/sessions%s", all ? "?state=all" : "");
        char *p = cmd->path + strlen(cmd->path);
        if (limit)
            p += sprintf(p, "%climit=%s", all ? '&' : '?', limit);
        if (offset)
            sprintf(p, "%coffset=%s", (all || limit) ? '&' : '?', offset);
    } else if (strcmp(name, "session") == 0) {
        cmd->kind = CMD_SESSION;
        takes_arg = true;
    } else if (strcmp(name, "filesystems") == 0) {
        cmd->kind = CMD_FILESYSTEMS;
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/filesystems");
    } else if (strcmp(name, "detach") == 0) {
        cmd->kind = CMD_DETACH;
        takes_arg = allowed_reason = true;
    } else if (strcmp(name, "disconnect") == 0) {
        cmd->kind = CMD_DISCONNECT;
        takes_arg = allowed_reason = true;
    } else if (strcmp(name, "events") == 0) {
        cmd->kind = CMD_EVENTS;
        allowed_since = true;
        allowed_paging = true;
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/events%s%s%s%s%s", since ? "?since=" : "",
                 since ? since : "", limit ? (since ? "&" : "?") : "", limit ? "limit=" : "",
                 limit ? limit : "");
        if (offset)
            return usage_error("'events' takes --since and --limit, not --offset");
    } else if (strcmp(name, "health") == 0) {
        cmd->kind = CMD_HEALTH;
        cmd->needs_token = false;
        snprintf(cmd->path, sizeof(cmd->path), "/healthz");
    } else if (strcmp(name, "metrics") == 0) {
        cmd->kind = CMD_METRICS;
        snprintf(cmd->path, sizeof(cmd->path), "/metrics");
    } else {
        return usage_error("unknown command '%s'", name);
    }
    if ((all && !allowed_all) || ((limit || offset) && !allowed_paging) ||
        (since && !allowed_since) || (reason && !allowed_reason))
        return usage_error("that option does not go with '%s'", name);
    if (limit && (strtoll(limit, NULL, 10) < 1 || strtoll(limit, NULL, 10) > API_LIMIT_MAX))
        return usage_error("--limit takes 1 to %d", API_LIMIT_MAX);
    if (reason && (reason[0] == '\0' || strlen(reason) > API_REASON_MAX))
        return usage_error("--reason takes 1 to %d bytes", API_REASON_MAX);
    if (nargs != (takes_arg ? 1 : 0))
        return usage_error(takes_arg ? "'%s' takes one argument" : "'%s' takes no argument", name);
    if (!takes_arg)
        return 0;
    cmd->subject = args[0];
    if (cmd->kind == CMD_DETACH) {
        if (!name_ok(args[0]))
            return usage_error("'%s' is not a filesystem name (1-64 of A-Z a-z 0-9 . _ -)",
                               args[0]);
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/filesystems/%s", args[0]);
        cmd->method = "DELETE";
    } else {
        if (!is_number(args[0]) || strtoll(args[0], NULL, 10) <= 0)
            return usage_error("'%s' is not a session id (a positive number)", args[0]);
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/sessions/%s", args[0]);
        cmd->method = cmd->kind == CMD_DISCONNECT ? "DELETE" : "GET";
    }
    if (reason) {
        json_t *body = json_pack("{s:s}", "reason", reason);
        cmd->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!cmd->body)
            return usage_error("--reason must be valid UTF-8");
    }
    return 0;
}

/* --json: the daemon's answer written again by jansson, which escapes every control character
 * (the answer as sent could carry raw ones). */
static void print_json(json_t *root)
{
    json_dumpf(root, stdout, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    fputc('\n', stdout);
}

/* An error answer: says what the daemon said and picks the exit status. */
static int report_error(const struct options *opt, const struct response *resp)
{
    json_t *root = json_loadb(resp->body, resp->len, 0, NULL);
    const char *raw = json_string_value(json_object_get(root, "error"));
    char *message = raw ? escaped(raw) : NULL;
    if (opt->json && root)
        print_json(root);
    int status = EXIT_DAEMON;
    if (resp->status == 401) {
        error_message("the daemon refused the token (%s); check --token-file",
                      message ? message : "401 Unauthorized");
        status = EXIT_AUTH;
    } else if (message) {
        error_message("%s (HTTP %d)", message, resp->status);
    } else { /* webfused's admin API always says what is wrong: this is another server */
        error_message("HTTP %d, not an answer of webfused's admin API: is --url its admin port "
                      "(--admin-port, 8082 by default)?",
                      resp->status);
    }
    free(message);
    json_decref(root);
    return status;
}

/* Metrics are lines of text: each one escaped. */
static void print_lines(const char *body, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(body, '\n', len);
        size_t n = nl ? (size_t)(nl - body) : len;
        char *line = strndup(body, n);
        if (line)
            print_text("%s\n", line);
        free(line);
        body += nl ? n + 1 : n;
        len -= nl ? n + 1 : n;
    }
}

static int show(const struct options *opt, const struct command *cmd, const struct response *resp)
{
    if (cmd->kind == CMD_METRICS) {
        print_lines(resp->body, resp->len);
        return EXIT_OK;
    }
    json_error_t error;
    json_t *root = json_loadb(resp->body, resp->len, 0, &error);
    if (!root) {
        error_message("the daemon's answer is not JSON: %s", error.text);
        return EXIT_UNREACHABLE;
    }
    if (opt->json) {
        print_json(root);
        json_decref(root);
        return EXIT_OK;
    }
    char b[96];
    switch (cmd->kind) {
    case CMD_SESSIONS:
        print_sessions(root);
        break;
    case CMD_SESSION:
        print_session(root);
        break;
    case CMD_FILESYSTEMS:
        print_filesystems(root);
        break;
    case CMD_EVENTS:
        print_events(root);
        break;
    case CMD_DETACH:
        printf("detaching %s (session ", cmd->subject);
        print_text("%s)\n", cell(json_object_get(root, "session"), b, sizeof(b)));
        break;
    case CMD_DISCONNECT:
        printf("disconnecting session %s\n", cmd->subject);
        break;
    case CMD_HEALTH:
        print_text("%s\n", cell(json_object_get(root, "status"), b, sizeof(b)));
        break;
    case CMD_METRICS:
        break;
    }
    json_decref(root);
    return EXIT_OK;
}

/* ---- passwd -----------------------------------------------------------------------------------
 */

/* The new password: $WEBFUSE_PASSWORD, or asked twice on the terminal. */
static int new_password(const char *name, char *password, size_t cap)
{
    const char *env = getenv("WEBFUSE_PASSWORD");
    if (env) {
        if (strlen(env) >= cap) {
            error_message("WEBFUSE_PASSWORD is too long");
            return EXIT_USAGE;
        }
        strcpy(password, env);
        return EXIT_OK;
    }
    char prompt[128], again[AUTH_PASSWORD_MAX + 1];
    snprintf(prompt, sizeof(prompt), "Password for %s: ", name);
    int rc = auth_password_prompt(prompt, password, cap);
    if (rc == 0)
        rc = auth_password_prompt("Again: ", again, sizeof(again));
    if (rc != 0) {
        error_message("cannot read the password: %s",
                      rc == -ENXIO ? "no terminal (set WEBFUSE_PASSWORD)" : strerror(-rc));
        return EXIT_USAGE;
    }
    bool same = strcmp(password, again) == 0;
    explicit_bzero(again, sizeof(again));
    if (!same) {
        error_message("the passwords differ");
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* passwd NAME [--fs LIST]: prints a line for webfused's --auth-file. */
static int passwd_command(int argc, char **argv)
{
    static const struct option sub_options[] = {
        {"fs", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    const char *list = "*";
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", sub_options, NULL)) != -1) {
        if (c != 'f')
            return usage_error("'passwd' takes NAME and --fs LIST");
        list = optarg;
    }
    if (argc - optind != 1)
        return usage_error("'passwd' takes one user name");
    const char *name = argv[optind];
    char err[256], line[AUTH_LINE_MAX + 1];
    /* The name and the list are checked before the password is asked for. */
    if (auth_line_format(name, "$y$j9T$0$0", list, line, sizeof(line), err, sizeof(err)) != 0)
        return usage_error("%s", err);
    char password[AUTH_PASSWORD_MAX + 1];
    int rc = new_password(name, password, sizeof(password));
    if (rc == EXIT_OK && password[0] == '\0') {
        error_message("the password is empty");
        rc = EXIT_USAGE;
    }
    char hash[512];
    if (rc == EXIT_OK && auth_password_hash(password, hash, sizeof(hash)) != 0) {
        error_message("cannot hash the password");
        rc = EXIT_USAGE;
    }
    explicit_bzero(password, sizeof(password));
    if (rc != EXIT_OK)
        return rc;
    if (auth_line_format(name, hash, list, line, sizeof(line), err, sizeof(err)) != 0) {
        error_message("%s", err);
        return EXIT_USAGE;
    }
    printf("%s\n", line);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"url", required_argument, NULL, 'u'}, {"token-file", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},      {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},      {"ca", required_argument, NULL, 'c'},
        {"version", no_argument, NULL, 'V'},   {NULL, 0, NULL, 0},
    };
    struct options opt = {
        .url = getenv("WEBFUSE_ADMIN_URL") ? getenv("WEBFUSE_ADMIN_URL") : DEFAULT_URL,
        .token_file = getenv("WEBFUSE_ADMIN_TOKEN_FILE") ? getenv("WEBFUSE_ADMIN_TOKEN_FILE")
                                                         : DEFAULT_TOKEN_FILE,
        .timeout_s = DEFAULT_TIMEOUT_S,
    };
    int c;
    while ((c = getopt_long(argc, argv, "+u:t:jT:hVc:", options, NULL)) != -1) {
        switch (c) {
        case 'u':
            opt.url = optarg;
            break;
        case 'c':
            opt.ca_file = optarg;
            break;
        case 't':
            opt.token_file = optarg;
            break;
        case 'j':
            opt.json = true;
            break;
        case 'T':
            opt.timeout_s = is_number(optarg) ? atoi(optarg) : 0;
            if (opt.timeout_s < 1 || opt.timeout_s > 3600)
                return usage_error("--timeout takes a number of seconds from 1 to 3600");
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        case 'V':
            printf(PROGRAM " %s\n", WEBFUSE_VERSION);
            return EXIT_OK;
        default:
            fprintf(stderr, "Try '" PROGRAM " --help' for more information.\n");
            return EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return usage_error("no command given");
    if (strcmp(argv[optind], "passwd") == 0)
        return passwd_command(argc - optind, argv + optind);
    struct target target = {0};
    if (parse_url(opt.url, &target) != 0)
        return usage_error("'%s' is not an http(s)://HOST[:PORT] URL", opt.url);
    if (opt.ca_file && !target.tls)
        return usage_error("--ca is for https:// URLs, not '%s'", opt.url);
    if (opt.ca_file && access(opt.ca_file, R_OK) != 0)
        return usage_error("cannot read --ca %s: %s", opt.ca_file, strerror(errno));
    struct command cmd = {0};
    int rc = parse_command(argc - optind, argv + optind, &cmd);
    if (rc != 0)
        return rc;

    char token[MAX_TOKEN + 1];
    if (cmd.needs_token) {
        rc = read_token(opt.token_file, token, sizeof(token));
        if (rc != 0) {
            free(cmd.body);
            return rc;
        }
    }
    struct response resp = {0};
    rc = http_request(&opt, &target, cmd.needs_token ? token : NULL, cmd.method, cmd.path, cmd.body,
                      &resp);
    free(cmd.body);
    if (rc != 0)
        return rc;
    rc = resp.status >= 200 && resp.status < 300 ? show(&opt, &cmd, &resp)
                                                 : report_error(&opt, &resp);
    free(resp.body);
    return rc;
}
