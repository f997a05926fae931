/* JSON codec for the first-generation webfuse protocol ("webfuse-adapter-server").
 *
 * Pure functions over byte buffers: parsing classifies one message into the four envelope shapes;
 * the decoders then read the parsed tree for one expected message; the encoders build a jansson
 * tree and dump it compactly into the caller's buffer. The only memory that lives past a call is
 * the parsed tree a struct codec_json_msg owns.
 *
 * Integers: jansson's json_int_t is long long, so every integer on the wire is a signed 64-bit
 * value. Numbers beyond that range fail to parse, and uint64 values above INT64_MAX cannot be
 * encoded (-EINVAL). Floats are never accepted where an integer is expected.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "session.h"

/* Permission bits: the protocol's "mode" carries only these; the file type comes from "type". */
#define CODEC_JSON_PERM_MASK 07777

struct codec_json_msg {
    json_t *root; /* owned; every borrowed pointer below points into it */
    enum codec_json_kind kind;
    int64_t id;                /* 0 for a notification */
    const char *method;        /* request and notification */
    const json_t *params;      /* request and notification: an array */
    const json_t *result;      /* result */
    int error_status;          /* error */
    const char *error_message; /* error: its message if it has one (a string), else NULL */
    /* result.data of a read result, borrowed from the parsed bytes (see data_span_find); NULL
     * when it is in the tree. */
    const char *data;
    size_t data_len;
};

/* ------------------------------------------------------------------------------------------------
 * Status codes
 * ----------------------------------------------------------------------------------------------*/

int codec_json_status_to_errno(int status)
{
    switch (status) {
    case CODEC_JSON_GOOD:
        return 0;
    case CODEC_JSON_BAD_NOTIMPLEMENTED:
        return -ENOSYS;
    case CODEC_JSON_BAD_TIMEOUT:
        return -ETIMEDOUT;
    case CODEC_JSON_BAD_BUSY:
        return -EBUSY;
    case CODEC_JSON_BAD_NOENTRY:
        return -ENOENT;
    case CODEC_JSON_BAD_ACCESS_DENIED:
        return -EACCES;
    default: /* BAD, BAD_FORMAT and codes we do not know */
        return -EIO;
    }
}

int codec_json_errno_to_status(int neg_errno)
{
    switch (neg_errno) {
    case 0:
        return CODEC_JSON_GOOD;
    case -ENOENT:
        return CODEC_JSON_BAD_NOENTRY;
    case -EACCES:
    case -EPERM:
        return CODEC_JSON_BAD_ACCESS_DENIED;
    case -ENOSYS:
        return CODEC_JSON_BAD_NOTIMPLEMENTED;
    case -ETIMEDOUT:
        return CODEC_JSON_BAD_TIMEOUT;
    case -EBUSY:
        return CODEC_JSON_BAD_BUSY;
    default:
        return CODEC_JSON_BAD;
    }
}

/* The "message" member of the errors we send; providers read only "code", so this is for people
 * reading traffic. */
const char *codec_json_status_message(int status)
{
    switch (status) {
    case CODEC_JSON_GOOD:
        return "good";
    case CODEC_JSON_BAD_NOTIMPLEMENTED:
        return "not implemented";
    case CODEC_JSON_BAD_TIMEOUT:
        return "timeout";
    case CODEC_JSON_BAD_BUSY:
        return "busy";
    case CODEC_JSON_BAD_FORMAT:
        return "bad format";
    case CODEC_JSON_BAD_NOENTRY:
        return "no entry";
    case CODEC_JSON_BAD_ACCESS_DENIED:
        return "access denied";
    default:
        return "bad";
    }
}

/* ------------------------------------------------------------------------------------------------
 * Reading values out of a parsed tree
 * ----------------------------------------------------------------------------------------------*/

/* A string usable as a C string. JSON_ALLOW_NUL lets "\u0000" through for read data, so names and
 * methods must be checked: one with an embedded NUL would otherwise be silently truncated. */
static int get_cstring(const json_t *v, const char **out)
{
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return -EBADMSG;
    *out = json_string_value(v);
    return 0;
}

/* An integer in [min, max]. */
static int get_int(const json_t *v, json_int_t min, json_int_t max, json_int_t *out)
{
    json_int_t x;

    if (!json_is_integer(v))
        return -EBADMSG;
    x = json_integer_value(v);
    if (x < min || x > max)
        return -EBADMSG;
    *out = x;
    return 0;
}

/* A non-negative integer as uint64 (inodes, handles, offsets). */
static int get_u64(const json_t *v, uint64_t *out)
{
    json_int_t x;
    int rc = get_int(v, 0, INT64_MAX, &x);

    if (rc == 0)
        *out = (uint64_t)x;
    return rc;
}

/* An optional integer member >= min; dflt when absent. */
static int get_member_int(const json_t *obj, const char *key, json_int_t min, json_int_t dflt,
                          json_int_t *out)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    return get_int(v, min, INT64_MAX, out);
}

/* ------------------------------------------------------------------------------------------------
 * Parsing and classification
 * ----------------------------------------------------------------------------------------------*/

