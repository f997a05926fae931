/* provider: what the provider's own files share; nothing outside provider/ includes this.
 *
 * Layers, bottom up, each knowing only the ones below it:
 *  - export.c: one directory served by inode number for the JSON protocol (read-only);
 *  - tree.c: one directory served by path for webfuse2 (read-write unless --read-only), every
 *    path resolved with openat2(RESOLVE_BENEATH) so nothing outside the directory is reached;
 *  - json.c, webfuse2.c: the wire protocols, each a `struct provider_protocol`;
 *  - connection.c: the libwebsockets client, reassembly, the bounded outgoing queue,
 *    reconnecting, signals, and the provider object's life (provider_new/run/free);
 *  - util.c: URL parsing, name and UTF-8 checks;
 *  - pool.c: worker threads for the preads of webfuse2 reads.
 * Everything else runs on the one thread of the lws service loop; file system calls block it for
 * one local system call at a time, which is what a provider is for. Reads, which move the most
 * bytes, go to the pool and are answered in the order they finish.
 */
#ifndef WEBFUSE_PROVIDER_INTERNAL_H
#define WEBFUSE_PROVIDER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include <libwebsockets.h>

#include "provider.h"
#include "session.h"

/* Largest message in either direction. Incoming fragments are reassembled up to this size; a
 * larger message closes the connection (1009). Outgoing answers that would be larger (a huge
 * directory) are answered with an error instead. */
#define PROVIDER_MAX_MESSAGE (16u * 1024 * 1024)
/* Largest read answered at once; a longer request gets a short read. Above what gateways ask
 * (libfuse: 128 KiB; old JSON gateways: 1 MiB). */
#define PROVIDER_MAX_READ (1024u * 1024)
/* Reads up to this size are answered on the connection's thread when the page cache holds the
 * data: handing a small copy to a worker and back costs more than the copy. Files opened for
 * reading have this much of their start asked from the disk at once, so that a small file's
 * first read finds it there. */
#define PROVIDER_INLINE_READ (128u * 1024)

/* ------------------------------------------------------------------------------------------------
 * util.c
 * ----------------------------------------------------------------------------------------------*/

/* Strict UTF-8 of a NUL-terminated string (no overlong forms, no surrogates, nothing above
 * U+10FFFF). */
bool provider_utf8_valid(const char *text);
/* pread/pwrite of `size` bytes at `offset`, retried until done, end of file or an error. Returns
 * the bytes moved, or a negative errno when the first attempt failed. */
long provider_io_full(int fd, void *buf, size_t size, uint64_t offset, bool write);
/* Like a read with provider_io_full, from the page cache only: -EAGAIN when the disk would have
 * to be waited for (or the file system cannot tell). */
long provider_read_cached(int fd, void *buf, size_t size, uint64_t offset);

/* ------------------------------------------------------------------------------------------------
 * export.c: one directory by inode number (JSON protocol), read-only
 * ----------------------------------------------------------------------------------------------*/

/* Files one export keeps open for the gateway at once; more opens fail with EMFILE. */
#define EXPORT_MAX_HANDLES 1024u

struct export;

/* Called by export_readdir for each listed entry with its attributes (st_ino: `ino`); a negative
 * return stops the listing. */
typedef int (*export_entry_fn)(void *user, const char *name, uint64_t ino, const struct stat *st);

/* Opens `dir` (borrowed, as is `name`; both must outlive the export). */
int export_new(const char *name, const char *dir, struct export **out);
void export_free(struct export *exp);
const char *export_name(const struct export *exp);
const char *export_dir(const struct export *exp);
/* Closes every handle the gateway holds (its mount is gone). */
void export_close_handles(struct export *exp);

