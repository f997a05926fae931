/* The JSON protocol ("webfuse-adapter-server", first generation): the provider attaches each
 * export with add_filesystem, then answers lookup / getattr / readdir / open / read and takes the
 * close notification. Read-only by nature: the protocol has no request that changes anything. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "provider_internal.h"

static struct provider_fs *provider_find_fs(struct provider *p, const char *name)
{
    for (size_t i = 0; i < p->fs_count; i++)
        if (strcmp(export_name(p->fs[i].export), name) == 0)
            return &p->fs[i];
    return NULL;
}

/* What to encode: a tagged set of the codec's provider-side encoders, so that one function can
 * size the buffer, encode and retry with the size the codec asks for. */
/* Our authenticate request's id: above every add_filesystem id (export index + 1). */
#define JSON_AUTHENTICATE_ID (PROVIDER_MAX_EXPORTS + 1)

enum json_out_kind {
    JSON_OUT_AUTHENTICATE,
    JSON_OUT_ADD_FILESYSTEM,
    JSON_OUT_ERROR,
    JSON_OUT_ATTR,
    JSON_OUT_OPEN,
    JSON_OUT_READ,
    JSON_OUT_READDIR,
};

struct json_out {
    enum json_out_kind kind;
    int64_t id;
    const char *name;                        /* ADD_FILESYSTEM; AUTHENTICATE: the user */
    const char *password;                    /* AUTHENTICATE */
    int status;                              /* ERROR */
    const struct stat *st;                   /* ATTR */
    uint64_t handle;                         /* OPEN */
    const void *data;                        /* READ */
    size_t size;                             /* READ */
    const struct codec_json_dirent *entries; /* READDIR */
    size_t count;                            /* READDIR */
};

static int json_encode(char *buf, size_t cap, size_t *len, const struct json_out *out)
{
    switch (out->kind) {
    case JSON_OUT_AUTHENTICATE:
        return codec_json_encode_authenticate(buf, cap, len, out->id, out->name, out->password);
    case JSON_OUT_ADD_FILESYSTEM:
        return codec_json_encode_add_filesystem(buf, cap, len, out->id, out->name);
    case JSON_OUT_ERROR:
        return codec_json_encode_error(buf, cap, len, out->id, out->status);
    case JSON_OUT_ATTR:
        return codec_json_encode_attr_result(buf, cap, len, out->id, out->st);
    case JSON_OUT_OPEN:
        return codec_json_encode_open_result(buf, cap, len, out->id, out->handle);
    case JSON_OUT_READ:
        return codec_json_encode_read_result(buf, cap, len, out->id, out->data, out->size);
    case JSON_OUT_READDIR:
        return codec_json_encode_readdir_result(buf, cap, len, out->id, out->entries, out->count);
    }
    return -EINVAL;
}

/* A first guess at the encoded size; the codec reports the real need when it is short. */
static size_t json_size_hint(const struct json_out *out)
{
    switch (out->kind) {
    case JSON_OUT_READ:
        return base64_encoded_size(out->size) + 256;
    case JSON_OUT_READDIR:
        return out->count * 64 + 256;
    default:
        return 512;
    }
}

/* Encodes `out` into a new message and queues it. */
static int json_send(struct provider *p, const struct json_out *out)
{
    size_t cap = json_size_hint(out);
    for (int attempt = 0; attempt < 2; attempt++) {
        struct provider_msg *msg = provider_msg_new(cap);
        if (!msg)
            return -ENOMEM;
        size_t len = 0;
        int rc = json_encode(provider_msg_payload(msg), cap, &len, out);
        if (rc == 0) {
            msg->len = len;
            return provider_send(p, msg);
        }
        free(msg);
        if (rc != -ENOBUFS)
            return rc;
        if (len >= PROVIDER_MAX_MESSAGE)
            return -EFBIG;
        cap = len + 1;
    }
    return -ENOBUFS;
}

static void json_send_error(struct provider *p, int64_t id, int status)
{
    struct json_out out = {.kind = JSON_OUT_ERROR, .id = id, .status = status};
    int rc = json_send(p, &out);
    if (rc < 0 && rc != -ENOTCONN && rc != -ECONNABORTED)
        log_warn("cannot answer request %" PRId64 " with error %d: %s", id, status, strerror(-rc));
}

/* Sends a result; when it cannot be encoded (too large, ...) the request gets an error instead,
 * so the gateway is never left waiting. */
