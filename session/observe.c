/* What the admin API sees of sessions and how it steers them: listings, counters, events,
 * remote disconnect and detach. Loop thread only. */
#include "session_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static const char *const op_names[SESSION_OP_KINDS] = {
    [FUSEBRIDGE_LOOKUP] = "lookup",   [FUSEBRIDGE_GETATTR] = "getattr",
    [FUSEBRIDGE_READDIR] = "readdir", [FUSEBRIDGE_OPEN] = "open",
    [FUSEBRIDGE_READ] = "read",       [FUSEBRIDGE_RELEASE] = "release",
    [FUSEBRIDGE_ACCESS] = "access",   [FUSEBRIDGE_READLINK] = "readlink",
    [FUSEBRIDGE_SYMLINK] = "symlink", [FUSEBRIDGE_LINK] = "link",
    [FUSEBRIDGE_RENAME] = "rename",   [FUSEBRIDGE_CHMOD] = "chmod",
    [FUSEBRIDGE_CHOWN] = "chown",     [FUSEBRIDGE_TRUNCATE] = "truncate",
    [FUSEBRIDGE_FSYNC] = "fsync",     [FUSEBRIDGE_MKNOD] = "mknod",
    [FUSEBRIDGE_CREATE] = "create",   [FUSEBRIDGE_UNLINK] = "unlink",
    [FUSEBRIDGE_WRITE] = "write",     [FUSEBRIDGE_MKDIR] = "mkdir",
    [FUSEBRIDGE_RMDIR] = "rmdir",     [FUSEBRIDGE_STATFS] = "statfs",
    [FUSEBRIDGE_UTIMENS] = "utimens",
};

const char *session_op_name(enum fusebridge_kind kind)
{
    return (unsigned)kind < SESSION_OP_KINDS ? op_names[kind] : "unknown";
}

const char *session_protocol_name(int protocol)
{
    return protocol == session_protocol_webfuse2.index ? session_protocol_webfuse2.name
                                                       : session_protocol_json.name;
}

const struct session_metrics *session_hub_metrics(const struct session_hub *hub)
{
    return &hub->metrics;
}

size_t session_hub_fs_count(const struct session_hub *hub)
{
    size_t n = 0;
    for (const struct session *s = hub->sessions; s; s = s->next)
        for (const struct filesystem *fs = s->filesystems; fs; fs = fs->next)
            n += fs->state == FS_MOUNTED;
    return n;
}

void session_hub_observe(struct session_hub *hub,
                         void (*fn)(void *user, const struct session_event *event), void *user)
{
    hub->observer = fn;
    hub->observer_user = user;
}

int64_t session_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void session_emit(struct session *s, enum session_event_kind kind, const char *fs_name,
                  const char *mountpoint, const char *detail)
{
    session_emit_at(s, kind, session_now_ms(), fs_name, mountpoint, detail);
}

void session_emit_at(struct session *s, enum session_event_kind kind, int64_t time_ms,
                     const char *fs_name, const char *mountpoint, const char *detail)
{
    struct session_hub *hub = s->hub;
    if (kind == SESSION_EVENT_ERROR)
        hub->metrics.protocol_errors++;
    if (!hub->observer)
        return;
    struct session_event event = {
        .kind = kind,
        .session_id = s->id,
        .remote = s->remote,
        .protocol = s->protocol->name,
        .fs_name = fs_name,
        .mountpoint = mountpoint,
        .detail = detail,
        .time_ms = time_ms,
    };
    hub->observer(hub->observer_user, &event);
}

/* ---- listings ---------------------------------------------------------------------------------
 */

static void session_describe(const struct session *s, struct session_info *info)
{
    *info = (struct session_info){
        .id = s->id,
        .remote = s->remote,
        .protocol = s->protocol->name,
        .user = s->auth.user[0] ? s->auth.user : NULL,
        .state = !s->wsi      ? "closed"
                 : s->closing ? "closing"
                              : "active",
        .connected_ms = s->connected_ms,
        .requests = s->requests,
        .bytes_in = s->bytes_in,
        .bytes_out = s->bytes_out,
        .filesystem_count = s->filesystem_count,
    };
}

