/* The webfuse2 protocol ("webfuse2" subprotocol, binary frames): the gateway sends every
 * request, the provider answers each with exactly one response, served from one tree.
 *
 * Beyond the letter of docs/webfuse2-protocol.md, for any service: a request type without known
 * fields is answered with 0x80 and the same id; a request too short for its fields is answered
 * with its own response type and -EINVAL (the existing provider stays silent there); bytes after
 * the fields are ignored; requests may come in any order; a handle of -1 means "by path".
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "provider_internal.h"

/* Bytes a readdir answer may take besides its names: header, result, count. */
#define WF2_READDIR_OVERHEAD 64

/* Bytes a READDIRPLUS entry takes besides its name: the name's length and the attributes. */
#define WF2_DIRENT_OVERHEAD (4 + 88)

/* One request and its answer; `resp` may point into `link`, `names` and `entries`. */
struct wf2_call {
    struct codec_wf2_request req;
    struct codec_wf2_response resp;
    char link[PATH_MAX];              /* READLINK: the target */
    struct codec_wf2_str *names;      /* READDIR: owned copies of the names */
    struct codec_wf2_dirent *entries; /* READDIRPLUS: entries with owned copies of names */
    size_t name_cap;
    size_t name_bytes; /* encoded size of the names (READDIRPLUS: entries) so far */
};

typedef int (*wf2_handler)(struct provider *p, struct wf2_call *c);

static struct tree_path wf2_path(struct codec_wf2_str s)
{
    return (struct tree_path){.ptr = s.ptr, .len = s.len};
}

static struct codec_wf2_timestamp wf2_timestamp(struct timespec ts)
{
    return (struct codec_wf2_timestamp){.sec = (uint64_t)ts.tv_sec, .nsec = (uint32_t)ts.tv_nsec};
}

/* ------------------------------------------------------------------------------------------------
 * Handlers: each returns the response's result and fills the rest of c->resp
 * ----------------------------------------------------------------------------------------------*/

static int wf2_access(struct provider *p, struct wf2_call *c)
{
    return tree_access(p->tree, wf2_path(c->req.path), c->req.access_mode);
}

static void wf2_attr_from_stat(const struct stat *st, struct codec_wf2_attr *a)
{
    a->inode = st->st_ino;
    a->nlink = st->st_nlink;
    a->mode = st->st_mode;
    a->uid = st->st_uid;
    a->gid = st->st_gid;
    a->rdev = st->st_rdev;
    a->size = (uint64_t)st->st_size;
    a->blocks = (uint64_t)st->st_blocks;
    a->atime = wf2_timestamp(st->st_atim);
    a->mtime = wf2_timestamp(st->st_mtim);
    a->ctime = wf2_timestamp(st->st_ctim);
}

static int wf2_getattr(struct provider *p, struct wf2_call *c)
{
    struct stat st;
    int rc = tree_getattr(p->tree, wf2_path(c->req.path), &st);
    if (rc == 0)
        wf2_attr_from_stat(&st, &c->resp.attr);
    return rc;
}

static int wf2_readlink(struct provider *p, struct wf2_call *c)
{
    size_t len = 0;
    int rc = tree_readlink(p->tree, wf2_path(c->req.path), c->link, sizeof(c->link), &len);
    c->resp.target = (struct codec_wf2_str){.ptr = c->link, .len = len};
    return rc;
}

static int wf2_symlink(struct provider *p, struct wf2_call *c)
{
    return tree_symlink(p->tree, wf2_path(c->req.target), wf2_path(c->req.path2));
}

static int wf2_link(struct provider *p, struct wf2_call *c)
{
    return tree_link(p->tree, wf2_path(c->req.path), wf2_path(c->req.path2));
}

static int wf2_rename(struct provider *p, struct wf2_call *c)
{
    return tree_rename(p->tree, wf2_path(c->req.path), wf2_path(c->req.path2), c->req.rename_flags);
}

