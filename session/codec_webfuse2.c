/* Binary codec for the webfuse2 protocol ("webfuse2" subprotocol), both sides.
 *
 * Wire format: docs/webfuse2-protocol.md. Every message is u32 id, u8 type, then the type's fields,
 * big-endian. The request layouts live in one table (request_layout) that both the encoder and the
 * decoder walk, so the two directions cannot drift apart; responses have few shapes and are coded
 * by hand.
 *
 * Decoding reads through a `struct reader` whose error is sticky: a read past the end marks it bad
 * and every later read yields zero, so a decoder reads all its fields and checks once. Values that
 * steer decoding (a result, a count) are checked for a bad reader before they are used.
 *
 * Encoding runs the same fill function twice: once with no buffer to validate the message and
 * measure it, then, when it fits, into the caller's buffer. The caller's buffer is thus never
 * written when the answer is -ENOBUFS or -EINVAL.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "session.h"

/* ------------------------------------------------------------------------------------------------
 * Big-endian integers
 * ----------------------------------------------------------------------------------------------*/

static uint32_t load_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t load_u64(const unsigned char *p)
{
    return (uint64_t)load_u32(p) << 32 | load_u32(p + 4);
}

/* Two's complement u32 -> i32 without the implementation-defined conversion of values above
 * INT32_MAX: for those, ~u is at most INT32_MAX, and -(~u) - 1 is the same number as i32. */
static int32_t u32_to_i32(uint32_t u)
{
    if (u <= INT32_MAX)
        return (int32_t)u;
    return -(int32_t)~u - 1;
}

/* ------------------------------------------------------------------------------------------------
 * Reader
 * ----------------------------------------------------------------------------------------------*/

struct reader {
    const unsigned char *pos;
    size_t left;
    bool bad; /* a read ran past the end; sticky */
};

/* The next n bytes, or NULL (and the reader turns bad) when fewer are left. n comes from the wire
 * (up to UINT32_MAX) and is compared with what is left, never added to a pointer first. */
static const unsigned char *take(struct reader *r, size_t n)
{
    const unsigned char *p;

    if (r->bad || n > r->left) {
        r->bad = true;
        return NULL;
    }
    p = r->pos;
    r->pos += n;
    r->left -= n;
    return p;
}

static uint8_t get_u8(struct reader *r)
{
    const unsigned char *p = take(r, 1);

    return p != NULL ? p[0] : 0;
}

static uint32_t get_u32(struct reader *r)
{
    const unsigned char *p = take(r, 4);

    return p != NULL ? load_u32(p) : 0;
}

static uint64_t get_u64(struct reader *r)
{
    const unsigned char *p = take(r, 8);

    return p != NULL ? load_u64(p) : 0;
}

static int32_t get_i32(struct reader *r)
{
    return u32_to_i32(get_u32(r));
}

/* A bool is a u8; any value but 0 is true (encoders only ever send 0 or 1). */
static bool get_bool(struct reader *r)
{
    return get_u8(r) != 0;
}

static struct codec_wf2_timestamp get_timestamp(struct reader *r)
{
    struct codec_wf2_timestamp ts;

    ts.sec = get_u64(r);
    ts.nsec = get_u32(r);
    return ts;
}

/* A u32 length, then that many bytes, borrowed from the message. */
static struct codec_wf2_str get_str(struct reader *r)
{
    struct codec_wf2_str s = {NULL, 0};
    uint32_t n = get_u32(r);
    const unsigned char *p = take(r, n);

    if (p != NULL) {
        s.ptr = (const char *)p;
        s.len = n;
    }
    return s;
}

static struct codec_wf2_bytes get_bytes(struct reader *r)
{
    struct codec_wf2_str s = get_str(r);
    struct codec_wf2_bytes b = {s.ptr, s.len};

    return b;
}

/* ------------------------------------------------------------------------------------------------
 * Writer
 * ----------------------------------------------------------------------------------------------*/

struct writer {
    unsigned char *buf; /* NULL while measuring */
    size_t cap;
    size_t len;   /* bytes the message needs so far */
    bool invalid; /* something cannot be encoded */
};

