/* The JSON protocol ("webfuse-adapter-server") on top of a session: the provider's requests
 * (authenticate, add_filesystem) and the answers to the gateway's requests. */
#include "session_internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* The largest answer to one of the provider's own requests. */
#define JSON_CONTROL_MAX 512

static bool json_expects_answer(enum fusebridge_kind kind)
{
    return kind != FUSEBRIDGE_RELEASE; /* "close" is a notification */
}

static int json_encode(struct session *s, const struct filesystem *fs, uint32_t id,
                       const struct fusebridge_request *req, size_t *len)
{
    return codec_json_encode_request((char *)s->tx + LWS_PRE, s->tx_cap, len, id, fs->name, req);
}

/* ---- answering the provider -------------------------------------------------------------------
 */

/* An error answer; `message` says more than the status, or is NULL. */
static void json_send_error_message(struct session *s, int64_t id, int status, const char *message)
{
    char buf[JSON_CONTROL_MAX];
    size_t len;
    if (!message)
        message = codec_json_status_message(status);
    if (codec_json_encode_error_message(buf, sizeof(buf), &len, id, status, message) == 0 &&
        session_send_control(s, buf, len) != 0)
        session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many requests");
}

static void json_send_error(struct session *s, int64_t id, int status)
{
    json_send_error_message(s, id, status, NULL);
}

static void json_send_empty_result(struct session *s, int64_t id)
{
    char buf[JSON_CONTROL_MAX];
    size_t len;
    if (codec_json_encode_result_empty(buf, sizeof(buf), &len, id) == 0 &&
        session_send_control(s, buf, len) != 0)
        session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many requests");
}

static void json_on_attached(struct session *s, struct filesystem *fs, int status)
{
    if (!s->wsi)
        return;
    if (status != 0) {
        char why[160];
        snprintf(why, sizeof(why), "cannot mount %s: %s", fs->name, fusebridge_mount_error(status));
        json_send_error_message(s, fs->reply_id, CODEC_JSON_BAD, why);
        return;
    }
    char buf[JSON_CONTROL_MAX];
    size_t len;
    if (codec_json_encode_add_filesystem_result(buf, sizeof(buf), &len, fs->reply_id, fs->name) ==
            0 &&
        session_send_control(s, buf, len) != 0)
        session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many requests");
}

static int attach_error_status(int error)
{
    switch (error) {
    case -EINVAL:
        return CODEC_JSON_BAD_FORMAT;
    case -EMFILE:
        return CODEC_JSON_BAD_BUSY;
    case -EACCES:
    case -EPERM:
        return CODEC_JSON_BAD_ACCESS_DENIED;
    case -ENOENT:
        return CODEC_JSON_BAD_NOENTRY;
    default:
        return CODEC_JSON_BAD;
    }
}

static void json_add_filesystem(struct session *s, const struct codec_json_msg *msg)
{
    int64_t id = codec_json_msg_id(msg);
    const char *name;
    if (codec_json_decode_add_filesystem(msg, &name) != 0) {
        json_send_error(s, id, CODEC_JSON_BAD_FORMAT);
        return;
    }
    int error;
    if (session_attach(s, name, id, &error))
        return; /* answered in json_on_attached */
    char why[120];
    if (error == -EACCES)
        snprintf(why, sizeof(why), "not authenticated");
    else if (error == -EPERM)
        snprintf(why, sizeof(why), "user \"%s\" may not attach it", s->auth.user);
    else if (error == -ENOENT)
        snprintf(why, sizeof(why), "not a filesystem this gateway accepts");
    else if (error == -EMFILE)
        snprintf(why, sizeof(why), "too many filesystems (limit %zu)",
                 s->hub->config.max_filesystems);
    else if (error == -EEXIST)
        snprintf(why, sizeof(why), "filesystem name \"%.64s\" is taken", name);
    else if (error == -EINVAL)
        snprintf(why, sizeof(why), "invalid filesystem name");
    else
        snprintf(why, sizeof(why), "%s", strerror(-error));
    log_warn("session %llu: refused filesystem \"%.64s\" (remote %s): %s",
             (unsigned long long)s->id, name, s->remote, why);
    bool denied = error == -EACCES || error == -EPERM || error == -ENOENT;
    session_emit(s, denied ? SESSION_EVENT_ATTACH_DENIED : SESSION_EVENT_ATTACH_FAILED, name, NULL,
                 why);
    json_send_error_message(s, id, attach_error_status(error), why);
}

