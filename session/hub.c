/* The session hub: every provider connection of the gateway, and the libwebsockets protocol
 * callbacks that route connection events to them. Loop thread only. */
#include "session_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

bool session_hub_name_taken(const struct session_hub *hub, const char *name)
{
    for (const struct session *s = hub->sessions; s; s = s->next)
        for (const struct filesystem *fs = s->filesystems; fs; fs = fs->next)
            /* A detached mount may linger while a process holds a file in it; its name is free
             * again once it is off its mount point (lazily unmounted), so that a new mount there
             * hides nothing and nothing done by path to the old one reaches the new one. */
            if (strcmp(fs->name, name) == 0 &&
                (fs->state != FS_CLOSING || fusebridge_mount_in_place(fs->mount)))
                return true;
    return false;
}

bool session_hub_mountpoint_made(const struct session_hub *hub, const char *name)
{
    for (const struct session *s = hub->sessions; s; s = s->next)
        for (const struct filesystem *fs = s->filesystems; fs; fs = fs->next)
            if (fs->state == FS_CLOSING && strcmp(fs->name, name) == 0 &&
                fusebridge_mount_made_mountpoint(fs->mount))
                return true;
    return false;
}

static void hub_add(struct session_hub *hub, struct session *s)
{
    s->prev = hub->last;
    if (hub->last)
        hub->last->next = s;
    else
        hub->sessions = s;
    hub->last = s;
    hub->count++;
    hub->metrics.sessions_total++;
}

void session_hub_remove(struct session_hub *hub, struct session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        hub->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        hub->last = s->prev;
    hub->count--;
    if (hub->shutting_down && hub->count == 0 && hub->on_empty)
        hub->on_empty(hub->on_empty_arg);
}

static int hub_on_established(struct session_hub *hub, struct lws *wsi,
                              const struct lws_protocols *protocol, struct session **slot)
{
    if (hub->shutting_down)
        return -1;
    /* libwebsockets hands back its own copy of the protocol table: compare names. */
    bool webfuse2 = strcmp(protocol->name, CODEC_WF2_SUBPROTOCOL) == 0;
    struct session *s =
        session_open(hub, wsi, webfuse2 ? &session_protocol_webfuse2 : &session_protocol_json);
    if (!s)
        return -1;
    hub_add(hub, s);
    *slot = s;
    log_info("session %llu: %s connected from %s", (unsigned long long)s->id, protocol->name,
             s->remote);
    session_emit_at(s, SESSION_EVENT_CONNECT, s->connected_ms, NULL, NULL, NULL);
    if (!session_limits_admit(s))
        return 0; /* closing with a reason */
    if (webfuse2) {
        char uri[512];
        bool fits = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) >= 0;
        session_webfuse2_start(s, fits ? uri : NULL);
    }
    return 0;
}

/* The per-connection user data libwebsockets allocates holds our session pointer. */
static int hub_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    struct session **slot = user;
    const struct lws_protocols *protocol = lws_get_protocol(wsi);
    struct session_hub *hub = protocol ? protocol->user : NULL;

    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* Websockets only: an HTTP/2 upgrade (h2c) would give anyone who can connect paths of
         * libwebsockets no provider needs. */
        return in && strcasecmp(in, "websocket") == 0 ? 0 : -1;
    case LWS_CALLBACK_ESTABLISHED:
        return hub_on_established(hub, wsi, protocol, slot);
    case LWS_CALLBACK_RECEIVE:
        return *slot ? session_on_receive(*slot, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return *slot ? session_on_writeable(*slot) : -1;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return *slot ? session_on_peer_close(*slot) : 0;
    case LWS_CALLBACK_CLOSED:
        if (*slot) {
            session_on_closed(*slot);
            *slot = NULL;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static void hub_config_defaults(struct session_hub_config *c)
{
    if (c->max_sessions == 0)
        c->max_sessions = SESSION_DEFAULT_MAX_SESSIONS;
    if (c->max_filesystems == 0)
        c->max_filesystems = SESSION_DEFAULT_MAX_FILESYSTEMS;
    if (c->max_pending == 0)
        c->max_pending = SESSION_DEFAULT_MAX_PENDING;
    if (c->max_path == 0)
        c->max_path = SESSION_DEFAULT_MAX_PATH;
    if (c->idle_timeout_ms == 0)
        c->idle_timeout_ms = SESSION_DEFAULT_IDLE_TIMEOUT_SEC * 1000;
    if (c->read_budget == 0)
        c->read_budget = SESSION_DEFAULT_READ_BUDGET;
    if (c->slow_read_ms == 0)
        c->slow_read_ms = SESSION_DEFAULT_SLOW_READ_MS;
}

int session_hub_new(uv_loop_t *loop, const struct session_hub_config *config,
                    struct session_hub **out)
{
    struct session_hub *hub = calloc(1, sizeof(*hub));
    if (!hub)
        return -ENOMEM;
    hub->mount_root = strdup(config->mount_root);
    if (!hub->mount_root) {
        free(hub);
        return -ENOMEM;
    }
    hub->loop = loop;
    hub->config = *config;
    hub->config.mount_root = hub->mount_root;
    hub_config_defaults(&hub->config);
    int rc = session_auth_hub_init(hub);
    if (rc != 0) {
        free(hub->mount_root);
        free(hub);
        return rc;
    }
    hub->protocols[0] = (struct lws_protocols){
        .name = CODEC_JSON_SUBPROTOCOL,
        .callback = hub_callback,
        .per_session_data_size = sizeof(struct session *),
        .rx_buffer_size = SESSION_RX_BUFFER,
        .user = hub,
    };
    hub->protocols[1] = hub->protocols[0];
    hub->protocols[1].name = CODEC_WF2_SUBPROTOCOL;
    *out = hub;
    return 0;
}

const struct lws_protocols *session_hub_protocols(struct session_hub *hub)
{
    return hub->protocols;
}

size_t session_hub_count(const struct session_hub *hub)
{
    return hub->count;
}

void session_hub_shutdown(struct session_hub *hub, void (*done)(void *arg), void *arg)
{
    hub->shutting_down = true;
    hub->on_empty = done;
    hub->on_empty_arg = arg;
    session_auth_hub_shutdown(hub);
    session_busy_poll_close(hub);
    session_read_budget_close(hub);
    if (hub->count == 0) {
        done(arg);
        return;
    }
    for (struct session *s = hub->sessions; s; s = s->next) {
        session_close(s, LWS_CLOSE_STATUS_GOINGAWAY, "gateway shutting down");
        /* Mounts already detached may still be held open by processes: cut them off. */
        for (struct filesystem *fs = s->filesystems; fs; fs = fs->next)
            if (fs->state == FS_CLOSING)
                fusebridge_mount_abort(fs->mount);
    }
}

void session_hub_free(struct session_hub *hub)
{
    session_auth_hub_free(hub);
    session_buffers_free(hub);
    free(hub->mount_root);
    free(hub);
}
