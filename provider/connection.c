/* Connection: the libwebsockets client, reassembly of incoming messages, the bounded outgoing
 * queue, reconnecting with backoff, signals; and the provider object's life. The protocol in use
 * (json.c, webfuse2.c) sees whole messages and queues its answers with provider_send. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "provider_internal.h"

/* Outgoing queue: above PAUSE bytes the provider stops reading requests until the queue drained
 * to half of it; MAX bytes or messages can only be reached by answers to requests that had been
 * received already, and drop the connection when they are. */
#define PROVIDER_QUEUE_PAUSE_BYTES (8u * 1024 * 1024)
#define PROVIDER_QUEUE_MAX_BYTES (64u * 1024 * 1024)
#define PROVIDER_QUEUE_MAX_MESSAGES 4096
/* The reassembly buffer is kept for the next message up to this size (a 1 MiB write plus its
 * header fits), and freed when a larger message made it grow beyond. */
#define PROVIDER_RX_KEEP (2u * 1024 * 1024)
/* Reconnect backoff: first delay, doubled after each failed attempt up to MAX. */
#define PROVIDER_BACKOFF_FIRST_MS 500u
#define PROVIDER_BACKOFF_MAX_MS 30000u
/* How long a clean close (our close frame, the gateway's answer) may take on SIGINT/SIGTERM. */
#define PROVIDER_CLOSE_TIMEOUT_MS 3000u
/* Open files the process may hold: a soft RLIMIT_NOFILE below this is raised (up to the hard
 * limit) so that every export's (or the tree's) handle limit is usable. */
#define PROVIDER_NOFILE_WANTED 65536u

static const struct provider_protocol *const provider_protocols[] = {
    &provider_protocol_webfuse2,
    &provider_protocol_json,
};

bool provider_protocol_known(const char *name)
{
    for (size_t i = 0; i < sizeof(provider_protocols) / sizeof(provider_protocols[0]); i++)
        if (strcmp(provider_protocols[i]->name, name) == 0)
            return true;
    return false;
}

static const struct provider_protocol *provider_protocol_find(const char *name)
{
    for (size_t i = 0; i < sizeof(provider_protocols) / sizeof(provider_protocols[0]); i++)
        if (strcmp(provider_protocols[i]->name, name) == 0)
            return provider_protocols[i];
    return NULL;
}

struct provider_msg *provider_msg_new(size_t cap)
{
    struct provider_msg *msg = malloc(sizeof(*msg) + LWS_PRE + cap);
    if (!msg)
        return NULL;
    msg->next = NULL;
    msg->len = 0;
    return msg;
}

struct provider_msg *provider_msg_fit(struct provider_msg *msg, size_t cap)
{
    if (cap - msg->len < PROVIDER_MSG_SLACK)
        return msg;
    /* A copy, not realloc: shrinking in place leaves the rest a free chunk too small for the
     * next large answer, and the heap grows by one large answer per small one queued. Freed
     * whole, the large block is taken again by the next read. */
    size_t size = sizeof(*msg) + LWS_PRE + msg->len;
    struct provider_msg *fit = malloc(size);
    if (!fit)
        return msg;
    memcpy(fit, msg, size);
    free(msg);
    return fit;
}

void provider_mark_serving(struct provider *p)
{
    p->failed_attempts = 0;
}

/* Signals reach the service loop through these: the handler only counts and wakes lws
 * (lws_cancel_service writes to lws's wake-up pipe). The only process-wide state of the provider;
 * set by provider_run around its loop. The process has one thread (lws runs no threads of its
 * own here), so once the context pointer is cleared no handler can still be using it. */
static volatile sig_atomic_t provider_signals;
static struct lws_context *volatile provider_signal_context;
static struct sigaction provider_old_sigint;
static struct sigaction provider_old_sigterm;

static void provider_on_signal(int signo)
{
    (void)signo;
    provider_signals++;
    if (provider_signal_context)
        lws_cancel_service(provider_signal_context);
}

/* Ping after 30 s without traffic; give the connection up after 70 s without a valid frame, so a
 * silently dead gateway ends in a reconnect instead of a connection that waits forever. */
