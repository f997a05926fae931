/* The admin port's HTTP transport: one request per connection at a time, from its headers (and a
 * bounded body) to its response. What a request means is routes.c's business.
 *
 * Loop thread only. A request is owned by its connection: the per-connection data holds the only
 * pointer to it, and it is freed when its response is written or its connection closes. One
 * exception: a request waiting for the registry when its connection closes is left to the query's
 * completion (admin_registry_done), which sees req->wsi == NULL and frees it.
 */
#include "admin_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Bodies larger than ADMIN_MAX_BODY but at most this big are read and thrown away before the 413
 * goes out (closing with unread data would reset the connection and lose the answer); larger ones
 * get the 413 at once and the connection is closed. */
#define ADMIN_DISCARD_MAX (1024 * 1024)
/* A request still unanswered after this long (a stalled body, a registry query stuck behind a
 * slow disk) has its connection closed by libwebsockets. */
#define ADMIN_QUERY_TIMEOUT_S 30

const unsigned admin_status_codes[ADMIN_STATUS_SLOTS] = {200, 202, 400, 401, 404, 405,
                                                         409, 411, 413, 500, 503, 0};

int admin_status_slot(unsigned status)
{
    for (int i = 0; i < ADMIN_STATUS_SLOTS - 1; i++)
        if (admin_status_codes[i] == status)
            return i;
    return ADMIN_STATUS_SLOTS - 1;
}

void admin_req_free(struct admin_req *req)
{
    if (!req)
        return;
    free(req->body);
    free(req->resp);
    if (req->live)
        json_decref(req->live);
    free(req);
}

/* ---- responses --------------------------------------------------------------------------------
 */

void admin_respond(struct admin_req *req, unsigned status, const char *content_type, char *body,
                   size_t len)
{
    if (req->responded) { /* a bug: two answers to one request */
        log_error("admin: second response %u to %s ignored", status, req->path);
        free(body);
        return;
    }
    if (req->method == LWSHUMETH_HEAD) {
        /* Only /healthz answers HEAD (others 405), and a HEAD answer has no body: close after
         * the headers rather than leave the connection's framing to chance. */
        free(body);
        body = NULL;
        req->close_after = true;
    }
    req->responded = true;
    req->status = status;
    req->content_type = content_type;
    req->resp = body;
    req->resp_len = body ? len : 0;
    req->admin->responses[admin_status_slot(status)]++;
    if (req->wsi)
        lws_callback_on_writable(req->wsi);
}

void admin_respond_json(struct admin_req *req, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body)
        json_decref(body);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        admin_respond(req, 500, "application/json", strdup(oom), sizeof(oom) - 1);
        return;
    }
    size_t len = strlen(text);
    /* A trailing newline, so that curl output ends its line. */
    char *with_newline = realloc(text, len + 2);
    if (with_newline) {
        text = with_newline;
        text[len++] = '\n';
        text[len] = '\0';
    }
    admin_respond(req, status, "application/json", text, len);
}

void admin_respond_error(struct admin_req *req, unsigned status, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    admin_respond_json(req, status, json_pack("{s:s}", "error", message));
}

/* Writes the headers, then the body in pieces, one write per writeable callback. Returns -1 to
 * close the connection. */
