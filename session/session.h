/* session: provider connections.
 *
 * Two parts, both public:
 *  - the JSON codec: pure functions from bytes to structs and back (no sockets, no FUSE); used by
 *    sessions, by the reference provider and by the tests and fuzzers;
 *  - the session hub: every live provider connection of the gateway, the libwebsockets protocol
 *    handlers that drive them, and their filesystems.
 */
#ifndef WEBFUSE_SESSION_H
#define WEBFUSE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fusebridge.h"

/* ------------------------------------------------------------------------------------------------
 * JSON codec ("webfuse-adapter-server" subprotocol)
 * ----------------------------------------------------------------------------------------------*/

#define CODEC_JSON_SUBPROTOCOL "webfuse-adapter-server"

/* Status codes of the JSON protocol. */
enum codec_json_status {
    CODEC_JSON_GOOD = 0,
    CODEC_JSON_BAD = 1,
    CODEC_JSON_BAD_NOTIMPLEMENTED = 2,
    CODEC_JSON_BAD_TIMEOUT = 3,
    CODEC_JSON_BAD_BUSY = 4,
    CODEC_JSON_BAD_FORMAT = 5,
    CODEC_JSON_BAD_NOENTRY = 101,
    CODEC_JSON_BAD_ACCESS_DENIED = 102,
};

/* Status code -> negative errno (GOOD -> 0, unknown codes -> -EIO). */
int codec_json_status_to_errno(int status);
/* Negative errno -> status code (0 -> GOOD, unmapped -> BAD). */
int codec_json_errno_to_status(int neg_errno);

enum codec_json_kind {
    CODEC_JSON_REQUEST,      /* method, params, id */
    CODEC_JSON_NOTIFICATION, /* method, params, no id */
    CODEC_JSON_RESULT,       /* result, id */
    CODEC_JSON_ERROR,        /* error object with integer code, id */
};

/* One parsed message; owns its parsed tree. */
struct codec_json_msg;

/* Parses one message. Returns 0 with *out owned by the caller, or -EBADMSG when the bytes are not
 * a JSON object of one of the four envelope shapes (floats for ids, missing params, ...). The
 * message may borrow from `data` (a read result's data string): keep `data` until
 * codec_json_msg_free. */
int codec_json_parse(const void *data, size_t len, struct codec_json_msg **out);
void codec_json_msg_free(struct codec_json_msg *msg);

enum codec_json_kind codec_json_msg_kind(const struct codec_json_msg *msg);
/* The id of a request, result or error; 0 for a notification. */
int64_t codec_json_msg_id(const struct codec_json_msg *msg);
/* The method of a request or notification (borrowed from msg), else NULL. */
const char *codec_json_msg_method(const struct codec_json_msg *msg);
/* The error code of an error response, else 0. */
int codec_json_msg_error_status(const struct codec_json_msg *msg);
/* The message of an error response (borrowed from msg), or NULL when it has none. */
const char *codec_json_msg_error_message(const struct codec_json_msg *msg);
/* The message the gateway sends with a status when it has nothing more to say ("no entry"). */
const char *codec_json_status_message(int status);

/* All decoders borrow strings from msg: valid until codec_json_msg_free. They return 0, or
 * -EBADMSG when the message does not have the expected shape or types. */

/* Gateway side: requests a provider sends. */
int codec_json_decode_authenticate(const struct codec_json_msg *msg, const char **type,
                                   const char **username, const char **password);
int codec_json_decode_add_filesystem(const struct codec_json_msg *msg, const char **name);

/* Gateway side: results of the gateway's own requests. */
/* lookup/getattr result -> st (st_ino from "inode" when present, else 0; st_mode type from
 * "type": unknown types are -EBADMSG; st_nlink 1 or 2; uid/gid 0). */
int codec_json_decode_attr(const struct codec_json_msg *msg, struct stat *st);
int codec_json_decode_open(const struct codec_json_msg *msg, uint64_t *handle);
/* Decodes "data" per "format" into buf; -EBADMSG if count differs from the decoded length or the
 * data does not fit into cap bytes. */