/* {"method": M, "params": [...]} with an optional integer "id". A present "method" commits the
 * message to this shape: we do not fall back to reading it as a response. */
static int classify_call(struct codec_json_msg *msg)
{
    const json_t *id = json_object_get(msg->root, "id");
    json_int_t value;

    if (get_cstring(json_object_get(msg->root, "method"), &msg->method) != 0)
        return -EBADMSG;
    msg->params = json_object_get(msg->root, "params");
    if (!json_is_array(msg->params))
        return -EBADMSG;
    if (id == NULL) {
        msg->kind = CODEC_JSON_NOTIFICATION;
        return 0;
    }
    if (get_int(id, INT64_MIN, INT64_MAX, &value) != 0)
        return -EBADMSG;
    msg->kind = CODEC_JSON_REQUEST;
    msg->id = value;
    return 0;
}

/* {"error": {"code": C, ...}, "id": N}; the code must fit an int since the API reports it as one.
 */
static int classify_error(struct codec_json_msg *msg, const json_t *error)
{
    json_int_t code;

    if (!json_is_object(error))
        return -EBADMSG;
    if (get_int(json_object_get(error, "code"), INT_MIN, INT_MAX, &code) != 0)
        return -EBADMSG;
    msg->kind = CODEC_JSON_ERROR;
    msg->error_status = (int)code;
    msg->error_message = json_string_value(json_object_get(error, "message"));
    return 0;
}

/* {"result": R, "id": N} or an error. A message carrying both is ambiguous and rejected. */
static int classify_response(struct codec_json_msg *msg)
{
    const json_t *error = json_object_get(msg->root, "error");
    const json_t *result = json_object_get(msg->root, "result");
    json_int_t id;

    if (get_int(json_object_get(msg->root, "id"), INT64_MIN, INT64_MAX, &id) != 0)
        return -EBADMSG;
    msg->id = id;
    if (error != NULL && result == NULL)
        return classify_error(msg, error);
    if (result != NULL && error == NULL) {
        msg->kind = CODEC_JSON_RESULT;
        msg->result = result;
        return 0;
    }
    return -EBADMSG;
}

static int classify(struct codec_json_msg *msg)
{
    if (!json_is_object(msg->root))
        return -EBADMSG;
    if (json_object_get(msg->root, "method") != NULL)
        return classify_call(msg);
    return classify_response(msg);
}

/* ------------------------------------------------------------------------------------------------
 * Read results without lexing their data
 *
 * A read result is almost all one base64 string, which jansson lexes a byte at a time (and copies
 * twice). So the message is scanned once, the way a JSON lexer would tokenize it, for the "data"
 * member of the top-level "result" object. When that string is plain (printable ASCII, no escapes:
 * its bytes are then exactly its value) and long, the rest of the message is parsed with an empty
 * string in its place and the value is borrowed from the caller's bytes. Anything unusual (escapes,
 * other bytes, a repeated member, bad syntax) leaves the message to jansson as it is.
 * ----------------------------------------------------------------------------------------------*/

/* Shorter data strings are not worth a second buffer. */
#define DATA_SPAN_MIN 1024

struct span {
    const char *pos;
    const char *end;
};

static void span_skip_ws(struct span *s)
{
    while (s->pos < s->end &&
           (*s->pos == ' ' || *s->pos == '\t' || *s->pos == '\n' || *s->pos == '\r'))
        s->pos++;
}

/* At a '"': moves past the string; its contents are [*start, *stop), and *escapes says whether
 * they hold a backslash. memchr, because the string is most of the message. false on a string
 * that does not end. */
static bool span_string(struct span *s, const char **start, const char **stop, bool *escapes)
{
    *escapes = false;
    *start = ++s->pos;
    for (;;) {
        const char *quote = memchr(s->pos, '"', (size_t)(s->end - s->pos));
        if (quote == NULL)
            return false;
        const char *backslash = memchr(s->pos, '\\', (size_t)(quote - s->pos));
        if (backslash == NULL) {
            *stop = quote;
            s->pos = quote + 1;
            return true;
        }
        *escapes = true;
        s->pos = backslash + 2; /* the escaped character cannot end the string */
        if (s->pos > s->end)
            return false;
    }
}

/* Printable ASCII only: then the bytes of a string without escapes are its value. No early exit,
 * so the compiler can check many bytes at once. */
static bool span_plain(const char *start, size_t len)
{
    unsigned char bad = 0;
    for (size_t i = 0; i < len; i++)
        bad |= (unsigned char)((unsigned char)(start[i] - 0x20) > 0x5e);
    return bad == 0;
}

/* Moves past one value of any kind (its syntax is left to jansson). */
static bool span_value(struct span *s)
{
    const char *a, *b;
    bool escapes;
    int depth = 0;
    do {
        if (s->pos >= s->end)
            return false;
        char c = *s->pos;
        if (c == '"') {
            if (!span_string(s, &a, &b, &escapes))
                return false;
        } else if (c == '{' || c == '[') {
            depth++;
            s->pos++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return false;
            s->pos++;
        } else if (depth == 0) { /* a number or literal ends at a delimiter */
            while (s->pos < s->end && !strchr(",}] \t\n\r", *s->pos))
                s->pos++;
        } else {
            s->pos++;
        }
    } while (depth > 0);
    return true;
}

