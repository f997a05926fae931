/* Private to fusebridge/: the inode table of path-based mounts. */
#ifndef WEBFUSE_FUSEBRIDGE_INTERNAL_H
#define WEBFUSE_FUSEBRIDGE_INTERNAL_H

#define FUSE_USE_VERSION 314

#include <limits.h>

#include <fuse_lowlevel.h>

#include "fusebridge.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define FUSEBRIDGE_RENAME_NOREPLACE 1u
#define FUSEBRIDGE_RENAME_EXCHANGE 2u

struct inode_node;
struct inode_slot;
struct dir_listing;

struct inode_table {
    uv_mutex_t lock;
    struct inode_slot *slots; /* indexed by inode number */
    size_t nslots;
    size_t slot_cap;
    uint64_t *free_inos; /* numbers to reuse, each with a new generation */
    size_t nfree;
    size_t free_cap;
    struct inode_node **buckets; /* name index: (parent, name) -> node */
    size_t nbuckets;
    size_t count;                    /* nodes besides the root */
    struct inode_node **ino_buckets; /* provider inode index: st_ino -> nodes with attributes */
    size_t ino_nbuckets;
    size_t ino_count;
    uint64_t ino_seed; /* random: see ino_bucket_of */
};

int inode_table_init(struct inode_table *t);
void inode_table_destroy(struct inode_table *t);

/* Writes the path of `ino` into out[PATH_MAX], with "/name" appended when name is not NULL.
 * -ESTALE for an unknown inode, -ENAMETOOLONG past PATH_MAX. */
int inode_table_path(struct inode_table *t, uint64_t ino, const char *name, char *out);

/* The kernel now knows (parent, name): returns its inode (made on first sight) and generation, and
 * counts one lookup. */
int inode_table_remember(struct inode_table *t, uint64_t parent, const char *name, uint64_t *ino,
                         uint64_t *generation);

/* The inode of (parent, name) if the kernel knows it, else 0. */
uint64_t inode_table_find(struct inode_table *t, uint64_t parent, const char *name);

void inode_table_forget(struct inode_table *t, uint64_t ino, uint64_t nlookup);

/* (parent, name) was removed on the provider. Returns the provider's inode number of what was
 * removed when it has other names (0 otherwise). */
uint64_t inode_table_unlink(struct inode_table *t, uint64_t parent, const char *name);

/* (parent, name) was renamed to (newparent, newname) on the provider; paths below follow.
 * Returns the provider's inode number of an entry the rename replaced when it has other names
 * (0 otherwise). */
uint64_t inode_table_rename(struct inode_table *t, uint64_t parent, const char *name,
                            uint64_t newparent, const char *newname, unsigned flags);

/* Remembers the provider's latest attributes of `ino` (st_ino: the provider's inode number). */
void inode_table_set_attr(struct inode_table *t, uint64_t ino, const struct stat *attr);
/* Whether an open of `ino` may keep the pages the kernel cached: only when the provider's file
 * is the one of the last open, with the same inode number and ctime. Size and mtime, which the
 * kernel compares itself, miss a file replaced by one of the same size with its mtime set (a
 * reproducible build); ctime cannot be set. Records the file as opened now. */
bool inode_table_open_keeps_cache(struct inode_table *t, uint64_t ino);
/* A write through `ino` reached `end`: a remembered size below it grows. */
void inode_table_grow(struct inode_table *t, uint64_t ino, uint64_t end);
/* The remembered attributes of `ino` if it was unlinked (its path is gone, but a process may
 * still have it open); -ENOENT otherwise. */
int inode_table_unlinked_attr(struct inode_table *t, uint64_t ino, struct stat *attr);
/* For an unlinked `ino`: applies a setattr (FUSE_SET_ATTR_* in to_set) to the remembered
 * attributes and returns them in *out; -ENOENT when `ino` is not unlinked. */
int inode_table_unlinked_setattr(struct inode_table *t, uint64_t ino, const struct stat *attr,
                                 int to_set, struct stat *out);
/* Up to `max` inodes whose provider inode number is `provider_ino`: the names of one file. */
size_t inode_table_aliases(struct inode_table *t, uint64_t provider_ino, uint64_t *out, size_t max);
/* The provider inode number of `ino` when the file has other names, else 0. */
uint64_t inode_table_shared_inode(struct inode_table *t, uint64_t ino);

