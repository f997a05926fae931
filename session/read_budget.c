/* The read budget: READ bytes in flight to all providers together stay within
 * config.read_budget, so that many streams at once keep a working set the caches hold.
 *
 * A session whose next READ does not fit joins a queue and reserves that READ (its filesystem
 * and size). A READ may go when it fits beside what is in flight and the reservations before it:
 * those queued earlier for the reserved READ, those and the session's own for its other READs,
 * every reservation for a session not queued. So small READs cannot take each bit of room a
 * large one waits for, and a session keeps its place until the reserved READ is sent.
 *
 * A reservation is a turn, not a lock: a queued session that cannot write (its socket is full,
 * its table of requests in flight too) holds back its own READ's size only, and if it has not
 * sent READ_TURN_MS after room for it came, it loses its place (it queues again, last, once it
 * can write). Loop thread only. */
#include "session_internal.h"

#include "log.h"

#define READ_TURN_MS 5000

static bool fits(const struct session_hub *hub, size_t ahead, uint32_t size)
{
    if (hub->reads_in_flight == 0 && ahead == 0)
        return true; /* even a READ over the whole budget goes, alone */
    return hub->reads_in_flight + ahead + size <= hub->config.read_budget;
}

size_t session_read_ahead(const struct session *s)
{
    const struct session_hub *hub = s->hub;
    if (!s->read_fs)
        return hub->read_reserved;
    /* Past the budget nothing fits anyway: the walk stops there. */
    size_t ahead = 0;
    for (const struct session *q = hub->read_queue_head; q != s && ahead <= hub->config.read_budget;
         q = q->read_queue_next)
        ahead += q->read_need;
    return ahead + s->read_need;
}

bool session_read_fits(const struct session *s, size_t ahead, const struct filesystem *fs,
                       uint32_t size)
{
    if (fs == s->read_fs)
        ahead -= s->read_need;
    return fits(s->hub, ahead, size);
}

static void turns_check(uv_timer_t *timer);

/* A turn that began now ends READ_TURN_MS later: the timer is set for it unless an earlier turn
 * ends first (turns begin in order, so one already set is earlier). */
static void turns_watch(struct session_hub *hub)
{
    if (hub->shutting_down)
        return;
    if (!hub->read_timer_ready) {
        if (uv_timer_init(hub->loop, &hub->read_timer) != 0)
            return;
        hub->read_timer.data = hub;
        hub->read_timer_ready = true;
    }
    if (!uv_is_active((uv_handle_t *)&hub->read_timer))
        uv_timer_start(&hub->read_timer, turns_check, READ_TURN_MS, 0);
}

/* Asks each queued session whose READ fits now to send it. Past the first that does not fit,
 * none does: the reservations before each only grow. */
static void queue_wake(struct session_hub *hub)
{
    size_t ahead = 0;
    for (struct session *q = hub->read_queue_head; q; q = q->read_queue_next) {
        if (!fits(hub, ahead, q->read_need))
            return;
        if (!q->read_turn_since) {
            q->read_turn_since = uv_now(hub->loop);
            turns_watch(hub);
        }
        session_want_writeable(q);
        ahead += q->read_need;
    }
}

static void turns_check(uv_timer_t *timer)
{
    struct session_hub *hub = timer->data;
    uint64_t now = uv_now(hub->loop);
    uint64_t earliest = UINT64_MAX; /* of the turns still open */
    struct session *next;
    for (struct session *q = hub->read_queue_head; q; q = next) {
        next = q->read_queue_next;
        if (!q->read_turn_since)
            continue;
        uint64_t ends = q->read_turn_since + READ_TURN_MS;
        if (ends > now) {
            if (ends < earliest)
                earliest = ends;
            continue;
        }
        log_debug("session %llu: did not take its turn to read: it queues again",
                  (unsigned long long)q->id);
        session_read_leave(q); /* wakes who fits now; `next` is still queued */
    }
    /* Turns that began while leaving end at now + READ_TURN_MS, after `earliest` if any. */
    if (earliest != UINT64_MAX && !hub->shutting_down)
        uv_timer_start(timer, turns_check, earliest - now, 0);
}

void session_read_wait(struct session *s, const struct filesystem *fs, uint32_t size)
{
    struct session_hub *hub = s->hub;
    bool queued = s->read_fs != NULL;
    uint32_t before = s->read_need;
    s->read_fs = fs;
    s->read_need = size;
    if (queued) {               /* the reserved READ changed: it keeps its place */
        s->read_turn_since = 0; /* queue_wake says when room for this one comes */
        hub->read_reserved = hub->read_reserved - before + size;
        if (size < before)
            queue_wake(hub);
        return;
    }
    hub->read_reserved += size;
    hub->read_waiting++;
    s->read_queue_prev = hub->read_queue_tail;
    s->read_queue_next = NULL;
    if (hub->read_queue_tail)
        hub->read_queue_tail->read_queue_next = s;
    else
        hub->read_queue_head = s;
    hub->read_queue_tail = s;
}

void session_read_leave(struct session *s)
{
    struct session_hub *hub = s->hub;
    if (!s->read_fs)
        return;
    hub->read_reserved -= s->read_need;
    hub->read_waiting--;
    s->read_need = 0;
    s->read_fs = NULL;
    s->read_turn_since = 0;
    if (s->read_queue_prev)
        s->read_queue_prev->read_queue_next = s->read_queue_next;
    else
        hub->read_queue_head = s->read_queue_next;
    if (s->read_queue_next)
        s->read_queue_next->read_queue_prev = s->read_queue_prev;
    else
        hub->read_queue_tail = s->read_queue_prev;
    s->read_queue_prev = s->read_queue_next = NULL;
    queue_wake(hub);
}

void session_read_sent(struct session *s, const struct filesystem *fs, uint32_t size)
{
    s->hub->reads_in_flight += size;
    if (fs == s->read_fs)
        session_read_leave(s);
}

void session_read_ended(struct session_hub *hub, uint32_t size)
{
    hub->reads_in_flight -= size;
    queue_wake(hub);
}

size_t session_hub_reads_in_flight(const struct session_hub *hub)
{
    return hub->reads_in_flight;
}

size_t session_hub_reads_waiting(const struct session_hub *hub)
{
    return hub->read_waiting;
}

void session_read_budget_close(struct session_hub *hub)
{
    if (!hub->read_timer_ready)
        return;
    hub->read_timer_ready = false;
    uv_close((uv_handle_t *)&hub->read_timer, NULL);
}
