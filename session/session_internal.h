/* Private to session/: the structures shared by the hub, the generic session and the protocol
 * handlers. Nothing outside session/ includes this. */
#ifndef WEBFUSE_SESSION_INTERNAL_H
#define WEBFUSE_SESSION_INTERNAL_H

#include <libwebsockets.h>

#include "session.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Messages for the provider (answers to its own requests) waiting to be written. */
#define SESSION_MAX_CONTROL 64
/* How long a close frame may wait for the socket before the connection is dropped. */
#define SESSION_CLOSE_TIMEOUT_SEC 3
/* How often pending requests are checked against their deadline. */
#define SESSION_TICK_MS 100
/* buffers.c: spare buffers the hub keeps for messages in progress */
#define SESSION_SPARE_BUFFERS 8

struct session;

enum filesystem_state { FS_MOUNTING, FS_MOUNTED, FS_CLOSING };

struct filesystem {
    struct filesystem *next;
    struct session *session;
    struct fusebridge_mount *mount; /* owned by fusebridge; valid until on_closed */
    enum filesystem_state state;
    int64_t mounted_ms; /* Unix time, milliseconds */
    uint64_t open_files;
    uint64_t requests;
    uint64_t bytes_read;
    uint64_t bytes_written;
    bool ready;       /* its mount has queued ops that were not popped yet */
    int64_t reply_id; /* JSON: the add_filesystem request to answer once mounted */
    /* webfuse2: whether the provider answers READDIRPLUS (1), does not (-1), or is not known to
     * yet (0): until it says no, listings are asked with attributes. */
    int readdirplus;
    /* Why it was detached, for the history, when the event does not say it (static). */
    const char *detach_reason;
    bool gone_on_device;    /* unmounted (or its connection aborted) on the device */
    int mount_error;        /* why the mount itself failed (not detached before it was done) */
    const char *mountpoint; /* in the same allocation, after name */
    char name[];
};

/* What differs between the wire protocols. */
struct session_protocol {
    /* Encodes `req` with request id `id` into s->tx (after LWS_PRE) and sets *len. Returns 0,
     * -ENOBUFS with *len = bytes needed, or another negative errno to fail the op with. */
    int (*encode)(struct session *s, const struct filesystem *fs, uint32_t id,
                  const struct fusebridge_request *req, size_t *len);
    /* Whether the provider answers this kind of request (JSON's close is a notification). */
    bool (*expects_answer)(enum fusebridge_kind kind);
    /* A whole message from the provider. Returns 0, or a negative errno to close the
     * connection (the handler sets the close reason first). */
    int (*on_message)(struct session *s, const char *data, size_t len);
    /* A mount attempt of `fs` ended with `status` (0 or a negative errno). */
    void (*on_attached)(struct session *s, struct filesystem *fs, int status);
    /* The verification session_auth_start began ended: 0 authenticated, -EAGAIN refused
     * unchecked (too many attempts from the address at once), else -EACCES. */
    void (*on_authenticated)(struct session *s, int status);
    enum lws_write_protocol write_mode;
    int index;        /* 0 = json, 1 = webfuse2: the metrics' protocol index */
    const char *name; /* as shown to operators */
    /* Files are named by path and every operation is forwarded (webfuse2); otherwise by inode,
     * read-only (JSON). */
    bool path_based;
};

struct pending {
    uint32_t id; /* 0 = free slot */
    struct fusebridge_op *op;
    struct filesystem *fs;
    enum fusebridge_kind kind;
    /* The protocol's own name for what it sent, where one kind has two (webfuse2: READDIR or
     * READDIRPLUS for a listing). */
    uint8_t wire_type;
    uint64_t started;    /* uv_hrtime(), ns */
    uint64_t deadline;   /* uv_now() in ms */
    uint32_t read_bytes; /* READ: bytes asked, counted in the hub's reads in flight until slow */
    bool abandoned;      /* OPEN/CREATE failed to the kernel, waiting for a handle to release */
};

struct control_msg {
    struct control_msg *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then the message */
};