static void put(struct writer *w, const void *src, size_t n)
{
    if (n > SIZE_MAX - w->len) {
        w->invalid = true;
        return;
    }
    /* The writing pass only runs once the measuring pass found that everything fits; the bound is
     * checked again anyway so that a fill function that is not deterministic cannot overrun. */
    if (w->buf != NULL && n > 0 && w->len + n <= w->cap)
        memcpy(w->buf + w->len, src, n);
    w->len += n;
}

static void put_u8(struct writer *w, uint8_t v)
{
    put(w, &v, 1);
}

static void put_u32(struct writer *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    put(w, b, sizeof(b));
}

static void put_u64(struct writer *w, uint64_t v)
{
    put_u32(w, (uint32_t)(v >> 32));
    put_u32(w, (uint32_t)v);
}

static void put_i32(struct writer *w, int32_t v)
{
    put_u32(w, (uint32_t)v); /* conversion to unsigned is modular: two's complement bits */
}

static void put_timestamp(struct writer *w, struct codec_wf2_timestamp ts)
{
    put_u64(w, ts.sec);
    put_u32(w, ts.nsec);
}

/* Raw bytes with no length field (the payload of a request type we do not know). */
static void put_raw(struct writer *w, const void *ptr, size_t len)
{
    if (ptr == NULL && len > 0) {
        w->invalid = true;
        return;
    }
    put(w, ptr, len);
}

/* A u32 length, then the bytes. */
static void put_str(struct writer *w, const void *ptr, size_t len)
{
    if (len > UINT32_MAX) {
        w->invalid = true;
        return;
    }
    put_u32(w, (uint32_t)len);
    put_raw(w, ptr, len);
}

