/* fusebridge: one FUSE mount per attached filesystem, protocol-neutral.
 *
 * Everything runs on the loop thread: kernel requests are read from the mount's non-blocking
 * /dev/fuse descriptor as it becomes readable, and what can block (mounting, unmounting, tearing
 * down) runs on the libuv thread pool. Each request that needs the provider becomes a `struct
 * fusebridge_op` queued in its mount; nothing waits for the answer. The owner (a session) pops
 * ops when it can send them, and completes each with fusebridge_op_answer,
 * fusebridge_readdir_done or fusebridge_reply_error.
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
#include <sys/statvfs.h>
#include <time.h>

#include <uv.h>

struct fusebridge_mount;
struct fusebridge_op;

/* The root directory's inode, as the kernel and the JSON protocol number it. */
#define FUSEBRIDGE_ROOT_INODE 1

/* The inode number FUSE_UNKNOWN_INO: what a listing shows for a name nobody looked up yet. */
#define FUSEBRIDGE_UNKNOWN_INODE 0xffffffffu

/* One provider request. Path-based mounts send `path` (and `path2`); inode-based mounts send
 * `ino` (and `name`). Fields a kind does not use are zero. */
enum fusebridge_kind {
    FUSEBRIDGE_LOOKUP,  /* ino = parent directory, name = entry; path-based: GETATTR of path */
    FUSEBRIDGE_GETATTR, /* ino / path */
    /* ino / path, offset = where to go on (0: from the start; see fusebridge_readdir_continue);
     * answered with fusebridge_readdir_add + _done */
    FUSEBRIDGE_READDIR,
    FUSEBRIDGE_OPEN,     /* flags; answer: fh */
    FUSEBRIDGE_READ,     /* fh, offset, size; answer: data */
    FUSEBRIDGE_RELEASE,  /* fh, flags */
    FUSEBRIDGE_ACCESS,   /* mask */
    FUSEBRIDGE_READLINK, /* answer: data = target */
    FUSEBRIDGE_SYMLINK,  /* target, path2 = the link */
    FUSEBRIDGE_LINK,     /* path = existing, path2 = new */
    FUSEBRIDGE_RENAME,   /* path = old, path2 = new, rename_flags */
    FUSEBRIDGE_CHMOD,    /* mode */
    FUSEBRIDGE_CHOWN,    /* uid, gid */
    FUSEBRIDGE_TRUNCATE, /* length, fh */
    FUSEBRIDGE_FSYNC,    /* datasync, fh */
    FUSEBRIDGE_MKNOD,    /* mode (with type bits), rdev */
    FUSEBRIDGE_CREATE,   /* mode (with type bits); answer: fh */
    FUSEBRIDGE_UNLINK,
    FUSEBRIDGE_WRITE, /* data, size, offset, fh; answer: written */
    FUSEBRIDGE_MKDIR, /* mode (permission bits only) */
    FUSEBRIDGE_RMDIR,
    FUSEBRIDGE_STATFS,  /* answer: statfs */
    FUSEBRIDGE_UTIMENS, /* atime, mtime (tv_nsec may be UTIME_NOW / UTIME_OMIT), fh */
};

/* A file handle value meaning "no open file". */
#define FUSEBRIDGE_NO_HANDLE UINT64_MAX

struct fusebridge_request {
    enum fusebridge_kind kind;
    uint64_t ino;          /* inode-based: the provider's inode number */
    const char *name;      /* inode-based LOOKUP: entry name */
    const char *path;      /* path-based: absolute within the filesystem ("/", "/dir/file") */
    const char *path2;     /* path-based LINK, RENAME: the new path; SYMLINK: the link */
    const char *target;    /* SYMLINK: what the link points to */
    uint64_t fh;           /* READ, WRITE, RELEASE, FSYNC, TRUNCATE, UTIMENS */
    uint64_t offset;       /* READ, WRITE; READDIR: the provider's cookie of the next page */
    uint64_t length;       /* TRUNCATE: the new size */
    uint32_t size;         /* READ: bytes asked for; WRITE: bytes in data */
    const void *data;      /* WRITE */
    int32_t flags;         /* OPEN, RELEASE: open(2) flags as the kernel gave them */
    uint32_t mode;         /* CHMOD, MKNOD, CREATE, MKDIR */
    uint32_t uid, gid;     /* CHOWN: (uint32_t)-1 leaves one unchanged */
    uint64_t rdev;         /* MKNOD */
    int mask;              /* ACCESS: R_OK | W_OK | X_OK, or F_OK */
    unsigned rename_flags; /* RENAME: RENAME_NOREPLACE 1, RENAME_EXCHANGE 2 */
    bool datasync;         /* FSYNC */
    struct timespec atime, mtime; /* UTIMENS */
};

