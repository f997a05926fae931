/* Authentication and authorization of provider sessions against the users file.
 *
 * A password check is a crypt(3) call that takes tens of milliseconds, so it never runs on the
 * loop thread: each check is a job that first waits out the throttle delay of its address (a
 * timer), then runs on the libuv thread pool (at most AUTH_MAX_RUNNING at once, so that unmounts,
 * which use the same pool, never queue behind a burst of logins), and comes back to the loop
 * thread, where the session, if it still exists, gets its answer. Meanwhile the session's idle
 * timer stands still: the wait is the gateway's, not the provider's.
 *
 * A job refers to its session by id, not by pointer: the session may end while the check runs.
 * Jobs are owned by the hub's list until they finish (or are cancelled at shutdown) and are freed
 * in one place, job_free, the close callback of their timer. Loop thread only, except job_work.
 */
#include "session_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "log.h"

#define AUTH_MAX_RUNNING 2
/* "USER:PASSWORD" */
#define AUTH_TOKEN_MAX (AUTH_NAME_MAX + 1 + AUTH_PASSWORD_MAX)

enum job_state { JOB_DELAYED, JOB_QUEUED, JOB_RUNNING };

struct auth_job {
    struct auth_job *prev;
    struct auth_job *next;
    struct session_hub *hub;
    uint64_t session_id;
    enum job_state state;
    uv_timer_t delay;
    uv_work_t work;
    /* The user's hash, or the decoy for an unknown user (the same cost, the answer is no); a
     * copy, because the users may be reloaded (SIGHUP) while the check runs. */
    char *hash;
    bool unknown_user;
    const char *why; /* set when the attempt fails whatever the check says */
    int result;      /* 0 or -EACCES, from the thread pool */
    /* The address as the throttle knows it. */
    char remote[64];
    char user[AUTH_NAME_MAX + 1];
    char password[AUTH_PASSWORD_MAX + 1];
};

/* ---- the hub's jobs ---------------------------------------------------------------------------
 */

int session_auth_hub_init(struct session_hub *hub)
{
    return hub->config.users ? auth_throttle_new(&hub->throttle) : 0;
}

void session_hub_set_users(struct session_hub *hub, const struct auth_users *users)
{
    if (hub->config.users && users)
        hub->config.users = users;
}

void session_auth_hub_free(struct session_hub *hub)
{
    auth_throttle_free(hub->throttle);
}

static void job_free(uv_handle_t *handle)
{
    struct auth_job *job = container_of(handle, struct auth_job, delay);
    explicit_bzero(job->password, sizeof(job->password));
    free(job->hash);
    free(job);
}

static void job_unlink(struct auth_job *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        job->hub->auth_jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
}

void session_auth_hub_shutdown(struct session_hub *hub)
{
    struct auth_job *job = hub->auth_jobs;
    while (job) {
        struct auth_job *next = job->next;
        /* A running check cannot be stopped; it finds its session gone and ends. */
        if (job->state != JOB_RUNNING) {
            job_unlink(job);
            uv_timer_stop(&job->delay);
            uv_close((uv_handle_t *)&job->delay, job_free);
        }
        job = next;
    }
}

