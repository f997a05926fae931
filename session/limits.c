/* Limits that protect the gateway from its providers: connections at once, connections that
 * never attach anything, path length. (Filesystems per session and requests in flight are
 * checked where they are counted, in session.c.) Loop thread only.
 *
 * The idle time is the provider's own: while a login waits for the gateway (the throttle's
 * delay, then the password check) the idle timer stands still, so that a login answered after a
 * delay longer than --idle-timeout is not cut off first, which would leave the address locked
 * out for good. */
#include "session_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* RFC 6455 status 1013 (registered after the RFC, unnamed in libwebsockets' header): the
 * provider may come back once others have left. */
#define SESSION_CLOSE_TRY_AGAIN_LATER ((enum lws_close_status)1013)

/* Connections that are still open; sessions whose mounts are only draining do not count. */
static size_t connected(const struct session_hub *hub)
{
    size_t n = 0;
    for (const struct session *s = hub->sessions; s; s = s->next)
        n += s->wsi != NULL && !s->closing;
    return n;
}

static void on_idle(lws_sorted_usec_list_t *sul)
{
    struct session *s = lws_container_of(sul, struct session, idle);
    if (!s->wsi || s->closing || s->attached_once)
        return;
    char reason[100];
    snprintf(reason, sizeof(reason), "no filesystem attached within %u s",
             s->hub->config.idle_timeout_ms / 1000);
    log_warn("session %llu: %s (remote %s)", (unsigned long long)s->id, reason, s->remote);
    session_emit(s, SESSION_EVENT_ERROR, NULL, NULL, reason);
    session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, reason);
}

static void idle_schedule(struct session *s, uint64_t ms)
{
    s->idle_deadline_ms = uv_now(s->hub->loop) + ms;
    lws_sul_schedule(lws_get_context(s->wsi), 0, &s->idle, on_idle, (lws_usec_t)ms * LWS_US_PER_MS);
}

bool session_limits_admit(struct session *s)
{
    struct session_hub *hub = s->hub;
    /* s itself is already listed. */
    if (connected(hub) > hub->config.max_sessions) {
        char reason[80];
        snprintf(reason, sizeof(reason), "too many sessions (limit %zu)", hub->config.max_sessions);
        log_warn("session %llu: refused from %s: %s", (unsigned long long)s->id, s->remote, reason);
        session_emit(s, SESSION_EVENT_ERROR, NULL, NULL, reason);
        session_close(s, SESSION_CLOSE_TRY_AGAIN_LATER, reason);
        return false;
    }
    idle_schedule(s, hub->config.idle_timeout_ms);
    return true;
}

void session_limits_pause_idle(struct session *s)
{
    if (s->attached_once || s->idle_paused)
        return;
    uint64_t now = uv_now(s->hub->loop);
    s->idle_left_ms = s->idle_deadline_ms > now ? s->idle_deadline_ms - now : 0;
    s->idle_paused = true;
    lws_sul_cancel(&s->idle);
}

void session_limits_resume_idle(struct session *s)
{
    if (!s->idle_paused)
        return;
    s->idle_paused = false;
    if (!s->attached_once && s->wsi)
        idle_schedule(s, s->idle_left_ms);
}

void session_limits_attached(struct session *s)
{
    s->attached_once = true;
    lws_sul_cancel(&s->idle);
}

void session_limits_closed(struct session *s)
{
    lws_sul_cancel(&s->idle);
}

static bool too_long(const char *path, size_t max)
{
    return path && strnlen(path, max + 1) > max;
}

int session_limits_check_paths(const struct session *s, const struct fusebridge_request *req)
{
    size_t max = s->hub->config.max_path;
    if (too_long(req->path, max) || too_long(req->path2, max) || too_long(req->target, max))
        return -ENAMETOOLONG;
    return 0;
}