int codec_json_decode_read(const struct codec_json_msg *msg, void *buf, size_t cap, size_t *len);
/* Calls fn once per entry in order; stops and returns fn's value when it is negative. `attr` is
 * NULL unless the entry carries our extension's attributes (the members of a getattr result:
 * "type", "mode", "size", ...; its st_ino is the entry's inode); malformed ones are -EBADMSG. */
typedef int (*codec_json_dirent_fn)(void *user, const char *name, uint64_t ino,
                                    const struct stat *attr);
int codec_json_decode_readdir(const struct codec_json_msg *msg, codec_json_dirent_fn fn,
                              void *user);

/* Provider side: a request the gateway sent. *fs and req->name are borrowed from msg. RELEASE
 * comes from the "close" notification. Unknown methods and wrong params are -EBADMSG. */
int codec_json_decode_request(const struct codec_json_msg *msg, const char **fs,
                              struct fusebridge_request *req);

/* Encoders write one compact message into buf[0..cap) and set *len (no NUL counted). They return
 * 0, -ENOBUFS when cap is too small (*len is then the size needed), or -EINVAL when a string is
 * not valid UTF-8 and so cannot be sent in JSON. */

/* Gateway side. RELEASE encodes the "close" notification (no id). */
int codec_json_encode_request(char *buf, size_t cap, size_t *len, int64_t id, const char *fs,
                              const struct fusebridge_request *req);
int codec_json_encode_result_empty(char *buf, size_t cap, size_t *len, int64_t id);
int codec_json_encode_add_filesystem_result(char *buf, size_t cap, size_t *len, int64_t id,
                                            const char *name);
int codec_json_encode_error(char *buf, size_t cap, size_t *len, int64_t id, int status);
/* The same with a message of its own (UTF-8), saying more than the status: why a name was
 * refused. */
int codec_json_encode_error_message(char *buf, size_t cap, size_t *len, int64_t id, int status,
                                    const char *message);
/* Our extension: the notification {"method":"filesystem_detached","params":[NAME]} tells a
 * provider that an operator detached NAME; its session stays up. Old providers ignore it. */
int codec_json_encode_filesystem_detached(char *buf, size_t cap, size_t *len, const char *name);
/* Provider side: the name of a filesystem_detached notification. */
int codec_json_decode_filesystem_detached(const struct codec_json_msg *msg, const char **name);

/* Provider side. */
int codec_json_encode_authenticate(char *buf, size_t cap, size_t *len, int64_t id,
                                   const char *username, const char *password);
int codec_json_encode_add_filesystem(char *buf, size_t cap, size_t *len, int64_t id,
                                     const char *name);
/* Attributes from st: inode, mode (permission bits), type ("file"/"dir"), size, atime, mtime,
 * ctime. -EINVAL for a type that is neither a regular file nor a directory. */
int codec_json_encode_attr_result(char *buf, size_t cap, size_t *len, int64_t id,
                                  const struct stat *st);
int codec_json_encode_open_result(char *buf, size_t cap, size_t *len, int64_t id, uint64_t handle);
/* base64 for n > 0, "identity" with empty data for n == 0. */
int codec_json_encode_read_result(char *buf, size_t cap, size_t *len, int64_t id, const void *data,
                                  size_t n);
/* A readdir entry; with `attr` (may be NULL) it carries our extension's attribute members, unless
 * it is neither a regular file nor a directory (first-generation gateways ignore them). */
struct codec_json_dirent {
    const char *name;
    uint64_t ino;
    const struct stat *attr;
};
int codec_json_encode_readdir_result(char *buf, size_t cap, size_t *len, int64_t id,
                                     const struct codec_json_dirent *entries, size_t count);

/* ------------------------------------------------------------------------------------------------
 * base64 (RFC 4648, with padding), used by the JSON codec
 * ----------------------------------------------------------------------------------------------*/

