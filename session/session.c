/* One provider connection: its filesystems, its requests in flight and its outgoing messages.
 *
 * Everything here runs on the loop thread. A session is owned by the hub; it lives while its
 * connection is open or any of its mounts still exists, and is freed in one place:
 * session_release, once both are gone.
 */
#include "session_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"

static void session_release(struct session *s);
static void session_free(uv_handle_t *handle);

/* ---- requests in flight -----------------------------------------------------------------------
 */

static struct pending *pending_slot(struct session *s, uint32_t id)
{
    return &s->pending[id % s->hub->config.max_pending];
}

static bool pending_has_room(const struct session *s)
{
    return s->pending_count < s->hub->config.max_pending;
}

static void pending_tick(uv_timer_t *timer);

/* The tick runs while requests are in flight or a writeable callback is awaited; it stops
 * itself once neither is. */
static void tick_keep(struct session *s)
{
    if (uv_is_active((uv_handle_t *)&s->tick))
        return;
    s->tick_last = uv_now(s->hub->loop);
    uv_timer_start(&s->tick, pending_tick, SESSION_TICK_MS, SESSION_TICK_MS);
}

void session_want_writeable(struct session *s)
{
    if (!s->wsi)
        return;
    if (!s->write_wanted_since) {
        s->write_wanted_since = uv_now(s->hub->loop);
        tick_keep(s);
    }
    lws_callback_on_writable(s->wsi);
}

/* Returns the new request's id; the caller checked pending_has_room. */
static uint32_t pending_add(struct session *s, struct filesystem *fs, struct fusebridge_op *op)
{
    uint32_t id;
    do {
        id = ++s->next_request_id;
        if (id == 0) /* 0 marks a free slot and is never sent */
            id = ++s->next_request_id;
    } while (pending_slot(s, id)->id != 0);

    struct pending *p = pending_slot(s, id);
    p->id = id;
    p->op = op;
    p->fs = fs;
    p->kind = fusebridge_op_request(op)->kind;
    p->started = uv_hrtime();
    p->deadline = uv_now(s->hub->loop) + s->hub->config.timeout_ms;
    if (p->kind == FUSEBRIDGE_READ) {
        p->read_bytes = fusebridge_op_request(op)->size;
        session_read_sent(s, fs, p->read_bytes);
    }
    s->pending_count++;
    tick_keep(s);
    session_busy_poll(s);
    return id;
}

static struct fusebridge_op *pending_remove(struct session *s, struct pending *p)
{
    struct fusebridge_op *op = p->op;
    uint32_t read_bytes = p->read_bytes;
    memset(p, 0, sizeof(*p));
    if (read_bytes)
        session_read_ended(s->hub, read_bytes);
    s->pending_count--;
    session_want_writeable(s); /* a slot is free: queued ops may go now */
    return op;
}

const double session_latency_bounds[SESSION_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, INFINITY,
};

static void latency_record(struct session_metrics *m, uint64_t ns)
{
    double seconds = (double)ns / 1e9;
    size_t i = 0;
    while (i < SESSION_LATENCY_BUCKETS - 1 && seconds > session_latency_bounds[i])
        i++;
    m->latency_count[i]++;
    m->latency_sum += seconds;
}

struct pending *session_pending_find(struct session *s, int64_t id)
{
    if (!s->pending || id <= 0 || id > UINT32_MAX)
        return NULL;
    struct pending *p = pending_slot(s, (uint32_t)id);
    return p->id == (uint32_t)id ? p : NULL;
}

int session_take_pending(struct session *s, int64_t id, struct fusebridge_op **op,
                         struct filesystem **fs)
{
    struct pending *p = session_pending_find(s, id);
    if (!p)
        return -ENOENT;
    uint64_t latency = uv_hrtime() - p->started;
    latency_record(&s->hub->metrics, latency);
    session_busy_poll_answered(s, latency);
    *fs = p->fs;
    *op = pending_remove(s, p);
    return 0;
}