/* auth.c: where a session stands with authentication. */
struct session_auth_state {
    bool authenticated; /* from the start when no users file is configured */
    bool busy;          /* a verification is out */
    bool done_once;     /* JSON: authenticated once; a second authenticate is refused */
    uint32_t creds_id;  /* webfuse2: the getcreds request waiting for its answer, or 0 */
    int64_t reply_id;   /* JSON: the authenticate request to answer */
    char user[65];      /* who it authenticated as; "" before */
    char fs_name[256];  /* webfuse2: the filesystem to attach once authenticated */
};

/* A buffer of `cap` bytes, NULL until first needed. */
struct session_buffer {
    char *data;
    size_t cap;
};

struct session {
    struct session *prev;
    struct session *next;
    struct session_hub *hub;
    const struct session_protocol *protocol;
    struct lws *wsi;   /* NULL once the connection is closed */
    uv_timer_t tick;   /* deadlines of pending requests, and of the wait for writeable */
    uint64_t write_wanted_since; /* uv_now when a writeable callback was asked for; 0: none */
    uint64_t tick_last;          /* uv_now of the last tick (or of its start) */
    bool answers_slow; /* the last answer took longer than busy polling lasts */
    /* read_budget.c: while queued, the READ of read_fs that waits for room, and its size */
    const struct filesystem *read_fs;
    uint32_t read_need;
    uint64_t read_turn_since; /* uv_now when room for it came, 0 before */
    struct session *read_queue_prev;
    struct session *read_queue_next;
    uint64_t id;
    char remote[64];
    int64_t connected_ms; /* Unix time, milliseconds */
    uint64_t requests;
    uint64_t bytes_in;
    uint64_t bytes_out;

    struct filesystem *filesystems;
    size_t filesystem_count;
    struct filesystem *cursor; /* round robin over filesystems when sending */

    struct pending *pending; /* config.max_pending slots, made at the first request */
    size_t pending_count;
    uint32_t next_request_id;

    struct control_msg *control_head;
    struct control_msg *control_tail;
    size_t control_count;

    unsigned char *tx; /* LWS_PRE headroom + tx_cap bytes */
    size_t tx_cap;
    /* Held only while a message is in progress (buffers.c): */
    struct session_buffer rx; /* a message being reassembled from fragments */
    size_t rx_len;
    struct session_buffer scratch; /* decoded read data */

    bool closing;    /* a close frame is due at the next writeable callback */
    bool close_sent; /* ... and was written: the provider's own close ends the connection */
    enum lws_close_status close_status;
    char close_reason[124];

    struct session_auth_state auth;
    lws_sorted_usec_list_t idle; /* limits.c: closes a connection that never attaches */
    uint64_t idle_deadline_ms;   /* when it fires (uv_now), unless paused */
    uint64_t idle_left_ms;       /* while paused: what is left of the idle time */
    bool idle_paused;
    bool attached_once;
};

struct session_hub {
    uv_loop_t *loop;
    struct session_hub_config config;
    char *mount_root;
    struct lws_protocols protocols[3];
    struct session *sessions; /* oldest first */
    struct session *last;
    size_t count;
    struct session_metrics metrics;
    void (*observer)(void *user, const struct session_event *event);
    void *observer_user;
    uint64_t next_session_id;
    struct auth_throttle *throttle; /* with users: failures per address */
    struct auth_job *auth_jobs;     /* verifications not finished yet, oldest first */
    unsigned auth_running;          /* of them on the thread pool now */
    bool shutting_down;
    uv_idle_t busy;         /* busy_poll.c: active while the loop polls without sleeping ... */
    uint64_t busy_until;    /* ... until then (uv_hrtime) */
    bool busy_ready;        /* `busy` is initialized and not closed */
    size_t reads_in_flight; /* bytes of every session's READs sent and not answered */
    size_t listing_bytes;   /* held by the directory listings of every mount (fusebridge) */
    struct session *read_queue_head; /* read_budget.c: sessions waiting, oldest first */
    struct session *read_queue_tail;
    size_t read_reserved;  /* their read_need together */
    size_t read_waiting;   /* and how many they are */
    uv_timer_t read_timer; /* takes back a turn not used in time (one-shot, earliest first) */
    bool read_timer_ready; /* `read_timer` is initialized and not closed */
    struct session_buffer spare[SESSION_SPARE_BUFFERS]; /* buffers.c: last given back on top */
    size_t spare_count;
    void (*on_empty)(void *arg);
    void *on_empty_arg;
};