static const char *const fs_state_names[] = {
    [FS_MOUNTING] = "mounting",
    [FS_MOUNTED] = "mounted",
    [FS_CLOSING] = "detaching",
};

static void fs_describe(const struct filesystem *fs, struct session_fs_info *info)
{
    *info = (struct session_fs_info){
        .name = fs->name,
        .mountpoint = fs->mountpoint,
        .session_id = fs->session->id,
        .protocol = fs->session->protocol->name,
        .state = fs_state_names[fs->state],
        .mounted_ms = fs->mounted_ms,
        .open_files = fs->open_files,
        .requests = fs->requests,
        .bytes_read = fs->bytes_read,
        .bytes_written = fs->bytes_written,
    };
}

static struct session *session_find(struct session_hub *hub, uint64_t id)
{
    for (struct session *s = hub->sessions; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* A detached mount may linger (a process holds a file) while its name is attached again: the
 * live one wins. */
static struct filesystem *fs_find(struct session_hub *hub, const char *name)
{
    struct filesystem *lingering = NULL;
    for (struct session *s = hub->sessions; s; s = s->next) {
        for (struct filesystem *fs = s->filesystems; fs; fs = fs->next) {
            if (strcmp(fs->name, name) != 0)
                continue;
            if (fs->state != FS_CLOSING)
                return fs;
            lingering = fs;
        }
    }
    return lingering;
}

void session_hub_list(struct session_hub *hub, session_info_fn fn, void *user)
{
    struct session_info info;
    for (const struct session *s = hub->sessions; s; s = s->next) {
        session_describe(s, &info);
        fn(user, &info);
    }
}

int session_hub_get(struct session_hub *hub, uint64_t id, session_info_fn fn, void *user)
{
    const struct session *s = session_find(hub, id);
    if (!s)
        return -ENOENT;
    struct session_info info;
    session_describe(s, &info);
    fn(user, &info);
    return 0;
}

void session_hub_list_fs(struct session_hub *hub, uint64_t id, session_fs_info_fn fn, void *user)
{
    struct session_fs_info info;
    for (const struct session *s = hub->sessions; s; s = s->next) {
        if (id != 0 && s->id != id)
            continue;
        for (const struct filesystem *fs = s->filesystems; fs; fs = fs->next) {
            fs_describe(fs, &info);
            fn(user, &info);
        }
    }
}

int session_hub_get_fs(struct session_hub *hub, const char *name, session_fs_info_fn fn, void *user)
{
    const struct filesystem *fs = fs_find(hub, name);
    if (!fs)
        return -ENOENT;
    struct session_fs_info info;
    fs_describe(fs, &info);
    fn(user, &info);
    return 0;
}

/* ---- steering ---------------------------------------------------------------------------------
 */

int session_hub_disconnect(struct session_hub *hub, uint64_t id, const char *reason)
{
    struct session *s = session_find(hub, id);
    if (!s)
        return -ENOENT;
    if (!s->wsi || s->closing)
        return -EALREADY;
    log_info("session %llu: disconnected by the administrator: %s", (unsigned long long)s->id,
             reason);
    session_close(s, LWS_CLOSE_STATUS_NORMAL, reason);
    return 0;
}

int session_hub_detach(struct session_hub *hub, const char *name, const char *reason)
{
    struct filesystem *fs = fs_find(hub, name);
    if (!fs)
        return -ENOENT;
    if (fs->state == FS_CLOSING)
        return -EALREADY;
    struct session *s = fs->session;
    log_info("session %llu: %s detached by the administrator: %s", (unsigned long long)s->id, name,
             reason);
    if (s->protocol->path_based) {
        /* One filesystem per webfuse2 connection: detaching it ends the connection. */
        session_detach_fs(fs);
        session_close(s, LWS_CLOSE_STATUS_NORMAL, reason);
        return 0;
    }
    /* Still mounting: the provider waits for the answer to its add_filesystem, not for news. */
    if (fs->state == FS_MOUNTING)
        s->protocol->on_attached(s, fs, -ECANCELED);
    else
        session_tell_detached(s, name);
    session_detach_fs(fs);
    return 0;
}