void session_account(struct session *s, struct filesystem *fs, enum fusebridge_kind kind, int error,
                     size_t bytes)
{
    struct session_metrics *m = &s->hub->metrics;
    int protocol = s->protocol->index;
    s->requests++;
    fs->requests++;
    m->requests[protocol][kind]++;
    if (error != 0) {
        m->errors[protocol][kind]++;
        return;
    }
    if (kind == FUSEBRIDGE_READ) {
        fs->bytes_read += bytes;
        m->bytes_read += bytes;
    } else if (kind == FUSEBRIDGE_WRITE) {
        fs->bytes_written += bytes;
        m->bytes_written += bytes;
    } else if (kind == FUSEBRIDGE_OPEN || kind == FUSEBRIDGE_CREATE) {
        fs->open_files++;
    } else if (kind == FUSEBRIDGE_RELEASE && fs->open_files > 0) {
        fs->open_files--;
    }
}

/* Fails the pending requests of `fs` (of every filesystem when NULL) with `error`. */
static void pending_fail(struct session *s, const struct filesystem *fs, int error)
{
    for (size_t i = 0; s->pending && i < s->hub->config.max_pending && s->pending_count > 0; i++) {
        struct pending *p = &s->pending[i];
        if (p->id != 0 && (!fs || p->fs == fs)) {
            session_account(s, p->fs, p->kind, error, 0);
            fusebridge_reply_error(pending_remove(s, p), error);
        }
    }
}

/* A writeable callback asked for a request timeout ago has not come: the provider stopped
 * reading its socket (or its network is gone), so nothing reaches it any more, not even a close
 * frame, and the requests queued behind would wait forever. The connection is cut;
 * session_on_closed fails what is pending and detaches the filesystems. */