static bool span_key_is(const char *a, const char *b, bool escapes, const char *key)
{
    return !escapes && (size_t)(b - a) == strlen(key) && memcmp(a, key, (size_t)(b - a)) == 0;
}

/* Walks the object at s->pos. For the member named `key`, when it occurs exactly once, its value
 * is [*value, *value_end). false on anything that is not a well-formed object. */
static bool span_member(struct span *s, const char *key, const char **value, const char **value_end)
{
    int seen = 0;
    *value = NULL;
    s->pos++; /* '{' */
    span_skip_ws(s);
    if (s->pos < s->end && *s->pos == '}') {
        s->pos++;
        return true;
    }
    for (;;) {
        const char *a, *b;
        bool escapes;
        span_skip_ws(s);
        if (s->pos >= s->end || *s->pos != '"' || !span_string(s, &a, &b, &escapes))
            return false;
        span_skip_ws(s);
        if (s->pos >= s->end || *s->pos++ != ':')
            return false;
        span_skip_ws(s);
        bool match = span_key_is(a, b, escapes, key) && seen++ == 0;
        if (match)
            *value = s->pos;
        if (!span_value(s))
            return false;
        if (match)
            *value_end = s->pos;
        span_skip_ws(s);
        if (s->pos < s->end && *s->pos == ',') {
            s->pos++;
            continue;
        }
        if (s->pos < s->end && *s->pos == '}') {
            s->pos++;
            if (seen > 1)
                *value = NULL;
            return true;
        }
        return false;
    }
}

/* The contents of result.data when it is a long plain string: [*start, *stop). */
static bool data_span_find(const char *data, size_t len, const char **start, const char **stop)
{
    struct span s = {data, data + len};
    const char *value, *value_end;
    bool escapes;
    span_skip_ws(&s);
    if (s.pos >= s.end || *s.pos != '{' || !span_member(&s, "result", &value, &value_end) ||
        !value || *value != '{')
        return false;
    struct span result = {value, value_end};
    s = result;
    if (!span_member(&s, "data", &value, &value_end) || !value || *value != '"')
        return false;
    s = (struct span){value, value_end};
    if (!span_string(&s, start, stop, &escapes) || escapes || *stop - *start < DATA_SPAN_MIN)
        return false;
    /* base64 text needs no check here: its decoder refuses every byte outside the alphabet. */
    s = result;
    return (span_member(&s, "format", &value, &value_end) && value && value_end - value == 8 &&
            memcmp(value, "\"base64\"", 8) == 0) ||
           span_plain(*start, (size_t)(*stop - *start));
}

/* Parses the message with result.data's contents cut out; NULL when that does not work. */
static json_t *parse_without_data(const char *data, size_t len, const char *start, const char *stop,
                                  size_t flags)
{
    size_t head = (size_t)(start - data);
    size_t tail = len - (size_t)(stop - data);
    char *rest = malloc(head + tail);
    if (rest == NULL)
        return NULL;
    memcpy(rest, data, head);
    memcpy(rest + head, stop, tail);
    json_t *root = json_loadb(rest, head + tail, flags, NULL);
    free(rest);
    return root;
}

int codec_json_parse(const void *data, size_t len, struct codec_json_msg **out)
{
    /* JSON_ALLOW_NUL: identity read data may legitimately contain "\u0000". Without
     * JSON_DISABLE_EOF_CHECK, trailing bytes after the object are an error. */
    const size_t flags = JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
    struct codec_json_msg *msg;
    json_t *root = NULL;
    const char *start = NULL, *stop = NULL;
    int rc;

    if (data_span_find(data, len, &start, &stop))
        root = parse_without_data(data, len, start, stop, flags);
    if (root == NULL) {
        start = NULL;
        root = json_loadb(data, len, flags, NULL);
    }
    /* jansson's parser reports its own allocation failures as bad syntax (or not at all), so
     * they cannot be told apart from a bad message here. */
    if (root == NULL)
        return -EBADMSG;
    msg = calloc(1, sizeof(*msg));
    if (msg == NULL) {
        json_decref(root);
        return -ENOMEM;
    }
    msg->root = root;
    rc = classify(msg);
    if (rc == 0 && start != NULL) {
        msg->data = start;
        msg->data_len = (size_t)(stop - start);
    }
    if (rc != 0) {
        codec_json_msg_free(msg);
        return rc;
    }
    *out = msg;
    return 0;
}

void codec_json_msg_free(struct codec_json_msg *msg)
{
    if (msg == NULL)
        return;
    json_decref(msg->root);
    free(msg);
}

enum codec_json_kind codec_json_msg_kind(const struct codec_json_msg *msg)
{
    return msg->kind;
}

int64_t codec_json_msg_id(const struct codec_json_msg *msg)
{
    return msg->id;
}

const char *codec_json_msg_method(const struct codec_json_msg *msg)
{
    return msg->method;
}