static void json_authenticate(struct session *s, const struct codec_json_msg *msg)
{
    int64_t id = codec_json_msg_id(msg);
    const char *type, *username, *password;
    if (codec_json_decode_authenticate(msg, &type, &username, &password) != 0) {
        json_send_error(s, id, CODEC_JSON_BAD_FORMAT);
        return;
    }
    if (!s->hub->config.users) {
        /* No authentication is configured: every session is authenticated from the start. */
        json_send_empty_result(s, id);
        return;
    }
    if (strcmp(type, "username") != 0) {
        char detail[80];
        snprintf(detail, sizeof(detail), "unknown credentials type \"%.32s\"", type);
        session_auth_failed(s, detail);
        json_send_error(s, id, CODEC_JSON_BAD_ACCESS_DENIED);
        return;
    }
    if (s->auth.busy) {
        json_send_error(s, id, CODEC_JSON_BAD_BUSY); /* one check at a time */
        return;
    }
    if (s->auth.done_once) {
        /* Who a session is does not change while it has filesystems attached. */
        log_warn("session %llu: second authenticate refused", (unsigned long long)s->id);
        json_send_error(s, id, CODEC_JSON_BAD);
        return;
    }
    s->auth.reply_id = id;
    session_auth_start(s, username, password); /* answered in json_on_authenticated */
}

static void json_on_authenticated(struct session *s, int status)
{
    if (status == 0)
        json_send_empty_result(s, s->auth.reply_id);
    else /* -EAGAIN: too many attempts from the address at once; it may try again later */
        json_send_error(s, s->auth.reply_id,
                        status == -EAGAIN ? CODEC_JSON_BAD_BUSY : CODEC_JSON_BAD_ACCESS_DENIED);
}

static void json_on_request(struct session *s, const struct codec_json_msg *msg)
{
    const char *method = codec_json_msg_method(msg);
    if (strcmp(method, "add_filesystem") == 0) {
        json_add_filesystem(s, msg);
    } else if (strcmp(method, "authenticate") == 0) {
        json_authenticate(s, msg);
    } else {
        log_warn("session %llu: unknown method \"%.32s\"", (unsigned long long)s->id, method);
        json_send_error(s, codec_json_msg_id(msg), CODEC_JSON_BAD_NOTIMPLEMENTED);
    }
}

/* ---- answers to the gateway's requests --------------------------------------------------------
 */

/* Attributes come without owner: files belong to whoever runs the gateway. */
static void attr_own(struct stat *st)
{
    st->st_uid = geteuid();
    st->st_gid = getegid();
}

/* The decoders below fill `answer` from a result message; each returns 0 or -EIO for a result
 * that does not have the shape its request asked for. */

static int json_decode_entry(struct session *s, const struct codec_json_msg *msg,
                             struct fusebridge_answer *answer)
{
    (void)s;
    /* Inode 1 is the root; another entry claiming it would make a directory loop. */
    if (codec_json_decode_attr(msg, &answer->attr) != 0 ||
        answer->attr.st_ino <= FUSEBRIDGE_ROOT_INODE)
        return -EIO;
    attr_own(&answer->attr);
    return 0;
}

static int json_decode_attr(struct session *s, const struct codec_json_msg *msg,
                            struct fusebridge_answer *answer)
{
    (void)s;
    if (codec_json_decode_attr(msg, &answer->attr) != 0)
        return -EIO;
    attr_own(&answer->attr);
    return 0;
}

static int json_decode_open(struct session *s, const struct codec_json_msg *msg,
                            struct fusebridge_answer *answer)
{
    (void)s;
    return codec_json_decode_open(msg, &answer->fh) == 0 ? 0 : -EIO;
}

static int json_decode_read(struct session *s, const struct codec_json_msg *msg,
                            struct fusebridge_answer *answer)
{
    if (session_scratch_reserve(s, answer->len) != 0 ||
        codec_json_decode_read(msg, s->scratch.data, answer->len, &answer->len) != 0)
        return -EIO;
    answer->data = s->scratch.data;
    return 0;
}