/* Bytes needed to encode n bytes (no NUL). */
size_t base64_encoded_size(size_t n);
/* Writes base64_encoded_size(n) characters to out. */
void base64_encode(const void *data, size_t n, char *out);
/* Strict decode (padding required, no whitespace). Returns decoded length, or -EINVAL for bad
 * input, -ENOBUFS when it does not fit into cap. */
long base64_decode(const char *text, size_t n, void *out, size_t cap);

/* ------------------------------------------------------------------------------------------------
 * Session hub: the gateway's provider connections
 * ----------------------------------------------------------------------------------------------*/

struct lws_protocols;
struct session_hub;
struct auth_users;

/* Defaults of the limits below (a 0 in the config takes them). */
#define SESSION_DEFAULT_MAX_SESSIONS 64
#define SESSION_DEFAULT_MAX_FILESYSTEMS 64
#define SESSION_DEFAULT_MAX_PENDING 256
#define SESSION_DEFAULT_MAX_PATH 4096
#define SESSION_DEFAULT_IDLE_TIMEOUT_SEC 30
#define SESSION_DEFAULT_BUSY_POLL_US 200
/* Bytes of READs in flight to all providers together by default; past it further READs wait in
 * their mounts. Many streams at once then share a working set that fits the caches, instead of
 * each keeping its own read-ahead in flight. One stream (4 MiB of read-ahead) never reaches it. */
#define SESSION_DEFAULT_READ_BUDGET (8u * 1024 * 1024)
/* A READ unanswered this long (ms) stops counting against the budget: the budget is for data
 * about to arrive, and a slow provider (a distant one, or one that hangs) would otherwise hold
 * every other provider's reads back until it answers. */
#define SESSION_DEFAULT_SLOW_READ_MS 100
#define SESSION_DEFAULT_AUTH_HEADER "X-Auth-Token"
/* libwebsockets hands received data over in pieces of at most this size (the gateway reads its
 * sockets in buffers of it too): a whole answer to the largest read the kernel asks for (1 MiB)
 * comes in one piece and is decoded where it lies. The buffer is allocated per connection but
 * only touched as far as messages reach. */
#define SESSION_RX_BUFFER (1024 * 1024 + 4096)

/* A filesystem name the gateway accepts, and where it mounts (NULL: <mount_root>/<name>). */
struct session_fixed_fs {
    const char *name;
    const char *mountpoint;
};
#define SESSION_MAX_FIXED 64

struct session_hub_config {
    const char *mount_root; /* filesystems mount at <mount_root>/<name> */
    unsigned timeout_ms;    /* per provider request */
    size_t max_message;     /* largest message accepted from a provider, bytes */
    size_t max_sessions;    /* provider connections at once; more are closed with 1013 */
    size_t max_filesystems; /* filesystems one session may attach */
    /* Requests one session may have in flight; further kernel requests wait in their mount. */
    size_t max_pending;
    size_t max_path;          /* longest path sent to a webfuse2 provider; longer: ENAMETOOLONG */
    unsigned idle_timeout_ms; /* a connection that attached nothing by then is closed */
    /* After work for a provider that answers within this many µs, the loop polls that long
     * instead of sleeping (busy_poll.c); 0: never. */
    unsigned busy_poll_us;
    size_t read_budget; /* bytes of READs in flight to all providers together (read_budget.c) */
    unsigned slow_read_ms; /* a READ unanswered this long no longer counts against the budget */
    bool allow_other;   /* mounts are open to every user of the device, not only ours */
    /* NULL: anyone may attach any name. Else providers must authenticate as one of these users
     * and attach only the names listed for them. Borrowed: must outlive the hub. */
    const struct auth_users *users;
    const char *auth_header; /* webfuse2: the HTTP header with the token (NULL: the default) */
    /* With fixed_count > 0, only these names may be attached (others: -ENOENT), each at its
     * mount point. Borrowed: must outlive the hub. */
    const struct session_fixed_fs *fixed;
    size_t fixed_count;
};