extern const struct session_protocol session_protocol_json;
extern const struct session_protocol session_protocol_webfuse2;

/* webfuse2_session.c: attaches the connection's filesystem, named after the URL path `uri`. */
void session_webfuse2_start(struct session *s, const char *uri);

/* busy_poll.c: work was done for `s` (a kernel request came, a request went, an answer came):
 * the loop polls without sleeping for a while, unless busy polling is off or the session's
 * provider answers slowly. */
void session_busy_poll(struct session *s);
/* An answer came after `latency_ns`: decides whether the session's provider is fast. */
void session_busy_poll_answered(struct session *s, uint64_t latency_ns);
/* Ends busy polling for good (shutting down). */
void session_busy_poll_close(struct session_hub *hub);

/* read_budget.c: READ bytes in flight to all providers together stay within
 * config.read_budget, handed out in turn to the sessions waiting. */
/* Bytes the READs of `s` must leave free besides those in flight (once per scan of its mounts). */
size_t session_read_ahead(const struct session *s);
/* Whether a READ of `size` bytes of `fs` may go now; `ahead` from session_read_ahead. */
bool session_read_fits(const struct session *s, size_t ahead, const struct filesystem *fs,
                       uint32_t size);
/* The READ of `fs` (`size` bytes) must wait: `s` queues for it, or keeps its place for it. */
void session_read_wait(struct session *s, const struct filesystem *fs, uint32_t size);
/* `s` has no READ waiting, or closes: it leaves the queue. */
void session_read_leave(struct session *s);
/* A READ went to a provider (leaving the queue if it was the reserved one) / was answered or
 * failed. */
void session_read_sent(struct session *s, const struct filesystem *fs, uint32_t size);
void session_read_ended(struct session_hub *hub, uint32_t size);
/* Shutting down: the turn timer is closed. */
void session_read_budget_close(struct session_hub *hub);

/* session.c */
struct session *session_open(struct session_hub *hub, struct lws *wsi,
                             const struct session_protocol *protocol);
void session_on_closed(struct session *s);
int session_on_receive(struct session *s, const void *in, size_t len);
int session_on_writeable(struct session *s);
/* The provider's close frame came: -1 ends the connection at once (it answers ours). */
int session_on_peer_close(struct session *s);
/* Asks for a writeable callback; one that does not come within the request timeout means the
 * provider stopped reading, and the connection is dropped. */
void session_want_writeable(struct session *s);
/* Closes the connection with a close frame at the next chance. */
void session_close(struct session *s, enum lws_close_status status, const char *reason);
/* Queues a message for the provider; takes nothing (copies data). Returns 0 or negative errno. */
int session_send_control(struct session *s, const char *data, size_t len);
/* Makes s->tx hold at least `need` bytes; -EMSGSIZE past the configured maximum. */
int session_tx_reserve(struct session *s, size_t need);
/* The pending request `id` (borrowed), or NULL when no such request waits. */
struct pending *session_pending_find(struct session *s, int64_t id);
/* Takes the pending request `id`: its op and filesystem; -ENOENT when no such request waits. */
int session_take_pending(struct session *s, int64_t id, struct fusebridge_op **op,
                         struct filesystem **fs);

/* Counts a finished provider request of `fs`: error is 0 or a negative errno, bytes the file
 * bytes it moved (READ, WRITE). Protocols call it for every answer they decode. */
void session_account(struct session *s, struct filesystem *fs, enum fusebridge_kind kind, int error,
                     size_t bytes);
/* Tells the hub's observer that `kind` happened now; fs_name and mountpoint may be NULL. */
void session_emit(struct session *s, enum session_event_kind kind, const char *fs_name,
                  const char *mountpoint, const char *detail);
/* session_emit of an event at a time already shown elsewhere (connected_ms, mounted_ms), so the
 * history and the live listing agree. */
void session_emit_at(struct session *s, enum session_event_kind kind, int64_t time_ms,
                     const char *fs_name, const char *mountpoint, const char *detail);