/* Runs fill once to validate and measure, and once more into buf when the message fits. */
static int encode(void *buf, size_t cap, size_t *len, void (*fill)(struct writer *, const void *),
                  const void *msg)
{
    struct writer w = {NULL, 0, 0, false};

    fill(&w, msg);
    if (w.invalid)
        return -EINVAL;
    *len = w.len;
    if (w.len > cap)
        return -ENOBUFS;
    w.buf = buf;
    w.cap = cap;
    w.len = 0;
    fill(&w, msg);
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Types
 * ----------------------------------------------------------------------------------------------*/

static const char *const type_names[CODEC_WF2_TYPE_MAX + 1] = {
    [CODEC_WF2_UNKNOWN] = "unknown",
    [CODEC_WF2_ACCESS] = "access",
    [CODEC_WF2_GETATTR] = "getattr",
    [CODEC_WF2_READLINK] = "readlink",
    [CODEC_WF2_SYMLINK] = "symlink",
    [CODEC_WF2_LINK] = "link",
    [CODEC_WF2_RENAME] = "rename",
    [CODEC_WF2_CHMOD] = "chmod",
    [CODEC_WF2_CHOWN] = "chown",
    [CODEC_WF2_TRUNCATE] = "truncate",
    [CODEC_WF2_FSYNC] = "fsync",
    [CODEC_WF2_OPEN] = "open",
    [CODEC_WF2_MKNOD] = "mknod",
    [CODEC_WF2_CREATE] = "create",
    [CODEC_WF2_RELEASE] = "release",
    [CODEC_WF2_UNLINK] = "unlink",
    [CODEC_WF2_READ] = "read",
    [CODEC_WF2_WRITE] = "write",
    [CODEC_WF2_MKDIR] = "mkdir",
    [CODEC_WF2_READDIR] = "readdir",
    [CODEC_WF2_RMDIR] = "rmdir",
    [CODEC_WF2_STATFS] = "statfs",
    [CODEC_WF2_UTIMENS] = "utimens",
    [CODEC_WF2_GETCREDS] = "getcreds",
    [CODEC_WF2_READDIRPLUS] = "readdirplus",
};

const char *codec_wf2_type_name(uint8_t type)
{
    uint8_t request = type & (uint8_t)~CODEC_WF2_RESPONSE;

    return request <= CODEC_WF2_TYPE_MAX ? type_names[request] : "unknown";
}

/* A request type whose fields this codec knows. 0x00 is "unknown" by definition. */
static bool type_known(uint8_t type)
{
    return type >= CODEC_WF2_ACCESS && type <= CODEC_WF2_TYPE_MAX;
}

int codec_wf2_decode_header(const void *data, size_t len, uint32_t *id, uint8_t *type)
{
    struct reader r = {data, len, false};

    if (len < CODEC_WF2_HEADER_SIZE)
        return -EBADMSG;
    *id = get_u32(&r);
    *type = get_u8(&r);
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Requests
 * ----------------------------------------------------------------------------------------------*/

/* The request fields, each with its wire type. */
enum field {
    F_END = 0,
    F_PATH,         /* string */
    F_PATH2,        /* string */
    F_TARGET,       /* string */
    F_MODE,         /* u32 */
    F_UID,          /* u32 */
    F_GID,          /* u32 */
    F_RDEV,         /* u64 */
    F_SIZE,         /* u64 */
    F_OFFSET,       /* u64 */
    F_READ_SIZE,    /* u32 */
    F_HANDLE,       /* u64 */
    F_FLAGS,        /* i32 */
    F_ACCESS_MODE,  /* u8 */
    F_RENAME_FLAGS, /* u8 */
    F_DATASYNC,     /* bool */
    F_DATA,         /* bytes */
    F_ATIME,        /* timestamp */
    F_MTIME,        /* timestamp */
    F_MAX_ENTRIES,  /* u32 */
};

/* The "request fields" column of the protocol's table, in wire order (F_END-terminated). */
#define MAX_FIELDS 4
static const uint8_t request_layout[CODEC_WF2_TYPE_MAX + 1][MAX_FIELDS + 1] = {
    [CODEC_WF2_ACCESS] = {F_PATH, F_ACCESS_MODE},
    [CODEC_WF2_GETATTR] = {F_PATH},
    [CODEC_WF2_READLINK] = {F_PATH},
    [CODEC_WF2_SYMLINK] = {F_TARGET, F_PATH2},
    [CODEC_WF2_LINK] = {F_PATH, F_PATH2},
    [CODEC_WF2_RENAME] = {F_PATH, F_PATH2, F_RENAME_FLAGS},
    [CODEC_WF2_CHMOD] = {F_PATH, F_MODE},
    [CODEC_WF2_CHOWN] = {F_PATH, F_UID, F_GID},
    [CODEC_WF2_TRUNCATE] = {F_PATH, F_SIZE, F_HANDLE},
    [CODEC_WF2_FSYNC] = {F_PATH, F_DATASYNC, F_HANDLE},
    [CODEC_WF2_OPEN] = {F_PATH, F_FLAGS},
    [CODEC_WF2_MKNOD] = {F_PATH, F_MODE, F_RDEV},
    [CODEC_WF2_CREATE] = {F_PATH, F_MODE},
    [CODEC_WF2_RELEASE] = {F_PATH, F_HANDLE},
    [CODEC_WF2_UNLINK] = {F_PATH},
    [CODEC_WF2_READ] = {F_PATH, F_READ_SIZE, F_OFFSET, F_HANDLE},
    [CODEC_WF2_WRITE] = {F_PATH, F_DATA, F_OFFSET, F_HANDLE},
    [CODEC_WF2_MKDIR] = {F_PATH, F_MODE},
    [CODEC_WF2_READDIR] = {F_PATH},
    [CODEC_WF2_RMDIR] = {F_PATH},
    [CODEC_WF2_STATFS] = {F_PATH},
    [CODEC_WF2_UTIMENS] = {F_PATH, F_ATIME, F_MTIME, F_HANDLE},
    [CODEC_WF2_GETCREDS] = {F_END},
    [CODEC_WF2_READDIRPLUS] = {F_PATH, F_OFFSET, F_MAX_ENTRIES},
};

static void put_field(struct writer *w, enum field f, const struct codec_wf2_request *req)
{
    switch (f) {
    case F_END:
        break;
    case F_PATH:
        put_str(w, req->path.ptr, req->path.len);
        break;
    case F_PATH2:
        put_str(w, req->path2.ptr, req->path2.len);
        break;
    case F_TARGET:
        put_str(w, req->target.ptr, req->target.len);
        break;
    case F_MODE:
        put_u32(w, req->mode);
        break;
    case F_UID:
        put_u32(w, req->uid);
        break;
    case F_GID:
        put_u32(w, req->gid);
        break;
    case F_RDEV:
        put_u64(w, req->rdev);
        break;
    case F_SIZE:
        put_u64(w, req->size);
        break;
    case F_OFFSET:
        put_u64(w, req->offset);
        break;
    case F_READ_SIZE:
        put_u32(w, req->read_size);
        break;
    case F_HANDLE:
        put_u64(w, req->handle);
        break;
    case F_FLAGS:
        put_i32(w, req->flags);
        break;
    case F_ACCESS_MODE:
        put_u8(w, req->access_mode);
        break;
    case F_RENAME_FLAGS:
        put_u8(w, req->rename_flags);
        break;
    case F_DATASYNC:
        put_u8(w, req->datasync ? 1 : 0);
        break;
    case F_DATA:
        put_str(w, req->data.ptr, req->data.len);
        break;
    case F_ATIME:
        put_timestamp(w, req->atime);
        break;
    case F_MTIME:
        put_timestamp(w, req->mtime);
        break;
    case F_MAX_ENTRIES:
        put_u32(w, req->max_entries);
        break;
    }
}

static void get_field(struct reader *r, enum field f, struct codec_wf2_request *req)
{
    switch (f) {
    case F_END:
        break;
    case F_PATH:
        req->path = get_str(r);
        break;
    case F_PATH2:
        req->path2 = get_str(r);
        break;
    case F_TARGET:
        req->target = get_str(r);
        break;
    case F_MODE:
        req->mode = get_u32(r);
        break;
    case F_UID:
        req->uid = get_u32(r);
        break;
    case F_GID:
        req->gid = get_u32(r);
        break;
    case F_RDEV:
        req->rdev = get_u64(r);
        break;
    case F_SIZE:
        req->size = get_u64(r);
        break;
    case F_OFFSET:
        req->offset = get_u64(r);
        break;
    case F_READ_SIZE:
        req->read_size = get_u32(r);
        break;
    case F_HANDLE:
        req->handle = get_u64(r);
        break;
    case F_FLAGS:
        req->flags = get_i32(r);
        break;
    case F_ACCESS_MODE:
        req->access_mode = get_u8(r);
        break;
    case F_RENAME_FLAGS:
        req->rename_flags = get_u8(r);
        break;
    case F_DATASYNC:
        req->datasync = get_bool(r);
        break;
    case F_DATA:
        req->data = get_bytes(r);
        break;
    case F_ATIME:
        req->atime = get_timestamp(r);
        break;
    case F_MTIME:
        req->mtime = get_timestamp(r);
        break;
    case F_MAX_ENTRIES:
        req->max_entries = get_u32(r);
        break;
    }
}

static void fill_request(struct writer *w, const void *msg)
{
    const struct codec_wf2_request *req = msg;
    const uint8_t *field;

    if (req->type & CODEC_WF2_RESPONSE) {
        w->invalid = true;
        return;
    }
    put_u32(w, req->id);
    put_u8(w, req->type);
    if (!type_known(req->type)) {
        put_raw(w, req->data.ptr, req->data.len);
        return;
    }
    for (field = request_layout[req->type]; *field != F_END; field++)
        put_field(w, (enum field) * field, req);
}

int codec_wf2_encode_request(void *buf, size_t cap, size_t *len,
                             const struct codec_wf2_request *req)
{
    return encode(buf, cap, len, fill_request, req);
}

int codec_wf2_decode_request(const void *data, size_t len, struct codec_wf2_request *req)
{
    struct reader r = {data, len, false};
    const uint8_t *field;
    uint32_t id;
    uint8_t type;

    memset(req, 0, sizeof(*req));
    if (len < CODEC_WF2_HEADER_SIZE)
        return -EBADMSG;
    req->id = get_u32(&r);
    req->type = get_u8(&r);
    if (!type_known(req->type)) {
        req->data.ptr = r.pos;
        req->data.len = r.left;
        return -ENOSYS;
    }
    for (field = request_layout[req->type]; *field != F_END; field++)
        get_field(&r, (enum field) * field, req);
    if (r.bad) {
        /* Leave nothing half-decoded behind: only what identifies the message. */
        id = req->id;
        type = req->type;
        memset(req, 0, sizeof(*req));
        req->id = id;
        req->type = type;
        return -EBADMSG;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Responses
 * ----------------------------------------------------------------------------------------------*/

static void put_attr(struct writer *w, const struct codec_wf2_attr *a)
{
    put_u64(w, a->inode);
    put_u64(w, a->nlink);
    put_u32(w, a->mode);
    put_u32(w, a->uid);
    put_u32(w, a->gid);
    put_u64(w, a->rdev);
    put_u64(w, a->size);
    put_u64(w, a->blocks);
    put_timestamp(w, a->atime);
    put_timestamp(w, a->mtime);
    put_timestamp(w, a->ctime);
}

static void get_attr(struct reader *r, struct codec_wf2_attr *a)
{
    a->inode = get_u64(r);
    a->nlink = get_u64(r);
    a->mode = get_u32(r);
    a->uid = get_u32(r);
    a->gid = get_u32(r);
    a->rdev = get_u64(r);
    a->size = get_u64(r);
    a->blocks = get_u64(r);
    a->atime = get_timestamp(r);
    a->mtime = get_timestamp(r);
    a->ctime = get_timestamp(r);
}

static void put_statfs(struct writer *w, const struct codec_wf2_statfs *s)
{
    put_u64(w, s->bsize);
    put_u64(w, s->frsize);
    put_u64(w, s->blocks);
    put_u64(w, s->bfree);
    put_u64(w, s->bavail);
    put_u64(w, s->files);
    put_u64(w, s->ffree);
    put_u64(w, s->namemax);
}

static void get_statfs(struct reader *r, struct codec_wf2_statfs *s)
{
    s->bsize = get_u64(r);
    s->frsize = get_u64(r);
    s->blocks = get_u64(r);
    s->bfree = get_u64(r);
    s->bavail = get_u64(r);
    s->files = get_u64(r);
    s->ffree = get_u64(r);
    s->namemax = get_u64(r);
}

static void put_names(struct writer *w, const struct codec_wf2_str *names, size_t count)
{
    size_t i;

    if (count > UINT32_MAX || (names == NULL && count > 0)) {
        w->invalid = true;
        return;
    }
    put_u32(w, (uint32_t)count);
    for (i = 0; i < count; i++)
        put_str(w, names[i].ptr, names[i].len);
}

/* Validates the whole list, so that codec_wf2_names_next needs no bounds checks. A huge count
 * costs nothing: every name takes at least 4 bytes, so the loop ends when the message does. */
static void get_names(struct reader *r, struct codec_wf2_response *resp)
{
    uint32_t count = get_u32(r);
    const unsigned char *first = r->pos;
    uint32_t i;

    for (i = 0; i < count && !r->bad; i++)
        get_str(r);
    if (r->bad)
        return;
    resp->name_count = count;
    resp->name_list.next = first;
    resp->name_list.left = count;
}

bool codec_wf2_names_next(struct codec_wf2_names *names, struct codec_wf2_str *name)
{
    uint32_t n;

    if (names->left == 0)
        return false;
    n = load_u32(names->next);
    name->ptr = (const char *)names->next + 4;
    name->len = n;
    names->next += 4 + (size_t)n;
    names->left--;
    return true;
}

static void put_dirents(struct writer *w, const struct codec_wf2_response *resp)
{
    size_t i;

    if (resp->entry_count > UINT32_MAX || (resp->entries == NULL && resp->entry_count > 0) ||
        (resp->entry_count == 0 && resp->cookie != 0)) {
        w->invalid = true;
        return;
    }
    put_u64(w, resp->cookie);
    put_u32(w, (uint32_t)resp->entry_count);
    for (i = 0; i < resp->entry_count; i++) {
        put_str(w, resp->entries[i].name.ptr, resp->entries[i].name.len);
        put_attr(w, &resp->entries[i].attr);
    }
}

/* Every entry is a name and 88 bytes of attributes. */
#define DIRENT_ATTR_SIZE 88

/* Validates the whole page like get_names. A page may not be empty while it says more follow:
 * the gateway would ask for the same nothing forever. */
static void get_dirents(struct reader *r, uint32_t max, struct codec_wf2_response *resp)
{
    uint64_t cookie = get_u64(r);
    uint32_t count = get_u32(r);
    const unsigned char *first = r->pos;
    uint32_t i;

    if (!r->bad && (count > max || (count == 0 && cookie != 0))) {
        r->bad = true;
        return;
    }
    for (i = 0; i < count && !r->bad; i++) {
        get_str(r);
        take(r, DIRENT_ATTR_SIZE);
    }
    if (r->bad)
        return;
    resp->cookie = cookie;
    resp->entry_count = count;
    resp->entry_list.next = first;
    resp->entry_list.left = count;
}

bool codec_wf2_dirents_next(struct codec_wf2_dirents *entries, struct codec_wf2_dirent *entry)
{
    uint32_t n;
    struct reader r;

    if (entries->left == 0)
        return false;
    n = load_u32(entries->next);
    entry->name.ptr = (const char *)entries->next + 4;
    entry->name.len = n;
    /* Validated by get_dirents: the attributes are all there. */
    r = (struct reader){entries->next + 4 + (size_t)n, DIRENT_ATTR_SIZE, false};
    get_attr(&r, &entry->attr);
    entries->next += 4 + (size_t)n + DIRENT_ATTR_SIZE;
    entries->left--;
    return true;
}

/* Whether `result` may be sent for `type`: errors always, byte counts only for read and write. */
static bool result_valid(const struct codec_wf2_response *resp)
{
    if (resp->result <= 0)
        return true;
    if (resp->type == CODEC_WF2_READ)
        return resp->data.len == (size_t)resp->result;
    return resp->type == CODEC_WF2_WRITE;
}

static void fill_response(struct writer *w, const void *msg)
{
    const struct codec_wf2_response *resp = msg;

    if (resp->type > CODEC_WF2_TYPE_MAX) {
        w->invalid = true;
        return;
    }
    put_u32(w, resp->id);
    put_u8(w, resp->type | CODEC_WF2_RESPONSE);
    if (resp->type == CODEC_WF2_UNKNOWN)
        return;
    if (resp->type == CODEC_WF2_GETCREDS) {
        put_str(w, resp->credentials.ptr, resp->credentials.len);
        return;
    }
    if (!result_valid(resp)) {
        w->invalid = true;
        return;
    }
    put_i32(w, resp->result);
    if (resp->result < 0)
        return;
    /* Here the result is 0, or the byte count of a read or write (see result_valid). */
    switch (resp->type) {
    case CODEC_WF2_GETATTR:
        put_attr(w, &resp->attr);
        break;
    case CODEC_WF2_READLINK:
        put_str(w, resp->target.ptr, resp->target.len);
        break;
    case CODEC_WF2_OPEN:
    case CODEC_WF2_CREATE:
        put_u64(w, resp->handle);
        break;
    case CODEC_WF2_READ:
        if (resp->result > 0) /* 0 is end of file: no data field */
            put_str(w, resp->data.ptr, resp->data.len);
        break;
    case CODEC_WF2_READDIR:
        put_names(w, resp->names, resp->name_count);
        break;
    case CODEC_WF2_READDIRPLUS:
        put_dirents(w, resp);
        break;
    case CODEC_WF2_STATFS:
        put_statfs(w, &resp->statfs);
        break;
    default:
        break;
    }
}

int codec_wf2_encode_response(void *buf, size_t cap, size_t *len,
                              const struct codec_wf2_response *resp)
{
    return encode(buf, cap, len, fill_response, resp);
}

size_t codec_wf2_encode_read_head(void *buf, uint32_t id, int32_t result)
{
    struct writer w = {.buf = buf, .cap = CODEC_WF2_READ_HEAD_SIZE};

    put_u32(&w, id);
    put_u8(&w, CODEC_WF2_READ | CODEC_WF2_RESPONSE);
    put_i32(&w, result);
    if (result > 0)
        put_u32(&w, (uint32_t)result);
    return w.len;
}

/* The fields after the result of a successful (result >= 0) response. */
static int get_response_fields(struct reader *r, uint8_t expected, uint32_t size,
                               struct codec_wf2_response *resp)
{
    switch (expected) {
    case CODEC_WF2_READ:
        /* 0 is end of file and carries nothing; otherwise exactly `result` bytes, which must fit
         * what was asked for. */
        if ((uint32_t)resp->result > size)
            return -EBADMSG;
        if (resp->result > 0) {
            resp->data = get_bytes(r);
            if (!r->bad && resp->data.len != (size_t)resp->result)
                return -EBADMSG;
        }
        break;
    case CODEC_WF2_WRITE:
        if ((uint32_t)resp->result > size)
            return -EBADMSG;
        break;
    default:
        if (resp->result > 0)
            return -EBADMSG;
        break;
    }
    switch (expected) {
    case CODEC_WF2_GETATTR:
        get_attr(r, &resp->attr);
        break;
    case CODEC_WF2_READLINK:
        resp->target = get_str(r);
        break;
    case CODEC_WF2_OPEN:
    case CODEC_WF2_CREATE:
        resp->handle = get_u64(r);
        break;
    case CODEC_WF2_READDIR:
        get_names(r, resp);
        break;
    case CODEC_WF2_READDIRPLUS:
        get_dirents(r, size, resp);
        break;
    case CODEC_WF2_STATFS:
        get_statfs(r, &resp->statfs);
        break;
    default:
        break;
    }
    return r->bad ? -EBADMSG : 0;
}

static int get_response(struct reader *r, uint8_t expected, uint32_t size,
                        struct codec_wf2_response *resp)
{
    uint8_t type;

    resp->id = get_u32(r);
    type = get_u8(r);
    resp->type = type & (uint8_t)~CODEC_WF2_RESPONSE;
    /* "Not supported" has two spellings: the existing C++ provider's 0x80, and the JavaScript and
     * Python examples' echo of the expected type with nothing after the header. */
    if (type == CODEC_WF2_RESPONSE || (type == (expected | CODEC_WF2_RESPONSE) && r->left == 0)) {
        resp->result = -ENOSYS;
        return -ENOSYS;
    }
    if (type != (expected | CODEC_WF2_RESPONSE) || !type_known(expected))
        return -EBADMSG;
    if (expected == CODEC_WF2_GETCREDS) {
        /* The one response without a result. */
        resp->credentials = get_str(r);
        return r->bad ? -EBADMSG : 0;
    }
    resp->result = get_i32(r);
    if (r->bad)
        return -EBADMSG;
    if (resp->result < 0)
        return 0; /* nothing after an error result is read */
    return get_response_fields(r, expected, size, resp);
}

int codec_wf2_decode_response(const void *data, size_t len, uint8_t expected, uint32_t size,
                              struct codec_wf2_response *resp)
{
    struct reader r = {data, len, false};
    uint32_t id;
    uint8_t type;
    int rc;

    memset(resp, 0, sizeof(*resp));
    if (expected & CODEC_WF2_RESPONSE)
        return -EINVAL;
    if (len < CODEC_WF2_HEADER_SIZE)
        return -EBADMSG;
    rc = get_response(&r, expected, size, resp);
    if (rc == -EBADMSG) {
        /* Leave nothing half-decoded behind: only what identifies the message. */
        id = resp->id;
        type = resp->type;
        memset(resp, 0, sizeof(*resp));
        resp->id = id;
        resp->type = type;
    }
    return rc;
}