static void json_send_result(struct provider *p, const struct json_out *out)
{
    int rc = json_send(p, out);
    if (rc < 0 && rc != -ENOTCONN && rc != -ECONNABORTED) {
        log_warn("cannot send the answer to request %" PRId64 ": %s", out->id, strerror(-rc));
        json_send_error(p, out->id, codec_json_errno_to_status(rc));
    }
}

static void json_answer_attr(struct provider *p, int64_t id, int rc, const struct stat *st)
{
    if (rc < 0) {
        json_send_error(p, id, codec_json_errno_to_status(rc));
        return;
    }
    struct json_out out = {.kind = JSON_OUT_ATTR, .id = id, .st = st};
    json_send_result(p, &out);
}

static void json_lookup(struct provider *p, struct export *exp, int64_t id,
                        const struct fusebridge_request *req)
{
    struct stat st;
    int rc = export_lookup(exp, req->ino, req->name, &st);
    log_debug("%s: lookup %" PRIu64 "/%s: %s", export_name(exp), req->ino, req->name,
              rc < 0 ? strerror(-rc) : "ok");
    json_answer_attr(p, id, rc, &st);
}

static void json_getattr(struct provider *p, struct export *exp, int64_t id,
                         const struct fusebridge_request *req)
{
    struct stat st;
    int rc = export_getattr(exp, req->ino, &st);
    log_debug("%s: getattr %" PRIu64 ": %s", export_name(exp), req->ino,
              rc < 0 ? strerror(-rc) : "ok");
    json_answer_attr(p, id, rc, &st);
}

/* Directory entries collected for one readdir answer, each with its attributes (our extension:
 * the gateway then needs no lookup per entry); names are owned copies. */
struct json_listing {
    struct codec_json_dirent *entries;
    struct stat *attrs; /* entries[i].attr points here once the listing is complete */
    size_t count;
    size_t capacity;
    size_t bytes; /* encoded size estimate, bounded by PROVIDER_MAX_MESSAGE */
    const char *fs_name;
};

/* An entry's members besides its name, attributes included, written as JSON at most. */
#define JSON_ENTRY_BYTES 160

static int json_listing_grow(struct json_listing *l)
{
    size_t capacity = l->capacity ? l->capacity * 2 : 64;
    struct codec_json_dirent *entries = realloc(l->entries, capacity * sizeof(*entries));
    if (!entries)
        return -ENOMEM;
    l->entries = entries;
    struct stat *attrs = realloc(l->attrs, capacity * sizeof(*attrs));
    if (!attrs)
        return -ENOMEM;
    l->attrs = attrs;
    l->capacity = capacity;
    return 0;
}

static int json_listing_add(void *user, const char *name, uint64_t ino, const struct stat *st)
{
    struct json_listing *l = user;
    if (!provider_utf8_valid(name)) {
        log_debug("%s: not listing a name that is not valid UTF-8", l->fs_name);
        return 0;
    }
    l->bytes += strlen(name) + JSON_ENTRY_BYTES;
    if (l->bytes > PROVIDER_MAX_MESSAGE)
        return -EFBIG;
    if (l->count == l->capacity && json_listing_grow(l) != 0)
        return -ENOMEM;
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    l->attrs[l->count] = *st;
    l->entries[l->count++] = (struct codec_json_dirent){.name = copy, .ino = ino};
    return 0;
}

static void json_listing_free(struct json_listing *l)
{
    for (size_t i = 0; i < l->count; i++)
        free((char *)l->entries[i].name);
    free(l->entries);
    free(l->attrs);
}

static void json_readdir(struct provider *p, struct export *exp, int64_t id,
                         const struct fusebridge_request *req)
{
    struct json_listing listing = {.fs_name = export_name(exp)};
    int rc = export_readdir(exp, req->ino, json_listing_add, &listing);
    log_debug("%s: readdir %" PRIu64 ": %zu entries, %s", export_name(exp), req->ino, listing.count,
              rc < 0 ? strerror(-rc) : "ok");
    if (rc == -EFBIG || rc == -ENOSPC)
        log_warn("%s: directory inode %" PRIu64 " is too large to list: %s", export_name(exp),
                 req->ino, strerror(-rc));
    if (rc < 0) {
        json_send_error(p, id, codec_json_errno_to_status(rc));
    } else {
        for (size_t i = 0; i < listing.count; i++)
            listing.entries[i].attr = &listing.attrs[i];
        struct json_out out = {
            .kind = JSON_OUT_READDIR, .id = id, .entries = listing.entries, .count = listing.count};
        json_send_result(p, &out);
    }
    json_listing_free(&listing);
}