static int http_write(struct admin_req **slot)
{
    struct admin_req *req = *slot;
    struct lws *wsi = req->wsi;
    if (!req->headers_sent) {
        unsigned char buf[LWS_PRE + 1024];
        unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
        static const char bearer[] = "Bearer realm=\"webfused\"";
        static const char no_store[] = "no-store";
        static const char close[] = "close";
        if (lws_add_http_common_headers(wsi, req->status, req->content_type,
                                        (lws_filepos_t)req->resp_len, &p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                         (const unsigned char *)no_store, sizeof(no_store) - 1, &p,
                                         end) ||
            (req->allow && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_ALLOW,
                                                        (const unsigned char *)req->allow,
                                                        (int)strlen(req->allow), &p, end)) ||
            (req->status == 401 &&
             lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_WWW_AUTHENTICATE,
                                          (const unsigned char *)bearer, sizeof(bearer) - 1, &p,
                                          end)) ||
            (req->close_after &&
             lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)close,
                                          sizeof(close) - 1, &p, end)) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        req->headers_sent = true;
        if (req->resp_len > 0) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else {
        unsigned char buf[LWS_PRE + ADMIN_WRITE_CHUNK];
        size_t n = req->resp_len - req->resp_sent;
        if (n > ADMIN_WRITE_CHUNK)
            n = ADMIN_WRITE_CHUNK;
        bool final = req->resp_sent + n == req->resp_len;
        memcpy(buf + LWS_PRE, req->resp + req->resp_sent, n);
        if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
            (int)n)
            return -1;
        req->resp_sent += n;
        if (!final) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    /* The whole response is out. */
    bool close_after = req->close_after;
    admin_req_free(req);
    *slot = NULL;
    if (close_after || lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

/* ---- requests ---------------------------------------------------------------------------------
 */

/* The connection is done with its request: free it, or leave it to the registry query that still
 * holds it. */
static void http_release(struct admin_req **slot)
{
    struct admin_req *req = *slot;
    if (!req)
        return;
    *slot = NULL;
    req->wsi = NULL;
    if (req->waiting)
        req->orphaned = true;
    else
        admin_req_free(req);
}

/* A copy of a header's value; NULL when it is absent or longer than cap - 1. */
static const char *header_value(struct lws *wsi, enum lws_token_indexes token, char *buf,
                                size_t cap)
{
    int total = lws_hdr_total_length(wsi, token);
    if (total <= 0 || (size_t)total >= cap)
        return NULL;
    return lws_hdr_copy(wsi, buf, (int)cap, token) >= 0 ? buf : NULL;
}

/* The query arguments, as libwebsockets split (on '&') and URL-decoded them. */
static void copy_args(struct admin_req *req)
{
    for (int i = 0;; i++) {
        int len = lws_hdr_fragment_length(req->wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (len <= 0)
            return;
        if (req->arg_count == ADMIN_ARGS_MAX || (size_t)len >= ADMIN_ARG_MAX ||
            lws_hdr_copy_fragment(req->wsi, req->args[req->arg_count], ADMIN_ARG_MAX,
                                  WSI_TOKEN_HTTP_URI_ARGS, i) < 0) {
            req->args_overflow = true;
            return;
        }
        req->arg_count++;
    }
}

/* Anyone who reaches the admin port can send bad tokens as fast as they like: the log of a
 * device with little flash gets at most one line a second of them, saying how many it left out.
 * Each one is counted (metrics) and recorded (the history keeps the newest of them apart). */
static void log_refusal(struct admin *admin, const struct admin_req *req, const char *why)
{
    uint64_t now = uv_now(admin->loop);
    if (admin->refusals_logged_at != 0 && now - admin->refusals_logged_at < 1000) {
        admin->refusals_unlogged++;
        return;
    }
    if (admin->refusals_unlogged > 0)
        log_warn("admin: %s from %s for %s (and %" PRIu64 " more refused, not logged)", why,
                 req->remote, req->path, admin->refusals_unlogged);
    else
        log_warn("admin: %s from %s for %s", why, req->remote, req->path);
    admin->refusals_logged_at = now;
    admin->refusals_unlogged = 0;
}

static void refuse_token(struct admin_req *req, bool presented)
{
    const char *why = presented ? "wrong admin token" : "missing admin token";
    req->admin->auth_failures++;
    log_refusal(req->admin, req, why);
    admin_record(req->admin, "admin_auth_failed", req->remote, 0, NULL, why);
    admin_respond_error(req, 401, "%s: send \"Authorization: Bearer <token>\"", why);
}

int admin_request_start(struct admin_req *req, const struct admin_headers *headers)
{
    unsigned long long length = 0;
    if (headers->content_length) {
        char *end;
        length = strtoull(headers->content_length, &end, 10);
        if (end == headers->content_length || *end != '\0') {
            req->close_after = true;
            admin_respond_error(req, 400, "bad Content-Length");
            return 0;
        }
    } else if (headers->chunked) {
        req->close_after = true;
        admin_respond_error(req, 411, "a request body needs a Content-Length");
        return 0;
    }
    bool health = strcmp(req->path, "/healthz") == 0;
    if (!health && !(headers->authorization &&
                     admin_authorization_valid(req->admin->token, headers->authorization))) {
        req->close_after = length > 0;
        refuse_token(req, headers->authorization != NULL);
        return 0;
    }
    if (length > ADMIN_MAX_BODY) {
        req->close_after = true;
        if (length > ADMIN_DISCARD_MAX) {
            admin_respond_error(req, 413, "request body over %d bytes", ADMIN_MAX_BODY);
            return 0;
        }
        req->body_expected = (size_t)length; /* read and dropped; the 413 follows */
        return 0;
    }
    if (length > 0) {
        req->body = malloc((size_t)length + 1);
        if (!req->body)
            return -1;
        req->body_expected = (size_t)length;
        return 0; /* routed by admin_request_body_done */
    }
    if (req->admin->closing)
        admin_respond_error(req, 503, "webfused is shutting down");
    else
        admin_route(req);
    return 0;
}

/* Headers are in: make the request, then let admin_request_start decide. */
static int http_on_request(struct admin *admin, struct lws *wsi, struct admin_req **slot,
                           const char *uri, size_t len)
{
    http_release(slot); /* a previous request the client gave up on */
    struct admin_req *req = calloc(1, sizeof(*req));
    if (!req)
        return -1;
    *slot = req;
    req->admin = admin;
    req->wsi = wsi;
    char *method_uri;
    int method_len;
    req->method = lws_http_get_uri_and_method(wsi, &method_uri, &method_len);
    if (len >= sizeof(req->path))
        len = sizeof(req->path) - 1;
    memcpy(req->path, uri, len);
    req->path[len] = '\0';
    copy_args(req);
    if (!lws_get_peer_simple(wsi, req->remote, sizeof(req->remote)))
        snprintf(req->remote, sizeof(req->remote), "?");
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, ADMIN_QUERY_TIMEOUT_S);

    /* Any length a body can have fits 20 digits. A longer value (leading zeros) is bad: the
     * request would wait for a body libwebsockets does not read (it takes no value over 30). */
    char length[21], authorization[ADMIN_TOKEN_MAX + 32];
    struct admin_headers headers = {
        .content_length = header_value(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, length, sizeof(length)),
        .chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0,
        .authorization =
            header_value(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, authorization, sizeof(authorization)),
    };
    if (!headers.content_length && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
        headers.content_length = ""; /* too long: refused as bad */
    /* A header too long to be ours is still a token presented. */
    if (!headers.authorization && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) > 0)
        headers.authorization = "";
    int rc = admin_request_start(req, &headers);
    explicit_bzero(authorization, sizeof(authorization));
    return rc;
}

int admin_request_body(struct admin_req *req, const void *in, size_t len)
{
    if (!req->body) /* oversized: dropped */
        return 0;
    if (len > req->body_expected - req->body_len)
        return -1; /* more than Content-Length announced */
    memcpy(req->body + req->body_len, in, len);
    req->body_len += len;
    return 0;
}

void admin_request_body_done(struct admin_req *req)
{
    if (req->responded)
        return;
    if (!req->body) {
        admin_respond_error(req, 413, "request body over %d bytes", ADMIN_MAX_BODY);
        return;
    }
    req->body[req->body_len] = '\0';
    if (req->admin->closing)
        admin_respond_error(req, 503, "webfused is shutting down");
    else
        admin_route(req);
}

int admin_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    struct admin_req **slot = user;
    const struct lws_protocols *protocol = lws_get_protocol(wsi);
    /* libwebsockets keeps its own copy of the protocol table: `user` is what we set, the admin. */
    struct admin *admin = protocol ? protocol->user : NULL;
    /* No websockets and no HTTP/2 on the admin port. libwebsockets asks before a connection has
     * its per-request data (slot is NULL then), so this is answered first: an upgrade let
     * through held the connection with no timeout, and an h2c one reached an assertion of
     * libwebsockets with a body of no length. */
    if (reason == LWS_CALLBACK_HTTP_CONFIRM_UPGRADE)
        return -1;
    if (!admin || !slot)
        return lws_callback_http_dummy(wsi, reason, user, in, len);

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return http_on_request(admin, wsi, slot, in ? in : "", in ? strlen(in) : 0);
    case LWS_CALLBACK_HTTP_BODY:
        return *slot ? admin_request_body(*slot, in, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (*slot)
            admin_request_body_done(*slot);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!*slot || !(*slot)->responded)
            return 0; /* nothing to say yet: a registry query is out */
        return http_write(slot);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        http_release(slot);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
