/* The per-address throttle: after AUTH_THROTTLE_FREE_FAILURES failed attempts, every further
 * attempt from that address waits, twice as long after each further failure. Attempts still
 * being checked count as failures until they end, and each address keeps the time at which its
 * last delayed attempt gets its turn: parallel attempts from one address queue up behind one
 * another instead of waiting out the same delay side by side. No attempt waits longer than
 * AUTH_THROTTLE_MAX_DELAY_MS; one that would is refused at once. The table is a fixed array: a
 * flood of addresses evicts the stalest entry instead of growing it. */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Enough for an IPv6 address in text. */
#define THROTTLE_ADDRESS_MAX 64

struct throttle_entry {
    char address[THROTTLE_ADDRESS_MAX]; /* "" = free */
    unsigned failures;
    unsigned pending;   /* attempts begun and not ended yet */
    /* The last failure (or the first attempt): failures are forgotten that long after it,
     * however many logins succeed meanwhile. */
    uint64_t last_ms;
    uint64_t next_turn; /* when the last delayed attempt is (or was) checked */
    /* Whose logins failed: one user's (failed_user), or several (failed_others). Only that one
     * user's success clears the failures: a login of one's own account must not wash out
     * guesses at another's. */
    char failed_user[AUTH_NAME_MAX + 1];
    bool failed_others;
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
        if (e->pending == 0 && now_ms > e->last_ms &&
            now_ms - e->last_ms >= AUTH_THROTTLE_FORGET_MS) {
            e->address[0] = '\0'; /* stale: forgotten */
            return NULL;
        }
        return e;
    }
    return NULL;
}

/* The entry of `address`, made when missing: a free slot, else the one used least recently. */
static struct throttle_entry *find_or_add(struct auth_throttle *t, const char *address,
                                          uint64_t now_ms)
{
    struct throttle_entry *e = find(t, address, now_ms);
    if (e)
        return e;
    e = &t->entries[0];
    for (size_t i = 0; i < AUTH_THROTTLE_ADDRESSES; i++) {
        struct throttle_entry *c = &t->entries[i];
        if (c->address[0] == '\0') {
            e = c;
            break;
        }
        if (c->last_ms < e->last_ms)
            e = c;
    }
    memset(e, 0, sizeof(*e));
    strncpy(e->address, address, sizeof(e->address) - 1);
    return e;
}

/* The delay after `count` failures. */
static uint64_t delay_after(unsigned count)
{
    if (count < AUTH_THROTTLE_FREE_FAILURES)
        return 0;
    unsigned shift = count - AUTH_THROTTLE_FREE_FAILURES;
    if (shift > 16)
        shift = 16;
    uint64_t delay = (uint64_t)AUTH_THROTTLE_FIRST_DELAY_MS << shift;
    return delay < AUTH_THROTTLE_MAX_DELAY_MS ? delay : AUTH_THROTTLE_MAX_DELAY_MS;
}

int auth_throttle_begin(struct auth_throttle *t, const char *address, uint64_t now_ms,
                        uint64_t *wait_ms)
{
    struct throttle_entry *e = find_or_add(t, address, now_ms);
    /* Attempts still out count as failures: their answers are not known yet. */
    uint64_t delay = delay_after(e->failures + e->pending);
    uint64_t turn = now_ms;
    if (delay > 0) {
        turn = (e->next_turn > now_ms ? e->next_turn : now_ms) + delay;
        if (turn - now_ms > AUTH_THROTTLE_MAX_DELAY_MS)
            return -EAGAIN; /* not counted: nothing is checked */
        e->next_turn = turn;
    }
    if (e->failures == 0 && e->pending == 0)
        e->last_ms = now_ms;
    if (e->pending < UINT32_MAX)
        e->pending++;
    *wait_ms = turn - now_ms;
    return 0;
}

void auth_throttle_failure(struct auth_throttle *t, const char *address, const char *user,
                           uint64_t now_ms)
{
    /* The entry may be gone (evicted, or cleared by a success): the failure counts anew. */
    struct throttle_entry *e = find_or_add(t, address, now_ms);
    if (e->pending > 0)
        e->pending--;
    if (!user || strlen(user) > AUTH_NAME_MAX)
        e->failed_others = true;
    else if (e->failures == 0 && !e->failed_others)
        snprintf(e->failed_user, sizeof(e->failed_user), "%s", user);
    else if (strcmp(e->failed_user, user) != 0)
        e->failed_others = true;
    if (e->failures < UINT32_MAX)
        e->failures++;
    e->last_ms = now_ms;
}

void auth_throttle_abandon(struct auth_throttle *t, const char *address, uint64_t now_ms)
{
    struct throttle_entry *e = find(t, address, now_ms);
    if (e && e->pending > 0)
        e->pending--;
}

void auth_throttle_success(struct auth_throttle *t, const char *address, const char *user,
                           uint64_t now_ms)
{
    struct throttle_entry *e = find(t, address, now_ms);
    if (!e)
        return;
    if (e->pending > 0)
        e->pending--;
    if (e->failures > 0 && (e->failed_others || strcmp(e->failed_user, user) != 0))
        return; /* someone else's failures: they stay */
    /* Attempts still out keep the entry; their failures count from zero. */
    e->failures = 0;
    e->next_turn = 0;
    e->failed_user[0] = '\0';
    e->failed_others = false;
    if (e->pending == 0)
        e->address[0] = '\0';
}
