/* fusebridge: one FUSE mount per attached filesystem, protocol-neutral.
 *
 * A mount runs its own worker thread that reads kernel requests from /dev/fuse. Each request that
 * needs the provider becomes a `struct fusebridge_op` and is queued for the loop thread; the worker
 * never waits for the answer. The owner (a session) pops ops on the loop thread when it can send
 * them, and completes each with exactly one fusebridge_reply_* call, from the loop thread.
 *
 * This header deliberately includes no FUSE header: codecs and the provider use the request types
 * below without linking libfuse.
 */
#ifndef WEBFUSE_FUSEBRIDGE_H
#define WEBFUSE_FUSEBRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <uv.h>

struct fusebridge_mount;
struct fusebridge_op;

/* The root directory's inode, as the kernel and the JSON protocol number it. */
#define FUSEBRIDGE_ROOT_INODE 1

enum fusebridge_kind {
    FUSEBRIDGE_LOOKUP,  /* ino = parent directory, name = entry */
    FUSEBRIDGE_GETATTR, /* ino */
    FUSEBRIDGE_READDIR, /* ino = directory; answered with fusebridge_readdir_add + _done */
    FUSEBRIDGE_OPEN,    /* ino, flags */
    FUSEBRIDGE_READ,    /* ino, fh, offset, size */
    FUSEBRIDGE_RELEASE, /* ino, fh, flags */
};

/* What one kernel request asks, in terms a provider understands. */
struct fusebridge_request {
    enum fusebridge_kind kind;
    uint64_t ino;     /* the provider's inode number */
    const char *name; /* LOOKUP only: entry name, NUL-terminated, owned by the op */
    uint64_t fh;      /* READ, RELEASE: the provider's file handle */
    uint64_t offset;  /* READ */
    uint32_t size;    /* READ: bytes asked for */
    int32_t flags;    /* OPEN, RELEASE: open(2) flags as the kernel gave them */
};

struct fusebridge_callbacks {
    /* Loop thread. The mount attempt ended: 0 when mounted, else a negative errno. After a failure
     * on_closed follows; the owner must not call fusebridge_mount_close. */
    void (*on_mounted)(struct fusebridge_mount *mount, int status, void *user);
    /* Loop thread. Ops are waiting in fusebridge_mount_pop. Called again only after the queue was
     * drained empty, so the owner must pop until NULL or remember that work is left. */
    void (*on_ready)(struct fusebridge_mount *mount, void *user);
    /* Loop thread. The mount is gone and its worker has ended. `mount` is freed after this
     * returns. */
    void (*on_closed)(struct fusebridge_mount *mount, void *user);
};

struct fusebridge_options {
    const char *mountpoint; /* directory to create and mount on (copied) */
    const char *fsname;     /* shown in /proc/mounts as webfuse:<fsname> (copied) */
    bool read_only;
};

/* Starts mounting on a worker thread; returns at once. On success *out is the mount, owned by the
 * fusebridge until on_closed. Returns 0 or a negative errno (nothing was started then). */
int fusebridge_mount_start(uv_loop_t *loop, const struct fusebridge_options *options,
                           const struct fusebridge_callbacks *callbacks, void *user,
                           struct fusebridge_mount **out);

/* Loop thread. Detaches the mount: ops still queued and every later kernel request fail with EIO,
 * the mount is lazily unmounted and its connection aborted off the loop thread, then on_closed
 * runs. The caller must already have replied to every op it popped. Idempotent. */
void fusebridge_mount_close(struct fusebridge_mount *mount);

/* Loop thread. Takes the oldest waiting op; the caller owns it until it replies. NULL when none. */
struct fusebridge_op *fusebridge_mount_pop(struct fusebridge_mount *mount);

/* Borrowed view of what the op asks; valid until the op is replied to. */
const struct fusebridge_request *fusebridge_op_request(const struct fusebridge_op *op);

/* Replies. Each frees the op; exactly one per op. */
void fusebridge_reply_error(struct fusebridge_op *op, int neg_errno); /* 0 = success, no data */
void fusebridge_reply_entry(struct fusebridge_op *op, const struct stat *st);
void fusebridge_reply_attr(struct fusebridge_op *op, const struct stat *st);
void fusebridge_reply_open(struct fusebridge_op *op, uint64_t fh);
void fusebridge_reply_data(struct fusebridge_op *op, const void *data, size_t len);

/* READDIR: add the provider's entries one by one, then finish. "." and ".." from the provider are
 * dropped (the bridge adds its own); names that cannot be a directory entry (empty, containing
 * '/', longer than 255 bytes) are dropped with -EINVAL returned. `mode` may be 0 (type unknown).
 * Returns 0, -EINVAL for a dropped name, or -ENOMEM. */
int fusebridge_readdir_add(struct fusebridge_op *op, const char *name, uint64_t ino, uint32_t mode);
void fusebridge_readdir_done(struct fusebridge_op *op); /* replies and frees the op */

#endif