/* A provider's successful answer to the current request of an op. */
struct fusebridge_answer {
    struct stat attr;      /* LOOKUP, GETATTR: inode-based mounts take st_ino as the inode */
    uint64_t fh;           /* OPEN, CREATE */
    const void *data;      /* READ: bytes; READLINK: the target (not NUL-terminated) */
    size_t len;            /* READ, READLINK: bytes in data; WRITE: bytes written */
    struct statvfs statfs; /* STATFS */
};

struct fusebridge_callbacks {
    /* Loop thread. The mount attempt ended: 0 when mounted, else a negative errno. After a failure
     * on_closed follows; the owner must not call fusebridge_mount_close. */
    void (*on_mounted)(struct fusebridge_mount *mount, int status, void *user);
    /* Loop thread. Ops are waiting in fusebridge_mount_pop. Called again only after the queue was
     * drained empty, so the owner must pop until NULL or remember that work is left. */
    void (*on_ready)(struct fusebridge_mount *mount, void *user);
    /* Loop thread. The mount is going away (detached, or unmounted by hand): before returning,
     * the owner must reply to every op it popped from it. Further ops fail with EIO by
     * themselves. on_closed follows. */
    void (*on_gone)(struct fusebridge_mount *mount, void *user);
    /* Loop thread. The mount is gone and its FUSE session torn down. `mount` is freed after this
     * returns. */
    void (*on_closed)(struct fusebridge_mount *mount, void *user);
};

struct fusebridge_options {
    const char *mountpoint; /* directory to create and mount on (copied) */
    const char *fsname;     /* shown in /proc/mounts as webfuse:<fsname> (copied) */
    bool read_only;
    /* Every user of the device may use the mount (the kernel still checks file modes); without
     * it only the user running the gateway can. */
    bool allow_other;
    /* The provider names files by path (webfuse2), not by inode (JSON): the bridge keeps the
     * inode table, and every kernel request the provider can serve is forwarded. */
    bool path_based;
    /* An earlier mount made the mount point and cannot remove it while this one is on it: this
     * one removes it at the end although it existed. Without it, only a mount point made by this
     * mount is removed. */
    bool own_mountpoint;
    /* The mount point was configured (--filesystem NAME=DIR): it may hold files, which the mount
     * hides. One of the mount root must be empty (see fusebridge_mount_error). */
    bool mountpoint_configured;
    /* Required: bytes the directory listings of every mount sharing this count hold (owned by
     * the caller, zero at first, outliving the mounts). Each opendir keeps a listing of its own, so
     * programs holding many directories open could otherwise take all the device's memory: past
     * FUSEBRIDGE_LISTINGS_BYTES together a listing fails with ENOMEM. */
    size_t *listing_bytes;
};

/* What the listings of all mounts sharing one count may hold: one of the largest still fits. */
#define FUSEBRIDGE_LISTINGS_BYTES (64u << 20)

/* What a mount's failure status means, for people: an existing mount point that is a symbolic
 * link (ELOOP: the mount would land where it points), not a directory (EEXIST), or, under the
 * mount root, a directory that holds files (ENOTEMPTY: not ours, and the mount would hide them);
 * strerror otherwise. */
const char *fusebridge_mount_error(int status);

/* Starts mounting on the thread pool; returns at once. On success *out is the mount, owned by the
 * fusebridge until on_closed. Returns 0 or a negative errno (nothing was started then). */
int fusebridge_mount_start(uv_loop_t *loop, const struct fusebridge_options *options,
                           const struct fusebridge_callbacks *callbacks, void *user,
                           struct fusebridge_mount **out);

/* Loop thread. Detaches the mount: ops still queued and every later kernel request fail with EIO,
 * and the mount is lazily unmounted off the loop thread. Once no process holds a file in it any
 * more, the session is torn down and on_closed runs. The caller must already have replied to every
 * op it popped. Idempotent. */
void fusebridge_mount_close(struct fusebridge_mount *mount);

/* Loop thread. Whether the mount may still be at its mount point: until its lazy unmount (or, for
 * a connection that ended by itself, its teardown) has run. The path names it until then, so
 * another mount there would be taken for it. */
