/* The read budget: READ bytes in flight to all providers together stay within
 * SESSION_READS_IN_FLIGHT_MAX, so that many streams at once keep a working set the caches hold.
 *
 * A session whose next READ does not fit joins a queue and reserves the READ's size. A READ may
 * go when it fits beside what is in flight and what the sessions queued before it reserved; a
 * session not queued counts every reservation. So small READs cannot take each bit of room a
 * large one waits for, yet a queued session that cannot write (its socket is full, its pending
 * table too) holds back only its own reservation, not every READ of the gateway.
 * Loop thread only. */
#include "session_internal.h"

/* Bytes reserved by the sessions queued before `s` (all of them if `s` is not queued). */
static size_t reserved_ahead(const struct session *s)
{
    const struct session_hub *hub = s->hub;
    if (!s->read_waits)
        return hub->read_reserved;
    size_t ahead = 0;
    for (const struct session *q = hub->read_queue_head; q != s; q = q->read_queue_next)
        ahead += q->read_need;
    return ahead;
}

static bool fits(const struct session_hub *hub, size_t ahead, uint32_t size)
{
    if (hub->reads_in_flight == 0 && ahead == 0)
        return true; /* even a READ over the whole budget goes, alone */
    return hub->reads_in_flight + ahead + size <= SESSION_READS_IN_FLIGHT_MAX;
}

bool session_read_may_go(const struct session *s, uint32_t size)
{
    return fits(s->hub, reserved_ahead(s), size);
}

/* Asks each queued session whose READ fits now to send it. Past the first that does not fit,
 * none does: the reservations before each only grow. */
static void queue_wake(struct session_hub *hub)
{
    size_t ahead = 0;
    for (struct session *q = hub->read_queue_head; q; q = q->read_queue_next) {
        if (!fits(hub, ahead, q->read_need))
            return;
        if (q->wsi)
            lws_callback_on_writable(q->wsi);
        ahead += q->read_need;
    }
}

void session_read_wait(struct session *s, uint32_t size)
{
    struct session_hub *hub = s->hub;
    if (s->read_waits) { /* another of its mounts may be first now */
        hub->read_reserved = hub->read_reserved - s->read_need + size;
        s->read_need = size;
        return;
    }
    s->read_waits = true;
    s->read_need = size;
    hub->read_reserved += size;
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
    if (!s->read_waits)
        return;
    s->read_waits = false;
    hub->read_reserved -= s->read_need;
    s->read_need = 0;
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

void session_read_sent(struct session_hub *hub, uint32_t size)
{
    hub->reads_in_flight += size;
}

void session_read_ended(struct session_hub *hub, uint32_t size)
{
    hub->reads_in_flight -= size;
    queue_wake(hub);
}