static int dirent_add(void *user, const char *name, uint64_t ino, const struct stat *attr)
{
    if (ino == 0)
        return 0; /* readdir(3) callers take inode 0 as a deleted entry */
    /* Attributes (our extension) spare the kernel a lookup of the entry; an entry claiming the
     * root's inode would make a directory loop, so it is looked up and refused like any other. */
    struct stat st;
    const struct stat *kept = NULL;
    if (attr && ino > FUSEBRIDGE_ROOT_INODE) {
        st = *attr;
        attr_own(&st);
        kept = &st;
    }
    int rc = fusebridge_readdir_add(user, name, ino, kept);
    return rc == -EINVAL ? 0 : rc; /* a name that cannot be an entry is left out */
}

/* Answers `op` from a result message; returns 0 when answered, else the error to fail it with. */
static int json_answer(struct session *s, struct fusebridge_op *op,
                       const struct codec_json_msg *msg, size_t *bytes)
{
    const struct fusebridge_request *req = fusebridge_op_request(op);
    struct fusebridge_answer answer = {.len = req->size};
    int rc;
    switch (req->kind) {
    case FUSEBRIDGE_READDIR:
        rc = codec_json_decode_readdir(msg, dirent_add, op);
        if (rc != 0)
            return rc == -EBADMSG ? -EIO : rc; /* else too many entries, or out of memory */
        fusebridge_readdir_done(op);
        return 0;
    case FUSEBRIDGE_LOOKUP:
        rc = json_decode_entry(s, msg, &answer);
        break;
    case FUSEBRIDGE_GETATTR:
        rc = json_decode_attr(s, msg, &answer);
        break;
    case FUSEBRIDGE_OPEN:
        rc = json_decode_open(s, msg, &answer);
        break;
    case FUSEBRIDGE_READ:
        rc = json_decode_read(s, msg, &answer);
        *bytes = answer.len;
        break;
    default: /* RELEASE is a notification; nothing else is ever sent over JSON */
        rc = -EIO;
        break;
    }
    if (rc == 0)
        fusebridge_op_answer(op, &answer);
    return rc;
}

static void json_on_answer(struct session *s, const struct codec_json_msg *msg)
{
    struct fusebridge_op *op;
    struct filesystem *fs;
    int64_t id = codec_json_msg_id(msg);
    if (session_take_pending(s, id, &op, &fs) != 0) {
        log_debug("session %llu: dropping answer with unknown id %lld", (unsigned long long)s->id,
                  (long long)id);
        return;
    }
    enum fusebridge_kind kind = fusebridge_op_request(op)->kind;
    size_t bytes = 0;
    int error;
    if (codec_json_msg_kind(msg) == CODEC_JSON_ERROR) {
        error = codec_json_status_to_errno(codec_json_msg_error_status(msg));
        /* An error that says GOOD is still an error: never let it reach the kernel as success. */
        if (error == 0)
            error = -EIO;
    } else {
        error = json_answer(s, op, msg, &bytes);
    }
    session_account(s, fs, kind, error, bytes);
    if (error != 0)
        fusebridge_reply_error(op, error);
}

static int json_on_message(struct session *s, const char *data, size_t len)
{
    struct codec_json_msg *msg;
    if (codec_json_parse(data, len, &msg) != 0) {
        /* Without an id nothing can be answered; a provider that sends garbage is broken. */
        log_warn("session %llu: malformed message from %s", (unsigned long long)s->id, s->remote);
        session_emit(s, SESSION_EVENT_ERROR, NULL, NULL, "malformed JSON message");
        static const char reason[] = "malformed JSON message";
        lws_close_reason(s->wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD, (unsigned char *)reason,
                         sizeof(reason) - 1);
        return -EBADMSG;
    }
    switch (codec_json_msg_kind(msg)) {
    case CODEC_JSON_REQUEST:
        json_on_request(s, msg);
        break;
    case CODEC_JSON_NOTIFICATION:
        log_debug("session %llu: ignoring notification \"%.32s\"", (unsigned long long)s->id,
                  codec_json_msg_method(msg));
        break;
    case CODEC_JSON_RESULT:
    case CODEC_JSON_ERROR:
        json_on_answer(s, msg);
        break;
    }
    codec_json_msg_free(msg);
    return 0;
}

const struct session_protocol session_protocol_json = {
    .encode = json_encode,
    .expects_answer = json_expects_answer,
    .on_message = json_on_message,
    .on_attached = json_on_attached,
    .on_authenticated = json_on_authenticated,
    .write_mode = LWS_WRITE_TEXT,
    .index = 0,
    .name = "json",
};