static struct session *session_by_id(struct session_hub *hub, uint64_t id)
{
    for (struct session *s = hub->sessions; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* ---- a check ----------------------------------------------------------------------------------
 */

static void job_finish(struct auth_job *job);

/* Thread pool. */
static void job_work(uv_work_t *work)
{
    struct auth_job *job = container_of(work, struct auth_job, work);
    int rc = job->hash ? auth_password_verify(job->hash, job->password) : -ENOMEM;
    job->result = rc == 0 && !job->why ? 0 : -EACCES;
    explicit_bzero(job->password, sizeof(job->password));
}

static void job_done(uv_work_t *work, int status)
{
    struct auth_job *job = container_of(work, struct auth_job, work);
    job->hub->auth_running--;
    if (status != 0)
        job->result = -EACCES;
    job_finish(job);
}

/* Starts queued jobs, oldest first, while fewer than AUTH_MAX_RUNNING run. */
static void jobs_pump(struct session_hub *hub)
{
    for (struct auth_job *job = hub->auth_jobs; job && hub->auth_running < AUTH_MAX_RUNNING;) {
        struct auth_job *next = job->next;
        if (job->state == JOB_QUEUED) {
            job->state = JOB_RUNNING;
            hub->auth_running++;
            if (uv_queue_work(hub->loop, &job->work, job_work, job_done) != 0) {
                log_error("cannot queue a password check");
                job_done(&job->work, -ENOMEM);
                return; /* job_done pumped again */
            }
        }
        job = next;
    }
}

static void job_on_delay(uv_timer_t *timer)
{
    struct auth_job *job = container_of(timer, struct auth_job, delay);
    job->state = JOB_QUEUED;
    jobs_pump(job->hub);
}

void session_auth_failed(struct session *s, const char *detail)
{
    /* webfuse2 names its filesystem in the URL, before the login; JSON only afterwards. */
    const char *fs = s->auth.fs_name[0] ? s->auth.fs_name : NULL;
    if (fs)
        log_warn("session %llu: authentication failed for %s from %s: %s",
                 (unsigned long long)s->id, fs, s->remote, detail);
    else
        log_warn("session %llu: authentication failed from %s: %s", (unsigned long long)s->id,
                 s->remote, detail);
    session_emit(s, SESSION_EVENT_AUTH_FAILED, fs, NULL, detail);
}

/* The answer for the session, when it is still there to hear it. */
static void session_auth_finish(struct session *s, struct auth_job *job)
{
    struct session_hub *hub = s->hub;
    s->auth.busy = false;
    session_limits_resume_idle(s);
    if (job->result == 0) {
        s->auth.authenticated = true;
        s->auth.done_once = true;
        snprintf(s->auth.user, sizeof(s->auth.user), "%s", job->user);
        auth_throttle_success(hub->throttle, job->remote, job->user, uv_now(hub->loop));
        log_info("session %llu: authenticated as %s (remote %s)", (unsigned long long)s->id,
                 job->user, s->remote);
        s->protocol->on_authenticated(s, 0);
        return;
    }
    auth_throttle_failure(hub->throttle, job->remote, job->user, uv_now(hub->loop));
    char detail[160];
    if (job->why)
        snprintf(detail, sizeof(detail), "%s", job->why);
    else if (job->unknown_user)
        snprintf(detail, sizeof(detail), "unknown user \"%s\"", job->user);
    else
        snprintf(detail, sizeof(detail), "wrong password for user \"%s\"", job->user);
    session_auth_failed(s, detail);
    s->protocol->on_authenticated(s, -EACCES);
}

static void job_finish(struct auth_job *job)
{
    struct session_hub *hub = job->hub;
    job_unlink(job);
    struct session *s = session_by_id(hub, job->session_id);
    if (s && s->wsi && !s->closing)
        session_auth_finish(s, job);
    else /* nobody heard the answer: it was no attempt of the address */
        auth_throttle_abandon(hub->throttle, job->remote, uv_now(hub->loop));
    uv_close((uv_handle_t *)&job->delay, job_free);
    jobs_pump(hub);
}

/* A job for checking `password` for `user` (an unknown user is checked against the decoy),
 * with its timer initialised; NULL when out of memory. */
static struct auth_job *job_new(struct session *s, const char *remote, const char *user,
                                const char *password, const char *why)
{
    struct session_hub *hub = s->hub;
    struct auth_job *job = calloc(1, sizeof(*job));
    if (!job || uv_timer_init(hub->loop, &job->delay) != 0) {
        free(job);
        return NULL;
    }
    job->hub = hub;
    job->session_id = s->id;
    snprintf(job->remote, sizeof(job->remote), "%s", remote);
    bool known;
    job->hash = strdup(auth_users_hash_for(hub->config.users, user, &known));
    job->unknown_user = !known;
    job->why = why;
    if (!why && !auth_name_valid(user))
        job->why = "malformed user name";
    if (strlen(password) > AUTH_PASSWORD_MAX)
        job->why = "password too long";
    else
        snprintf(job->password, sizeof(job->password), "%s", password);
    if (!job->hash)
        job->why = "out of memory";
    /* A malformed name is not repeated in logs and events: it could be anything. */
    snprintf(job->user, sizeof(job->user), "%s", auth_name_valid(user) ? user : "");
    return job;
}

static void jobs_append(struct session_hub *hub, struct auth_job *job)
{
    struct auth_job **tail = &hub->auth_jobs;
    while (*tail) {
        job->prev = *tail;
        tail = &(*tail)->next;
    }
    *tail = job;
}

/* Starts checking `password` for `user`; `why`, when set, fails the attempt whatever the check
 * says (it still costs the same time and counts as a failure of the address). */
static void auth_begin(struct session *s, const char *user, const char *password, const char *why)
{
    struct session_hub *hub = s->hub;
    const char *remote = s->remote[0] ? s->remote : "unknown";
    uint64_t wait;
    if (auth_throttle_begin(hub->throttle, remote, uv_now(hub->loop), &wait) != 0) {
        /* Its turn would come after the longest delay: refused unchecked, not counted. */
        session_auth_failed(s, "too many login attempts from this address at once");
        s->protocol->on_authenticated(s, -EAGAIN);
        return;
    }
    struct auth_job *job = job_new(s, remote, user, password, why);
    if (!job) {
        auth_throttle_abandon(hub->throttle, remote, uv_now(hub->loop));
        log_error("session %llu: out of memory for a password check", (unsigned long long)s->id);
        s->protocol->on_authenticated(s, -EACCES);
        return;
    }
    jobs_append(hub, job);
    s->auth.busy = true;
    session_limits_pause_idle(s);
    if (wait > 0)
        log_info("session %llu: %s failed to authenticate repeatedly: answering in %llu ms",
                 (unsigned long long)s->id, remote, (unsigned long long)wait);
    uv_timer_start(&job->delay, job_on_delay, wait, 0);
}

/* ---- what sessions call -----------------------------------------------------------------------
 */

void session_auth_open(struct session *s)
{
    s->auth.authenticated = s->hub->config.users == NULL;
}

int session_auth_may_attach(struct session *s, const char *name)
{
    const struct auth_users *users = s->hub->config.users;
    if (!users)
        return 0;
    if (!s->auth.authenticated)
        return -EACCES;
    const struct auth_user *u = auth_users_find(users, s->auth.user);
    return u && auth_user_may_attach(u, name) ? 0 : -EPERM;
}

void session_auth_start(struct session *s, const char *user, const char *password)
{
    /* A missing credential fails like a wrong one: same answer, same delay. */
    if (!user || !password)
        auth_begin(s, user ? user : "", password ? password : "", "user name or password missing");
    else
        auth_begin(s, user, password, NULL);
}

/* A webfuse2 token: "USER:PASSWORD". */
static void auth_begin_token(struct session *s, char *token)
{
    char *colon = strchr(token, ':');
    if (!colon) {
        auth_begin(s, "", token, "the token is not USER:PASSWORD");
        return;
    }
    *colon = '\0';
    auth_begin(s, token, colon + 1, NULL);
}

/* Copies the value of the request header `name` (any case) into buf. Returns its length, 0 when
 * it is absent, -E2BIG when it does not fit. */
static int header_value(struct lws *wsi, const char *name, char *buf, size_t cap)
{
    char key[80];
    size_t n = strlen(name);
    if (n + 2 > sizeof(key))
        return 0;
    for (size_t i = 0; i < n; i++)
        key[i] = (char)tolower((unsigned char)name[i]);
    key[n] = ':';
    key[n + 1] = '\0';
    /* Headers libwebsockets knows are kept as tokens; the others under their lower-case name
     * with the colon. */
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const unsigned char *known = lws_token_to_string((enum lws_token_indexes)t);
        if (!known || strcmp((const char *)known, key) != 0)
            continue;
        int len = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        if (len <= 0)
            return 0;
        if ((size_t)len >= cap)
            return -E2BIG;
        return lws_hdr_copy(wsi, buf, (int)cap, (enum lws_token_indexes)t) < 0 ? 0 : len;
    }
    int len = lws_hdr_custom_length(wsi, key, (int)n + 1);
    if (len <= 0)
        return 0;
    if ((size_t)len >= cap)
        return -E2BIG;
    return lws_hdr_custom_copy(wsi, buf, (int)cap, key, (int)n + 1) < 0 ? 0 : len;
}

/* The token from the configured header, or else from "Authorization: Bearer"; 1 when found. */
static int header_token(struct session *s, char *token, size_t cap)
{
    const char *configured = s->hub->config.auth_header;
    if (!configured)
        configured = SESSION_DEFAULT_AUTH_HEADER;
    bool configured_is_authorization = strcasecmp(configured, "Authorization") == 0;
    int len = header_value(s->wsi, configured, token, cap);
    if (len == 0 && !configured_is_authorization) {
        len = header_value(s->wsi, "Authorization", token, cap);
        if (len > 0 && strncasecmp(token, "Bearer ", 7) != 0)
            len = 0; /* another scheme: not ours */
        configured_is_authorization = true;
    }
    if (len <= 0)
        return len;
    char *start = token;
    if (configured_is_authorization && strncasecmp(start, "Bearer ", 7) == 0)
        start += 7;
    while (*start == ' ')
        start++;
    size_t n = strlen(start);
    while (n > 0 && start[n - 1] == ' ')
        n--;
    memmove(token, start, n);
    token[n] = '\0';
    return 1;
}

static void auth_refuse(struct session *s, const char *reason)
{
    session_auth_failed(s, reason);
    session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "authentication failed");
}