size_t inode_table_count(struct inode_table *t);

/* ---- mounts (fusebridge.c) ---- */

enum mount_state { MOUNT_MOUNTING, MOUNT_MOUNTED, MOUNT_UNMOUNTING, MOUNT_GONE };

struct fusebridge_mount {
    uv_loop_t *loop;
    uv_async_t wakeup;      /* ops queued outside a read of the device: tell the owner next turn */
    uv_poll_t kernel;       /* the FUSE device is readable (from mounted until gone) */
    uv_work_t pool_work;    /* mounting, then tearing down; never both at once */
    uv_work_t unmount_work; /* unmount or abort, which may run beside the others */
    uv_work_t abort_work;
    unsigned connection;   /* the FUSE connection number (fusectl), when known */
    bool connection_known; /* set while mounting */
    int fusectl_fd;        /* the connection's fusectl directory (O_PATH), or -1 */
    struct fusebridge_callbacks callbacks;
    void *user;
    char *mountpoint;
    char *fsname;
    bool read_only;
    bool allow_other;
    bool path_based;
    struct inode_table inodes; /* path-based mounts only */
    /* The session: made on the pool while mounting, used on the loop thread while mounted, and
     * destroyed on the pool once gone. */
    struct fuse_session *session;
    struct fuse_buf request; /* the kernel request being handled; its memory is reused */
    int mount_status;        /* the mount attempt's result, for the loop thread */
    bool aborted_outside;    /* teardown found the connection aborted by someone else */
    bool made_mountpoint;    /* the mount point did not exist, or an earlier mount of the name
                              * made it (own_mountpoint): teardown removes it */
    bool mountpoint_configured; /* --filesystem NAME=DIR: it may hold files */
    size_t *listing_bytes;      /* shared with other mounts (fusebridge_options) */

    /* Loop thread only, like everything from here on. */
    enum mount_state state;
    bool started; /* the owner knows of the mount: on_closed is due */
    bool close_requested;
    bool abort_requested;
    bool abort_started;   /* abort_work was queued */
    bool pool_running;    /* pool_work is on the thread pool */
    bool unmount_running; /* unmount or abort work is on the thread pool */
    bool polling;         /* `kernel` is open */
    bool reading;         /* kernel_readable is handling a batch of requests */
    bool finishing;
    int open_handles; /* the mount is freed when the last of its handles has closed */
    bool readahead_raised;
    bool closing;               /* new kernel requests fail with EIO */
    struct fusebridge_op *head; /* ops for the owner, oldest first */
    struct fusebridge_op *tail;
    /* Counts requests that change files, when they are sent and when they end: a listing's
     * attributes are only handed to the kernel while nothing changed since it was asked for
     * (ops.c, "listings"). */
    uint64_t changes;
    /* Open directories, freed at teardown when an aborted connection never sends releasedir. */
    struct dir_listing *listings;
};

/* Hands an op to the owner (at the back, or in front for the next step of a started op), or
 * fails it with EIO when the mount is closing. */
void mount_submit(struct fusebridge_mount *mount, struct fusebridge_op *op, bool front);

/* Whether the op changes files (write, setattr, create, rename, ...). */
bool op_changes_files(const struct fusebridge_op *op);

/* After FUSE's init: lets the kernel keep several large reads in flight. */
void mount_readahead_raise(struct fusebridge_mount *mount);

/* Sends libfuse's own messages to our log, at our levels and without their newline. Done before
 * the first mount (no thread uses libfuse yet). */
void mount_log_forward(void);

/* ---- operations (ops.c) ---- */

extern const struct fuse_lowlevel_ops fusebridge_ops;      /* inode-based, read-only */
extern const struct fuse_lowlevel_ops fusebridge_path_ops; /* path-based, every operation */

/* After the FUSE session ended: frees listings no releasedir came for. */
void listings_free_all(struct fusebridge_mount *mount);

/* The queue link of an op. */
struct fusebridge_op **op_next(struct fusebridge_op *op);

/* One line of /proc/self/mountinfo, changed in place (entry points into it). Returns 0, or
 * -EINVAL for a line that is not one. */
int mountinfo_parse(char *line, struct fusebridge_mountinfo *entry);

#endif