static void json_open(struct provider *p, struct export *exp, int64_t id,
                      const struct fusebridge_request *req)
{
    uint64_t handle = 0;
    int rc = export_open(exp, req->ino, req->flags, &handle);
    log_debug("%s: open %" PRIu64 " flags 0%o: %s, handle %" PRIu64, export_name(exp), req->ino,
              (unsigned)req->flags, rc < 0 ? strerror(-rc) : "ok", handle);
    if (rc == -EMFILE)
        log_warn("%s: too many open files (limit %u per filesystem)", export_name(exp),
                 EXPORT_MAX_HANDLES);
    if (rc < 0) {
        json_send_error(p, id, codec_json_errno_to_status(rc));
        return;
    }
    struct json_out out = {.kind = JSON_OUT_OPEN, .id = id, .handle = handle};
    json_send_result(p, &out);
}

static void json_read(struct provider *p, struct export *exp, int64_t id,
                      const struct fusebridge_request *req)
{
    size_t size = req->size < PROVIDER_MAX_READ ? req->size : PROVIDER_MAX_READ;
    size_t n = 0;
    int rc = export_read(exp, req->ino, req->fh, req->offset, p->read_buffer, size, &n);
    log_debug("%s: read %" PRIu64 " handle %" PRIu64 " at %" PRIu64 " size %" PRIu32
              ": %s, %zu bytes",
              export_name(exp), req->ino, req->fh, req->offset, req->size,
              rc < 0 ? strerror(-rc) : "ok", n);
    if (rc < 0) {
        json_send_error(p, id, codec_json_errno_to_status(rc));
        return;
    }
    struct json_out out = {.kind = JSON_OUT_READ, .id = id, .data = p->read_buffer, .size = n};
    json_send_result(p, &out);
}

/* "close" is a notification: never answered (the codec refuses one that carries an id). */
static void json_close(struct export *exp, const struct fusebridge_request *req)
{
    int rc = export_release(exp, req->ino, req->fh);
    if (rc < 0)
        log_warn("%s: close of unknown handle %" PRIu64 " (inode %" PRIu64 ")", export_name(exp),
                 req->fh, req->ino);
    else
        log_debug("%s: close %" PRIu64 " handle %" PRIu64, export_name(exp), req->ino, req->fh);
}

static bool json_method_known(const char *method)
{
    static const char *const methods[] = {"lookup", "getattr", "readdir", "open", "read", "close"};
    for (size_t i = 0; method && i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(method, methods[i]) == 0)
            return true;
    return false;
}

/* A request the codec could not decode: a known method with bad params is a format error, any
 * other method is not implemented. */
static void json_refuse_request(struct provider *p, const struct codec_json_msg *msg, bool has_id)
{
    const char *method = codec_json_msg_method(msg);
    bool known = json_method_known(method);
    log_warn("gateway sent %s \"%.64s\"%s", known ? "bad parameters for" : "unknown method",
             method ? method : "", has_id ? "" : " as a notification (not answered)");
    if (has_id)
        json_send_error(p, codec_json_msg_id(msg),
                        known ? CODEC_JSON_BAD_FORMAT : CODEC_JSON_BAD_NOTIMPLEMENTED);
}

/* An operator detached one of our filesystems on the gateway; the others stay. Returns false
 * when msg is some other notification. */
static bool json_on_detached(struct provider *p, const struct codec_json_msg *msg)
{
    const char *name;
    if (codec_json_decode_filesystem_detached(msg, &name) != 0)
        return false;
    struct provider_fs *fs = provider_find_fs(p, name);
    if (fs && fs->state == PROVIDER_FS_ATTACHED) {
        fs->state = PROVIDER_FS_DETACHED;
        log_info("%s: detached by the gateway", export_name(fs->export));
    }
    return true;
}