static const lws_retry_bo_t provider_idle_policy = {
    .secs_since_valid_ping = 30,
    .secs_since_valid_hangup = 70,
};

static void provider_queue_drop(struct provider *p)
{
    while (p->queue_head) {
        struct provider_msg *msg = p->queue_head;
        p->queue_head = msg->next;
        free(msg);
    }
    p->queue_tail = NULL;
    p->queue_count = 0;
    p->queue_bytes = 0;
    p->rx_paused = false;
}

int provider_send(struct provider *p, struct provider_msg *msg)
{
    if (p->state != PROVIDER_CONN_OPEN) {
        free(msg);
        return -ENOTCONN;
    }
    if (p->queue_count >= PROVIDER_QUEUE_MAX_MESSAGES ||
        p->queue_bytes + msg->len > PROVIDER_QUEUE_MAX_BYTES) {
        free(msg);
        log_error("outgoing queue full (%zu messages, %zu bytes): closing the connection",
                  p->queue_count, p->queue_bytes);
        provider_close_connection(p, LWS_CLOSE_STATUS_POLICY_VIOLATION, "provider queue full");
        return -ECONNABORTED;
    }
    if (p->queue_tail)
        p->queue_tail->next = msg;
    else
        p->queue_head = msg;
    p->queue_tail = msg;
    p->queue_count++;
    p->queue_bytes += msg->len;
    if (!p->rx_paused && p->queue_bytes > PROVIDER_QUEUE_PAUSE_BYTES) {
        /* The gateway asks faster than the socket takes the answers: stop reading requests. */
        lws_rx_flow_control(p->wsi, 0);
        p->rx_paused = true;
        log_debug("%zu bytes of answers queued: reading paused", p->queue_bytes);
    }
    lws_callback_on_writable(p->wsi);
    return 0;
}

void provider_close_connection(struct provider *p, enum lws_close_status status, const char *reason)
{
    if (p->state != PROVIDER_CONN_OPEN)
        return;
    p->state = PROVIDER_CONN_CLOSING;
    p->close_status = status;
    p->close_reason = reason;
    lws_callback_on_writable(p->wsi);
}

static void provider_rx_reset(struct provider *p)
{
    p->rx_len = 0;
    p->rx_in_message = false;
    if (p->rx_cap > PROVIDER_RX_KEEP) { /* do not keep a huge buffer after one huge message */
        free(p->rx);
        p->rx = NULL;
        p->rx_cap = 0;
    }
}

static int provider_rx_append(struct provider *p, const void *data, size_t len)
{
    if (len > PROVIDER_MAX_MESSAGE - p->rx_len)
        return -EMSGSIZE;
    if (p->rx_len + len > p->rx_cap) {
        size_t cap = p->rx_cap ? p->rx_cap : 65536;
        while (cap < p->rx_len + len)
            cap *= 2;
        if (cap > PROVIDER_MAX_MESSAGE)
            cap = PROVIDER_MAX_MESSAGE;
        char *rx = realloc(p->rx, cap);
        if (!rx)
            return -ENOMEM;
        p->rx = rx;
        p->rx_cap = cap;
    }
    memcpy(p->rx + p->rx_len, data, len);
    p->rx_len += len;
    return 0;
}

/* One piece of an incoming message; whole messages go to the protocol. */
static int provider_on_receive(struct provider *p, struct lws *wsi, const void *in, size_t len)
{
    if (p->state != PROVIDER_CONN_OPEN)
        return 0; /* closing: nothing more is answered */
    bool final = lws_is_final_fragment(wsi);
    if (!p->rx_in_message && final) {
        p->protocol->on_message(p, in, len); /* common case: no copy */
        return 0;
    }
    int rc = provider_rx_append(p, in, len);
    if (rc < 0) {
        log_error("gateway sent a message larger than %u bytes: closing the connection",
                  PROVIDER_MAX_MESSAGE);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
        return -1;
    }
    p->rx_in_message = true;
    if (final) {
        p->protocol->on_message(p, p->rx, p->rx_len);
        provider_rx_reset(p);
    }
    return 0;
}

