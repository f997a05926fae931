/* The webfuse2 protocol on top of a session: one path-based, writable filesystem per connection,
 * named by the last segment of the URL path. The gateway sends every request; the provider only
 * answers. */
#include "session_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* The most entries one READDIRPLUS page may carry: a round trip per 4096 entries costs little,
 * and a page stays well within the gateway's message size. */
#define WF2_PAGE_ENTRIES 4096
/* The largest entry: a name of 255 bytes with its length, and the attributes. */
#define WF2_DIRENT_MAX (4 + 255 + 88)

static const uint8_t wf2_type_of[] = {
    [FUSEBRIDGE_LOOKUP] = CODEC_WF2_GETATTR, /* path-based mounts never send LOOKUP */
    [FUSEBRIDGE_GETATTR] = CODEC_WF2_GETATTR,   [FUSEBRIDGE_READDIR] = CODEC_WF2_READDIR,
    [FUSEBRIDGE_OPEN] = CODEC_WF2_OPEN,         [FUSEBRIDGE_READ] = CODEC_WF2_READ,
    [FUSEBRIDGE_RELEASE] = CODEC_WF2_RELEASE,   [FUSEBRIDGE_ACCESS] = CODEC_WF2_ACCESS,
    [FUSEBRIDGE_READLINK] = CODEC_WF2_READLINK, [FUSEBRIDGE_SYMLINK] = CODEC_WF2_SYMLINK,
    [FUSEBRIDGE_LINK] = CODEC_WF2_LINK,         [FUSEBRIDGE_RENAME] = CODEC_WF2_RENAME,
    [FUSEBRIDGE_CHMOD] = CODEC_WF2_CHMOD,       [FUSEBRIDGE_CHOWN] = CODEC_WF2_CHOWN,
    [FUSEBRIDGE_TRUNCATE] = CODEC_WF2_TRUNCATE, [FUSEBRIDGE_FSYNC] = CODEC_WF2_FSYNC,
    [FUSEBRIDGE_MKNOD] = CODEC_WF2_MKNOD,       [FUSEBRIDGE_CREATE] = CODEC_WF2_CREATE,
    [FUSEBRIDGE_UNLINK] = CODEC_WF2_UNLINK,     [FUSEBRIDGE_WRITE] = CODEC_WF2_WRITE,
    [FUSEBRIDGE_MKDIR] = CODEC_WF2_MKDIR,       [FUSEBRIDGE_RMDIR] = CODEC_WF2_RMDIR,
    [FUSEBRIDGE_STATFS] = CODEC_WF2_STATFS,     [FUSEBRIDGE_UTIMENS] = CODEC_WF2_UTIMENS,
};

static bool wf2_expects_answer(enum fusebridge_kind kind)
{
    (void)kind;
    return true; /* every webfuse2 request gets exactly one response */
}

static struct codec_wf2_str str_of(const char *s)
{
    return (struct codec_wf2_str){.ptr = s, .len = s ? strlen(s) : 0};
}

static struct codec_wf2_timestamp timestamp_of(struct timespec ts)
{
    return (struct codec_wf2_timestamp){.sec = (uint64_t)ts.tv_sec, .nsec = (uint32_t)ts.tv_nsec};
}

/* Entries a READDIRPLUS page may carry: even a page of the longest names must fit a message. */
static uint32_t wf2_page_entries(const struct session *s)
{
    size_t fit = (s->hub->config.max_message - 64) / WF2_DIRENT_MAX;
    return fit < WF2_PAGE_ENTRIES ? (uint32_t)(fit > 0 ? fit : 1) : WF2_PAGE_ENTRIES;
}

/* A listing is asked with attributes until the provider says it does not know how. */
static uint8_t wf2_wire_type(const struct filesystem *fs, const struct fusebridge_request *req)
{
    if (req->kind == FUSEBRIDGE_READDIR && fs->readdirplus >= 0)
        return CODEC_WF2_READDIRPLUS;
    return wf2_type_of[req->kind];
}