static int wf2_chmod(struct provider *p, struct wf2_call *c)
{
    return tree_chmod(p->tree, wf2_path(c->req.path), c->req.mode);
}

static int wf2_chown(struct provider *p, struct wf2_call *c)
{
    return tree_chown(p->tree, wf2_path(c->req.path), c->req.uid, c->req.gid);
}

static int wf2_truncate(struct provider *p, struct wf2_call *c)
{
    return tree_truncate(p->tree, wf2_path(c->req.path), c->req.size, c->req.handle);
}

static int wf2_fsync(struct provider *p, struct wf2_call *c)
{
    return tree_fsync(p->tree, wf2_path(c->req.path), c->req.datasync, c->req.handle);
}

static int wf2_open(struct provider *p, struct wf2_call *c)
{
    int rc = tree_open(p->tree, wf2_path(c->req.path), c->req.flags, &c->resp.handle);
    if (rc == -EMFILE)
        log_warn("%s: too many open files (limit %u)", p->fs_name, TREE_MAX_HANDLES);
    return rc;
}

static int wf2_mknod(struct provider *p, struct wf2_call *c)
{
    return tree_mknod(p->tree, wf2_path(c->req.path), c->req.mode, c->req.rdev);
}

static int wf2_create(struct provider *p, struct wf2_call *c)
{
    int rc = tree_create(p->tree, wf2_path(c->req.path), c->req.mode, &c->resp.handle);
    if (rc == -EMFILE)
        log_warn("%s: too many open files (limit %u)", p->fs_name, TREE_MAX_HANDLES);
    return rc;
}

static int wf2_release(struct provider *p, struct wf2_call *c)
{
    return tree_release(p->tree, c->req.handle);
}

static int wf2_unlink(struct provider *p, struct wf2_call *c)
{
    return tree_unlink(p->tree, wf2_path(c->req.path));
}

static int wf2_write(struct provider *p, struct wf2_call *c)
{
    /* data fits the message, so its length fits an int (PROVIDER_MAX_MESSAGE) */
    return (int)tree_write(p->tree, wf2_path(c->req.path), c->req.handle, c->req.offset,
                           c->req.data.ptr, c->req.data.len);
}

static int wf2_mkdir(struct provider *p, struct wf2_call *c)
{
    return tree_mkdir(p->tree, wf2_path(c->req.path), c->req.mode);
}