/* Loop thread. `loop` must outlive the hub. Returns 0 or a negative errno. */
int session_hub_new(uv_loop_t *loop, const struct session_hub_config *config,
                    struct session_hub **out);

/* The libwebsockets protocols (terminated by a zeroed entry) that serve providers; the first is the
 * default for connections that ask for no subprotocol. Each protocol's `user` is the hub. */
const struct lws_protocols *session_hub_protocols(struct session_hub *hub);

/* Loop thread. Starts closing every session: providers get a close frame, mounts are unmounted.
 * `done` runs once no session is left (possibly before this returns). No new sessions are
 * accepted afterwards. */
void session_hub_shutdown(struct session_hub *hub, void (*done)(void *arg), void *arg);

/* Number of live sessions. */
size_t session_hub_count(const struct session_hub *hub);

/* Frees the hub; only after shutdown's `done`. */
void session_hub_free(struct session_hub *hub);

/* Loop thread: from now on, logins and attaches are checked against `users` (a reloaded users
 * file). Only for a hub made with users; sessions already logged in stay so, and are held to
 * the new list of names at their next attach. `users` is borrowed like config->users; the old
 * set may be freed once this returns (checks under way hold copies of what they need). */
void session_hub_set_users(struct session_hub *hub, const struct auth_users *users);

/* ---- observing and steering sessions (the admin API) -------------------------------------------
 * Loop thread only. Strings in the info structs are borrowed for the duration of the callback. */

struct session_info {
    uint64_t id;
    const char *remote;   /* peer address */
    const char *protocol; /* "json" or "webfuse2" */
    const char *user;     /* authenticated user, or NULL */
    /* "active"; "closing" while a close frame is due; "closed" once the connection is gone and
     * only its mounts are still draining */
    const char *state;
    int64_t connected_ms; /* Unix time, milliseconds */
    uint64_t requests;    /* requests answered (or failed) */
    uint64_t bytes_in;    /* message bytes received from the provider */
    uint64_t bytes_out;   /* message bytes sent to the provider */
    size_t filesystem_count;
};

struct session_fs_info {
    const char *name;
    const char *mountpoint;
    uint64_t session_id;
    const char *protocol;
    const char *state;      /* "mounting", "mounted" or "detaching" */
    int64_t mounted_ms;     /* Unix time, milliseconds; 0 while mounting */
    uint64_t open_files;    /* files opened and not yet released */
    uint64_t requests;      /* requests answered (or failed) */
    uint64_t bytes_read;    /* file bytes read through the mount */
    uint64_t bytes_written; /* file bytes written through the mount */
};

typedef void (*session_info_fn)(void *user, const struct session_info *info);
typedef void (*session_fs_info_fn)(void *user, const struct session_fs_info *info);

/* Calls fn for every live session (id order, oldest first). */
void session_hub_list(struct session_hub *hub, session_info_fn fn, void *user);
/* Calls fn for session `id`; -ENOENT when there is none. */
int session_hub_get(struct session_hub *hub, uint64_t id, session_info_fn fn, void *user);
/* Calls fn for every filesystem (of session `id` only, unless id is 0). */
void session_hub_list_fs(struct session_hub *hub, uint64_t id, session_fs_info_fn fn, void *user);
/* Calls fn for filesystem `name`; -ENOENT when there is none. */
int session_hub_get_fs(struct session_hub *hub, const char *name, session_fs_info_fn fn,
                       void *user);

/* Closes session `id` with a close frame carrying `reason` and unmounts its filesystems.
 * -ENOENT when there is no such session, -EALREADY when it is already closing. */
int session_hub_disconnect(struct session_hub *hub, uint64_t id, const char *reason);
/* Detaches filesystem `name`: its pending requests fail with EIO and it is unmounted. A JSON
 * provider is told with a "filesystem_detached" notification and keeps its session; a webfuse2
 * connection (one filesystem) is closed with `reason`. -ENOENT when there is no such filesystem,
 * -EALREADY when it is already detaching. */
