/* Growable buffers, and the hub's spare ones.
 *
 * A session needs a large buffer only while a message is in its hands: one that comes in pieces
 * is reassembled, a JSON read answer is decoded. Such buffers come from the hub and go back once
 * the message is handled, so the gateway's memory follows the messages in progress (few: the
 * read budget bounds the answers on their way) rather than the sessions that once read: 64
 * streams left 64 MiB of buffers behind when each session kept its own. The spares are reused
 * last in, first out: the buffer written next is the one written last, still in the cache,
 * where 64 sessions' own buffers missed it on every copy. Loop thread only. */
#include "session_internal.h"

#include <errno.h>
#include <stdlib.h>

/* The largest spare kept: a 1 MiB read answer with its header (as base64 JSON too). */
#define SPARE_MAX_CAP (2u * 1024 * 1024)

int session_buffer_grow(void **buf, size_t *cap, size_t need, size_t headroom, size_t max)
{
    if (need <= *cap)
        return 0;
    if (need > max)
        return -EMSGSIZE;
    size_t next = *cap ? *cap : 4096;
    while (next < need)
        next *= 2;
    if (next > max)
        next = max;
    void *grown = realloc(*buf, headroom + next);
    if (!grown)
        return -ENOMEM;
    *buf = grown;
    *cap = next;
    return 0;
}

int session_buffer_reserve(struct session_hub *hub, struct session_buffer *b, size_t need,
                           size_t max)
{
    if (!b->data && hub->spare_count > 0)
        *b = hub->spare[--hub->spare_count];
    return session_buffer_grow((void **)&b->data, &b->cap, need, 0, max);
}

void session_buffer_release(struct session_hub *hub, struct session_buffer *b)
{
    if (!b->data)
        return;
    if (hub->spare_count < SESSION_SPARE_BUFFERS && b->cap <= SPARE_MAX_CAP)
        hub->spare[hub->spare_count++] = *b;
    else
        free(b->data);
    *b = (struct session_buffer){0};
}

void session_buffers_free(struct session_hub *hub)
{
    while (hub->spare_count > 0)
        free(hub->spare[--hub->spare_count].data);
}