static void stalled_drop(struct session *s)
{
    log_warn("session %llu: the connection has stayed too full to take a request for %u ms: "
             "dropping it",
             (unsigned long long)s->id, s->hub->config.timeout_ms);
    session_emit(s, SESSION_EVENT_ERROR, NULL, NULL, "provider stopped taking data");
    s->write_wanted_since = 0;
    /* Shut down first: libwebsockets would otherwise wait seconds to flush what it holds. */
    int fd = lws_get_socket_fd(s->wsi);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

/* A READ unanswered for config.slow_read_ms leaves the read budget (SESSION_DEFAULT_SLOW_READ_MS
 * says why); its answer then frees nothing. */
static void pending_read_slow(struct session *s, struct pending *p, uint64_t now_ns)
{
    if (p->read_bytes && now_ns - p->started >= (uint64_t)s->hub->config.slow_read_ms * 1000000) {
        uint32_t bytes = p->read_bytes;
        p->read_bytes = 0;
        session_read_ended(s->hub, bytes);
    }
}

/* A request past its deadline fails with EIO. An OPEN or CREATE keeps its slot for one more
 * timeout: a late answer's handle is then released, not left open at the provider. After that
 * (or for any other request) the slot is freed, so a late answer finds no request and is
 * dropped. Each request is counted once: an abandoned one by its late answer, or as timed out
 * when none comes. */
static void pending_expire(struct session *s, struct pending *p, uint64_t now)
{
    if (p->abandoned) {
        log_debug("session %llu: request %u to %s: no late answer either",
                  (unsigned long long)s->id, p->id, p->fs->name);
        session_account(s, p->fs, p->kind, -ETIMEDOUT, 0);
        fusebridge_reply_error(pending_remove(s, p), -EIO);
        return;
    }
    log_warn("session %llu: request %u to %s timed out", (unsigned long long)s->id, p->id,
             p->fs->name);
    session_emit(s, SESSION_EVENT_ERROR, p->fs->name, NULL, "request timed out");
    if (fusebridge_op_abandon(p->op, -EIO)) {
        p->abandoned = true;
        p->deadline = now + s->hub->config.timeout_ms;
        return;
    }
    session_account(s, p->fs, p->kind, -ETIMEDOUT, 0);
    fusebridge_reply_error(pending_remove(s, p), -EIO);
}

static void pending_tick(uv_timer_t *timer)
{
    struct session *s = container_of(timer, struct session, tick);
    uint64_t now = uv_now(s->hub->loop);
    uint64_t now_ns = uv_hrtime();
    /* A tick far behind its time means the loop itself was held up (the process stopped, the
     * machine swapping): libuv runs timers before it looks at the sockets, so a writeable
     * callback may be waiting right now. The next tick decides. */
    bool loop_held = now - s->tick_last > 10 * SESSION_TICK_MS;
    s->tick_last = now;
    if (s->write_wanted_since && s->wsi && !loop_held &&
        now - s->write_wanted_since >= s->hub->config.timeout_ms)
        stalled_drop(s);
    for (size_t i = 0; i < s->hub->config.max_pending && s->pending_count > 0; i++) {
        struct pending *p = &s->pending[i];
        if (p->id != 0)
            pending_read_slow(s, p, now_ns);
        if (p->id != 0 && p->deadline <= now)
            pending_expire(s, p, now);
    }
    if (s->pending_count == 0 && !s->write_wanted_since)
        uv_timer_stop(timer);
}

/* ---- buffers ----------------------------------------------------------------------------------
 */

int session_tx_reserve(struct session *s, size_t need)
{
    return session_buffer_grow((void **)&s->tx, &s->tx_cap, need, LWS_PRE,
                               s->hub->config.max_message);
}

int session_scratch_reserve(struct session *s, size_t need)
{
    return session_buffer_reserve(s->hub, &s->scratch, need, s->hub->config.max_message);
}

/* ---- messages to the provider -----------------------------------------------------------------
 */

int session_send_control(struct session *s, const char *data, size_t len)
{
    if (!s->wsi)
        return -ENOTCONN;
    if (s->control_count >= SESSION_MAX_CONTROL)
        return -ENOBUFS;
    struct control_msg *msg = malloc(sizeof(*msg) + LWS_PRE + len);
    if (!msg)
        return -ENOMEM;
    msg->next = NULL;
    msg->len = len;
    memcpy(msg->data + LWS_PRE, data, len);
    if (s->control_tail)
        s->control_tail->next = msg;
    else
        s->control_head = msg;
    s->control_tail = msg;
    s->control_count++;
    session_want_writeable(s);
    return 0;
}

static int control_write_one(struct session *s)
{
    struct control_msg *msg = s->control_head;
    s->control_head = msg->next;
    if (!s->control_head)
        s->control_tail = NULL;
    s->control_count--;
    int rc = lws_write(s->wsi, msg->data + LWS_PRE, msg->len, s->protocol->write_mode);
    s->bytes_out += msg->len;
    free(msg);
    return rc < 0 ? -EPIPE : 0;
}

static void control_free_all(struct session *s)
{
    while (s->control_head) {
        struct control_msg *next = s->control_head->next;
        free(s->control_head);
        s->control_head = next;
    }
    s->control_tail = NULL;
    s->control_count = 0;
}

/* Next op to send, round robin over the mounted filesystems. A READ that does not fit the read
 * budget waits: the session queues for it (read_budget.c), or keeps its place in the queue. */
static struct fusebridge_op *next_op(struct session *s, struct filesystem **owner)
{
    size_t ahead = session_read_ahead(s);
    const struct filesystem *blocked = NULL;
    uint32_t blocked_size = 0;
    bool reserved_blocked = false;
    for (size_t n = 0; n < s->filesystem_count; n++) {
        struct filesystem *fs = s->cursor ? s->cursor : s->filesystems;
        s->cursor = fs->next;
        if (fs->state != FS_MOUNTED || !fs->ready)
            continue;
        const struct fusebridge_request *next = fusebridge_mount_peek(fs->mount);
        if (!next) {
            fs->ready = false;
            continue;
        }
        if (next->kind == FUSEBRIDGE_READ && !session_read_fits(s, ahead, fs, next->size)) {
            /* The reserved READ, or else the first found, is the one to wait for. */
            if (!reserved_blocked && (!blocked || fs == s->read_fs)) {
                blocked = fs;
                blocked_size = next->size;
                reserved_blocked = fs == s->read_fs;
            }
            continue;
        }
        *owner = fs;
        return fusebridge_mount_pop(fs->mount);
    }
    if (blocked)
        session_read_wait(s, blocked, blocked_size);
    else
        session_read_leave(s);
    return NULL;
}

static bool work_left(const struct session *s)
{
    if (s->control_head)
        return true;
    if (!pending_has_room(s))
        return false;
    size_t ahead = session_read_ahead(s);
    for (const struct filesystem *fs = s->filesystems; fs; fs = fs->next) {
        if (fs->state != FS_MOUNTED || !fs->ready)
            continue;
        /* A READ that must wait is work only until next_op has queued the session. */
        const struct fusebridge_request *next = fusebridge_mount_peek(fs->mount);
        if (!next || next->kind != FUSEBRIDGE_READ || !s->read_fs ||
            session_read_fits(s, ahead, fs, next->size))
            return true;
    }
    return false;
}

static int encode_op(struct session *s, const struct filesystem *fs, uint32_t id,
                     const struct fusebridge_request *req, size_t *len)
{
    int rc = s->protocol->encode(s, fs, id, req, len);
    if (rc == -ENOBUFS) {
        rc = session_tx_reserve(s, *len);
        if (rc == 0)
            rc = s->protocol->encode(s, fs, id, req, len);
    }
    return rc;
}

/* Sends one op. An op that cannot be encoded is answered at once and nothing is written. */
/* The table of requests in flight comes with the first request: an idle session costs less. */
static int pending_table_make(struct session *s)
{
    if (!s->pending)
        s->pending = calloc(s->hub->config.max_pending, sizeof(*s->pending));
    return s->pending ? 0 : -ENOMEM;
}

static int op_write(struct session *s, struct filesystem *fs, struct fusebridge_op *op)
{
    const struct fusebridge_request *req = fusebridge_op_request(op);
    bool answered = s->protocol->expects_answer(req->kind);
    if (answered && pending_table_make(s) != 0) {
        fusebridge_reply_error(op, -ENOMEM);
        return 0;
    }
    uint32_t id = answered ? pending_add(s, fs, op) : 0;
    size_t len = 0;
    int rc = encode_op(s, fs, id, req, &len);
    if (rc != 0) {
        log_debug("session %llu: cannot encode request for %s: %s", (unsigned long long)s->id,
                  fs->name, strerror(-rc));
        if (answered) {
            struct filesystem *ignored;
            session_take_pending(s, id, &op, &ignored);
        }
        /* A name JSON cannot carry does not exist for the provider; a path over the limit is
         * too long. */
        fusebridge_reply_error(op, rc == -EINVAL ? -ENOENT : rc == -ENAMETOOLONG ? rc : -EIO);
        return 0;
    }
    if (!answered) {
        session_account(s, fs, req->kind, 0, 0);
        fusebridge_reply_error(op, 0);
    }
    s->bytes_out += len;
    if (lws_write(s->wsi, s->tx + LWS_PRE, len, s->protocol->write_mode) < 0)
        return -EPIPE; /* the connection closes; pending requests fail in session_on_closed */
    return 0;
}

/* libwebsockets 4.1 drops the socket without a close frame when a writeable callback returns -1
 * after lws_close_reason, so the frame is written here. Its public header hides the write type
 * for close frames; the value is the websocket opcode it uses internally. */
#define SESSION_WRITE_CLOSE ((enum lws_write_protocol)4)

static void close_frame_write(struct session *s)
{
    unsigned char frame[LWS_PRE + 2 + sizeof(s->close_reason)];
    unsigned char *payload = frame + LWS_PRE;
    size_t reason_len = strlen(s->close_reason);
    payload[0] = (unsigned char)(s->close_status >> 8);
    payload[1] = (unsigned char)(s->close_status & 0xff);
    memcpy(payload + 2, s->close_reason, reason_len);
    lws_write(s->wsi, payload, 2 + reason_len, SESSION_WRITE_CLOSE);
}

int session_on_writeable(struct session *s)
{
    s->write_wanted_since = 0;
    if (s->closing) {
        /* After an operator's detach or disconnect (1000, which ends a provider for good) the
         * connection stays until the provider's close comes (session_on_peer_close), within the
         * time session_close gave it: dropping it now, while the provider's data is still
         * arriving, makes the kernel answer with a reset, and a provider busy writing fails and
         * never reads the close frame. Other closes drop at once: a refused or misbehaving
         * peer must not hold a socket for seconds, and at shutdown the grace is for
         * unmounting. */
        if (!s->close_sent) {
            close_frame_write(s);
            s->close_sent = true;
        }
        bool wait = s->close_status == LWS_CLOSE_STATUS_NORMAL && !s->hub->shutting_down;
        return wait ? 0 : -1;
    }
    int rc = 0;
    struct filesystem *fs;
    struct fusebridge_op *op;
    if (s->control_head)
        rc = control_write_one(s);
    else if (pending_has_room(s) && (op = next_op(s, &fs)))
        rc = op_write(s, fs, op);
    if (rc != 0)
        return -1;
    /* One write per callback, as libwebsockets wants; ask again while work is left. */
    if (work_left(s))
        session_want_writeable(s);
    return 0;
}

int session_on_peer_close(struct session *s)
{
    return s->close_sent ? -1 : 0; /* ours went first: this is the answer, nothing to echo */
}

void session_close(struct session *s, enum lws_close_status status, const char *reason)
{
    if (!s->wsi || s->closing)
        return;
    log_info("session %llu: closing connection: %s", (unsigned long long)s->id, reason);
    s->closing = true;
    session_read_leave(s); /* it sends nothing more: its reservation would only hold others */
    s->close_status = status;
    snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
    session_want_writeable(s);
    /* A provider that stopped reading never makes the socket writeable: drop it after a while,
     * so its mounts still go. */
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, SESSION_CLOSE_TIMEOUT_SEC);
}