static int wf2_encode(struct session *s, const struct filesystem *fs, uint32_t id,
                      const struct fusebridge_request *req, size_t *len)
{
    int rc = session_limits_check_paths(s, req);
    if (rc != 0)
        return rc;
    uint8_t type = wf2_wire_type(fs, req);
    struct pending *p = session_pending_find(s, id);
    if (p)
        p->wire_type = type; /* the answer is decoded as what was asked */
    struct codec_wf2_request msg = {
        .id = id,
        .type = type,
        .path = str_of(req->path),
        .path2 = str_of(req->path2),
        .target = str_of(req->target),
        .mode = req->mode,
        .uid = req->uid,
        .gid = req->gid,
        .rdev = req->rdev,
        .size = req->length,
        .offset = req->offset,
        .read_size = req->size,
        .max_entries = wf2_page_entries(s),
        .handle = req->fh,
        .flags = req->flags,
        .access_mode = (uint8_t)req->mask,
        .rename_flags = (uint8_t)req->rename_flags,
        .datasync = req->datasync,
        .data = {.ptr = req->data, .len = req->kind == FUSEBRIDGE_WRITE ? req->size : 0},
        .atime = timestamp_of(req->atime),
        .mtime = timestamp_of(req->mtime),
    };
    return codec_wf2_encode_request(s->tx + LWS_PRE, s->tx_cap, len, &msg);
}

/* ---- answers ----------------------------------------------------------------------------------
 */

static void attr_to_stat(const struct codec_wf2_attr *a, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = a->inode;
    st->st_nlink = a->nlink;
    st->st_mode = a->mode;
    st->st_uid = a->uid;
    st->st_gid = a->gid;
    st->st_rdev = a->rdev;
    st->st_size = (off_t)a->size;
    st->st_blocks = (blkcnt_t)a->blocks;
    st->st_atim = (struct timespec){(time_t)a->atime.sec, a->atime.nsec};
    st->st_mtim = (struct timespec){(time_t)a->mtime.sec, a->mtime.nsec};
    st->st_ctim = (struct timespec){(time_t)a->ctime.sec, a->ctime.nsec};
}

static void statfs_to_statvfs(const struct codec_wf2_statfs *f, struct statvfs *st)
{
    memset(st, 0, sizeof(*st));
    st->f_bsize = f->bsize;
    st->f_frsize = f->frsize;
    st->f_blocks = f->blocks;
    st->f_bfree = f->bfree;
    st->f_bavail = f->bavail;
    st->f_files = f->files;
    st->f_ffree = f->ffree;
    st->f_namemax = f->namemax;
}

/* Adds one entry to the listing: 0, or the error to fail the listing with. A name the kernel
 * cannot take (too long, NUL inside, '/') is left out. */
static int wf2_entry_add(struct fusebridge_op *op, struct codec_wf2_str name,
                         const struct stat *attr)
{
    char buf[256];
    if (name.len >= sizeof(buf) || memchr(name.ptr, '\0', name.len))
        return 0;
    memcpy(buf, name.ptr, name.len);
    buf[name.len] = '\0';
    int rc = fusebridge_readdir_add(op, buf, 0, attr);
    return rc == -EINVAL ? 0 : rc;
}

static void wf2_answer_readdir(struct fusebridge_op *op, struct codec_wf2_response *resp)
{
    struct codec_wf2_str name;
    while (codec_wf2_names_next(&resp->name_list, &name)) {
        int rc = wf2_entry_add(op, name, NULL);
        if (rc != 0) {
            fusebridge_reply_error(op, rc);
            return;
        }
    }
    fusebridge_readdir_done(op);
}

/* One page of a listing with attributes; the next is asked for when the provider has more. A
 * page that sends the gateway back where it came from would be asked for forever. */
static void wf2_answer_readdirplus(struct fusebridge_op *op, struct codec_wf2_response *resp)
{
    if (resp->cookie != 0 && resp->cookie == fusebridge_op_request(op)->offset) {
        fusebridge_reply_error(op, -EIO);
        return;
    }
    struct codec_wf2_dirent entry;
    while (codec_wf2_dirents_next(&resp->entry_list, &entry)) {
        struct stat st;
        attr_to_stat(&entry.attr, &st);
        int rc = wf2_entry_add(op, entry.name, &st);
        if (rc != 0) {
            fusebridge_reply_error(op, rc);
            return;
        }
    }
    if (resp->cookie != 0)
        fusebridge_readdir_continue(op, resp->cookie);
    else
        fusebridge_readdir_done(op);
}

/* The provider does not know READDIRPLUS (every provider must answer an unknown request so): this
 * filesystem's listings are asked with READDIR from now on, this one too. */
static void wf2_readdirplus_unknown(struct session *s, struct filesystem *fs,
                                    struct fusebridge_op *op)
{
    if (fs->readdirplus == 0)
        log_info("session %llu: %s: the provider lists names only (no readdirplus)",
                 (unsigned long long)s->id, fs->name);
    fs->readdirplus = -1;
    fusebridge_readdir_continue(op, 0);
}