int session_hub_detach(struct session_hub *hub, const char *name, const char *reason);

enum session_event_kind {
    SESSION_EVENT_CONNECT,       /* a provider connected */
    SESSION_EVENT_DISCONNECT,    /* its connection ended */
    SESSION_EVENT_ATTACH,        /* a filesystem was mounted */
    SESSION_EVENT_ATTACH_FAILED, /* a filesystem was refused or could not be mounted */
    SESSION_EVENT_DETACH,        /* a filesystem is gone */
    SESSION_EVENT_AUTH_FAILED,   /* authentication failed */
    SESSION_EVENT_ERROR,         /* a protocol error: malformed message, timeout, a limit */
    SESSION_EVENT_ATTACH_DENIED, /* the user may not attach that name, or is not authenticated */
};

struct session_event {
    enum session_event_kind kind;
    uint64_t session_id;
    const char *remote;
    const char *protocol;
    const char *fs_name;    /* ATTACH*, DETACH; else NULL */
    const char *mountpoint; /* ATTACH, DETACH; else NULL */
    const char *detail;     /* a human-readable reason, or NULL */
    int64_t time_ms;        /* when, Unix time in milliseconds: connected_ms, mounted_ms, ... */
};

/* Called on the loop thread for every event; must not block. One observer; NULL removes it. */
void session_hub_observe(struct session_hub *hub,
                         void (*fn)(void *user, const struct session_event *event), void *user);

/* Counters for /metrics, kept since start-up. */
#define SESSION_LATENCY_BUCKETS 12
/* Upper bounds of the latency histogram buckets, in seconds (the last is +Inf). */
extern const double session_latency_bounds[SESSION_LATENCY_BUCKETS];
#define SESSION_PROTOCOLS 2 /* 0 = json, 1 = webfuse2 */
#define SESSION_OP_KINDS (FUSEBRIDGE_UTIMENS + 1)

struct session_metrics {
    uint64_t requests[SESSION_PROTOCOLS][SESSION_OP_KINDS]; /* answered or failed */
    uint64_t errors[SESSION_PROTOCOLS][SESSION_OP_KINDS];   /* failed: error answer or timeout */
    uint64_t latency_count[SESSION_LATENCY_BUCKETS];        /* not cumulative */
    double latency_sum;                                     /* seconds */
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t sessions_total;
    uint64_t protocol_errors;
};

const struct session_metrics *session_hub_metrics(const struct session_hub *hub);
/* "json" / "webfuse2" for a protocol index, "lookup", "getattr", ... for an operation kind. */
const char *session_protocol_name(int protocol);
const char *session_op_name(enum fusebridge_kind kind);
/* Mounted filesystems right now. */
size_t session_hub_fs_count(const struct session_hub *hub);
/* The read budget right now: READ bytes at the providers, sessions whose READ waits for room. */
size_t session_hub_reads_in_flight(const struct session_hub *hub);
size_t session_hub_reads_waiting(const struct session_hub *hub);

/* A filesystem name is 1-64 characters of [A-Za-z0-9._-], not "." or "..". */
bool session_name_valid(const char *name);

/* ------------------------------------------------------------------------------------------------
 * webfuse2 codec ("webfuse2" subprotocol)
 *
 * The binary protocol of docs/webfuse2-protocol.md, for both sides: the gateway (service) encodes
 * requests and decodes responses; a provider decodes requests and encodes responses. Pure
 * functions: no allocation, no global state. Integers are big-endian on the wire; every 64-bit
 * value is kept whole.
 *
 * Decoders borrow: strings and bytes they return point into the caller's message (not
 * NUL-terminated, possibly containing NUL bytes: reject those before using one as a C string) and
 * stay valid as long as it does. Fields a message type does not carry are zero. Messages longer
 * than their fields are accepted (the rest is ignored).
 *
 * Encoders write one message into buf[0..cap) and set *len. They return 0, -ENOBUFS when cap is
 * too small (*len is then the size needed and buf is untouched, so cap 0 with buf NULL asks for the
 * size), or -EINVAL for a message that cannot be encoded (checked before the size).
 * ----------------------------------------------------------------------------------------------*/