/* A websocket frame header with a masking key: 2 bytes, up to 8 of length, 4 of key. */
#define PROVIDER_FRAME_HEAD_MAX 14
_Static_assert(LWS_PRE >= PROVIDER_FRAME_HEAD_MAX, "LWS_PRE holds a frame header");

/* The next masking key (xorshift64*, seeded from getrandom per provider). */
static uint32_t provider_mask_key(struct provider *p)
{
    p->mask_state ^= p->mask_state >> 12;
    p->mask_state ^= p->mask_state << 25;
    p->mask_state ^= p->mask_state >> 27;
    return (uint32_t)((p->mask_state * 2685821657736338717ull) >> 32);
}

/* XORs data with the 4 key bytes, eight bytes at a time. */
static void provider_mask(unsigned char *data, size_t len, const unsigned char key[4])
{
    unsigned char pattern[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
    uint64_t word_key;
    memcpy(&word_key, pattern, sizeof(word_key));
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word;
        memcpy(&word, data + i, sizeof(word));
        word ^= word_key;
        memcpy(data + i, &word, sizeof(word));
    }
    for (; i < len; i++)
        data[i] ^= key[i & 3];
}

/* Client frames must be masked (RFC 6455 5.3). libwebsockets masks a byte at a time, which cost
 * more CPU than reading the file, so the frame is built here in the message's LWS_PRE headroom
 * and handed to lws as raw bytes (lws buffers what the socket does not take, as for any write). */
static int provider_frame_write(struct provider *p, struct lws *wsi, struct provider_msg *msg)
{
    unsigned char *payload = msg->bytes + LWS_PRE;
    size_t len = msg->len;
    unsigned char head[PROVIDER_FRAME_HEAD_MAX];
    size_t n = 0;
    head[n++] = 0x80 | (p->protocol->binary ? 0x2 : 0x1); /* FIN, binary or text */
    if (len < 126) {
        head[n++] = 0x80 | (unsigned char)len;
    } else if (len <= 0xffff) {
        head[n++] = 0x80 | 126;
        head[n++] = (unsigned char)(len >> 8);
        head[n++] = (unsigned char)len;
    } else {
        head[n++] = 0x80 | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            head[n++] = (unsigned char)((uint64_t)len >> shift);
    }
    uint32_t key = provider_mask_key(p);
    unsigned char *key_bytes = head + n;
    for (int i = 0; i < 4; i++)
        head[n++] = (unsigned char)(key >> (24 - 8 * i));
    provider_mask(payload, len, key_bytes);
    memcpy(payload - n, head, n);
    int written = lws_write(wsi, payload - n, n + len, LWS_WRITE_RAW);
    return written < 0 || (size_t)written < n + len ? -1 : 0;
}

/* Writes one queued message (one lws_write per callback, as lws requires) or the close frame. */
static int provider_on_writeable(struct provider *p, struct lws *wsi)
{
    if (p->state == PROVIDER_CONN_CLOSING) {
        const char *reason = p->close_reason ? p->close_reason : "";
        lws_close_reason(wsi, p->close_status, (unsigned char *)reason, strlen(reason));
        return -1;
    }
    struct provider_msg *msg = p->queue_head;
    if (!msg)
        return 0;
    p->queue_head = msg->next;
    if (!p->queue_head)
        p->queue_tail = NULL;
    p->queue_count--;
    p->queue_bytes -= msg->len;
    int rc = provider_frame_write(p, wsi, msg);
    free(msg);
    if (rc < 0) {
        log_error("writing to %s failed", p->options->url);
        return -1;
    }
    if (p->rx_paused && p->queue_bytes <= PROVIDER_QUEUE_PAUSE_BYTES / 2) {
        lws_rx_flow_control(wsi, 1);
        p->rx_paused = false;
        log_debug("%zu bytes of answers queued: reading resumed", p->queue_bytes);
    }
    if (p->queue_head)
        lws_callback_on_writable(wsi);
    return 0;
}

static void provider_connect(struct provider *p);

static void provider_on_retry_timer(lws_sorted_usec_list_t *sul)
{
    struct provider *p = lws_container_of(sul, struct provider, retry_timer);
    provider_connect(p);
}