/* Every call returns 0 or a negative errno. On success st->st_ino is the provider inode. */
int export_lookup(struct export *exp, uint64_t parent, const char *name, struct stat *st);
int export_getattr(struct export *exp, uint64_t pino, struct stat *st);
/* Lists directory `pino` without "." and "..", and without what is not served. */
int export_readdir(struct export *exp, uint64_t pino, export_entry_fn fn, void *user);
/* Read-only opens of regular files only (-EROFS for write access or O_TRUNC). */
int export_open(struct export *exp, uint64_t pino, int flags, uint64_t *handle);
/* Reads up to `size` bytes at `offset` into buf; fewer only at end of file. */
int export_read(struct export *exp, uint64_t pino, uint64_t handle, uint64_t offset, void *buf,
                size_t size, size_t *out);
int export_release(struct export *exp, uint64_t pino, uint64_t handle);

/* ------------------------------------------------------------------------------------------------
 * tree.c: one directory by path (webfuse2)
 * ----------------------------------------------------------------------------------------------*/

/* Files the gateway may hold open at once; more opens fail with EMFILE. */
#define TREE_MAX_HANDLES 4096u

struct tree;

/* A path as it came from the wire: not NUL-terminated, may contain anything. */
struct tree_path {
    const char *ptr;
    size_t len;
};

/* Opens `dir` (borrowed; must outlive the tree). Fails with -ENOSYS when the kernel has no
 * openat2 (serving would then be unsafe). */
int tree_new(const char *dir, bool read_only, struct tree **out);
void tree_free(struct tree *tree);
const char *tree_dir(const struct tree *tree);
bool tree_read_only(const struct tree *tree);
/* Closes every handle the gateway holds (the connection is gone). */
void tree_close_handles(struct tree *tree);

/* Every call returns 0 or a negative errno (read and write: the byte count). Paths are absolute
 * within the tree ("/", "/dir/name"); one that is not, or that contains NUL, "." or "..", is
 * -EINVAL; one that leads out of the tree through a symlink is -EACCES. In a read-only tree every
 * modifying call is -EROFS. A handle of CODEC_WF2_HANDLE_NONE means "by path". */
int tree_access(struct tree *tree, struct tree_path path, int mask);
int tree_getattr(struct tree *tree, struct tree_path path, struct stat *st);
/* Copies the link's text (not NUL-terminated) into buf[0..cap) and sets *len. */
int tree_readlink(struct tree *tree, struct tree_path path, char *buf, size_t cap, size_t *len);
int tree_symlink(struct tree *tree, struct tree_path target, struct tree_path linkpath);
int tree_link(struct tree *tree, struct tree_path from, struct tree_path to);
int tree_rename(struct tree *tree, struct tree_path from, struct tree_path to, unsigned flags);
int tree_chmod(struct tree *tree, struct tree_path path, uint32_t mode);
int tree_chown(struct tree *tree, struct tree_path path, uint32_t uid, uint32_t gid);
int tree_truncate(struct tree *tree, struct tree_path path, uint64_t size, uint64_t handle);
int tree_fsync(struct tree *tree, struct tree_path path, bool datasync, uint64_t handle);
int tree_open(struct tree *tree, struct tree_path path, int flags, uint64_t *handle);
int tree_mknod(struct tree *tree, struct tree_path path, uint32_t mode, uint64_t rdev);
int tree_create(struct tree *tree, struct tree_path path, uint32_t mode, uint64_t *handle);
int tree_release(struct tree *tree, uint64_t handle);
int tree_unlink(struct tree *tree, struct tree_path path);
/* A read of `size` bytes at `offset`, to be done with pread on any thread: begin gives the
 * descriptor, which stays open until tree_read_end even when the gateway releases the handle or
 * the connection goes meanwhile. Both on the loop thread. */
struct tree_read {
    int fd;
    int slot; /* the handle's slot, or -1 for a descriptor opened by path (end closes it) */
};
int tree_read_begin(struct tree *tree, struct tree_path path, uint64_t handle, uint64_t offset,
                    size_t size, struct tree_read *read);
void tree_read_end(struct tree *tree, struct tree_read *read);
long tree_write(struct tree *tree, struct tree_path path, uint64_t handle, uint64_t offset,
                const void *data, size_t size);