/* ---- messages from the provider ---------------------------------------------------------------
 */

/* The message is handled: its buffers go back to the hub. */
static int message_handled(struct session *s, int rc)
{
    session_buffer_release(s->hub, &s->rx);
    session_buffer_release(s->hub, &s->scratch);
    return rc == 0 ? 0 : -1;
}

int session_on_receive(struct session *s, const void *in, size_t len)
{
    if (s->close_sent)
        return 0; /* what still comes before the provider's close is dropped, as it was closed */
    size_t max = s->hub->config.max_message;
    bool whole = lws_is_final_fragment(s->wsi) && lws_remaining_packet_payload(s->wsi) == 0;
    if (s->rx_len == 0 && whole && len <= max) {
        s->bytes_in += len;
        /* A whole message in one piece: decoded in libwebsockets' buffer, read data is handed
         * to the kernel from there. */
        return message_handled(s, s->protocol->on_message(s, in, len));
    }
    if (s->rx_len + len > max) {
        char reason[64];
        snprintf(reason, sizeof(reason), "message larger than %zu bytes", max);
        lws_close_reason(s->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)reason,
                         strlen(reason));
        log_warn("session %llu: %s", (unsigned long long)s->id, reason);
        return -1;
    }
    if (session_buffer_reserve(s->hub, &s->rx, s->rx_len + len + 1, max + 1) != 0)
        return -1;
    memcpy(s->rx.data + s->rx_len, in, len);
    s->rx_len += len;
    s->bytes_in += len;
    if (!whole)
        return 0;

    size_t total = s->rx_len;
    s->rx_len = 0;
    s->rx.data[total] = '\0';
    return message_handled(s, s->protocol->on_message(s, s->rx.data, total));
}