/* The connection failed or ended: retry after the backoff delay, or end with status 1. */
static void provider_retry_or_exit(struct provider *p)
{
    if (!p->options->reconnect) {
        p->exit_status = 1;
        p->done = true;
        return;
    }
    unsigned shift = p->failed_attempts < 16 ? p->failed_attempts : 16;
    unsigned delay_ms = PROVIDER_BACKOFF_FIRST_MS << shift;
    if (delay_ms > PROVIDER_BACKOFF_MAX_MS)
        delay_ms = PROVIDER_BACKOFF_MAX_MS;
    p->failed_attempts++;
    log_info("reconnecting to %s in %u.%u s", p->options->url, delay_ms / 1000,
             delay_ms % 1000 / 100);
    lws_sul_schedule(p->context, 0, &p->retry_timer, provider_on_retry_timer,
                     (lws_usec_t)delay_ms * LWS_US_PER_MS);
}

/* libwebsockets says why it refused a certificate only in a log line ("SSL error: self-signed
 * certificate (preverify_ok=0;...)"); its connect error then reads "connect SSL err 1: ...". The
 * reason of the last refusal, for the error message (loop thread). */
static char tls_refusal[128];

/* OpenSSL's words for a certificate no trusted one vouches for (self-signed, unknown issuer),
 * the refusals --ca is the answer to; not, say, an expired one. */
static bool tls_untrusted(const char *refusal)
{
    return strstr(refusal, "self-signed") || strstr(refusal, "self signed") ||
           strstr(refusal, "unable to get") || strstr(refusal, "unable to verify");
}

/* What a user can do about a connect error whose libwebsockets text names no cause. */
static const char *connect_error_hint(const struct provider *p, const char *reason, char *buf,
                                      size_t cap)
{
    if (tls_refusal[0] && strstr(tls_refusal, " mismatch"))
        snprintf(buf, cap,
                 "the gateway's certificate does not name %s (%s); use a name or address the "
                 "certificate lists",
                 p->url.host, tls_refusal);
    else if (tls_refusal[0] && tls_untrusted(tls_refusal) && p->options->ca_file)
        snprintf(buf, cap,
                 "the gateway's certificate was refused (%s); %s holds neither it nor its CA",
                 tls_refusal, p->options->ca_file);
    else if (tls_refusal[0] && tls_untrusted(tls_refusal))
        snprintf(buf, cap,
                 "the gateway's certificate was refused (%s); if the gateway has a certificate of "
                 "its own, trust it with --ca FILE",
                 tls_refusal);
    else if (tls_refusal[0])
        snprintf(buf, cap, "the gateway's certificate was refused (%s)", tls_refusal);
    else if (p->url.tls && strncmp(reason, "connect SSL", 11) == 0)
        snprintf(buf, cap, "the TLS handshake failed (is the port for plain ws://?): %s", reason);
    else if (!p->url.port_given && strcmp(reason, "Unable to connect") == 0)
        snprintf(buf, cap,
                 "%s to port %d (the URL names no port; webfused listens on 8081 unless its "
                 "--port says otherwise)",
                 reason, p->url.port);
    else if (strcmp(reason, "Unable to connect") == 0)
        snprintf(buf, cap,
                 "nothing answers on %s port %d (is webfused running there, with this "
                 "--port?)",
                 p->url.host, p->url.port);
    else if (!p->url.tls && strcmp(reason, "read failed") == 0)
        snprintf(buf, cap,
                 "%s: the handshake was cut off (a port for wss:// only, or not a webfuse "
                 "gateway's provider port?)",
                 reason);
    else
        return reason;
    return buf;
}

static void provider_on_connect_error(struct provider *p, const char *lws_reason)
{
    char hint[PATH_MAX + 300]; /* names the --ca file */
    const char *reason = connect_error_hint(p, lws_reason, hint, sizeof(hint));
    tls_refusal[0] = '\0';
    if (p->state != PROVIDER_CONN_CONNECTING)
        return;
    p->state = PROVIDER_CONN_IDLE;
    p->wsi = NULL;
    if (p->stopping) {
        p->done = true;
        return;
    }
    if (p->options->reconnect)
        log_warn("cannot connect to %s: %s", p->options->url, reason);
    else
        log_error("cannot connect to %s: %s", p->options->url, reason);
    provider_retry_or_exit(p);
}