#define CODEC_WF2_SUBPROTOCOL "webfuse2"

/* Every message starts with u32 id and u8 type. */
#define CODEC_WF2_HEADER_SIZE 5
/* A response's type is its request's type with this bit set; 0x80 alone means "unknown request". */
#define CODEC_WF2_RESPONSE 0x80
/* The handle that means "no open file". */
#define CODEC_WF2_HANDLE_NONE UINT64_MAX
/* rename flags */
#define CODEC_WF2_RENAME_NOREPLACE 1
#define CODEC_WF2_RENAME_EXCHANGE 2

/* Request types. A response carries (type | CODEC_WF2_RESPONSE). */
enum codec_wf2_type {
    CODEC_WF2_UNKNOWN = 0x00, /* answered by 0x80 */
    CODEC_WF2_ACCESS = 0x01,
    CODEC_WF2_GETATTR = 0x02,
    CODEC_WF2_READLINK = 0x03,
    CODEC_WF2_SYMLINK = 0x04,
    CODEC_WF2_LINK = 0x05,
    CODEC_WF2_RENAME = 0x06,
    CODEC_WF2_CHMOD = 0x07,
    CODEC_WF2_CHOWN = 0x08,
    CODEC_WF2_TRUNCATE = 0x09,
    CODEC_WF2_FSYNC = 0x0a,
    CODEC_WF2_OPEN = 0x0b,
    CODEC_WF2_MKNOD = 0x0c,
    CODEC_WF2_CREATE = 0x0d,
    CODEC_WF2_RELEASE = 0x0e,
    CODEC_WF2_UNLINK = 0x0f,
    CODEC_WF2_READ = 0x10,
    CODEC_WF2_WRITE = 0x11,
    CODEC_WF2_MKDIR = 0x12,
    CODEC_WF2_READDIR = 0x13,
    CODEC_WF2_RMDIR = 0x14,
    CODEC_WF2_STATFS = 0x15,
    CODEC_WF2_UTIMENS = 0x16,
    CODEC_WF2_GETCREDS = 0x17,
    /* Our extension (docs/protocols.md): a page of a directory's entries, each with its
     * attributes. Providers that do not know it answer 0x80, and the gateway falls back to
     * READDIR for that filesystem. */
    CODEC_WF2_READDIRPLUS = 0x18,
};

/* The last request type this codec knows the fields of. */
#define CODEC_WF2_TYPE_MAX CODEC_WF2_READDIRPLUS

/* "getattr", ... for a request or response type (with or without the response bit), for logs;
 * "unknown" for any other value. */
const char *codec_wf2_type_name(uint8_t type);

/* A string (UTF-8 path, link target, name, credentials) or bytes: pointer and length. */
struct codec_wf2_str {
    const char *ptr; /* may be NULL when len is 0 */
    size_t len;
};

struct codec_wf2_bytes {
    const void *ptr; /* may be NULL when len is 0 */
    size_t len;
};

struct codec_wf2_timestamp {
    uint64_t sec;
    uint32_t nsec; /* may be UTIME_NOW / UTIME_OMIT in utimens */
};

/* 88 bytes on the wire, in this order. */
struct codec_wf2_attr {
    uint64_t inode;
    uint64_t nlink;
    uint32_t mode; /* Linux st_mode: type bits and permissions */
    uint32_t uid;
    uint32_t gid;
    uint64_t rdev;
    uint64_t size;
    uint64_t blocks;
    struct codec_wf2_timestamp atime;
    struct codec_wf2_timestamp mtime;
    struct codec_wf2_timestamp ctime;
};