bool fusebridge_mount_in_place(const struct fusebridge_mount *mount);

/* Loop thread. Whether the end of the mount removes its mount point (it made it, or took it over
 * with own_mountpoint); false while it is still being mounted. */
bool fusebridge_mount_made_mountpoint(const struct fusebridge_mount *mount);

/* Loop thread. Like fusebridge_mount_close, and also aborts the FUSE connection (through fusectl),
 * so the mount ends even while processes hold files in it; they get ENOTCONN from then on. For
 * shutting down. Idempotent. */
void fusebridge_mount_abort(struct fusebridge_mount *mount);

/* Loop thread, in on_closed: whether the mount ended because someone on the device aborted its
 * FUSE connection (through fusectl) rather than unmounting it. Not known before: the kernel
 * reports both the same way, and only the mount table tells them apart. */
bool fusebridge_mount_aborted_outside(const struct fusebridge_mount *mount);

/* Loop thread. Takes the oldest waiting op; the caller owns it until it replies. NULL when none. */
struct fusebridge_op *fusebridge_mount_pop(struct fusebridge_mount *mount);

/* Loop thread. What the oldest waiting op asks (borrowed, valid until it is popped), or NULL. */
const struct fusebridge_request *fusebridge_mount_peek(const struct fusebridge_mount *mount);

/* Borrowed view of what the op asks; valid until the op is replied to. */
const struct fusebridge_request *fusebridge_op_request(const struct fusebridge_op *op);

/* Completes the op's current request with the provider's successful answer. Some kernel requests
 * take several provider requests (create is CREATE then GETATTR): then the op is queued again in
 * its mount, in front, and 1 is returned; the caller gives it up until it pops it again. Otherwise
 * the kernel gets its reply, the op is freed and 0 is returned. */
int fusebridge_op_answer(struct fusebridge_op *op, const struct fusebridge_answer *answer);

/* The largest errno a reply to the kernel may carry: it refuses a reply with a larger one, and
 * the program waiting for it would wait forever. */
#define FUSEBRIDGE_ERRNO_MAX 511

/* Fails the op with a negative errno (0 = success without data; anything beyond
 * FUSEBRIDGE_ERRNO_MAX becomes EIO); frees it. */
void fusebridge_reply_error(struct fusebridge_op *op, int neg_errno);

/* An OPEN or CREATE the provider did not answer in time: the program gets neg_errno now, but the
 * provider may still open a handle, which nobody would release. The op stays, for the owner to
 * hand a late answer to (fusebridge_op_answer then releases the handle) or to fail (freed
 * quietly). Returns false, and does nothing, for any other op or one abandoned already. */
bool fusebridge_op_abandon(struct fusebridge_op *op, int neg_errno);

/* READDIR: add the provider's entries one by one, then finish. "." and ".." from the provider are
 * dropped (the bridge adds its own); names that cannot be a directory entry (empty, containing
 * '/', longer than 255 bytes) are dropped with -EINVAL returned. `ino` is an inode-based
 * provider's inode number (path-based mounts ignore it). `attr` (may be NULL) are the entry's
 * attributes, as for a LOOKUP answer: the kernel then needs no lookup of the entry. Returns 0,
 * -EINVAL for a dropped name, -EFBIG past the most entries a listing may have, or -ENOMEM. */
int fusebridge_readdir_add(struct fusebridge_op *op, const char *name, uint64_t ino,
                           const struct stat *attr);
/* READDIR: the provider sent a page and more follow from `cookie`; the op is queued again in front
 * with that offset and the caller gives it up until it pops it again. Cookie 0 starts the listing
 * over (what was added is dropped): for asking again in another way. */
void fusebridge_readdir_continue(struct fusebridge_op *op, uint64_t cookie);
void fusebridge_readdir_done(struct fusebridge_op *op); /* replies and frees the op */

/* One mount of this process's mount namespace, as /proc/self/mountinfo lists it. */
struct fusebridge_mountinfo {
    unsigned minor;     /* of the mount's device: a FUSE mount's connection number */
    const char *path;   /* mount point, unescaped */
    const char *fstype; /* "fuse.webfuse" for ours */
};

/* Calls visit for each mount, oldest first; the entry is valid only during the call. Returns 0,
 * or a negative errno when the table cannot be read. */
int fusebridge_mountinfo_each(void (*visit)(const struct fusebridge_mountinfo *entry, void *arg),
                              void *arg);

#endif
