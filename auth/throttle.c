/* The per-address throttle: after AUTH_THROTTLE_FREE_FAILURES failed attempts, every further
 * attempt from that address waits, twice as long after each further failure. The table is a fixed
 * array: a flood of addresses evicts the stalest entry instead of growing it. */
#include "auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Enough for an IPv6 address in text. */
#define THROTTLE_ADDRESS_MAX 64

struct throttle_entry {
    char address[THROTTLE_ADDRESS_MAX]; /* "" = free */
    unsigned failures;
    uint64_t last_failure_ms;
};

struct auth_throttle {
    struct throttle_entry entries[AUTH_THROTTLE_ADDRESSES];
};

int auth_throttle_new(struct auth_throttle **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void auth_throttle_free(struct auth_throttle *t)
{
    free(t);
}

static struct throttle_entry *find(struct auth_throttle *t, const char *address, uint64_t now_ms)
{
    for (size_t i = 0; i < AUTH_THROTTLE_ADDRESSES; i++) {
        struct throttle_entry *e = &t->entries[i];
        if (e->address[0] == '\0' || strncmp(e->address, address, sizeof(e->address)) != 0)
            continue;
        if (now_ms - e->last_failure_ms >= AUTH_THROTTLE_FORGET_MS) {
            e->address[0] = '\0'; /* stale: forgotten */
            return NULL;
        }
        return e;
    }
    return NULL;
}

uint64_t auth_throttle_delay(struct auth_throttle *t, const char *address, uint64_t now_ms)
{
    const struct throttle_entry *e = find(t, address, now_ms);
    if (!e || e->failures < AUTH_THROTTLE_FREE_FAILURES)
        return 0;
    unsigned shift = e->failures - AUTH_THROTTLE_FREE_FAILURES;
    if (shift > 16)
        shift = 16;
    uint64_t delay = (uint64_t)AUTH_THROTTLE_FIRST_DELAY_MS << shift;
    return delay < AUTH_THROTTLE_MAX_DELAY_MS ? delay : AUTH_THROTTLE_MAX_DELAY_MS;
}

void auth_throttle_failure(struct auth_throttle *t, const char *address, uint64_t now_ms)
{
    struct throttle_entry *e = find(t, address, now_ms);
    if (!e) {
        /* A free slot, else the one whose last failure is oldest. */
        e = &t->entries[0];
        for (size_t i = 0; i < AUTH_THROTTLE_ADDRESSES; i++) {
            struct throttle_entry *c = &t->entries[i];
            if (c->address[0] == '\0') {
                e = c;
                break;
            }
            if (c->last_failure_ms < e->last_failure_ms)
                e = c;
        }
        memset(e, 0, sizeof(*e));
        strncpy(e->address, address, sizeof(e->address) - 1);
    }
    if (e->failures < UINT32_MAX)
        e->failures++;
    e->last_failure_ms = now_ms;
}

void auth_throttle_success(struct auth_throttle *t, const char *address)
{
    for (size_t i = 0; i < AUTH_THROTTLE_ADDRESSES; i++) {
        struct throttle_entry *e = &t->entries[i];
        if (e->address[0] != '\0' && strncmp(e->address, address, sizeof(e->address)) == 0)
            e->address[0] = '\0';
    }
}