/* 64 bytes on the wire, in this order. */
struct codec_wf2_statfs {
    uint64_t bsize;
    uint64_t frsize;
    uint64_t blocks;
    uint64_t bfree;
    uint64_t bavail;
    uint64_t files;
    uint64_t ffree;
    uint64_t namemax;
};

/* One request. Each field lists the types that carry it; the others ignore it. */
struct codec_wf2_request {
    uint32_t id;
    uint8_t type;                /* enum codec_wf2_type; decoded: any value (see decode) */
    struct codec_wf2_str path;   /* all but SYMLINK, GETCREDS; LINK, RENAME: the old path */
    struct codec_wf2_str path2;  /* LINK, RENAME: the new path; SYMLINK: the link's own path */
    struct codec_wf2_str target; /* SYMLINK: what the link points to (sent first) */
    uint32_t mode;               /* CHMOD, MKNOD, CREATE (with type bits); MKDIR (permissions) */
    uint32_t uid;                /* CHOWN */
    uint32_t gid;                /* CHOWN */
    uint64_t rdev;               /* MKNOD */
    uint64_t size;               /* TRUNCATE: the new length */
    uint64_t offset;             /* READ, WRITE; READDIRPLUS: the cookie to continue from */
    uint32_t read_size;          /* READ: bytes asked for */
    uint32_t max_entries;        /* READDIRPLUS: the most entries the answer may carry */
    uint64_t handle;             /* TRUNCATE, FSYNC, RELEASE, READ, WRITE, UTIMENS */
    int32_t flags;               /* OPEN: Linux open(2) flags */
    uint8_t access_mode;         /* ACCESS: R_OK | W_OK | X_OK, or F_OK */
    uint8_t rename_flags;        /* RENAME: CODEC_WF2_RENAME_* */
    bool datasync;               /* FSYNC */
    struct codec_wf2_bytes data; /* WRITE; unknown types: the whole payload after the header */
    struct codec_wf2_timestamp atime; /* UTIMENS */
    struct codec_wf2_timestamp mtime; /* UTIMENS */
};

/* A validated list of names inside a decoded readdir response. Walk it (or a copy of it, to walk
 * again) with codec_wf2_names_next; the members are private. Names come as the provider sent
 * them: "." and "..", empty names and names with '/' or NUL bytes are the caller's to drop. */
struct codec_wf2_names {
    const unsigned char *next; /* the next name's length field */
    uint32_t left;             /* names not walked yet */
};

/* Sets *name to the next name and returns true, or returns false at the end of the list. */
bool codec_wf2_names_next(struct codec_wf2_names *names, struct codec_wf2_str *name);

/* One entry of a READDIRPLUS answer. */
struct codec_wf2_dirent {
    struct codec_wf2_str name;
    struct codec_wf2_attr attr;
};

/* A validated list of entries inside a decoded READDIRPLUS response, walked like the names. */
struct codec_wf2_dirents {
    const unsigned char *next; /* the next entry's name length field */
    uint32_t left;             /* entries not walked yet */
};

/* Sets *entry to the next entry and returns true, or returns false at the end of the list. */
bool codec_wf2_dirents_next(struct codec_wf2_dirents *entries, struct codec_wf2_dirent *entry);

/* One response. `type` is the request type answered (on the wire: type | 0x80); CODEC_WF2_UNKNOWN
 * is the 0x80 "unknown request" answer, with nothing after the header. */
struct codec_wf2_response {
    uint32_t id;
    uint8_t type;
    /* 0 = success, negative = -errno (anything after it is absent then), positive = bytes read or
     * written (READ, WRITE only). GETCREDS has no result on the wire (decoded as 0). */
    int32_t result;
    struct codec_wf2_attr attr;       /* GETATTR */
    uint64_t handle;                  /* OPEN, CREATE */
    struct codec_wf2_str target;      /* READLINK */
    struct codec_wf2_bytes data;      /* READ: result bytes (encoding: len must equal result > 0) */
    struct codec_wf2_statfs statfs;   /* STATFS */
    struct codec_wf2_str credentials; /* GETCREDS */
    /* READDIR. Encoding sends names[0..name_count). Decoding leaves names NULL and sets name_count
     * and name_list. */
    const struct codec_wf2_str *names;
    size_t name_count;
    struct codec_wf2_names name_list;
    /* READDIRPLUS: the cookie to ask the next page with, 0 when this page is the last. Encoding
     * sends entries[0..entry_count); decoding leaves entries NULL and sets entry_count and
     * entry_list. */
    uint64_t cookie;
    const struct codec_wf2_dirent *entries;
    size_t entry_count;
    struct codec_wf2_dirents entry_list;
};