/* ---- filesystems ------------------------------------------------------------------------------
 */

static void fs_on_mounted(struct fusebridge_mount *mount, int status, void *user)
{
    (void)mount;
    struct filesystem *fs = user;
    struct session *s = fs->session;
    if (status == 0) {
        fs->state = FS_MOUNTED;
        fs->mounted_ms = session_now_ms();
        session_limits_attached(s);
        session_emit_at(s, SESSION_EVENT_ATTACH, fs->mounted_ms, fs->name, fs->mountpoint, NULL);
        log_info("session %llu: attached %s at %s (remote %s)", (unsigned long long)s->id, fs->name,
                 fs->mountpoint, s->remote);
    } else {
        fs->mount_error = status;
    }
    s->protocol->on_attached(s, fs, status);
}

static void fs_on_ready(struct fusebridge_mount *mount, void *user)
{
    (void)mount;
    struct filesystem *fs = user;
    fs->ready = true;
    session_busy_poll(fs->session);
    if (pending_has_room(fs->session))
        session_want_writeable(fs->session);
}

static void fs_unlink(struct session *s, struct filesystem *fs)
{
    for (struct filesystem **it = &s->filesystems; *it; it = &(*it)->next) {
        if (*it == fs) {
            *it = fs->next;
            break;
        }
    }
    if (s->cursor == fs)
        s->cursor = fs->next;
    s->filesystem_count--;
}

void session_tell_detached(struct session *s, const char *name)
{
    char msg[160];
    size_t len;
    if (s->wsi && codec_json_encode_filesystem_detached(msg, sizeof(msg), &len, name) == 0)
        session_send_control(s, msg, len);
}