static void wf2_answer(struct filesystem *fs, struct fusebridge_op *op,
                       struct codec_wf2_response *resp)
{
    struct fusebridge_answer answer = {0};
    switch (fusebridge_op_request(op)->kind) {
    case FUSEBRIDGE_READDIR:
        if (resp->type == CODEC_WF2_READDIRPLUS) {
            fs->readdirplus = 1;
            wf2_answer_readdirplus(op, resp);
        } else {
            wf2_answer_readdir(op, resp);
        }
        return;
    case FUSEBRIDGE_LOOKUP:
    case FUSEBRIDGE_GETATTR:
        attr_to_stat(&resp->attr, &answer.attr);
        break;
    case FUSEBRIDGE_OPEN:
    case FUSEBRIDGE_CREATE:
        answer.fh = resp->handle;
        break;
    case FUSEBRIDGE_READ:
        answer.data = resp->data.ptr;
        answer.len = resp->data.len;
        break;
    case FUSEBRIDGE_WRITE:
        answer.len = (size_t)resp->result;
        break;
    case FUSEBRIDGE_READLINK:
        answer.data = resp->target.ptr;
        answer.len = resp->target.len;
        break;
    case FUSEBRIDGE_STATFS:
        statfs_to_statvfs(&resp->statfs, &answer.statfs);
        break;
    default:
        break;
    }
    fusebridge_op_answer(op, &answer);
}

/* What decoding the answer needs besides its type: bytes asked or sent, entries asked. */
static uint32_t expected_size(const struct session *s, uint8_t type,
                              const struct fusebridge_request *req)
{
    if (type == CODEC_WF2_READDIRPLUS)
        return wf2_page_entries(s);
    return req->kind == FUSEBRIDGE_READ || req->kind == FUSEBRIDGE_WRITE ? req->size : 0;
}

/* The errno an answer fails its request with, 0 for success. */
static int wf2_error_of(struct session *s, int rc, const struct codec_wf2_response *resp,
                        uint8_t type, uint32_t id)
{
    if (rc == -ENOSYS)
        return -ENOSYS;
    if (rc != 0) {
        log_warn("session %llu: malformed %s response %u from %s", (unsigned long long)s->id,
                 codec_wf2_type_name(type), id, s->remote);
        session_emit(s, SESSION_EVENT_ERROR, NULL, NULL, "malformed webfuse2 response");
        return -EIO;
    }
    /* fusebridge_reply_error makes an errno the kernel cannot take EIO. */
    return resp->result < 0 ? resp->result : 0;
}

static size_t wf2_bytes_of(enum fusebridge_kind kind, const struct codec_wf2_response *resp)
{
    if (kind == FUSEBRIDGE_READ)
        return resp->data.len;
    if (kind == FUSEBRIDGE_WRITE)
        return (size_t)resp->result;
    return 0;
}

static int wf2_on_message(struct session *s, const char *data, size_t len)
{
    uint32_t id;
    uint8_t type;
    if (codec_wf2_decode_header(data, len, &id, &type) != 0) {
        log_warn("session %llu: message of %zu bytes is too short", (unsigned long long)s->id, len);
        return 0;
    }
    if (session_auth_on_creds(s, id, data, len))
        return 0;
    const struct pending *p = session_pending_find(s, id);
    uint8_t sent = p ? p->wire_type : 0;
    struct fusebridge_op *op;
    struct filesystem *fs;
    if (session_take_pending(s, id, &op, &fs) != 0) {
        /* Also unsolicited credentials: only asked-for ones count. */
        log_debug("session %llu: dropping response %u of type 0x%02x: no such request",
                  (unsigned long long)s->id, id, type);
        return 0;
    }
    const struct fusebridge_request *req = fusebridge_op_request(op);
    enum fusebridge_kind kind = req->kind;
    struct codec_wf2_response resp;
    int rc = codec_wf2_decode_response(data, len, sent, expected_size(s, sent, req), &resp);
    /* Not known: 0x80, the empty echo, or a provider that says so with its result. */
    bool unknown = rc == -ENOSYS || (rc == 0 && resp.result == -ENOSYS);
    if (unknown && sent == CODEC_WF2_READDIRPLUS) {
        session_account(s, fs, kind, 0, 0); /* answered; the listing goes on with READDIR */
        wf2_readdirplus_unknown(s, fs, op);
        return 0;
    }
    int error = wf2_error_of(s, rc, &resp, type, id);
    session_account(s, fs, kind, error, error == 0 ? wf2_bytes_of(kind, &resp) : 0);
    if (error != 0)
        fusebridge_reply_error(op, error);
    else
        wf2_answer(fs, op, &resp);
    return 0;
}