/* The id and type of any message of at least CODEC_WF2_HEADER_SIZE bytes, whatever its type
 * (0, or -EBADMSG when shorter). How a receiver finds the pending request of a response, or the id
 * to answer an undecodable request with. */
int codec_wf2_decode_header(const void *data, size_t len, uint32_t *id, uint8_t *type);

/* Service side. Encodes req. Types 0x00 and 0x19-0x7f have no known fields: req->data is sent raw
 * after the header (to probe a provider). -EINVAL for a response type (>= 0x80), a string or data
 * over UINT32_MAX bytes, or a NULL pointer with a non-zero length. */
int codec_wf2_encode_request(void *buf, size_t cap, size_t *len,
                             const struct codec_wf2_request *req);

/* Service side. Decodes the response to a request of type `expected`. `size` is, for READ, the
 * bytes asked for, for WRITE, the bytes sent, and for READDIRPLUS, the most entries asked for; it
 * is ignored otherwise. Returns:
 *  0        decoded; resp->result may be a negative errno from the provider;
 *  -ENOSYS  the provider does not know the request: the message is 0x80, or (expected | 0x80) with
 *           nothing after the header (resp->id is set, resp->type is CODEC_WF2_UNKNOWN or
 *           `expected` respectively, resp->result is -ENOSYS);
 *  -EBADMSG protocol error: shorter than its fields, a string past the end, another response type,
 *           a positive result other than READ/WRITE, READ data longer than asked for or not
 *           matching the result, WRITE result above `size`, READDIRPLUS with more entries than
 *           `size` or with none but a cookie to go on; also any payload answering a type this
 *           codec does not know. resp->id is set when the header was complete.
 * -EINVAL when `expected` is a response type (>= 0x80). */
int codec_wf2_decode_response(const void *data, size_t len, uint8_t expected, uint32_t size,
                              struct codec_wf2_response *resp);

/* Provider side. Decodes a request. Returns 0; -ENOSYS for a type without known fields (0x00,
 * 0x19-0xff): answer it with a CODEC_WF2_UNKNOWN response of the same id (req->id and req->type
 * are set, req->data is the payload); or -EBADMSG when the message is shorter than its fields
 * (req->id and req->type are set when the header was complete). */
int codec_wf2_decode_request(const void *data, size_t len, struct codec_wf2_request *req);

/* Provider side. Encodes resp: result, then for result 0 the type's fields (READ: data when result
 * > 0). CODEC_WF2_UNKNOWN encodes the 5-byte 0x80 answer. -EINVAL for a type above
 * CODEC_WF2_TYPE_MAX, a positive result other than READ/WRITE, READ data whose length is not the
 * result, more than UINT32_MAX names, or a string as for codec_wf2_encode_request. */
int codec_wf2_encode_response(void *buf, size_t cap, size_t *len,
                              const struct codec_wf2_response *resp);

/* Provider side, for reading file data straight into the message: writes the head of a READ
 * response (id, type, result and, when result > 0, the data's length) into
 * buf[0..CODEC_WF2_READ_HEAD_SIZE) and returns its size. When result > 0 the caller has put the
 * `result` data bytes at buf + CODEC_WF2_READ_HEAD_SIZE, which is then where the head ends. */
#define CODEC_WF2_READ_HEAD_SIZE 13
size_t codec_wf2_encode_read_head(void *buf, uint32_t id, int32_t result);

#endif