static void fs_on_gone(struct fusebridge_mount *mount, void *user)
{
    (void)mount;
    struct filesystem *fs = user;
    struct session *s = fs->session;
    /* Unmounted by hand, or detached: nothing may wait for it any more. */
    if (s->read_fs == fs)
        session_read_leave(s);
    pending_fail(s, fs, -EIO);
    if (fs->state == FS_CLOSING)
        return;
    /* Gone by hand (fusermount3 -u): the provider must not go on believing it is attached. */
    fs->state = FS_CLOSING;
    fs->detach_reason = "unmounted on the device";
    fs->gone_on_device = true;
    if (s->protocol->path_based) {
        char reason[100];
        snprintf(reason, sizeof(reason), "filesystem %s was unmounted on the device", fs->name);
        session_close(s, LWS_CLOSE_STATUS_GOINGAWAY, reason);
    } else {
        session_tell_detached(s, fs->name);
    }
}

static void fs_on_closed(struct fusebridge_mount *mount, void *user)
{
    struct filesystem *fs = user;
    struct session *s = fs->session;
    if (fs->gone_on_device && fusebridge_mount_aborted_outside(mount))
        fs->detach_reason = "connection aborted on the device";
    if (fs->mounted_ms) {
        log_info("session %llu: detached %s (remote %s)", (unsigned long long)s->id, fs->name,
                 s->remote);
        session_emit(s, SESSION_EVENT_DETACH, fs->name, fs->mountpoint, fs->detach_reason);
    } else if (fs->mount_error) {
        char why[96];
        snprintf(why, sizeof(why), "mount failed: %s", fusebridge_mount_error(fs->mount_error));
        log_warn("session %llu: attaching %s at %s failed (remote %s): %s",
                 (unsigned long long)s->id, fs->name, fs->mountpoint, s->remote,
                 fusebridge_mount_error(fs->mount_error));
        session_emit(s, SESSION_EVENT_ATTACH_FAILED, fs->name, fs->mountpoint, why);
    } else { /* detached, or its provider gone, while the mount was being made */
        log_info("session %llu: %s was detached before its mount was done (remote %s)",
                 (unsigned long long)s->id, fs->name, s->remote);
        session_emit(s, SESSION_EVENT_ATTACH_FAILED, fs->name, fs->mountpoint,
                     "detached before the mount was done");
    }
    fs_unlink(s, fs);
    free(fs);
    if (!s->wsi && !s->filesystems)
        session_release(s);
}

static const struct fusebridge_callbacks fs_callbacks = {
    .on_mounted = fs_on_mounted,
    .on_ready = fs_on_ready,
    .on_gone = fs_on_gone,
    .on_closed = fs_on_closed,
};

/* With --filesystem, only the names listed may be attached, each at its own mount point. */
static int fixed_lookup(const struct session_hub_config *config, const char *name,
                        const char **mountpoint)
{
    if (config->fixed_count == 0)
        return 0;
    for (size_t i = 0; i < config->fixed_count; i++) {
        if (strcmp(config->fixed[i].name, name) == 0) {
            *mountpoint = config->fixed[i].mountpoint;
            return 0;
        }
    }
    return -ENOENT;
}

struct filesystem *session_attach(struct session *s, const char *name, int64_t reply_id, int *error)
{
    struct session_hub *hub = s->hub;
    *error = 0;
    if (!session_name_valid(name))
        *error = -EINVAL;
    else if (hub->shutting_down || s->closing)
        *error = -ESHUTDOWN;
    else /* before the others: whoever may not attach learns nothing about names in use */
        *error = session_auth_may_attach(s, name);
    const char *fixed_mountpoint = NULL;
    if (*error == 0)
        *error = fixed_lookup(&hub->config, name, &fixed_mountpoint);
    if (*error == 0 && s->filesystem_count >= hub->config.max_filesystems)
        *error = -EMFILE;
    else if (*error == 0 && session_hub_name_taken(hub, name))
        *error = -EEXIST;
    if (*error)
        return NULL;

