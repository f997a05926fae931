/* Busy polling: after work for a provider that answers fast, the loop keeps polling for a short
 * while instead of sleeping.
 *
 * A request to a fast provider crosses several threads (the caller, the loop, the provider), and
 * on a small machine each wake-up of a sleeping thread costs tens of microseconds, more than the
 * work. While an active idle handle exists, libuv polls without waiting, so the answer, or the
 * caller's next request, is seen at once. It ends `busy_poll_us` after the last piece of work,
 * and never starts for a session whose last answer took longer than that: a slow provider's
 * requests cost no CPU in waiting. Loop thread only. */
#include "session_internal.h"

static void busy_poll_tick(uv_idle_t *idle)
{
    struct session_hub *hub = idle->data;
    if (uv_hrtime() >= hub->busy_until)
        uv_idle_stop(idle);
}

void session_busy_poll(struct session *s)
{
    struct session_hub *hub = s->hub;
    uint64_t window = (uint64_t)hub->config.busy_poll_us * 1000;
    if (window == 0 || s->answers_slow || hub->shutting_down)
        return;
    if (!hub->busy_ready) {
        if (uv_idle_init(hub->loop, &hub->busy) != 0)
            return;
        hub->busy.data = hub;
        hub->busy_ready = true;
    }
    hub->busy_until = uv_hrtime() + window;
    uv_idle_start(&hub->busy, busy_poll_tick);
}

void session_busy_poll_answered(struct session *s, uint64_t latency_ns)
{
    s->answers_slow = latency_ns > (uint64_t)s->hub->config.busy_poll_us * 1000;
    session_busy_poll(s);
}

void session_busy_poll_close(struct session_hub *hub)
{
    if (hub->busy_ready)
        uv_close((uv_handle_t *)&hub->busy, NULL);
    hub->busy_ready = false;
}