static void provider_on_established(struct provider *p, struct lws *wsi)
{
    p->wsi = wsi;
    p->state = PROVIDER_CONN_OPEN;
    p->connection++;
    p->peer_close_code = 0;
    p->served = false;
    provider_rx_reset(p);
    log_info("connected to %s", p->options->url);
    p->protocol->on_connected(p);
}

/* What to check when the gateway refused the login. */
static const char *login_hint(const char *token)
{
    if (!token || !token[0])
        return ": it wants one (--user NAME)";
    if (!strchr(token, ':'))
        return ": webfused takes USER:PASSWORD as the token (or use --user NAME)";
    return ": check the user and its password (--user, or --token / $WEBFUSE_TOKEN)";
}

/* Logs the close code and reason the gateway sent. */
static void provider_on_peer_close(struct provider *p, const unsigned char *in, size_t len)
{
    int code = len >= 2 ? (in[0] << 8) | in[1] : 0;
    p->peer_close_code = code;
    int reason_len = len > 2 ? (int)(len - 2) : 0;
    if (reason_len > 123)
        reason_len = 123; /* a control frame payload is at most 125 bytes */
    log_info("the gateway closes the connection: code %d%s%.*s", code, reason_len ? ", " : "",
             reason_len, len > 2 ? (const char *)in + 2 : "");
    static const char refused[] = "authentication failed";
    if (code == 1008 && reason_len == sizeof(refused) - 1 &&
        memcmp(in + 2, refused, sizeof(refused) - 1) == 0)
        log_error("the gateway did not accept the login%s", login_hint(p->options->token));
}

static void provider_on_closed(struct provider *p)
{
    if (p->state != PROVIDER_CONN_OPEN && p->state != PROVIDER_CONN_CLOSING)
        return;
    p->state = PROVIDER_CONN_IDLE;
    p->wsi = NULL;
    provider_queue_drop(p);
    provider_rx_reset(p);
    p->protocol->on_disconnected(p);
    if (p->stopping) {
        log_info("disconnected from %s", p->options->url);
        p->done = true;
        return;
    }
    /* 1000 from the gateway is an end on purpose (an operator's detach or disconnect): coming
     * back would undo it. Lost connections, a gateway going away (1001) and refusals are not. */
    if (p->peer_close_code == 1000) {
        log_info("the gateway ended the connection on purpose%s",
                 p->options->reconnect ? ": not reconnecting" : "");
        p->done = true;
        return;
    }
    if (p->options->reconnect)
        log_warn("connection to %s closed", p->options->url);
    else
        log_error("connection to %s closed", p->options->url);
    provider_retry_or_exit(p);
}

static int provider_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len)
{
    (void)user;
    struct provider *p = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        provider_on_connect_error(p, in && len ? (const char *)in : "connection failed");
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        provider_on_established(p, wsi);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return provider_on_receive(p, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return provider_on_writeable(p, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        provider_on_peer_close(p, in, len);
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        provider_on_closed(p);
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: /* the pool has finished jobs (or a signal came) */
        if (p->pool)
            pool_drain(p->pool, p);
        break;
    default:
        break;
    }
    return 0;
}

/* lws gives no reason when a connection cannot even be started; the usual one is a host name
 * that does not resolve, so look for that. */
static void provider_explain_connect_failure(struct provider *p, char *reason, size_t size)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *addresses = NULL;
    int rc = getaddrinfo(p->url.host, NULL, &hints, &addresses);
    if (rc != 0)
        snprintf(reason, size, "cannot resolve %s: %s", p->url.host, gai_strerror(rc));
    else
        snprintf(reason, size, "the connection could not be started");
    if (addresses)
        freeaddrinfo(addresses);
}

