/* What the admin API's requests mean: routing, query parameters, and the JSON of each endpoint.
 * Live state is read from the session hub as the request comes in; history is asked from the
 * registry thread and answered when it comes back. Loop thread only.
 *
 *   GET    /healthz                        no token
 *   GET    /metrics                        Prometheus text
 *   GET    /api/v1/sessions                ?state=active|all|closed&limit=N&offset=N
 *   GET    /api/v1/sessions/{id}
 *   DELETE /api/v1/sessions/{id}           optional body {"reason": "..."}
 *   GET    /api/v1/filesystems
 *   GET    /api/v1/filesystems/{name}
 *   DELETE /api/v1/filesystems/{name}      optional body {"reason": "..."}
 *   GET    /api/v1/events                  ?since=ID&limit=N
 */
#include "admin_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define API_PREFIX "/api/v1/"
#define DEFAULT_DISCONNECT_REASON "disconnected by the administrator"
#define DEFAULT_DETACH_REASON "detached by the administrator"

/* ---- query parameters -------------------------------------------------------------------------
 */

struct param {
    const char *name;
    bool present;
    char value[64];
};

/* Fills params from the query arguments. Unknown, repeated or overlong parameters are refused
 * with 400 (the response is sent); returns false then. */
static bool parse_query(struct admin_req *req, struct param *params, size_t count)
{
    if (req->args_overflow) {
        admin_respond_error(req, 400, "query too long: at most %d parameters of %d bytes",
                            ADMIN_ARGS_MAX, ADMIN_ARG_MAX - 1);
        return false;
    }
    for (size_t i = 0; i < req->arg_count; i++) {
        char name[ADMIN_ARG_MAX];
        snprintf(name, sizeof(name), "%s", req->args[i]);
        char *eq = strchr(name, '=');
        const char *value = "";
        if (eq) {
            *eq = '\0';
            value = eq + 1;
        }
        struct param *p = NULL;
        for (size_t k = 0; k < count; k++)
            if (strcmp(params[k].name, name) == 0)
                p = &params[k];
        if (!p) {
            admin_respond_error(req, 400, "unknown query parameter \"%.64s\"", name);
            return false;
        }
        if (p->present) {
            admin_respond_error(req, 400, "query parameter \"%s\" given twice", p->name);
            return false;
        }
        if (strlen(value) >= sizeof(p->value)) {
            admin_respond_error(req, 400, "query parameter \"%s\" too long", p->name);
            return false;
        }
        p->present = true;
        strcpy(p->value, value);
    }
    return true;
}