int tree_mkdir(struct tree *tree, struct tree_path path, uint32_t mode);
int tree_rmdir(struct tree *tree, struct tree_path path);
/* Calls fn for each entry but "." and ".."; stops with fn's negative value. */
typedef int (*tree_entry_fn)(void *user, const char *name);
int tree_readdir(struct tree *tree, struct tree_path path, tree_entry_fn fn, void *user);
/* Calls fn with each entry but "." and ".." and its attributes (lstat), from `cookie` on (0: the
 * start). fn returns 0 to go on, 1 when it has no room for this entry, or a negative errno to
 * stop. *next is then the cookie to go on from this entry, or 0 when the listing is complete. */
typedef int (*tree_dirent_fn)(void *user, const char *name, const struct stat *st);
int tree_readdirplus(struct tree *tree, struct tree_path path, uint64_t cookie, tree_dirent_fn fn,
                     void *user, uint64_t *next);
int tree_statfs(struct tree *tree, struct statvfs *st);
/* tv_nsec may be UTIME_NOW or UTIME_OMIT. */
int tree_utimens(struct tree *tree, struct tree_path path, const struct timespec times[2],
                 uint64_t handle);

/* ------------------------------------------------------------------------------------------------
 * pool.c: blocking file reads on worker threads
 * ----------------------------------------------------------------------------------------------*/

/* Worker threads; reads from the page cache are copies, so a few keep both the disk and the
 * connection busy. */
#define POOL_THREADS 4
/* Jobs submitted and not yet drained (each holds one answer of up to PROVIDER_MAX_READ bytes);
 * beyond this, a read is done on the loop thread. */
#define POOL_MAX_JOBS 32

struct provider;
struct pool;

/* One piece of blocking work; embedded in the caller's own struct. */
struct pool_job {
    struct pool_job *next;
    void (*run)(struct pool_job *job); /* a worker thread */
    /* The loop thread, once: the job ran, or (cancelled) it is dropped unanswered because the
     * provider shuts down, whether it ran or not. Frees the job. */
    void (*done)(struct provider *p, struct pool_job *job);
    bool cancelled;
};

/* Starts the threads; they wake the lws loop of `context` when jobs are done. */
int pool_new(struct lws_context *context, struct pool **out);
/* Loop thread. Takes `job`; false (not taken) when POOL_MAX_JOBS are under way or pool is NULL. */
bool pool_submit(struct pool *pool, struct pool_job *job);
/* Loop thread (LWS_CALLBACK_EVENT_WAIT_CANCELLED): calls done for every finished job. */
void pool_drain(struct pool *pool, struct provider *p);
/* Loop thread. Joins the threads after the jobs they are running, then hands every job to its
 * done callback as cancelled, and frees the pool. NULL is fine. */
void pool_free(struct pool *pool, struct provider *p);

/* ------------------------------------------------------------------------------------------------
 * The provider object, shared by the protocols and the connection
 * ----------------------------------------------------------------------------------------------*/

/* One outgoing message, owned by the queue once queued. */
struct provider_msg {
    struct provider_msg *next;
    size_t len;            /* payload bytes */
    unsigned char bytes[]; /* LWS_PRE bytes of headroom for lws, then the payload */
};

enum provider_fs_state {
    PROVIDER_FS_DETACHED, /* not asked for on this connection (yet) */
    PROVIDER_FS_ADDING,   /* add_filesystem sent, no answer yet */
    PROVIDER_FS_ATTACHED,
    PROVIDER_FS_REFUSED, /* the gateway answered add_filesystem with an error */
};

/* A JSON filesystem: one export and where it stands on this connection. */
struct provider_fs {
    struct export *export; /* owned */
    enum provider_fs_state state;
};

struct provider;