static void provider_connect(struct provider *p)
{
    tls_refusal[0] = '\0'; /* a refusal belongs to the attempt it came in */
    struct lws_client_connect_info info;
    memset(&info, 0, sizeof(info));
    info.context = p->context;
    info.address = p->url.host;
    info.port = p->url.port;
    info.path = p->url.path;
    info.host = p->host_header;
    info.origin = p->host_header;
    info.protocol = p->protocol->subprotocol;
    info.pwsi = &p->wsi;
    info.retry_and_idle_policy = &provider_idle_policy;
    /* Verified against the system's trusted certificates and --ca, host name included. */
    info.ssl_connection = p->url.tls ? LCCSCF_USE_SSL : 0;
    p->state = PROVIDER_CONN_CONNECTING;
    log_debug("connecting to %s", p->options->url);
    /* Name resolution happens inside this call and blocks: fine for a provider, whose loop has
     * nothing else to do while it is not connected. */
    if (!lws_client_connect_via_info(&info)) {
        char reason[256];
        provider_explain_connect_failure(p, reason, sizeof(reason));
        provider_on_connect_error(p, reason);
    }
}

static void provider_on_close_timer(lws_sorted_usec_list_t *sul)
{
    struct provider *p = lws_container_of(sul, struct provider, close_timer);
    log_warn("the gateway did not complete the close in time");
    p->done = true;
}

/* SIGINT/SIGTERM: close the connection with a normal close frame, then leave the loop. */
static void provider_stop(struct provider *p)
{
    p->stopping = true;
    log_info("stopping");
    lws_sul_cancel(&p->retry_timer);
    switch (p->state) {
    case PROVIDER_CONN_OPEN:
        provider_close_connection(p, LWS_CLOSE_STATUS_NORMAL, "provider stopping");
        /* fall through */
    case PROVIDER_CONN_CLOSING:
        lws_sul_schedule(p->context, 0, &p->close_timer, provider_on_close_timer,
                         (lws_usec_t)PROVIDER_CLOSE_TIMEOUT_MS * LWS_US_PER_MS);
        break;
    case PROVIDER_CONN_CONNECTING: /* destroying the context drops the attempt */
    case PROVIDER_CONN_IDLE:
        p->done = true;
        break;
    }
}

/* Forwards libwebsockets' own messages (errors only) to our log; a refused certificate is kept
 * for the connect error, which says it better. */
static void provider_lws_log(int level, const char *line)
{
    (void)level;
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    const char *refusal = strstr(line, "SSL error: ");
    if (refusal) {
        refusal += strlen("SSL error: ");
        snprintf(tls_refusal, sizeof(tls_refusal), "%.*s", (int)strcspn(refusal, "(\r\n"), refusal);
        size_t n = strlen(tls_refusal);
        while (n > 0 && tls_refusal[n - 1] == ' ')
            tls_refusal[--n] = '\0';
        log_debug("libwebsockets: %.*s", (int)len, line);
        return;
    }
    log_error("libwebsockets: %.*s", (int)len, line);
}

static int provider_create_context(struct provider *p)
{
    lws_set_log_level(LLL_ERR, provider_lws_log);
    p->lws_protocols[0] = (struct lws_protocols){
        .name = p->protocol->subprotocol,
        .callback = provider_callback,
        /* A whole 1 MiB write request arrives in one piece and is served where it lies. */
        .rx_buffer_size = 1024 * 1024 + 4096,
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = p->lws_protocols;
    info.user = p;
    info.gid = -1;
    info.uid = -1;
    /* One socket and lws's wake-up pipe: keeps lws from sizing tables by the (raised) fd limit. */
    info.fd_limit_per_thread = 16;
    /* Socket reads go through this buffer; lws's 4 KiB default costs a loop turn per 4 KiB of a
     * 1 MiB write request. */
    info.pt_serv_buf_size = 256 * 1024;
    if (p->url.tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.client_ssl_ca_filepath = p->options->ca_file;
    }
    p->context = lws_create_context(&info);
    if (!p->context) {
        log_error("cannot create the libwebsockets context");
        return -ENOMEM;
    }
    return 0;
}

/* Lets each export keep EXPORT_MAX_HANDLES files open under a low default soft limit. */
static void provider_raise_nofile(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0 || limit.rlim_cur >= PROVIDER_NOFILE_WANTED)
        return;
    rlim_t wanted = PROVIDER_NOFILE_WANTED;
    limit.rlim_cur = limit.rlim_max < wanted ? limit.rlim_max : wanted;
    if (setrlimit(RLIMIT_NOFILE, &limit) < 0)
        log_debug("cannot raise the open file limit: %s", strerror(errno));
}