/* The wall clock as Unix time in milliseconds. */
int64_t session_now_ms(void);
/* Tells a JSON provider that its filesystem `name` is detached (the filesystem_detached
 * notification; old providers ignore it, so it cannot break them). */
void session_tell_detached(struct session *s, const char *name);
/* Fails what waits for `fs` and unmounts it; the filesystem is freed when the mount is gone. */
void session_detach_fs(struct filesystem *fs);
/* Makes s->scratch hold at least `need` bytes, until the message is handled. */
int session_scratch_reserve(struct session *s, size_t need);

/* buffers.c */
/* Makes *buf (with `headroom` bytes before its *cap) hold `need` bytes, growing it by doubling,
 * to at most `max`; -EMSGSIZE beyond. */
int session_buffer_grow(void **buf, size_t *cap, size_t need, size_t headroom, size_t max);
/* Makes `b` hold `need` bytes (at most `max`), taking a spare of the hub if it has none. */
int session_buffer_reserve(struct session_hub *hub, struct session_buffer *b, size_t need,
                           size_t max);
/* The message is handled: `b` goes back to the hub's spares (or is freed) and is empty. */
void session_buffer_release(struct session_hub *hub, struct session_buffer *b);
/* Frees the spares (the hub goes). */
void session_buffers_free(struct session_hub *hub);

/* Attaches a filesystem: validates the name, checks the user may attach it, reserves it and
 * starts mounting. `reply_id` is kept for the protocol. Returns the filesystem, or NULL with
 * *error set (-EINVAL bad name, -EACCES not authenticated, -EPERM not the user's name, -EEXIST
 * taken, -EMFILE too many, -ESHUTDOWN, -ENOMEM). Completion: protocol's on_attached. */
struct filesystem *session_attach(struct session *s, const char *name, int64_t reply_id,
                                  int *error);

/* auth.c (see docs/design.md, "Authentication"). */
/* Hub set-up and shutdown: the throttle; cancels verifications that have not started. */
int session_auth_hub_init(struct session_hub *hub);
void session_auth_hub_shutdown(struct session_hub *hub);
void session_auth_hub_free(struct session_hub *hub);
/* A new session: authenticated from the start unless users are configured. */
void session_auth_open(struct session *s);
/* Whether s may attach `name`: 0, -EACCES (not authenticated) or -EPERM (not its name). */
int session_auth_may_attach(struct session *s, const char *name);
/* JSON authenticate: checks the credentials off the loop thread; protocol->on_authenticated
 * follows (unless the session ends first). */
void session_auth_start(struct session *s, const char *user, const char *password);
/* webfuse2 with users configured: takes the token from the upgrade request's header, or asks the
 * provider with getcreds. Call from the established callback (headers are still there). */
void session_auth_webfuse2(struct session *s);
/* A login of s is refused for `detail`: one log line (with the filesystem when the protocol
 * named it before the login) and one auth_failed event. */
void session_auth_failed(struct session *s, const char *detail);
/* webfuse2: the answer to our getcreds request (true when `data` was that answer). */
bool session_auth_on_creds(struct session *s, uint32_t id, const char *data, size_t len);

/* limits.c */
/* A new connection: false (and the connection is closing) when the sessions limit is reached;
 * else the idle timer starts. */
bool session_limits_admit(struct session *s);
/* A login of s waits for the gateway (throttle, password check): the idle timer stands still
 * until session_limits_resume_idle, which goes on with the time that was left. */
void session_limits_pause_idle(struct session *s);
void session_limits_resume_idle(struct session *s);
/* A filesystem of s was mounted: the idle timer stops for good. */
void session_limits_attached(struct session *s);
/* The connection is gone. */
void session_limits_closed(struct session *s);
/* -ENAMETOOLONG when a path of `req` is longer than the configured maximum, else 0. */
int session_limits_check_paths(const struct session *s, const struct fusebridge_request *req);

/* hub.c */
bool session_hub_name_taken(const struct session_hub *hub, const char *name);
/* Whether a mount of `name` that is still ending made its mount point: a new mount there takes
 * over removing it, which the old one cannot do while the new one is on it. */
bool session_hub_mountpoint_made(const struct session_hub *hub, const char *name);
void session_hub_remove(struct session_hub *hub, struct session *s);

#endif