/* A wire protocol the provider can speak; the connection layer calls these. */
struct provider_protocol {
    const char *name;        /* --protocol value */
    const char *subprotocol; /* websocket subprotocol asked for */
    bool binary;             /* frames are binary (else text) */
    /* provider_new: open what the options name (exports, tree). */
    int (*open)(struct provider *p);
    /* provider_free: free what open made (also after a failed open). */
    void (*close)(struct provider *p);
    /* The connection is open: queue what the protocol starts with. */
    void (*on_connected)(struct provider *p);
    /* One whole incoming message (borrowed for the call). */
    void (*on_message)(struct provider *p, const void *data, size_t len);
    /* The connection is gone: the gateway's mounts and handles with it. */
    void (*on_disconnected)(struct provider *p);
};

extern const struct provider_protocol provider_protocol_json;
extern const struct provider_protocol provider_protocol_webfuse2;

enum provider_conn_state {
    PROVIDER_CONN_IDLE,       /* no connection; maybe a retry is scheduled */
    PROVIDER_CONN_CONNECTING, /* TCP connect or websocket handshake under way */
    PROVIDER_CONN_OPEN,
    PROVIDER_CONN_CLOSING, /* our close frame goes out at the next writeable callback */
};

struct provider {
    const struct provider_options *options;
    const struct provider_protocol *protocol;
    struct provider_url url;
    char host_header[300]; /* "host:port" as sent in the Host and Origin headers */
    char *read_buffer;     /* PROVIDER_MAX_READ bytes: the data of one read answer */

    /* JSON */
    struct provider_fs fs[PROVIDER_MAX_EXPORTS];
    size_t fs_count;
    bool any_refused;

    /* webfuse2 */
    struct tree *tree; /* owned */
    char fs_name[256]; /* the URL path's last segment, for logs ("/" when none) */
    bool served;       /* a request was answered on this connection */

    struct lws_context *context;
    struct lws_protocols lws_protocols[2];
    struct lws *wsi;
    enum provider_conn_state state;
    enum lws_close_status close_status; /* sent in our close frame */
    const char *close_reason;
    bool stopping; /* a signal asked us to stop */
    bool done;     /* leave the service loop */
    int exit_status;
    unsigned failed_attempts; /* since the last connection that served */
    int peer_close_code;      /* of the gateway's close frame on this connection; 0: none */
    lws_sorted_usec_list_t retry_timer;
    lws_sorted_usec_list_t close_timer;

    /* The incoming message being reassembled from fragments. */
    char *rx;
    size_t rx_len;
    size_t rx_cap;
    bool rx_in_message;

    struct pool *pool;   /* file reads; NULL outside provider_run */
    unsigned connection; /* counts connections: a late answer must not reach a new one */
    uint64_t mask_state; /* the generator of websocket masking keys */

    /* Outgoing queue, oldest first. */
    struct provider_msg *queue_head;
    struct provider_msg *queue_tail;
    size_t queue_count;
    size_t queue_bytes;
    bool rx_paused; /* reading stopped until the queue drains */
};

/* A message with room for `cap` payload bytes; the caller owns it until provider_send. */
struct provider_msg *provider_msg_new(size_t cap);
/* Unused room a message made with `cap` may keep; more is given back by provider_msg_fit. */
#define PROVIDER_MSG_SLACK (64u * 1024)
/* Gives back what a message of `cap` does not use, when that is more than PROVIDER_MSG_SLACK:
 * queued messages are counted by their length, so a 13-byte answer must not hold 1 MiB. Returns
 * the message (moved, perhaps). */
struct provider_msg *provider_msg_fit(struct provider_msg *msg, size_t cap);
static inline char *provider_msg_payload(struct provider_msg *msg)
{
    return (char *)msg->bytes + LWS_PRE;
}

/* Takes ownership of `msg` and queues it for the next writeable callback. Returns 0, -ENOTCONN
 * when no connection is open, or -ECONNABORTED when the queue is full (the connection is then
 * being closed). */
int provider_send(struct provider *p, struct provider_msg *msg);

/* Asks for our close frame to go out at the next writeable callback. */
void provider_close_connection(struct provider *p, enum lws_close_status status,
                               const char *reason);

/* This connection works (a filesystem attached, a request answered): the next drop retries after
 * the shortest delay again. */
void provider_mark_serving(struct provider *p);

#endif