static void provider_install_signals(struct lws_context *context)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    sigemptyset(&action.sa_mask);
    action.sa_handler = provider_on_signal;
    provider_signals = 0;
    provider_signal_context = context;
    sigaction(SIGINT, &action, &provider_old_sigint);
    sigaction(SIGTERM, &action, &provider_old_sigterm);
}

static void provider_restore_signals(void)
{
    provider_signal_context = NULL;
    sigaction(SIGINT, &provider_old_sigint, NULL);
    sigaction(SIGTERM, &provider_old_sigterm, NULL);
}

int provider_run(struct provider *p)
{
    provider_raise_nofile();
    /* Every read answer (up to 1 MiB) is allocated and freed again: keep such blocks in the heap
     * instead of mapping, zeroing and unmapping pages for each. */
    mallopt(M_MMAP_THRESHOLD, 4 * PROVIDER_MAX_READ);
    mallopt(M_TRIM_THRESHOLD, 32 * PROVIDER_MAX_READ);
    if (provider_create_context(p) < 0)
        return 1;
    provider_install_signals(p->context);
    if (pool_new(p->context, &p->pool) < 0)
        log_warn("no worker threads: files are read on the connection's thread");
    provider_connect(p);
    int seen_signals = 0;
    while (!p->done) {
        if (lws_service(p->context, 0) < 0) {
            log_error("libwebsockets service loop failed");
            p->exit_status = 1;
            break;
        }
        if (provider_signals != seen_signals) {
            seen_signals = provider_signals;
            if (p->stopping)
                p->done = true; /* a second signal: do not wait for the close any longer */
            else
                provider_stop(p);
        }
    }
    provider_restore_signals(); /* before the context goes away: no handler may wake it then */
    pool_free(p->pool, p);      /* likewise for the workers */
    p->pool = NULL;
    lws_sul_cancel(&p->retry_timer);
    lws_sul_cancel(&p->close_timer);
    lws_context_destroy(p->context);
    p->context = NULL;
    p->wsi = NULL;
    p->state = PROVIDER_CONN_IDLE;
    provider_queue_drop(p);
    if (p->exit_status == 0 && p->any_refused)
        return 1;
    return p->exit_status;
}

/* ------------------------------------------------------------------------------------------------
 * Construction
 * ----------------------------------------------------------------------------------------------*/

static int provider_set_url(struct provider *p, const char *text)
{
    int rc = provider_url_parse(text, &p->url);
    if (rc < 0) {
        log_error("bad url %s: %s", text, strerror(-rc));
        return -EINVAL;
    }
    bool v6 = strchr(p->url.host, ':') != NULL;
    snprintf(p->host_header, sizeof(p->host_header), "%s%s%s:%d", v6 ? "[" : "", p->url.host,
             v6 ? "]" : "", p->url.port);
    return 0;
}

int provider_new(const struct provider_options *options, struct provider **out)
{
    struct provider *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->options = options;
    if (getrandom(&p->mask_state, sizeof(p->mask_state), GRND_NONBLOCK) != sizeof(p->mask_state))
        p->mask_state = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
    p->mask_state |= 1; /* xorshift never leaves 0 */
    p->protocol = provider_protocol_find(options->protocol);
    int rc = -EINVAL;
    if (!p->protocol) {
        log_error("unknown protocol %s", options->protocol);
        goto fail;
    }
    if ((rc = provider_set_url(p, options->url)) < 0)
        goto fail;
    if ((rc = p->protocol->open(p)) < 0)
        goto fail;
    p->read_buffer = malloc(PROVIDER_MAX_READ);
    if (!p->read_buffer) {
        rc = -ENOMEM;
        goto fail;
    }
    *out = p;
    return 0;
fail:
    provider_free(p);
    return rc;
}

void provider_free(struct provider *p)
{
    if (!p)
        return;
    if (p->context)
        lws_context_destroy(p->context);
    provider_queue_drop(p);
    if (p->protocol)
        p->protocol->close(p);
    free(p->read_buffer);
    free(p->rx);
    free(p);
}