/* Room for a close reason and its NUL (a close frame carries at most 123 bytes of reason). */
#define WF2_REASON_SIZE 120

static void wf2_on_attached(struct session *s, struct filesystem *fs, int status)
{
    if (status == 0)
        return;
    char reason[WF2_REASON_SIZE];
    snprintf(reason, sizeof(reason), "cannot mount %s: %s", fs->name,
             fusebridge_mount_error(status));
    session_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, reason);
}

/* The filesystem's name: the URL path's last segment, or fs-<session id> for "/". */
static void name_from_uri(const struct session *s, const char *uri, char *name, size_t size)
{
    size_t len = strlen(uri);
    while (len > 0 && uri[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && uri[start - 1] != '/')
        start--;
    if (len == start)
        snprintf(name, size, "fs-%llu", (unsigned long long)s->id);
    else
        snprintf(name, size, "%.*s", (int)(len - start), uri + start);
}

/* Why `name` was refused, for the close frame and the history; returns the kind of event. The name
 * is as the URL had it: a close reason must be UTF-8, and people read it. */
static enum session_event_kind wf2_refusal(const struct session *s, const char *name, int error,
                                           char reason[WF2_REASON_SIZE])
{
    char shown[68];
    size_t len = strlen(name);
    const char *cut = log_escape(shown, sizeof(shown), name, len) < len ? "..." : "";
    switch (error) {
    case -EACCES:
    case -EPERM:
        snprintf(reason, WF2_REASON_SIZE, "user \"%.24s\" may not attach \"%s%s\"", s->auth.user,
                 shown, cut);
        return SESSION_EVENT_ATTACH_DENIED;
    case -ENOENT:
        snprintf(reason, WF2_REASON_SIZE, "\"%s%s\" is not a filesystem this gateway accepts",
                 shown, cut);
        return SESSION_EVENT_ATTACH_DENIED;
    case -EINVAL:
        snprintf(reason, WF2_REASON_SIZE, "invalid filesystem name \"%s%s\"", shown, cut);
        return SESSION_EVENT_ATTACH_FAILED;
    case -EEXIST:
        snprintf(reason, WF2_REASON_SIZE, "filesystem name \"%s\" is taken", shown);
        return SESSION_EVENT_ATTACH_FAILED;
    default:
        snprintf(reason, WF2_REASON_SIZE, "cannot attach \"%s%s\": %s", shown, cut,
                 strerror(-error));
        return SESSION_EVENT_ATTACH_FAILED;
    }
}

static void wf2_attach(struct session *s, const char *name)
{
    int error;
    if (session_attach(s, name, 0, &error))
        return;
    char reason[WF2_REASON_SIZE];
    enum session_event_kind event = wf2_refusal(s, name, error, reason);
    log_warn("session %llu: %s (remote %s)", (unsigned long long)s->id, reason, s->remote);
    session_emit(s, event, name, NULL, reason);
    session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, reason);
}

void session_webfuse2_start(struct session *s, const char *uri)
{
    if (!uri) {
        const char *reason = "the URL is longer than 511 bytes";
        log_warn("session %llu: %s (remote %s)", (unsigned long long)s->id, reason, s->remote);
        session_emit(s, SESSION_EVENT_ATTACH_FAILED, NULL, NULL, reason);
        session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, reason);
        return;
    }
    char name[sizeof(s->auth.fs_name)];
    name_from_uri(s, uri, name, sizeof(name));
    if (s->auth.authenticated) {
        wf2_attach(s, name);
        return;
    }
    memcpy(s->auth.fs_name, name, sizeof(name));
    session_auth_webfuse2(s); /* wf2_on_authenticated follows */
}

static void wf2_on_authenticated(struct session *s, int status)
{
    if (status == 0)
        wf2_attach(s, s->auth.fs_name);
    else if (status == -EAGAIN)
        session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                      "too many login attempts from this address: try again later");
    else
        session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "authentication failed");
}

const struct session_protocol session_protocol_webfuse2 = {
    .encode = wf2_encode,
    .expects_answer = wf2_expects_answer,
    .on_message = wf2_on_message,
    .on_attached = wf2_on_attached,
    .on_authenticated = wf2_on_authenticated,
    .write_mode = LWS_WRITE_BINARY,
    .index = 1,
    .name = "webfuse2",
    .path_based = true,
};