static void json_on_request(struct provider *p, const struct codec_json_msg *msg, bool has_id)
{
    int64_t id = codec_json_msg_id(msg);
    const char *fs_name = NULL;
    struct fusebridge_request req;
    if (codec_json_decode_request(msg, &fs_name, &req) < 0) {
        json_refuse_request(p, msg, has_id);
        return;
    }
    struct provider_fs *fs = provider_find_fs(p, fs_name);
    if (!fs || (fs->state != PROVIDER_FS_ADDING && fs->state != PROVIDER_FS_ATTACHED)) {
        log_warn("gateway sent %s for filesystem \"%.64s\", which is not attached",
                 codec_json_msg_method(msg), fs_name);
        if (has_id)
            json_send_error(p, id, codec_json_errno_to_status(-ENODEV));
        return;
    }
    if (!has_id && req.kind != FUSEBRIDGE_RELEASE) {
        log_warn("%s: gateway sent %s without an id: not answered", export_name(fs->export),
                 codec_json_msg_method(msg));
        return;
    }
    struct export *exp = fs->export;
    switch (req.kind) {
    case FUSEBRIDGE_LOOKUP:
        json_lookup(p, exp, id, &req);
        break;
    case FUSEBRIDGE_GETATTR:
        json_getattr(p, exp, id, &req);
        break;
    case FUSEBRIDGE_READDIR:
        json_readdir(p, exp, id, &req);
        break;
    case FUSEBRIDGE_OPEN:
        json_open(p, exp, id, &req);
        break;
    case FUSEBRIDGE_READ:
        json_read(p, exp, id, &req);
        break;
    case FUSEBRIDGE_RELEASE:
        json_close(exp, &req);
        break;
    default: /* the codec decodes only the six methods above */
        json_send_error(p, id, CODEC_JSON_BAD_NOTIMPLEMENTED);
        break;
    }
}

static const char *json_status_meaning(int status)
{
    switch (status) {
    case CODEC_JSON_BAD:
        return "name already in use or mount failed";
    case CODEC_JSON_BAD_NOTIMPLEMENTED:
        return "not implemented";
    case CODEC_JSON_BAD_BUSY:
        return "busy";
    case CODEC_JSON_BAD_FORMAT:
        return "name not accepted";
    case CODEC_JSON_BAD_NOENTRY:
        return "not a filesystem this gateway accepts";
    case CODEC_JSON_BAD_ACCESS_DENIED:
        return "access denied";
    default:
        return "error";
    }
}

/* Why add_filesystem was refused: 102 without --user means a login is wanted; otherwise the
 * gateway's own message when it says more than the code (webfused says which name is taken, or
 * why the mount failed), else what the code means (102 is then about the name, not a
 * password). */
static const char *json_attach_refusal(const struct provider *p, const struct codec_json_msg *msg)
{
    int status = codec_json_msg_error_status(msg);
    const char *message = codec_json_msg_error_message(msg);
    if (status == CODEC_JSON_BAD_ACCESS_DENIED && !p->options->user)
        return "access denied: the gateway wants a login (--user)";
    if (message && *message && strcmp(message, codec_json_status_message(status)) != 0)
        return message;
    if (status == CODEC_JSON_BAD_ACCESS_DENIED)
        return "access denied: this user may not attach this name";
    return json_status_meaning(status);
}

/* Closes the connection when every filesystem was refused: there is nothing to serve. */
static void json_check_attached(struct provider *p)
{
    size_t attached = 0;
    for (size_t i = 0; i < p->fs_count; i++) {
        if (p->fs[i].state == PROVIDER_FS_ADDING)
            return;
        attached += p->fs[i].state == PROVIDER_FS_ATTACHED;
    }
    if (attached == 0) {
        log_error("the gateway refused every filesystem");
        provider_close_connection(p, LWS_CLOSE_STATUS_NORMAL, "no filesystem attached");
    }
}

static void json_add_filesystems(struct provider *p);

/* The answer to our authenticate: attach on success; on refusal there is nothing to do here. */
static void json_on_authenticated(struct provider *p, const struct codec_json_msg *msg)
{
    if (codec_json_msg_kind(msg) == CODEC_JSON_RESULT) {
        log_info("authenticated as %s", p->options->user);
        json_add_filesystems(p);
        return;
    }
    int status = codec_json_msg_error_status(msg);
    log_error("the gateway refused the credentials of %s: code %d (%s)", p->options->user, status,
              json_status_meaning(status));
    p->any_refused = true;
    provider_close_connection(p, LWS_CLOSE_STATUS_NORMAL, "authentication refused");
}

/* The gateway's answer to one of our add_filesystem requests (id = index + 1) or to our
 * authenticate. */