    char mountpoint[PATH_MAX];
    if (fixed_mountpoint)
        snprintf(mountpoint, sizeof(mountpoint), "%s", fixed_mountpoint);
    else
        snprintf(mountpoint, sizeof(mountpoint), "%s/%s", hub->mount_root, name);
    size_t name_size = strlen(name) + 1, mountpoint_size = strlen(mountpoint) + 1;
    struct filesystem *fs = calloc(1, sizeof(*fs) + name_size + mountpoint_size);
    if (!fs) {
        *error = -ENOMEM;
        return NULL;
    }
    memcpy(fs->name, name, name_size);
    fs->mountpoint = memcpy(fs->name + name_size, mountpoint, mountpoint_size);
    fs->session = s;
    fs->reply_id = reply_id;
    struct fusebridge_options options = {
        .mountpoint = fs->mountpoint,
        .fsname = name,
        .read_only = !s->protocol->path_based,
        .path_based = s->protocol->path_based,
        .allow_other = hub->config.allow_other,
        .own_mountpoint = !fixed_mountpoint && session_hub_mountpoint_made(hub, name),
        .mountpoint_configured = fixed_mountpoint != NULL,
        .listing_bytes = &hub->listing_bytes,
    };
    int rc = fusebridge_mount_start(hub->loop, &options, &fs_callbacks, fs, &fs->mount);
    if (rc != 0) {
        free(fs);
        *error = rc;
        return NULL;
    }
    fs->next = s->filesystems;
    s->filesystems = fs;
    s->filesystem_count++;
    return fs;
}

/* Fails what waits for `fs` and unmounts it; fs_on_closed frees it. */
void session_detach_fs(struct filesystem *fs)
{
    if (fs->state == FS_CLOSING)
        return;
    fs->state = FS_CLOSING;
    if (fs->session->read_fs == fs) /* its READs will not be sent */
        session_read_leave(fs->session);
    pending_fail(fs->session, fs, -EIO);
    /* While running, a detached mount lingers until processes let go of its files (they get
     * EIO); when shutting down, it is cut off. */
    if (fs->session->hub->shutting_down)
        fusebridge_mount_abort(fs->mount);
    else
        fusebridge_mount_close(fs->mount);
}

/* ---- the session's life -----------------------------------------------------------------------
 */

struct session *session_open(struct session_hub *hub, struct lws *wsi,
                             const struct session_protocol *protocol)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (uv_timer_init(hub->loop, &s->tick) != 0) {
        free(s);
        return NULL;
    }
    s->hub = hub;
    s->wsi = wsi;
    s->protocol = protocol;
    s->id = ++hub->next_session_id;
    s->connected_ms = session_now_ms();
    /* The encoders always get a buffer, so a first too-small attempt reports the size needed. */
    if (session_tx_reserve(s, 4096) != 0) {
        uv_close((uv_handle_t *)&s->tick, session_free);
        return NULL;
    }
    lws_get_peer_simple(wsi, s->remote, sizeof(s->remote));
    session_auth_open(s);
    return s;
}

void session_on_closed(struct session *s)
{
    log_info("session %llu: connection from %s closed", (unsigned long long)s->id, s->remote);
    session_emit(s, SESSION_EVENT_DISCONNECT, NULL, NULL, NULL);
    s->wsi = NULL;
    s->write_wanted_since = 0;
    session_read_leave(s);
    session_buffer_release(s->hub, &s->rx); /* a message cut off: no more of it comes */
    s->rx_len = 0;
    session_limits_closed(s);
    control_free_all(s);
    pending_fail(s, NULL, -EIO);
    if (!s->filesystems) {
        session_release(s);
        return;
    }
    for (struct filesystem *fs = s->filesystems; fs; fs = fs->next)
        session_detach_fs(fs);
}

static void session_free(uv_handle_t *handle)
{
    struct session *s = container_of(handle, struct session, tick);
    free(s->pending);
    free(s->tx);
    session_buffer_release(s->hub, &s->rx);
    session_buffer_release(s->hub, &s->scratch);
    free(s);
#ifdef __GLIBC__
    /* The connection's 1 MiB receive buffer and its mounts' request buffers raised glibc's
     * dynamic mmap threshold, so they were served from the heap and arenas, which glibc only
     * shrinks from the top: without a trim, waves of sessions leave their pages resident. Once
     * per session, not per request, so large requests keep reusing heap memory. */
    malloc_trim(0);
#endif
}

/* The connection and every mount are gone: the one place a session ends. */
static void session_release(struct session *s)
{
    session_hub_remove(s->hub, s);
    uv_close((uv_handle_t *)&s->tick, session_free);
}