/* tree_readdir callback: keeps an owned copy of each name, within the message size. */
static int wf2_names_add(void *user, const char *name)
{
    struct wf2_call *c = user;
    size_t len = strlen(name);
    c->name_bytes += 4 + len;
    if (c->name_bytes > PROVIDER_MAX_MESSAGE - WF2_READDIR_OVERHEAD)
        return -EFBIG;
    if (c->resp.name_count == c->name_cap) {
        size_t cap = c->name_cap ? c->name_cap * 2 : 64;
        struct codec_wf2_str *names = realloc(c->names, cap * sizeof(*names));
        if (!names)
            return -ENOMEM;
        c->names = names;
        c->name_cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    c->names[c->resp.name_count++] = (struct codec_wf2_str){.ptr = copy, .len = len};
    return 0;
}

static int wf2_readdir(struct provider *p, struct wf2_call *c)
{
    int rc = tree_readdir(p->tree, wf2_path(c->req.path), wf2_names_add, c);
    if (rc == -EFBIG)
        log_warn("%s: directory %.*s is too large to list in one message", p->fs_name,
                 (int)(c->req.path.len > 200 ? 200 : c->req.path.len), c->req.path.ptr);
    c->resp.names = c->names;
    return rc;
}

/* tree_readdirplus callback: an owned copy of each entry, while the page has room. */
static int wf2_dirents_add(void *user, const char *name, const struct stat *st)
{
    struct wf2_call *c = user;
    size_t len = strlen(name);
    if (c->resp.entry_count >= c->req.max_entries ||
        c->name_bytes + WF2_DIRENT_OVERHEAD + len > PROVIDER_MAX_MESSAGE - WF2_READDIR_OVERHEAD)
        return 1;
    if (c->resp.entry_count == c->name_cap) {
        size_t cap = c->name_cap ? c->name_cap * 2 : 64;
        struct codec_wf2_dirent *entries = realloc(c->entries, cap * sizeof(*entries));
        if (!entries)
            return -ENOMEM;
        c->entries = entries;
        c->name_cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    struct codec_wf2_dirent *e = &c->entries[c->resp.entry_count++];
    e->name = (struct codec_wf2_str){.ptr = copy, .len = len};
    wf2_attr_from_stat(st, &e->attr);
    c->name_bytes += WF2_DIRENT_OVERHEAD + len;
    return 0;
}

/* Our extension: a page of entries with their attributes, as many as asked for and as fit. */
static int wf2_readdirplus(struct provider *p, struct wf2_call *c)
{
    if (c->req.max_entries == 0)
        return -EINVAL; /* an empty page that says "more" would be asked for again forever */
    int rc = tree_readdirplus(p->tree, wf2_path(c->req.path), c->req.offset, wf2_dirents_add, c,
                              &c->resp.cookie);
    c->resp.entries = c->entries;
    if (rc == 0 && c->resp.entry_count == 0 && c->resp.cookie != 0)
        rc = -ENAMETOOLONG; /* cannot happen: a name is at most 255 bytes */
    return rc;
}

static int wf2_rmdir(struct provider *p, struct wf2_call *c)
{
    return tree_rmdir(p->tree, wf2_path(c->req.path));
}

static int wf2_statfs(struct provider *p, struct wf2_call *c)
{
    struct statvfs st;
    int rc = tree_statfs(p->tree, &st);
    if (rc < 0)
        return rc;
    c->resp.statfs = (struct codec_wf2_statfs){
        .bsize = st.f_bsize,
        .frsize = st.f_frsize,
        .blocks = st.f_blocks,
        .bfree = st.f_bfree,
        .bavail = st.f_bavail,
        .files = st.f_files,
        .ffree = st.f_ffree,
        .namemax = st.f_namemax,
    };
    return 0;
}

/* A wire timestamp as utimensat takes it; UTIME_NOW and UTIME_OMIT pass through as they are. */
static int wf2_timespec(struct codec_wf2_timestamp ts, struct timespec *out)
{
    if (ts.sec > INT64_MAX)
        return -EINVAL;
    out->tv_sec = (time_t)ts.sec;
    out->tv_nsec = (long)ts.nsec;
    return 0;
}

static int wf2_utimens(struct provider *p, struct wf2_call *c)
{
    struct timespec times[2];
    if (wf2_timespec(c->req.atime, &times[0]) < 0 || wf2_timespec(c->req.mtime, &times[1]) < 0)
        return -EINVAL;
    return tree_utimens(p->tree, wf2_path(c->req.path), times, c->req.handle);
}

/* A gateway with an --auth-file asks before it mounts anything: not attached yet. */
static void wf2_log_login(const struct provider *p)
{
    const char *token = p->options->token ? p->options->token : "";
    const char *colon = strchr(token, ':');
    if (!token[0])
        log_warn("%s: the gateway asks for a login and none was given (--user NAME)", p->fs_name);
    else if (colon && colon != token)
        log_info("%s: the gateway asks for a login: logging in as %.*s", p->fs_name,
                 (int)(colon - token), token);
    else
        log_info("%s: the gateway asks for a login: sending the token", p->fs_name);
}

static int wf2_getcreds(struct provider *p, struct wf2_call *c)
{
    const char *token = p->options->token ? p->options->token : "";
    c->resp.credentials = (struct codec_wf2_str){.ptr = token, .len = strlen(token)};
    return 0;
}

static const wf2_handler wf2_handlers[CODEC_WF2_TYPE_MAX + 1] = {
    [CODEC_WF2_ACCESS] = wf2_access,     [CODEC_WF2_GETATTR] = wf2_getattr,
    [CODEC_WF2_READLINK] = wf2_readlink, [CODEC_WF2_SYMLINK] = wf2_symlink,
    [CODEC_WF2_LINK] = wf2_link,         [CODEC_WF2_RENAME] = wf2_rename,
    [CODEC_WF2_CHMOD] = wf2_chmod,       [CODEC_WF2_CHOWN] = wf2_chown,
    [CODEC_WF2_TRUNCATE] = wf2_truncate, [CODEC_WF2_FSYNC] = wf2_fsync,
    [CODEC_WF2_OPEN] = wf2_open,         [CODEC_WF2_MKNOD] = wf2_mknod,
    [CODEC_WF2_CREATE] = wf2_create,     [CODEC_WF2_RELEASE] = wf2_release,
    [CODEC_WF2_UNLINK] = wf2_unlink, /* READ: wf2_read_start */
    [CODEC_WF2_WRITE] = wf2_write,       [CODEC_WF2_MKDIR] = wf2_mkdir,
    [CODEC_WF2_READDIR] = wf2_readdir,   [CODEC_WF2_RMDIR] = wf2_rmdir,
    [CODEC_WF2_STATFS] = wf2_statfs,     [CODEC_WF2_UTIMENS] = wf2_utimens,
    [CODEC_WF2_GETCREDS] = wf2_getcreds, [CODEC_WF2_READDIRPLUS] = wf2_readdirplus,
};

/* ------------------------------------------------------------------------------------------------
 * Reads: on the pool, straight into the answer
 * ----------------------------------------------------------------------------------------------*/

struct wf2_read {
    struct pool_job job;
    struct provider_msg *msg; /* the answer; the data goes after its head */
    struct tree_read file;
    uint64_t offset;
    size_t size;
    long result;
    uint32_t id;
    unsigned connection; /* the connection the request came on */
};

static void wf2_answer(struct provider *p, const struct codec_wf2_response *resp);

/* A worker thread (or the loop thread when the pool is full). */
static void wf2_read_run(struct pool_job *job)
{
    struct wf2_read *r = (struct wf2_read *)job;
    char *data = provider_msg_payload(r->msg) + CODEC_WF2_READ_HEAD_SIZE;
    r->result = provider_io_full(r->file.fd, data, r->size, r->offset, false);
}

static void wf2_read_done(struct provider *p, struct pool_job *job)
{
    struct wf2_read *r = (struct wf2_read *)job;
    tree_read_end(p->tree, &r->file);
    /* at most PROVIDER_MAX_READ, so it fits the result */
    int32_t result = (int32_t)r->result;
    log_debug("%s: read %u: %s%s%d", p->fs_name, r->id, result < 0 ? strerror(-result) : "ok",
              result < 0 ? " " : ", result ", result);
    struct provider_msg *msg = r->msg;
    msg->len = codec_wf2_encode_read_head(provider_msg_payload(msg), r->id, result);
    if (result > 0)
        msg->len += (size_t)result;
    msg = provider_msg_fit(msg, CODEC_WF2_READ_HEAD_SIZE + r->size);
    if (!job->cancelled && r->connection == p->connection)
        provider_send(p, msg);
    else
        free(msg);
    free(r);
}

/* Starts READ: the file is read on the pool, or right here when the page cache has a small
 * read's data or the pool is full; either way the answer is queued by wf2_read_done. */
static void wf2_read_start(struct provider *p, const struct codec_wf2_request *req)
{
    size_t size = req->read_size < PROVIDER_MAX_READ ? req->read_size : PROVIDER_MAX_READ;
    struct wf2_read *r = calloc(1, sizeof(*r));
    int rc = -ENOMEM;
    if (r && (r->msg = provider_msg_new(CODEC_WF2_READ_HEAD_SIZE + size)))
        rc =
            tree_read_begin(p->tree, wf2_path(req->path), req->handle, req->offset, size, &r->file);
    if (rc < 0) {
        if (r)
            free(r->msg);
        free(r);
        struct codec_wf2_response resp = {.id = req->id, .type = req->type, .result = rc};
        wf2_answer(p, &resp);
        return;
    }
    r->job.run = wf2_read_run;
    r->job.done = wf2_read_done;
    r->offset = req->offset;
    r->size = size;
    r->id = req->id;
    r->connection = p->connection;
    if (size <= PROVIDER_INLINE_READ) {
        char *data = provider_msg_payload(r->msg) + CODEC_WF2_READ_HEAD_SIZE;
        r->result = provider_read_cached(r->file.fd, data, size, r->offset);
        if (r->result != -EAGAIN) {
            wf2_read_done(p, &r->job);
            return;
        }
    }
    if (!pool_submit(p->pool, &r->job)) {
        wf2_read_run(&r->job);
        wf2_read_done(p, &r->job);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Messages
 * ----------------------------------------------------------------------------------------------*/

static void wf2_call_free(struct wf2_call *c)
{
    for (size_t i = 0; i < c->resp.name_count; i++)
        free((char *)c->names[i].ptr);
    free(c->names);
    c->names = NULL;
    for (size_t i = 0; i < c->resp.entry_count; i++)
        free((char *)c->entries[i].name.ptr);
    free(c->entries);
    c->entries = NULL;
}

/* Encodes `resp` into a new message and queues it. */
static int wf2_send(struct provider *p, const struct codec_wf2_response *resp)
{
    size_t len = 0;
    int rc = codec_wf2_encode_response(NULL, 0, &len, resp);
    if (rc != -ENOBUFS && rc != 0)
        return rc;
    if (len > PROVIDER_MAX_MESSAGE)
        return -EFBIG;
    struct provider_msg *msg = provider_msg_new(len);
    if (!msg)
        return -ENOMEM;
    rc = codec_wf2_encode_response(provider_msg_payload(msg), len, &msg->len, resp);
    if (rc < 0) {
        free(msg);
        return rc;
    }
    return provider_send(p, msg);
}

/* Sends the answer; one that cannot be encoded or queued becomes an error answer (credentials:
 * an empty string), so the gateway is never left waiting. */
static void wf2_answer(struct provider *p, const struct codec_wf2_response *resp)
{
    int rc = wf2_send(p, resp);
    if (rc == 0 || rc == -ENOTCONN || rc == -ECONNABORTED)
        return;
    log_warn("%s: cannot send the %s answer %u: %s", p->fs_name, codec_wf2_type_name(resp->type),
             resp->id, strerror(-rc));
    struct codec_wf2_response fallback = {.id = resp->id, .type = resp->type, .result = rc};
    rc = wf2_send(p, &fallback);
    if (rc < 0 && rc != -ENOTCONN && rc != -ECONNABORTED)
        log_error("%s: cannot answer request %u: %s", p->fs_name, resp->id, strerror(-rc));
}

static void wf2_log_call(struct provider *p, const struct wf2_call *c)
{
    const struct codec_wf2_str *path =
        c->req.type == CODEC_WF2_SYMLINK ? &c->req.path2 : &c->req.path;
    int len = path->len > 200 ? 200 : (int)path->len;
    int result = c->resp.result;
    log_debug("%s: %s %u %.*s: %s%s%d", p->fs_name, codec_wf2_type_name(c->req.type), c->req.id,
              len, path->ptr ? path->ptr : "", result < 0 ? strerror(-result) : "ok",
              result < 0 ? " " : ", result ", result);
}

/* Fills c->resp for the decoded (or undecodable) request. */
static void wf2_serve(struct provider *p, struct wf2_call *c, int decoded)
{
    c->resp.id = c->req.id;
    c->resp.type = c->req.type;
    if (decoded == -ENOSYS) {
        log_warn("%s: unknown request type 0x%02x (id %u): answered as unknown", p->fs_name,
                 c->req.type, c->req.id);
        c->resp.type = CODEC_WF2_UNKNOWN;
    } else if (decoded < 0) {
        log_warn("%s: %s request %u is too short for its fields: answered with EINVAL", p->fs_name,
                 codec_wf2_type_name(c->req.type), c->req.id);
        c->resp.result = -EINVAL;
    } else {
        c->resp.result = wf2_handlers[c->req.type](p, c);
        wf2_log_call(p, c);
    }
}

static void wf2_on_message(struct provider *p, const void *data, size_t len)
{
    struct wf2_call *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("%s: out of memory: closing the connection", p->fs_name);
        provider_close_connection(p, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    int rc = codec_wf2_decode_request(data, len, &c->req);
    if (rc == -EBADMSG && len < CODEC_WF2_HEADER_SIZE) {
        log_warn("%s: ignoring a message of %zu bytes: too short for an id", p->fs_name, len);
    } else {
        if (rc == 0 && c->req.type == CODEC_WF2_READ) {
            wf2_read_start(p, &c->req);
        } else {
            wf2_serve(p, c, rc);
            wf2_answer(p, &c->resp);
        }
        if (rc == 0 && c->req.type == CODEC_WF2_GETCREDS)
            wf2_log_login(p);
        else if (!p->served) {
            p->served = true;
            log_info("%s: attached: the gateway's first request came", p->fs_name);
            provider_mark_serving(p);
        }
    }
    wf2_call_free(c);
    free(c);
}

/* ------------------------------------------------------------------------------------------------
 * Protocol hooks
 * ----------------------------------------------------------------------------------------------*/

/* The URL path's last segment, which the gateway names the filesystem after ("/" when none). */
static void wf2_set_name(struct provider *p)
{
    const char *path = p->url.path;
    size_t end = strcspn(path, "?#");
    while (end > 0 && path[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    if (end == start)
        snprintf(p->fs_name, sizeof(p->fs_name), "/");
    else
        snprintf(p->fs_name, sizeof(p->fs_name), "%.*s", (int)(end - start), path + start);
}

static int wf2_open_tree(struct provider *p)
{
    const struct provider_options *options = p->options;
    if (!options->path || options->export_count > 0) {
        log_error("webfuse2 serves exactly one directory (--path), not --fs");
        return -EINVAL;
    }
    wf2_set_name(p);
    int rc = tree_new(options->path, options->read_only, &p->tree);
    if (rc == -ENOSYS)
        log_error("cannot serve %s: the kernel lacks openat2, needed to keep paths inside it",
                  options->path);
    else if (rc < 0)
        log_error("cannot serve %s: %s", options->path, strerror(-rc));
    if (rc < 0)
        return rc;
    /* Modes come from the gateway with the caller's umask already applied: ours must not take
     * bits away a second time (as libfuse's passthrough example does). */
    umask(0);
    return 0;
}

static void wf2_close_tree(struct provider *p)
{
    tree_free(p->tree);
    p->tree = NULL;
}

/* webfuse2 has no accept message: the gateway mounts the name, or closes the connection with
 * the reason. */
static void wf2_on_connected(struct provider *p)
{
    log_info("%s: offering %s%s%s", p->fs_name, tree_dir(p->tree),
             tree_read_only(p->tree) ? " read-only" : "",
             strcmp(p->fs_name, "/") == 0 ? " (the URL names no filesystem: the gateway picks a "
                                            "name, see webfusectl filesystems on the device)"
                                          : "");
}

static void wf2_on_disconnected(struct provider *p)
{
    tree_close_handles(p->tree);
}

const struct provider_protocol provider_protocol_webfuse2 = {
    .name = "webfuse2",
    .subprotocol = CODEC_WF2_SUBPROTOCOL,
    .binary = true,
    .open = wf2_open_tree,
    .close = wf2_close_tree,
    .on_connected = wf2_on_connected,
    .on_message = wf2_on_message,
    .on_disconnected = wf2_on_disconnected,
};