static void send_getcreds(struct session *s)
{
    uint32_t id = ++s->next_request_id;
    if (id == 0)
        id = ++s->next_request_id;
    struct codec_wf2_request req = {.id = id, .type = CODEC_WF2_GETCREDS};
    unsigned char buf[CODEC_WF2_HEADER_SIZE + 16];
    size_t len;
    if (codec_wf2_encode_request(buf, sizeof(buf), &len, &req) != 0 ||
        session_send_control(s, (const char *)buf, len) != 0) {
        session_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "cannot ask for credentials");
        return;
    }
    s->auth.creds_id = id;
    log_debug("session %llu: no token in the request headers: asking with getcreds",
              (unsigned long long)s->id);
}

void session_auth_webfuse2(struct session *s)
{
    char token[AUTH_TOKEN_MAX + 1];
    int rc = header_token(s, token, sizeof(token));
    if (rc > 0)
        auth_begin_token(s, token);
    else if (rc == -E2BIG)
        auth_refuse(s, "token header too long");
    else
        send_getcreds(s);
    explicit_bzero(token, sizeof(token));
}

bool session_auth_on_creds(struct session *s, uint32_t id, const char *data, size_t len)
{
    if (s->auth.creds_id == 0 || id != s->auth.creds_id)
        return false;
    s->auth.creds_id = 0;
    struct codec_wf2_response resp;
    int rc = codec_wf2_decode_response(data, len, CODEC_WF2_GETCREDS, 0, &resp);
    if (rc == -ENOSYS) {
        auth_refuse(s, "the provider does not answer getcreds");
        return true;
    }
    if (rc != 0 || resp.credentials.len > AUTH_TOKEN_MAX ||
        (resp.credentials.len > 0 && memchr(resp.credentials.ptr, '\0', resp.credentials.len))) {
        auth_refuse(s, "malformed credentials");
        return true;
    }
    char token[AUTH_TOKEN_MAX + 1];
    if (resp.credentials.len > 0)
        memcpy(token, resp.credentials.ptr, resp.credentials.len);
    token[resp.credentials.len] = '\0';
    auth_begin_token(s, token);
    explicit_bzero(token, sizeof(token));
    return true;
}
