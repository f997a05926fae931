/* The admin module's life: start-up (token, registry), the hub observer that turns session events
 * into registry records, and the orderly end. */
#include "admin_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define ADMIN_HTTP_PROTOCOL "webfuse-admin-http"

static const char *const event_kinds[] = {
    [SESSION_EVENT_CONNECT] = "connect", [SESSION_EVENT_DISCONNECT] = "disconnect",
    [SESSION_EVENT_ATTACH] = "attach",   [SESSION_EVENT_ATTACH_FAILED] = "attach_failed",
    [SESSION_EVENT_DETACH] = "detach",   [SESSION_EVENT_AUTH_FAILED] = "auth_failed",
    [SESSION_EVENT_ERROR] = "error",     [SESSION_EVENT_ATTACH_DENIED] = "attach_denied",
};

/* Bytes of one name, mountpoint or detail the history keeps; a longer one ends in "...". */
#define ADMIN_RECORD_TEXT_MAX 4096

/* Names and reasons come as providers and operators sent them (a refused name may be as long as
 * a message): the history keeps them bounded and escaped (log_escape), so that every client of
 * the admin API gets valid UTF-8 without control characters. Out of memory: the field is left
 * empty. */
static char *copy(const char *text)
{
    if (!text)
        return NULL;
    char kept[ADMIN_RECORD_TEXT_MAX + sizeof("...")];
    size_t len = strlen(text);
    if (log_escape(kept, ADMIN_RECORD_TEXT_MAX + 1, text, len) < len)
        strcat(kept, "...");
    return strdup(kept);
}

/* Final counters, taken while the session or filesystem is still listed by the hub. */
static void snapshot_session(void *user, const struct session_info *info)
{
    struct registry_record *r = user;
    r->has_counters = true;
    r->requests = info->requests;
    r->bytes_in = info->bytes_in;
    r->bytes_out = info->bytes_out;
    if (info->user && !r->user)
        r->user = copy(info->user);
}

static void snapshot_fs(void *user, const struct session_fs_info *info)
{
    struct registry_record *r = user;
    if (info->session_id != r->session_id)
        return;
    r->has_counters = true;
    r->requests = info->requests;
    r->bytes_in = info->bytes_read;
    r->bytes_out = info->bytes_written;
}

static void submit_record(struct admin *admin, struct registry_job *job)
{
    if (registry_submit(admin->registry, job) != 0)
        registry_job_free(job); /* counted and logged by the registry */
}

/* Loop thread; called by the hub for every session event. Copies what it needs and queues it. */
static void on_session_event(void *user, const struct session_event *event)
{
    struct admin *admin = user;
    if ((size_t)event->kind >= sizeof(event_kinds) / sizeof(event_kinds[0]) ||
        !event_kinds[event->kind])
        return;
    struct registry_job *job = registry_job_new(REGISTRY_RECORD);
    if (!job) {
        log_warn("admin: out of memory: event %s of session %llu not recorded",
                 event_kinds[event->kind], (unsigned long long)event->session_id);
        return;
    }
    struct registry_record *r = &job->record;
    admin_time_format(event->time_ms, r->time, sizeof(r->time));
    r->kind = event_kinds[event->kind];
    r->session_id = event->session_id;
    r->remote = copy(event->remote);
    r->protocol = copy(event->protocol);
    r->fs_name = copy(event->fs_name);
    r->mountpoint = copy(event->mountpoint);
    r->detail = copy(event->detail);
    if (event->kind == SESSION_EVENT_DISCONNECT)
        session_hub_get(admin->hub, event->session_id, snapshot_session, r);
    else if (event->kind == SESSION_EVENT_DETACH && event->fs_name)
        session_hub_get_fs(admin->hub, event->fs_name, snapshot_fs, r);
    submit_record(admin, job);
}

void admin_record(struct admin *admin, const char *kind, const char *remote, uint64_t session_id,
                  const char *fs_name, const char *detail)
{
    struct registry_job *job = registry_job_new(REGISTRY_RECORD);
    if (!job)
        return;
    struct registry_record *r = &job->record;
    admin_time_now(r->time, sizeof(r->time));
    r->kind = kind;
    r->session_id = session_id;
    r->remote = copy(remote);
    r->fs_name = copy(fs_name);
    r->detail = copy(detail);
    submit_record(admin, job);
}

bool admin_available(void)
{
    return true;
}

int admin_new(uv_loop_t *loop, struct session_hub *hub, const struct admin_config *config,
              struct admin **out)
{
    struct admin *admin = calloc(1, sizeof(*admin));
    if (!admin)
        return -ENOMEM;
    admin->loop = loop;
    admin->hub = hub;
    admin->started_at = time(NULL);
    int rc = admin_token_load(config->token_file, admin->token, sizeof(admin->token));
    if (rc != 0)
        goto fail;
    rc = registry_open(config->db_path, &admin->registry);
    if (rc != 0)
        goto fail;
    rc = registry_start(admin->registry, loop, admin_registry_done, admin);
    if (rc != 0)
        goto fail;
    admin->protocols[0] = (struct lws_protocols){
        .name = ADMIN_HTTP_PROTOCOL,
        .callback = admin_http_callback,
        .per_session_data_size = sizeof(struct admin_req *),
        .user = admin,
    };
    session_hub_observe(hub, on_session_event, admin);
    log_info("admin API on %s (token in %s, registry %s)", config->listen ? config->listen : "?",
             config->token_file, config->db_path);
    *out = admin;
    return 0;
fail:
    registry_free(admin->registry, "webfused could not start");
    explicit_bzero(admin->token, sizeof(admin->token));
    free(admin);
    return rc;
}

const struct lws_protocols *admin_protocols(struct admin *admin)
{
    return admin->protocols;
}

void admin_close(struct admin *admin)
{
    if (admin->closing)
        return;
    admin->closing = true;
    registry_close(admin->registry);
}

void admin_free(struct admin *admin, const char *stop_detail)
{
    if (!admin)
        return;
    admin->closing = true;
    session_hub_observe(admin->hub, NULL, NULL);
    registry_free(admin->registry, stop_detail);
    explicit_bzero(admin->token, sizeof(admin->token));
    free(admin);
}