static void json_on_response(struct provider *p, const struct codec_json_msg *msg)
{
    int64_t id = codec_json_msg_id(msg);
    if (id == JSON_AUTHENTICATE_ID && p->options->user) {
        json_on_authenticated(p, msg);
        return;
    }
    if (id < 1 || (uint64_t)id > p->fs_count || p->fs[id - 1].state != PROVIDER_FS_ADDING) {
        log_warn("gateway sent a response with unexpected id %" PRId64, id);
        return;
    }
    struct provider_fs *fs = &p->fs[id - 1];
    if (codec_json_msg_kind(msg) == CODEC_JSON_RESULT) {
        fs->state = PROVIDER_FS_ATTACHED;
        provider_mark_serving(p);
        log_info("%s: attached, exporting %s", export_name(fs->export), export_dir(fs->export));
    } else {
        int status = codec_json_msg_error_status(msg);
        fs->state = PROVIDER_FS_REFUSED;
        p->any_refused = true;
        log_error("%s: the gateway refused the filesystem: code %d (%s)", export_name(fs->export),
                  status, json_attach_refusal(p, msg));
    }
    json_check_attached(p);
}

static void json_on_message(struct provider *p, const void *data, size_t len)
{
    struct codec_json_msg *msg;
    if (codec_json_parse(data, len, &msg) < 0) {
        log_warn("ignoring a message from the gateway that is not a JSON request or response "
                 "(%zu bytes)",
                 len);
        return;
    }
    switch (codec_json_msg_kind(msg)) {
    case CODEC_JSON_REQUEST:
        json_on_request(p, msg, true);
        break;
    case CODEC_JSON_NOTIFICATION:
        if (!json_on_detached(p, msg))
            json_on_request(p, msg, false);
        break;
    case CODEC_JSON_RESULT:
    case CODEC_JSON_ERROR:
        json_on_response(p, msg);
        break;
    }
    codec_json_msg_free(msg);
}

/* Adds every filesystem; ids are the index + 1. */
static void json_add_filesystems(struct provider *p)
{
    for (size_t i = 0; i < p->fs_count; i++) {
        struct provider_fs *fs = &p->fs[i];
        struct json_out out = {
            .kind = JSON_OUT_ADD_FILESYSTEM, .id = (int64_t)i + 1, .name = export_name(fs->export)};
        int rc = json_send(p, &out);
        if (rc < 0) {
            log_error("%s: cannot send add_filesystem: %s", export_name(fs->export), strerror(-rc));
            fs->state = PROVIDER_FS_REFUSED;
            p->any_refused = true;
            continue;
        }
        fs->state = PROVIDER_FS_ADDING;
        log_debug("%s: add_filesystem sent", export_name(fs->export));
    }
    json_check_attached(p);
}

/* A new connection authenticates first (when a user is given) and attaches once the gateway
 * said yes: a gateway that checks passwords answers add_filesystem only after that. */
static void json_on_connected(struct provider *p)
{
    if (!p->options->user) {
        json_add_filesystems(p);
        return;
    }
    struct json_out out = {.kind = JSON_OUT_AUTHENTICATE,
                           .id = JSON_AUTHENTICATE_ID,
                           .name = p->options->user,
                           .password = p->options->password};
    int rc = json_send(p, &out);
    if (rc < 0) {
        log_error("cannot send authenticate: %s", strerror(-rc));
        provider_close_connection(p, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "cannot authenticate");
    }
}

static int json_open_exports(struct provider *p)
{
    const struct provider_options *options = p->options;
    if (options->path) {
        log_error("the json protocol serves --fs NAME=DIR, not --path");
        return -EINVAL;
    }
    if (options->export_count == 0 || options->export_count > PROVIDER_MAX_EXPORTS) {
        log_error("between 1 and %d filesystems can be exported", PROVIDER_MAX_EXPORTS);
        return -EINVAL;
    }
    for (size_t i = 0; i < options->export_count; i++) {
        const struct provider_export_spec *spec = &options->exports[i];
        int rc = export_new(spec->name, spec->dir, &p->fs[i].export);
        if (rc < 0) {
            log_error("cannot export %s: %s", spec->dir, strerror(-rc));
            return rc;
        }
        p->fs_count++;
    }
    return 0;
}

static void json_close_exports(struct provider *p)
{
    for (size_t i = 0; i < p->fs_count; i++)
        export_free(p->fs[i].export);
    p->fs_count = 0;
}

/* The gateway's mounts are gone with the connection: so are their handles. */
static void json_on_disconnected(struct provider *p)
{
    for (size_t i = 0; i < p->fs_count; i++) {
        export_close_handles(p->fs[i].export);
        p->fs[i].state = PROVIDER_FS_DETACHED;
    }
}

const struct provider_protocol provider_protocol_json = {
    .name = "json",
    .subprotocol = CODEC_JSON_SUBPROTOCOL,
    .binary = false,
    .open = json_open_exports,
    .close = json_close_exports,
    .on_connected = json_on_connected,
    .on_message = json_on_message,
    .on_disconnected = json_on_disconnected,
};