int codec_json_msg_error_status(const struct codec_json_msg *msg)
{
    return msg->kind == CODEC_JSON_ERROR ? msg->error_status : 0;
}

const char *codec_json_msg_error_message(const struct codec_json_msg *msg)
{
    return msg->kind == CODEC_JSON_ERROR ? msg->error_message : NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Gateway side: requests from a provider
 * ----------------------------------------------------------------------------------------------*/

/* The params of a request (with id) named `method` that has exactly `count` params, or NULL. */
static const json_t *request_params(const struct codec_json_msg *msg, const char *method,
                                    size_t count)
{
    if (msg->kind != CODEC_JSON_REQUEST || strcmp(msg->method, method) != 0)
        return NULL;
    if (json_array_size(msg->params) != count)
        return NULL;
    return msg->params;
}

/* A credential member: NULL when absent, -EBADMSG when present but not a string. */
static int get_credential(const json_t *credentials, const char *key, const char **out)
{
    const json_t *v = json_object_get(credentials, key);

    *out = NULL;
    return v == NULL ? 0 : get_cstring(v, out);
}

/* ["username", {"username": U, "password": P}]. Absent credentials come back as NULL: whether a
 * credential type needs them is the authenticator's decision, not the codec's. */
int codec_json_decode_authenticate(const struct codec_json_msg *msg, const char **type,
                                   const char **username, const char **password)
{
    const json_t *params = request_params(msg, "authenticate", 2);
    const json_t *credentials = json_array_get(params, 1);

    if (params == NULL || !json_is_object(credentials))
        return -EBADMSG;
    if (get_cstring(json_array_get(params, 0), type) != 0)
        return -EBADMSG;
    if (get_credential(credentials, "username", username) != 0)
        return -EBADMSG;
    return get_credential(credentials, "password", password);
}

int codec_json_decode_filesystem_detached(const struct codec_json_msg *msg, const char **name)
{
    if (msg->kind != CODEC_JSON_NOTIFICATION || strcmp(msg->method, "filesystem_detached") != 0 ||
        json_array_size(msg->params) != 1)
        return -EBADMSG;
    return get_cstring(json_array_get(msg->params, 0), name);
}

int codec_json_decode_add_filesystem(const struct codec_json_msg *msg, const char **name)
{
    const json_t *params = request_params(msg, "add_filesystem", 1);

    if (params == NULL)
        return -EBADMSG;
    return get_cstring(json_array_get(params, 0), name);
}

/* ------------------------------------------------------------------------------------------------
 * Gateway side: results of the gateway's requests
 * ----------------------------------------------------------------------------------------------*/

/* The result member when msg is a result whose value is an object, else NULL. */
static const json_t *result_object(const struct codec_json_msg *msg)
{
    if (msg->kind != CODEC_JSON_RESULT || !json_is_object(msg->result))
        return NULL;
    return msg->result;
}

/* "type" -> S_IFREG / S_IFDIR; anything else is an error, not a file (protocol doc). */
static int attr_type(const json_t *attr, mode_t *type)
{
    const char *name;

    if (get_cstring(json_object_get(attr, "type"), &name) != 0)
        return -EBADMSG;
    if (strcmp(name, "file") == 0)
        *type = S_IFREG;
    else if (strcmp(name, "dir") == 0)
        *type = S_IFDIR;
    else
        return -EBADMSG;
    return 0;
}

/* The optional integer members of an attributes object, in this order in `values`. */
static const char *const attr_optional[] = {"size", "atime", "mtime", "ctime", "inode"};

static int attr_numbers(const json_t *attr, json_int_t *mode, json_int_t values[5])
{
    size_t i;

    if (get_int(json_object_get(attr, "mode"), 0, INT64_MAX, mode) != 0)
        return -EBADMSG;
    for (i = 0; i < 4; i++) {
        if (get_member_int(attr, attr_optional[i], 0, 0, &values[i]) != 0)
            return -EBADMSG;
    }
    /* getattr answers may carry any inode (the doc says to ignore it there), so a value that is
     * not an inode is reported as 0, like absence, and the caller judges. */
    if (get_member_int(attr, attr_optional[4], INT64_MIN, 0, &values[4]) != 0)
        return -EBADMSG;
    if (values[4] < 0)
        values[4] = 0;
    return 0;
}

/* The attributes members of an object (a getattr result, or a readdir entry of our extension). */
static int attr_get(const json_t *attr, struct stat *st)
{
    json_int_t mode, v[5];
    mode_t type;

    if (attr_type(attr, &type) != 0 || attr_numbers(attr, &mode, v) != 0)
        return -EBADMSG;
    memset(st, 0, sizeof(*st));
    st->st_mode = type | (mode_t)(mode & CODEC_JSON_PERM_MASK);
    st->st_nlink = type == S_IFDIR ? 2 : 1;
    st->st_size = (off_t)v[0];
    /* Computed in uint64: size + 511 cannot wrap there since size <= INT64_MAX. */
    st->st_blocks = (blkcnt_t)(((uint64_t)v[0] + 511) / 512);
    st->st_atim.tv_sec = (time_t)v[1];
    st->st_mtim.tv_sec = (time_t)v[2];
    st->st_ctim.tv_sec = (time_t)v[3];
    st->st_ino = (ino_t)v[4];
    return 0;
}

int codec_json_decode_attr(const struct codec_json_msg *msg, struct stat *st)
{
    const json_t *attr = result_object(msg);

    return attr != NULL ? attr_get(attr, st) : -EBADMSG;
}

int codec_json_decode_open(const struct codec_json_msg *msg, uint64_t *handle)
{
    const json_t *result = result_object(msg);

    if (result == NULL)
        return -EBADMSG;
    return get_u64(json_object_get(result, "handle"), handle);
}

/* "identity": the string's UTF-8 bytes as they are (json_string_length counts "\u0000" too). */
static int read_identity(const char *data, size_t n, void *buf, size_t cap, size_t *len)
{
    if (n > cap)
        return -EBADMSG;
    if (n > 0)
        memcpy(buf, data, n);
    *len = n;
    return 0;
}

static int read_base64(const char *data, size_t len, void *buf, size_t cap, size_t *len_out)
{
    long n = base64_decode(data, len, buf, cap);

    if (n < 0) /* bad base64 and data too large for cap are both the provider's fault */
        return -EBADMSG;
    *len_out = (size_t)n;
    return 0;
}

int codec_json_decode_read(const struct codec_json_msg *msg, void *buf, size_t cap, size_t *len)
{
    const json_t *result = result_object(msg);
    const json_t *data = json_object_get(result, "data");
    const char *format;
    json_int_t count;
    size_t n;
    int rc;

    if (result == NULL || !json_is_string(data))
        return -EBADMSG;
    if (get_cstring(json_object_get(result, "format"), &format) != 0)
        return -EBADMSG;
    if (get_int(json_object_get(result, "count"), 0, INT64_MAX, &count) != 0)
        return -EBADMSG;
    const char *text = msg->data ? msg->data : json_string_value(data);
    size_t text_len = msg->data ? msg->data_len : json_string_length(data);
    if (strcmp(format, "identity") == 0)
        rc = read_identity(text, text_len, buf, cap, &n);
    else if (strcmp(format, "base64") == 0)
        rc = read_base64(text, text_len, buf, cap, &n);
    else
        rc = -EBADMSG;
    if (rc != 0 || (uint64_t)count != n)
        return -EBADMSG;
    *len = n;
    return 0;
}

static bool is_dot_name(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* One {"name": S, "inode": I}, with our extension's attribute members (those of a getattr
 * result) when it has a "type" or a "mode": then *has_attr is set and st holds them. Providers
 * send "." and ".." with inodes we must not trust (the doc says possibly wrong), so those only
 * need an integer and report 0 when it is not positive, and their attributes are not looked at;
 * every other entry needs a real inode (> 0). */
static int dirent_get(const json_t *entry, const char **name, uint64_t *ino, struct stat *st,
                      bool *has_attr)
{
    const json_t *inode = json_object_get(entry, "inode");
    json_int_t value;

    *has_attr = false;
    /* json_object_get on a non-object entry is NULL, which fails like a missing member */
    if (get_cstring(json_object_get(entry, "name"), name) != 0)
        return -EBADMSG;
    if (is_dot_name(*name)) {
        if (!json_is_integer(inode))
            return -EBADMSG;
        value = json_integer_value(inode);
        *ino = value > 0 ? (uint64_t)value : 0;
        return 0;
    }
    if (get_int(inode, 1, INT64_MAX, &value) != 0)
        return -EBADMSG;
    *ino = (uint64_t)value;
    if (!json_object_get(entry, "type") && !json_object_get(entry, "mode"))
        return 0;
    *has_attr = true;
    return attr_get(entry, st);
}

/* Validates every entry before the first callback, so that fn never sees part of a listing that is
 * then rejected. */
int codec_json_decode_readdir(const struct codec_json_msg *msg, codec_json_dirent_fn fn, void *user)
{
    const char *name;
    uint64_t ino;
    struct stat st;
    bool has_attr;
    size_t i;
    int rc;

    if (msg->kind != CODEC_JSON_RESULT || !json_is_array(msg->result))
        return -EBADMSG;
    for (i = 0; i < json_array_size(msg->result); i++) {
        if (dirent_get(json_array_get(msg->result, i), &name, &ino, &st, &has_attr) != 0)
            return -EBADMSG;
    }
    for (i = 0; i < json_array_size(msg->result); i++) {
        /* validated above */
        dirent_get(json_array_get(msg->result, i), &name, &ino, &st, &has_attr);
        rc = fn(user, name, ino, has_attr ? &st : NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Provider side: requests from the gateway
 * ----------------------------------------------------------------------------------------------*/

/* The gateway's methods: name, request kind, number of params (fs included), and whether it is
 * the one notification. */
struct method_info {
    const char *name;
    enum fusebridge_kind kind;
    size_t params;
    bool notification;
};

static const struct method_info methods[] = {
    {"lookup", FUSEBRIDGE_LOOKUP, 3, false},   /* [fs, parent, name] */
    {"getattr", FUSEBRIDGE_GETATTR, 2, false}, /* [fs, ino] */
    {"readdir", FUSEBRIDGE_READDIR, 2, false}, /* [fs, ino] */
    {"open", FUSEBRIDGE_OPEN, 3, false},       /* [fs, ino, flags] */
    {"read", FUSEBRIDGE_READ, 5, false},       /* [fs, ino, fh, offset, length] */
    {"close", FUSEBRIDGE_RELEASE, 4, true},    /* [fs, ino, fh, flags], no id */
};

static const struct method_info *method_by_name(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(methods[i].name, name) == 0)
            return &methods[i];
    }
    return NULL;
}

static const struct method_info *method_by_kind(enum fusebridge_kind kind)
{
    size_t i;

    for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (methods[i].kind == kind)
            return &methods[i];
    }
    return NULL;
}

static int get_flags(const json_t *v, int32_t *flags)
{
    json_int_t x;

    if (get_int(v, INT32_MIN, INT32_MAX, &x) != 0)
        return -EBADMSG;
    *flags = (int32_t)x;
    return 0;
}

/* The params after fs and ino, per kind; the count was checked by the caller. */
static int decode_request_rest(const json_t *p, struct fusebridge_request *req)
{
    json_int_t size;

    switch (req->kind) {
    case FUSEBRIDGE_LOOKUP:
        return get_cstring(json_array_get(p, 2), &req->name);
    case FUSEBRIDGE_OPEN:
        return get_flags(json_array_get(p, 2), &req->flags);
    case FUSEBRIDGE_READ:
        if (get_u64(json_array_get(p, 2), &req->fh) != 0 ||
            get_u64(json_array_get(p, 3), &req->offset) != 0 ||
            get_int(json_array_get(p, 4), 0, UINT32_MAX, &size) != 0)
            return -EBADMSG;
        req->size = (uint32_t)size;
        return 0;
    case FUSEBRIDGE_RELEASE:
        if (get_u64(json_array_get(p, 2), &req->fh) != 0)
            return -EBADMSG;
        return get_flags(json_array_get(p, 3), &req->flags);
    default: /* GETATTR, READDIR: nothing after ino */
        return 0;
    }
}

int codec_json_decode_request(const struct codec_json_msg *msg, const char **fs,
                              struct fusebridge_request *req)
{
    const struct method_info *info;
    bool notification = msg->kind == CODEC_JSON_NOTIFICATION;

    if (msg->kind != CODEC_JSON_REQUEST && !notification)
        return -EBADMSG;
    info = method_by_name(msg->method);
    if (info == NULL || info->notification != notification)
        return -EBADMSG;
    if (json_array_size(msg->params) != info->params)
        return -EBADMSG;
    memset(req, 0, sizeof(*req));
    req->kind = info->kind;
    if (get_cstring(json_array_get(msg->params, 0), fs) != 0 ||
        get_u64(json_array_get(msg->params, 1), &req->ino) != 0)
        return -EBADMSG;
    return decode_request_rest(msg->params, req) != 0 ? -EBADMSG : 0;
}

/* ------------------------------------------------------------------------------------------------
 * Building messages
 *
 * The builders below share one error slot, *rc: the first failure is kept and every later call
 * does nothing but release what it was given. That keeps each encoder a straight list of members.
 * ----------------------------------------------------------------------------------------------*/

static void fail_with(int *rc, int error)
{
    if (*rc == 0)
        *rc = error;
}

/* jansson answers both invalid UTF-8 and an allocation failure with NULL. Only on that failure
 * path, an unchecked copy tells them apart: if it can be made, the text was the problem. */
static json_t *new_string(const char *s, int *rc)
{
    json_t *v = s != NULL ? json_string(s) : NULL;
    json_t *unchecked;

    if (v != NULL)
        return v;
    unchecked = s != NULL ? json_stringn_nocheck(s, strlen(s)) : NULL;
    fail_with(rc, s == NULL || unchecked != NULL ? -EINVAL : -ENOMEM);
    json_decref(unchecked);
    return NULL;
}

static json_t *new_int(json_int_t x, int *rc)
{
    json_t *v = json_integer(x);

    if (v == NULL)
        fail_with(rc, -ENOMEM);
    return v;
}

/* uint64 values above INT64_MAX have no json_int_t: -EINVAL rather than a wrapped negative. */
static json_t *new_u64(uint64_t x, int *rc)
{
    if (x > INT64_MAX) {
        fail_with(rc, -EINVAL);
        return NULL;
    }
    return new_int((json_int_t)x, rc);
}

static json_t *new_container(json_t *(*create)(void), int *rc)
{
    json_t *v = create();

    if (v == NULL)
        fail_with(rc, -ENOMEM);
    return v;
}

/* Adds value to an object (key) or array (key NULL). Takes ownership of value in every case. */
static void add(json_t *container, const char *key, json_t *value, int *rc)
{
    int failed;

    if (value == NULL) /* its constructor has recorded why */
        return;
    if (*rc != 0) { /* includes a container that could not be created */
        json_decref(value);
        return;
    }
    /* Both *_new functions release value when they fail. */
    failed = key != NULL ? json_object_set_new(container, key, value)
                         : json_array_append_new(container, value);
    if (failed)
        fail_with(rc, -ENOMEM);
}

/* Dumps root compactly into buf and releases root. -ENOBUFS sets *len to the size needed. */
static int dump(json_t *root, int rc, char *buf, size_t cap, size_t *len)
{
    size_t needed;

    if (rc != 0) {
        json_decref(root);
        return rc;
    }
    /* json_dumpb never writes more than cap bytes (buf may be NULL when cap is 0) and returns the
     * full size; 0 can only be an error since no message is empty. */
    needed = json_dumpb(root, buf, cap, JSON_COMPACT);
    json_decref(root);
    if (needed == 0)
        return -ENOMEM;
    *len = needed;
    return needed > cap ? -ENOBUFS : 0;
}

/* {"method": M, "params": params[, "id": id]}; takes ownership of params. */
static int dump_call(char *buf, size_t cap, size_t *len, const char *method, json_t *params,
                     bool with_id, int64_t id, int rc)
{
    json_t *root = new_container(json_object, &rc);

    add(root, "method", new_string(method, &rc), &rc);
    add(root, "params", params, &rc);
    if (with_id)
        add(root, "id", new_int(id, &rc), &rc);
    return dump(root, rc, buf, cap, len);
}

/* {"result": result, "id": id}; takes ownership of result. */
static int dump_result(char *buf, size_t cap, size_t *len, int64_t id, json_t *result, int rc)
{
    json_t *root = new_container(json_object, &rc);

    add(root, "result", result, &rc);
    add(root, "id", new_int(id, &rc), &rc);
    return dump(root, rc, buf, cap, len);
}

/* ------------------------------------------------------------------------------------------------
 * Gateway side encoders
 * ----------------------------------------------------------------------------------------------*/

/* The params after fs and ino, per kind. */
static void encode_request_rest(json_t *p, const struct fusebridge_request *req, int *rc)
{
    switch (req->kind) {
    case FUSEBRIDGE_LOOKUP:
        add(p, NULL, new_string(req->name, rc), rc);
        break;
    case FUSEBRIDGE_OPEN:
        add(p, NULL, new_int(req->flags, rc), rc);
        break;
    case FUSEBRIDGE_READ:
        add(p, NULL, new_u64(req->fh, rc), rc);
        add(p, NULL, new_u64(req->offset, rc), rc);
        add(p, NULL, new_int(req->size, rc), rc);
        break;
    case FUSEBRIDGE_RELEASE:
        add(p, NULL, new_u64(req->fh, rc), rc);
        add(p, NULL, new_int(req->flags, rc), rc);
        break;
    default: /* GETATTR, READDIR: nothing after ino */
        break;
    }
}

/* RELEASE becomes the "close" notification: providers never answer it, so it carries no id. */
int codec_json_encode_request(char *buf, size_t cap, size_t *len, int64_t id, const char *fs,
                              const struct fusebridge_request *req)
{
    const struct method_info *info = method_by_kind(req->kind);
    int rc = 0;
    json_t *params;

    if (info == NULL)
        return -EINVAL;
    params = new_container(json_array, &rc);
    add(params, NULL, new_string(fs, &rc), &rc);
    add(params, NULL, new_u64(req->ino, &rc), &rc);
    encode_request_rest(params, req, &rc);
    return dump_call(buf, cap, len, info->name, params, !info->notification, id, rc);
}

int codec_json_encode_result_empty(char *buf, size_t cap, size_t *len, int64_t id)
{
    int rc = 0;
    json_t *result = new_container(json_object, &rc); /* before rc is read below */

    return dump_result(buf, cap, len, id, result, rc);
}

int codec_json_encode_add_filesystem_result(char *buf, size_t cap, size_t *len, int64_t id,
                                            const char *name)
{
    int rc = 0;
    json_t *result = new_container(json_object, &rc);

    add(result, "id", new_string(name, &rc), &rc);
    return dump_result(buf, cap, len, id, result, rc);
}

int codec_json_encode_error(char *buf, size_t cap, size_t *len, int64_t id, int status)
{
    return codec_json_encode_error_message(buf, cap, len, id, status,
                                           codec_json_status_message(status));
}

int codec_json_encode_error_message(char *buf, size_t cap, size_t *len, int64_t id, int status,
                                    const char *message)
{
    int rc = 0;
    json_t *root = new_container(json_object, &rc);
    json_t *error = new_container(json_object, &rc);

    add(error, "code", new_int(status, &rc), &rc);
    add(error, "message", new_string(message, &rc), &rc);
    add(root, "error", error, &rc);
    add(root, "id", new_int(id, &rc), &rc);
    return dump(root, rc, buf, cap, len);
}

/* ------------------------------------------------------------------------------------------------
 * Provider side encoders
 * ----------------------------------------------------------------------------------------------*/

int codec_json_encode_authenticate(char *buf, size_t cap, size_t *len, int64_t id,
                                   const char *username, const char *password)
{
    int rc = 0;
    json_t *params = new_container(json_array, &rc);
    json_t *credentials = new_container(json_object, &rc);

    add(credentials, "username", new_string(username, &rc), &rc);
    add(credentials, "password", new_string(password, &rc), &rc);
    add(params, NULL, new_string("username", &rc), &rc);
    add(params, NULL, credentials, &rc);
    return dump_call(buf, cap, len, "authenticate", params, true, id, rc);
}

int codec_json_encode_add_filesystem(char *buf, size_t cap, size_t *len, int64_t id,
                                     const char *name)
{
    int rc = 0;
    json_t *params = new_container(json_array, &rc);

    add(params, NULL, new_string(name, &rc), &rc);
    return dump_call(buf, cap, len, "add_filesystem", params, true, id, rc);
}

int codec_json_encode_filesystem_detached(char *buf, size_t cap, size_t *len, const char *name)
{
    int rc = 0;
    json_t *params = new_container(json_array, &rc);

    add(params, NULL, new_string(name, &rc), &rc);
    return dump_call(buf, cap, len, "filesystem_detached", params, false, 0, rc);
}

/* The protocol has no negative times; a file from before 1970 is sent as 0 rather than as a
 * message the gateway must reject. */
static json_int_t time_or_zero(time_t t)
{
    return t > 0 ? (json_int_t)t : 0;
}

/* The attribute members of st (but "inode") into attr; -EINVAL, with nothing added, for what JSON
 * cannot describe. */
static int attr_add(json_t *attr, const struct stat *st, int *rc)
{
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
        return -EINVAL;
    if (st->st_size < 0)
        return -EINVAL;
    add(attr, "mode", new_int(st->st_mode & CODEC_JSON_PERM_MASK, rc), rc);
    add(attr, "type", new_string(S_ISDIR(st->st_mode) ? "dir" : "file", rc), rc);
    add(attr, "size", new_int(st->st_size, rc), rc);
    add(attr, "atime", new_int(time_or_zero(st->st_atim.tv_sec), rc), rc);
    add(attr, "mtime", new_int(time_or_zero(st->st_mtim.tv_sec), rc), rc);
    add(attr, "ctime", new_int(time_or_zero(st->st_ctim.tv_sec), rc), rc);
    return 0;
}

int codec_json_encode_attr_result(char *buf, size_t cap, size_t *len, int64_t id,
                                  const struct stat *st)
{
    int rc = 0;
    json_t *attr = new_container(json_object, &rc);

    add(attr, "inode", new_u64(st->st_ino, &rc), &rc);
    if (attr_add(attr, st, &rc) != 0) {
        json_decref(attr);
        return -EINVAL;
    }
    return dump_result(buf, cap, len, id, attr, rc);
}

int codec_json_encode_open_result(char *buf, size_t cap, size_t *len, int64_t id, uint64_t handle)
{
    int rc = 0;
    json_t *result = new_container(json_object, &rc);

    add(result, "handle", new_u64(handle, &rc), &rc);
    return dump_result(buf, cap, len, id, result, rc);
}

/* Written by hand, in the shape jansson would write it: base64 needs no escaping, and making a
 * jansson string of a whole read only to dump it again cost more than reading the file. */
int codec_json_encode_read_result(char *buf, size_t cap, size_t *len, int64_t id, const void *data,
                                  size_t n)
{
    static const char head[] = "{\"result\":{\"data\":\"";
    char tail[96];
    int tail_len;
    size_t text, needed;

    /* No read comes near this; it keeps base64_encoded_size from wrapping. */
    if (n > SIZE_MAX / 2)
        return -ENOMEM;
    text = n > 0 ? base64_encoded_size(n) : 0;
    tail_len =
        snprintf(tail, sizeof(tail), "\",\"format\":\"%s\",\"count\":%zu},\"id\":%" PRId64 "}",
                 n > 0 ? "base64" : "identity", n, id);
    needed = sizeof(head) - 1 + text + (size_t)tail_len;
    *len = needed;
    if (needed > cap)
        return -ENOBUFS;
    memcpy(buf, head, sizeof(head) - 1);
    if (n > 0)
        base64_encode(data, n, buf + sizeof(head) - 1);
    memcpy(buf + sizeof(head) - 1 + text, tail, (size_t)tail_len);
    return 0;
}

int codec_json_encode_readdir_result(char *buf, size_t cap, size_t *len, int64_t id,
                                     const struct codec_json_dirent *entries, size_t count)
{
    int rc = 0;
    json_t *result = new_container(json_array, &rc);
    json_t *entry;
    size_t i;

    for (i = 0; i < count && rc == 0; i++) {
        entry = new_container(json_object, &rc);
        add(entry, "name", new_string(entries[i].name, &rc), &rc);
        add(entry, "inode", new_u64(entries[i].ino, &rc), &rc);
        /* An entry JSON cannot describe (attr_add adds nothing then) goes without attributes:
         * the gateway looks it up. */
        if (entries[i].attr && rc == 0)
            attr_add(entry, entries[i].attr, &rc);
        add(result, NULL, entry, &rc);
    }
    return dump_result(buf, cap, len, id, result, rc);
}