/* A decimal integer in [min, max]; no sign, no spaces. */
static bool parse_int(const char *text, int64_t min, int64_t max, int64_t *out)
{
    if (text[0] < '0' || text[0] > '9' || strlen(text) > 18)
        return false;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (*end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Reads an optional parameter into *out (left alone when absent); 400 and false when bad. */
static bool int_param(struct admin_req *req, const struct param *p, int64_t min, int64_t max,
                      int64_t *out)
{
    if (!p->present)
        return true;
    if (parse_int(p->value, min, max, out))
        return true;
    admin_respond_error(req, 400, "%s must be a number from %" PRId64 " to %" PRId64, p->name, min,
                        max);
    return false;
}

/* ---- JSON of live state -----------------------------------------------------------------------
 */

static json_t *string_or_null(const char *text)
{
    return text ? json_string(text) : json_null();
}

static json_t *fs_json(const struct session_fs_info *info)
{
    return json_pack(
        "{s:s, s:o, s:I, s:o, s:s, s:o, s:I, s:I, s:I, s:I}", "name", info->name, "mountpoint",
        string_or_null(info->mountpoint), "session", (json_int_t)info->session_id, "protocol",
        string_or_null(info->protocol), "state", info->state ? info->state : "unknown",
        "mounted_since", admin_time_json(info->mounted_ms), "open_files",
        (json_int_t)info->open_files, "requests", (json_int_t)info->requests, "bytes_read",
        (json_int_t)info->bytes_read, "bytes_written", (json_int_t)info->bytes_written);
}

static void add_fs(void *user, const struct session_fs_info *info)
{
    json_t *fs = fs_json(info);
    if (fs)
        json_array_append_new(user, fs);
}

static json_t *session_json(struct admin *admin, const struct session_info *info)
{
    json_t *filesystems = json_array();
    if (filesystems)
        session_hub_list_fs(admin->hub, info->id, add_fs, filesystems);
    return json_pack("{s:I, s:I, s:s, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:o}", "id",
                     (json_int_t)info->id, "run", (json_int_t)registry_run(admin->registry),
                     "state", info->state, "remote", string_or_null(info->remote), "protocol",
                     string_or_null(info->protocol), "user", string_or_null(info->user),
                     "connected_since", admin_time_json(info->connected_ms), "requests",
                     (json_int_t)info->requests, "bytes_in", (json_int_t)info->bytes_in,
                     "bytes_out", (json_int_t)info->bytes_out, "filesystems", filesystems);
}

struct session_page {
    struct admin *admin;
    json_t *array;
    int64_t skip; /* sessions still to pass over (offset) */
    int64_t take; /* sessions still to list (limit) */
    int64_t total;
    /* The history is listed too: it has the sessions whose connection is closed (whose mounts
     * programs still hold), which would otherwise be listed twice. */
    bool closed_from_history;
};

static void add_session(void *user, const struct session_info *info)
{
    struct session_page *page = user;
    if (page->closed_from_history && strcmp(info->state, "closed") == 0)
        return;
    page->total++;
    if (page->skip > 0) {
        page->skip--;
        return;
    }
    if (page->take <= 0)
        return;
    page->take--;
    json_t *s = session_json(page->admin, info);
    if (s)
        json_array_append_new(page->array, s);
}

static void set_session(void *user, const struct session_info *info)
{
    struct session_page *page = user;
    page->array = session_json(page->admin, info);
}

static void set_fs(void *user, const struct session_fs_info *info)
{
    *(json_t **)user = fs_json(info);
}

static void get_fs_session(void *user, const struct session_fs_info *info)
{
    *(uint64_t *)user = info->session_id;
}

/* ---- the registry's answers -------------------------------------------------------------------
 */

static bool submit_query(struct admin_req *req, struct registry_job *job)
{
    job->owner = req;
    int rc = registry_submit(req->admin->registry, job);
    if (rc != 0) {
        registry_job_free(job);
        req->admin->requests_refused++;
        admin_respond_error(req, 503,
                            rc == -EAGAIN ? "the registry is busy; try again"
                                          : "webfused is shutting down");
        return false;
    }
    req->waiting = true;
    return true;
}

void admin_registry_done(struct registry_job *job, void *arg)
{
    struct admin *admin = arg;
    struct admin_req *req = job->owner;
    if (req->orphaned) { /* the client went away while the query ran */
        admin_req_free(req);
        registry_job_free(job);
        return;
    }
    req->waiting = false;
    if (admin->closing) {
        admin_respond_error(req, 503, "webfused is shutting down");
    } else if (job->error != 0 || !job->result) {
        admin_respond_error(req, 500, "the registry query failed");
    } else if (job->kind == REGISTRY_EVENTS) {
        admin_respond_json(req, 200, json_incref(job->result));
    } else {
        /* Sessions: the live page taken when the request came, then the history page. */
        json_t *rows = json_object_get(job->result, "rows");
        json_int_t history = json_integer_value(json_object_get(job->result, "total"));
        json_t *sessions = req->live ? req->live : json_array();
        req->live = NULL;
        json_array_extend(sessions, rows);
        admin_respond_json(req, 200,
                           json_pack("{s:o, s:I, s:I, s:I}", "sessions", sessions, "total",
                                     (json_int_t)(req->live_total + history), "offset",
                                     (json_int_t)req->offset, "limit", (json_int_t)req->limit));
    }
    registry_job_free(job);
}

/* ---- endpoints --------------------------------------------------------------------------------
 */

static void get_health(struct admin_req *req)
{
    admin_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void get_metrics(struct admin_req *req)
{
    size_t len;
    char *text = admin_metrics_text(req->admin, &len);
    if (!text) {
        admin_respond_error(req, 500, "out of memory");
        return;
    }
    admin_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static void list_sessions(struct admin_req *req)
{
    struct admin *admin = req->admin;
    struct param params[] = {{.name = "state"}, {.name = "limit"}, {.name = "offset"}};
    if (!parse_query(req, params, 3))
        return;
    const char *state = params[0].present ? params[0].value : "active";
    bool live = strcmp(state, "active") == 0 || strcmp(state, "all") == 0;
    bool history = strcmp(state, "closed") == 0 || strcmp(state, "all") == 0;
    if (!live && !history) {
        admin_respond_error(req, 400, "state must be active, all or closed");
        return;
    }
    /* Live sessions alone are listed whole unless a limit is asked for. */
    int64_t limit = history ? ADMIN_DEFAULT_LIMIT : INT64_MAX;
    int64_t offset = 0;
    if (!int_param(req, &params[1], 1, ADMIN_MAX_LIMIT, &limit) ||
        !int_param(req, &params[2], 0, INT32_MAX, &offset))
        return;

    struct session_page page = {
        .admin = admin, .array = json_array(), .closed_from_history = history};
    if (!page.array) {
        admin_respond_error(req, 500, "out of memory");
        return;
    }
    if (live) {
        page.skip = offset;
        page.take = limit;
        session_hub_list(admin->hub, add_session, &page);
    }
    if (!history) {
        json_t *shown_limit = limit == INT64_MAX ? json_null() : json_integer(limit);
        admin_respond_json(req, 200,
                           json_pack("{s:o, s:I, s:I, s:o}", "sessions", page.array, "total",
                                     (json_int_t)page.total, "offset", (json_int_t)offset, "limit",
                                     shown_limit));
        return;
    }
    /* The combined list is the live sessions, then the closed ones, newest first: the page's rest
     * comes from the history. */
    struct registry_job *job = registry_job_new(REGISTRY_SESSIONS);
    if (!job) {
        json_decref(page.array);
        admin_respond_error(req, 500, "out of memory");
        return;
    }
    job->offset = offset > page.total ? offset - page.total : 0;
    job->limit = limit - (int64_t)json_array_size(page.array);
    req->live = page.array;
    req->live_total = page.total;
    req->offset = offset;
    req->limit = limit;
    submit_query(req, job);
}

static bool parse_session_id(struct admin_req *req, const char *text, uint64_t *id)
{
    int64_t v;
    if (!parse_int(text, 1, INT64_MAX, &v)) {
        admin_respond_error(req, 400, "a session id is a positive number, not \"%.64s\"", text);
        return false;
    }
    *id = (uint64_t)v;
    return true;
}

static bool parse_fs_name(struct admin_req *req, const char *text)
{
    if (session_name_valid(text))
        return true;
    admin_respond_error(req, 400,
                        "a filesystem name is 1-64 characters of A-Z a-z 0-9 . _ -, not "
                        "\"%.64s\"",
                        text);
    return false;
}

/* The reason of a DELETE: from the optional JSON body {"reason": "..."}, else `fallback`. */
static bool parse_reason(struct admin_req *req, const char *fallback, char *reason, size_t cap)
{
    snprintf(reason, cap, "%s", fallback);
    if (!req->body || req->body_len == 0)
        return true;
    json_error_t error;
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &error);
    if (!body || !json_is_object(body)) {
        json_decref(body);
        admin_respond_error(req, 400, "the body must be a JSON object: %s",
                            body ? "not an object" : error.text);
        return false;
    }
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value)
    {
        if (strcmp(key, "reason") != 0) {
            admin_respond_error(req, 400, "unknown field \"%.64s\" in the body", key);
            json_decref(body);
            return false;
        }
    }
    json_t *r = json_object_get(body, "reason");
    if (r) {
        const char *text = json_string_value(r);
        size_t len = text ? strlen(text) : 0;
        if (!text || len == 0 || len > ADMIN_REASON_MAX || len >= cap) {
            admin_respond_error(req, 400, "reason must be a string of 1 to %d bytes",
                                ADMIN_REASON_MAX);
            json_decref(body);
            return false;
        }
        snprintf(reason, cap, "%s", text);
    }
    json_decref(body);
    return true;
}

static void get_session(struct admin_req *req, uint64_t id)
{
    struct session_page page = {.admin = req->admin};
    if (session_hub_get(req->admin->hub, id, set_session, &page) != 0) {
        admin_respond_error(req, 404, "no live session %" PRIu64, id);
        return;
    }
    if (!page.array) {
        admin_respond_error(req, 500, "out of memory");
        return;
    }
    admin_respond_json(req, 200, page.array);
}

static void delete_session(struct admin_req *req, uint64_t id)
{
    char reason[ADMIN_REASON_MAX + 1];
    if (!parse_reason(req, DEFAULT_DISCONNECT_REASON, reason, sizeof(reason)))
        return;
    int rc = session_hub_disconnect(req->admin->hub, id, reason);
    if (rc == -ENOENT) {
        admin_respond_error(req, 404, "no live session %" PRIu64, id);
        return;
    }
    if (rc == -EALREADY) {
        admin_respond_error(req, 409, "session %" PRIu64 " is already closing", id);
        return;
    }
    if (rc != 0) {
        admin_respond_error(req, 500, "cannot disconnect session %" PRIu64 ": %s", id,
                            strerror(-rc));
        return;
    }
    char detail[256];
    snprintf(detail, sizeof(detail), "disconnect requested from %s: %s", req->remote, reason);
    log_info("admin: session %" PRIu64 ": %s", id, detail);
    admin_record(req->admin, "admin", req->remote, id, NULL, detail);
    admin_respond_json(req, 202,
                       json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "state", "disconnecting",
                                 "reason", reason));
}

static void list_filesystems(struct admin_req *req)
{
    if (!parse_query(req, NULL, 0))
        return;
    json_t *array = json_array();
    if (!array) {
        admin_respond_error(req, 500, "out of memory");
        return;
    }
    session_hub_list_fs(req->admin->hub, 0, add_fs, array);
    size_t count = json_array_size(array);
    admin_respond_json(req, 200,
                       json_pack("{s:o, s:I}", "filesystems", array, "total", (json_int_t)count));
}

static void get_filesystem(struct admin_req *req, const char *name)
{
    json_t *fs = NULL;
    if (session_hub_get_fs(req->admin->hub, name, set_fs, &fs) != 0) {
        admin_respond_error(req, 404, "no filesystem \"%s\"", name);
        return;
    }
    if (!fs) {
        admin_respond_error(req, 500, "out of memory");
        return;
    }
    admin_respond_json(req, 200, fs);
}

static void delete_filesystem(struct admin_req *req, const char *name)
{
    char reason[ADMIN_REASON_MAX + 1];
    if (!parse_reason(req, DEFAULT_DETACH_REASON, reason, sizeof(reason)))
        return;
    uint64_t session_id = 0;
    session_hub_get_fs(req->admin->hub, name, get_fs_session, &session_id);
    int rc = session_hub_detach(req->admin->hub, name, reason);
    if (rc == -ENOENT) {
        admin_respond_error(req, 404, "no filesystem \"%s\"", name);
        return;
    }
    if (rc == -EALREADY) {
        admin_respond_error(req, 409, "filesystem \"%s\" is already detaching", name);
        return;
    }
    if (rc != 0) {
        admin_respond_error(req, 500, "cannot detach \"%s\": %s", name, strerror(-rc));
        return;
    }
    char detail[256];
    snprintf(detail, sizeof(detail), "detach requested from %s: %s", req->remote, reason);
    log_info("admin: filesystem %s (session %" PRIu64 "): %s", name, session_id, detail);
    admin_record(req->admin, "admin", req->remote, session_id, name, detail);
    admin_respond_json(req, 202,
                       json_pack("{s:s, s:I, s:s, s:s}", "name", name, "session",
                                 (json_int_t)session_id, "state", "detaching", "reason", reason));
}

static void list_events(struct admin_req *req)
{
    struct param params[] = {{.name = "since"}, {.name = "limit"}};
    if (!parse_query(req, params, 2))
        return;
    int64_t since = -1, limit = ADMIN_DEFAULT_LIMIT;
    if (!int_param(req, &params[0], 0, INT64_MAX, &since) ||
        !int_param(req, &params[1], 1, ADMIN_MAX_LIMIT, &limit))
        return;
    struct registry_job *job = registry_job_new(REGISTRY_EVENTS);
    if (!job) {
        admin_respond_error(req, 500, "out of memory");
        return;
    }
    job->since = since;
    job->limit = limit;
    submit_query(req, job);
}

/* ---- routing ----------------------------------------------------------------------------------
 */

static bool method_is(struct admin_req *req, int method, const char *allow)
{
    if (req->method == method)
        return true;
    req->allow = allow;
    admin_respond_error(req, 405, "method not allowed here; allowed: %s", allow);
    return false;
}

static void route_api(struct admin_req *req, const char *rest)
{
    const char *slash = strchr(rest, '/');
    size_t head = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *arg = slash ? slash + 1 : NULL;
    if (arg && (*arg == '\0' || strchr(arg, '/'))) {
        admin_respond_error(req, 404, "no such resource: %.200s", req->path);
        return;
    }
    if (head == 8 && strncmp(rest, "sessions", 8) == 0) {
        if (!arg) {
            if (method_is(req, LWSHUMETH_GET, "GET"))
                list_sessions(req);
            return;
        }
        if (req->method != LWSHUMETH_GET && req->method != LWSHUMETH_DELETE) {
            method_is(req, -2, "GET, DELETE");
            return;
        }
        uint64_t id;
        if (!parse_query(req, NULL, 0) || !parse_session_id(req, arg, &id))
            return;
        if (req->method == LWSHUMETH_GET)
            get_session(req, id);
        else
            delete_session(req, id);
        return;
    }
    if (head == 11 && strncmp(rest, "filesystems", 11) == 0) {
        if (!arg) {
            if (method_is(req, LWSHUMETH_GET, "GET"))
                list_filesystems(req);
            return;
        }
        if (req->method != LWSHUMETH_GET && req->method != LWSHUMETH_DELETE) {
            method_is(req, -2, "GET, DELETE");
            return;
        }
        if (!parse_query(req, NULL, 0) || !parse_fs_name(req, arg))
            return;
        if (req->method == LWSHUMETH_GET)
            get_filesystem(req, arg);
        else
            delete_filesystem(req, arg);
        return;
    }
    if (head == 6 && strncmp(rest, "events", 6) == 0 && !arg) {
        if (method_is(req, LWSHUMETH_GET, "GET"))
            list_events(req);
        return;
    }
    admin_respond_error(req, 404, "no such resource: %.200s", req->path);
}

void admin_route(struct admin_req *req)
{
    if (strcmp(req->path, "/healthz") == 0) {
        /* Load balancers and monitors often check with HEAD. */
        if (req->method == LWSHUMETH_HEAD || method_is(req, LWSHUMETH_GET, "GET, HEAD"))
            get_health(req);
        return;
    }
    if (strcmp(req->path, "/metrics") == 0) {
        if (method_is(req, LWSHUMETH_GET, "GET") && parse_query(req, NULL, 0))
            get_metrics(req);
        return;
    }
    if (strncmp(req->path, API_PREFIX, strlen(API_PREFIX)) == 0) {
        route_api(req, req->path + strlen(API_PREFIX));
        return;
    }
    admin_respond_error(req, 404, "no such resource: %.200s", req->path);
}
