/* Kernel requests -> operations -> kernel replies.
 *
 * Everything here runs on the loop thread. Handlers run as fusebridge.c reads kernel requests
 * and never wait: they answer at once (forget, opendir, a loaded directory listing) or build an
 * op of one or more provider requests ("steps") and queue it for the owner. Answers come through
 * fusebridge_op_answer, which either queues the next step or replies to the kernel.
 */
#include "fusebridge_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long the kernel may cache names and attributes. Providers cannot tell us when a file
 * changes, so this bounds how stale a listing can be; one second keeps `ls -l` and repeated stat
 * calls from each costing a network round trip. */
#define FUSEBRIDGE_CACHE_SECONDS 1.0

/* A directory entry's name as the kernel accepts it (NAME_MAX). */
#define FUSEBRIDGE_NAME_MAX 255

/* Setattr can take chmod, chown, truncate, utimens, then getattr. */
#define OP_MAX_STEPS 5

/* What the kernel is waiting for. */
enum op_reply {
    REPLY_STATUS,      /* fuse_reply_err(0) */
    REPLY_ENTRY,       /* fuse_reply_entry for (entry_parent, entry_name) */
    REPLY_ATTR,        /* fuse_reply_attr */
    REPLY_ATTR_CACHED, /* fuse_reply_attr from the inode table's attributes of an unlinked file */
    REPLY_OPEN,        /* fuse_reply_open with the handle */
    REPLY_CREATE,      /* fuse_reply_create: entry + handle */
    REPLY_DATA,        /* fuse_reply_buf */
    REPLY_WRITE,       /* fuse_reply_write */
    REPLY_READLINK,    /* fuse_reply_readlink */
    REPLY_STATFS,      /* fuse_reply_statfs */
    REPLY_READDIR,     /* a slice of the loaded listing */
};

/* What to record in the inode table once the provider said yes. */
enum op_effect { EFFECT_NONE, EFFECT_UNLINK, EFFECT_RENAME };

/* What one directory listing may hold: entries ("." and ".." included, about 100 bytes each)
 * and bytes of names; a larger directory fails with EFBIG. Entries a provider sends that are
 * not listed (its own "." and "..", names the kernel cannot take) count too, so a provider cannot
 * page one listing forever. 262,144 entries of 64-byte names take about 40 MiB. */
#define FUSEBRIDGE_LISTING_MAX (1u << 18)
#define FUSEBRIDGE_LISTING_NAME_BYTES (16u << 20)

/* How long after it was asked for a listing's attributes are still handed to the kernel: long
 * enough for `ls -l` of a large directory, short enough that a directory held open for long does
 * not serve old attributes as fresh. */
#define FUSEBRIDGE_LISTING_FRESH_NS (10ull * 1000 * 1000 * 1000)

/* What a listing keeps of an entry's attributes: a struct stat without what webfuse never fills,
 * at two thirds of the size. */
struct entry_attr {
    uint64_t ino; /* the provider's inode number, 0 when unknown */
    uint64_t nlink, size, blocks, rdev;
    int64_t atime, mtime, ctime;
    uint32_t atime_nsec, mtime_nsec, ctime_nsec;
    uint32_t mode, uid, gid;
};

struct listing_entry {
    struct entry_attr attr; /* without has_attr only attr.ino (inode-based mounts) is set */
    uint32_t name;          /* where its name starts in the listing's names */
    bool has_attr;
};

/* An open directory: the whole listing, asked from the provider once per opendir (in pages, when
 * the provider pages it) and then served in pieces as the kernel asks for them. The offset the
 * kernel resumes from is an entry's index; "." and ".." are entries 0 and 1. */
struct dir_listing {
    struct dir_listing *prev; /* in the mount's open listings */
    struct dir_listing *next;
    /* The open directory holds one reference and a READDIR op in flight another: an interrupted
     * readdir lets releasedir arrive while the loop thread still fills the listing. */
    int refs;
    bool loaded;
    size_t *budget_used;   /* the owner's count of bytes all listings hold (see options) */
    uint64_t dir;          /* the directory's inode */
    uint64_t changes_then; /* the mount's change count when the listing was asked for */
    uint64_t asked_at;     /* uv_hrtime() then */
    size_t received;       /* entries the provider sent, listed or not */
    struct listing_entry *entries;
    size_t count;
    size_t cap;
    char *names; /* NUL-terminated names, one after the other */
    size_t names_len;
    size_t names_cap;
};

struct fusebridge_op {
    struct fusebridge_op *next; /* in the mount's queue */
    struct fusebridge_mount *mount;
    fuse_req_t req;
    enum op_reply reply;
    enum op_effect effect;
    struct fusebridge_request steps[OP_MAX_STEPS];
    unsigned nsteps;
    unsigned step;
    uint64_t fh;           /* from OPEN / CREATE, for the final reply */
    bool fh_open;          /* the provider opened fh and the kernel does not hold it yet */
    bool abandoned;        /* failed to the kernel; waits only for a late handle to release */
    int open_flags;        /* OPEN / CREATE: the kernel's flags, echoed in the reply */
    uint64_t entry_parent; /* REPLY_ENTRY / CREATE, EFFECT_*: the entry's directory ... */
    char *entry_name;      /* ... and name (owned) */
    uint64_t new_parent;   /* EFFECT_RENAME */
    char *new_name;        /* EFFECT_RENAME (owned) */
    unsigned rename_flags;
    struct dir_listing *listing; /* READDIR */
    size_t readdir_size;         /* READDIR: bytes the kernel asked for */
    off_t readdir_offset;        /* READDIR: where the kernel is in the listing */
    bool readdir_plus;           /* READDIR: the kernel asked for entries with attributes */
    char *owned[4];              /* strings and data the steps point into */
};

struct fusebridge_op **op_next(struct fusebridge_op *op)
{
    return &op->next;
}

/* Gives the listing's buffers back (to the budget too); it is empty afterwards. */
static void listing_drop(struct dir_listing *listing)
{
    *listing->budget_used -= listing->cap * sizeof(*listing->entries) + listing->names_cap;
    free(listing->entries);
    free(listing->names);
    listing->entries = NULL;
    listing->names = NULL;
    listing->count = listing->cap = listing->names_len = listing->names_cap = 0;
    listing->received = 0;
}

static void listing_unref(struct dir_listing *listing)
{
    if (--listing->refs == 0) {
        listing_drop(listing);
        free(listing);
    }
}

static void listing_clear(struct dir_listing *listing)
{
    listing->count = 0;
    listing->names_len = 0;
    listing->received = 0;
}

bool op_changes_files(const struct fusebridge_op *op)
{
    switch (op->steps[0].kind) {
    case FUSEBRIDGE_OPEN:
        return (op->steps[0].flags & O_TRUNC) != 0;
    case FUSEBRIDGE_SYMLINK:
    case FUSEBRIDGE_LINK:
    case FUSEBRIDGE_RENAME:
    case FUSEBRIDGE_CHMOD:
    case FUSEBRIDGE_CHOWN:
    case FUSEBRIDGE_TRUNCATE:
    case FUSEBRIDGE_MKNOD:
    case FUSEBRIDGE_CREATE:
    case FUSEBRIDGE_UNLINK:
    case FUSEBRIDGE_WRITE:
    case FUSEBRIDGE_MKDIR:
    case FUSEBRIDGE_RMDIR:
    case FUSEBRIDGE_UTIMENS:
        return true;
    default:
        return false;
    }
}

static void handle_orphaned(struct fusebridge_op *from);

static void op_free(struct fusebridge_op *op)
{
    if (op->fh_open)
        handle_orphaned(op);
    if (op_changes_files(op)) /* ended: the kernel may know of the change from now on */
        op->mount->changes++;
    if (op->listing)
        listing_unref(op->listing);
    for (size_t i = 0; i < sizeof(op->owned) / sizeof(op->owned[0]); i++)
        free(op->owned[i]);
    free(op->entry_name);
    free(op->new_name);
    free(op);
}

/* Keeps a copy of `len` bytes in the op (NUL-terminated); NULL when out of memory. */
static const char *op_keep(struct fusebridge_op *op, const void *bytes, size_t len)
{
    for (size_t i = 0; i < sizeof(op->owned) / sizeof(op->owned[0]); i++) {
        if (op->owned[i])
            continue;
        op->owned[i] = malloc(len + 1);
        if (!op->owned[i])
            return NULL;
        memcpy(op->owned[i], bytes, len);
        op->owned[i][len] = '\0';
        return op->owned[i];
    }
    return NULL;
}

static const char *op_keep_string(struct fusebridge_op *op, const char *s)
{
    return op_keep(op, s, strlen(s));
}

/* ---- building ops ------------------------------------------------------------------------------
 */

static struct fusebridge_mount *mount_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static struct fusebridge_op *op_new(fuse_req_t req, enum op_reply reply)
{
    struct fusebridge_op *op = calloc(1, sizeof(*op));
    if (!op) {
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    op->req = req;
    op->mount = mount_of(req);
    op->reply = reply;
    return op;
}

static struct fusebridge_request *op_step(struct fusebridge_op *op, enum fusebridge_kind kind,
                                          fuse_ino_t ino)
{
    struct fusebridge_request *step = &op->steps[op->nsteps++];
    step->kind = kind;
    step->ino = ino;
    step->fh = FUSEBRIDGE_NO_HANDLE;
    return step;
}

/* The path of ino (with "/name" when name is given), kept in the op. */
static int op_path(struct fusebridge_op *op, fuse_ino_t ino, const char *name, const char **out)
{
    char path[PATH_MAX];
    int rc = inode_table_path(&op->mount->inodes, ino, name, path);
    if (rc != 0)
        return rc;
    *out = op_keep_string(op, path);
    return *out ? 0 : -ENOMEM;
}

static int op_entry(struct fusebridge_op *op, fuse_ino_t parent, const char *name)
{
    if (strlen(name) > FUSEBRIDGE_NAME_MAX)
        return -ENAMETOOLONG;
    op->entry_parent = parent;
    op->entry_name = strdup(name);
    return op->entry_name ? 0 : -ENOMEM;
}

/* Queues a fully built op, or fails it with `rc` when building went wrong. */
static void op_submit_or_fail(struct fusebridge_op *op, int rc)
{
    if (rc != 0) {
        fuse_reply_err(op->req, -rc);
        op_free(op);
        return;
    }
    mount_submit(op->mount, op, false);
}

/* The usual shape: one request on the path of ino (or of parent/name), then maybe a getattr. */
static void forward_path(fuse_req_t req, enum op_reply reply, enum fusebridge_kind kind,
                         fuse_ino_t ino, const char *name, bool then_getattr,
                         struct fusebridge_request **out)
{
    if (out)
        *out = NULL;
    struct fusebridge_op *op = op_new(req, reply);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, kind, ino);
    int rc = op_path(op, ino, name, &step->path);
    if (rc == 0 && name && (reply == REPLY_ENTRY || reply == REPLY_CREATE))
        rc = op_entry(op, ino, name);
    if (rc == 0 && then_getattr)
        op_step(op, FUSEBRIDGE_GETATTR, ino)->path = step->path;
    if (out)
        *out = rc == 0 ? step : NULL;
    if (rc != 0 || !out)
        op_submit_or_fail(op, rc);
}

/* ---- kernel request handlers ---------------------------------------------------------------- */

static void bridge_init(void *userdata, struct fuse_conn_info *conn)
{
    struct fusebridge_mount *mount = userdata;
    /* Several reads in flight per file is what keeps a remote provider busy. */
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    /* open(O_TRUNC) then arrives as one open instead of open plus a truncating setattr. */
    if (mount->path_based && (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC))
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    /* Every listing goes with attributes when the provider sends them, so `ls -l` costs one
     * round trip per directory, not one per entry. Left to itself ("auto") the kernel would ask
     * for attributes only in every other batch of a long listing. Entries without attributes
     * cost the same as in a plain readdir. */
    if (conn->capable & FUSE_CAP_READDIRPLUS)
        conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
    /* Opens keep the page cache (keep_cache); this is what drops it when a file changed. */
    if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
        conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
}

static void bridge_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (mount_of(req)->path_based) {
        forward_path(req, REPLY_ENTRY, FUSEBRIDGE_GETATTR, parent, name, false, NULL);
        return;
    }
    struct fusebridge_op *op = op_new(req, REPLY_ENTRY);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_LOOKUP, parent);
    step->name = op_keep_string(op, name);
    op_submit_or_fail(op, step->name ? 0 : -ENOMEM);
}

static void bridge_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    struct fusebridge_mount *mount = mount_of(req);
    /* Inode-based providers' numbers are used as they are: there is no table to shrink. */
    if (mount->path_based)
        inode_table_forget(&mount->inodes, ino, nlookup);
    fuse_reply_none(req);
}

static void bridge_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct fusebridge_mount *mount = mount_of(req);
    for (size_t i = 0; mount->path_based && i < count; i++)
        inode_table_forget(&mount->inodes, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void reply_attr_cached(fuse_req_t req, fuse_ino_t ino, const struct stat *cached);

static void bridge_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct fusebridge_mount *mount = mount_of(req);
    struct stat cached;
    /* Its path is gone, so the provider cannot describe it; a process still has it open. */
    if (mount->path_based && inode_table_unlinked_attr(&mount->inodes, ino, &cached) == 0) {
        reply_attr_cached(req, ino, &cached);
        return;
    }
    if (mount->path_based) {
        forward_path(req, REPLY_ATTR, FUSEBRIDGE_GETATTR, ino, NULL, false, NULL);
        return;
    }
    struct fusebridge_op *op = op_new(req, REPLY_ATTR);
    if (op) {
        op_step(op, FUSEBRIDGE_GETATTR, ino);
        op_submit_or_fail(op, 0);
    }
}

static uint64_t handle_of(const struct fuse_file_info *fi)
{
    return fi ? fi->fh : FUSEBRIDGE_NO_HANDLE;
}

static struct timespec utime_of(int to_set, int set_flag, int now_flag, struct timespec value)
{
    if (to_set & now_flag)
        return (struct timespec){.tv_nsec = UTIME_NOW};
    if (to_set & set_flag)
        return value;
    return (struct timespec){.tv_nsec = UTIME_OMIT};
}

/* An unlinked file has no path the provider knows, and its old path may name a new file by now:
 * a size change goes by handle; everything else only the processes holding it can see, so it is
 * kept here. */
static bool setattr_unlinked(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                             struct fuse_file_info *fi)
{
    struct fusebridge_mount *mount = mount_of(req);
    struct stat st;
    if (inode_table_unlinked_setattr(&mount->inodes, ino, attr, to_set, &st) != 0)
        return false;
    if (!(to_set & FUSE_SET_ATTR_SIZE) || !fi) {
        reply_attr_cached(req, ino, &st);
        return true;
    }
    struct fusebridge_op *op = op_new(req, REPLY_ATTR_CACHED);
    if (!op)
        return true;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_TRUNCATE, ino);
    step->length = (uint64_t)attr->st_size;
    step->fh = fi->fh;
    op_submit_or_fail(op, op_path(op, ino, NULL, &step->path));
    return true;
}

/* One kernel setattr becomes the provider requests it needs, then a getattr for the reply. */
static void bridge_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                           struct fuse_file_info *fi)
{
    if (setattr_unlinked(req, ino, attr, to_set, fi))
        return;
    struct fusebridge_op *op = op_new(req, REPLY_ATTR);
    if (!op)
        return;
    const char *path;
    int rc = op_path(op, ino, NULL, &path);
    if (rc == 0 && (to_set & FUSE_SET_ATTR_MODE))
        op_step(op, FUSEBRIDGE_CHMOD, ino)->mode = attr->st_mode;
    if (rc == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
        struct fusebridge_request *step = op_step(op, FUSEBRIDGE_CHOWN, ino);
        step->uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uint32_t)-1;
        step->gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (uint32_t)-1;
    }
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
        struct fusebridge_request *step = op_step(op, FUSEBRIDGE_TRUNCATE, ino);
        step->length = (uint64_t)attr->st_size;
        step->fh = handle_of(fi);
    }
    if (rc == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                              FUSE_SET_ATTR_MTIME_NOW))) {
        struct fusebridge_request *step = op_step(op, FUSEBRIDGE_UTIMENS, ino);
        step->atime = utime_of(to_set, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, attr->st_atim);
        step->mtime = utime_of(to_set, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, attr->st_mtim);
        step->fh = handle_of(fi);
    }
    if (rc == 0) {
        op_step(op, FUSEBRIDGE_GETATTR, ino);
        for (unsigned i = 0; i < op->nsteps; i++)
            op->steps[i].path = path;
    }
    op_submit_or_fail(op, rc);
}

static void bridge_readlink(fuse_req_t req, fuse_ino_t ino)
{
    forward_path(req, REPLY_READLINK, FUSEBRIDGE_READLINK, ino, NULL, false, NULL);
}

static void bridge_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                         dev_t rdev)
{
    struct fusebridge_request *step;
    forward_path(req, REPLY_ENTRY, FUSEBRIDGE_MKNOD, parent, name, true, &step);
    if (!step)
        return;
    step->mode = mode;
    step->rdev = rdev;
    mount_submit(mount_of(req), container_of(step, struct fusebridge_op, steps[0]), false);
}

static void bridge_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct fusebridge_request *step;
    forward_path(req, REPLY_ENTRY, FUSEBRIDGE_MKDIR, parent, name, true, &step);
    if (!step)
        return;
    step->mode = mode & 07777; /* the protocol's mkdir carries permission bits only */
    mount_submit(mount_of(req), container_of(step, struct fusebridge_op, steps[0]), false);
}

static void forward_removal(fuse_req_t req, enum fusebridge_kind kind, fuse_ino_t parent,
                            const char *name)
{
    struct fusebridge_request *step;
    forward_path(req, REPLY_STATUS, kind, parent, name, false, &step);
    if (!step)
        return;
    struct fusebridge_op *op = container_of(step, struct fusebridge_op, steps[0]);
    op->effect = EFFECT_UNLINK;
    op_submit_or_fail(op, op_entry(op, parent, name));
}

static void bridge_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    forward_removal(req, FUSEBRIDGE_UNLINK, parent, name);
}

static void bridge_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    forward_removal(req, FUSEBRIDGE_RMDIR, parent, name);
}

static void bridge_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    struct fusebridge_op *op = op_new(req, REPLY_ENTRY);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_SYMLINK, parent);
    int rc = op_path(op, parent, name, &step->path2);
    if (rc == 0)
        rc = op_entry(op, parent, name);
    if (rc == 0 && !(step->target = op_keep_string(op, link)))
        rc = -ENOMEM;
    if (rc == 0)
        op_step(op, FUSEBRIDGE_GETATTR, parent)->path = step->path2;
    op_submit_or_fail(op, rc);
}

static void bridge_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                          const char *newname, unsigned int flags)
{
    if (flags & ~(FUSEBRIDGE_RENAME_NOREPLACE | FUSEBRIDGE_RENAME_EXCHANGE)) {
        fuse_reply_err(req, EINVAL); /* RENAME_WHITEOUT: not something a provider can do */
        return;
    }
    struct fusebridge_op *op = op_new(req, REPLY_STATUS);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_RENAME, parent);
    step->rename_flags = flags;
    int rc = op_path(op, parent, name, &step->path);
    if (rc == 0)
        rc = op_path(op, newparent, newname, &step->path2);
    if (rc == 0)
        rc = op_entry(op, parent, name);
    op->effect = EFFECT_RENAME;
    op->new_parent = newparent;
    op->rename_flags = flags;
    if (rc == 0 && !(op->new_name = strdup(newname)))
        rc = -ENOMEM;
    op_submit_or_fail(op, rc);
}

static void bridge_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct fusebridge_op *op = op_new(req, REPLY_ENTRY);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_LINK, ino);
    int rc = op_path(op, ino, NULL, &step->path);
    if (rc == 0)
        rc = op_path(op, newparent, newname, &step->path2);
    if (rc == 0)
        rc = op_entry(op, newparent, newname);
    if (rc == 0)
        op_step(op, FUSEBRIDGE_GETATTR, newparent)->path = step->path2;
    op_submit_or_fail(op, rc);
}

static void bridge_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    mount_readahead_raise(mount_of(req)); /* init is over by now: it would lower it again */
    struct fusebridge_op *op = op_new(req, REPLY_OPEN);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_OPEN, ino);
    step->flags = fi->flags;
    op->open_flags = fi->flags;
    op_submit_or_fail(op, op->mount->path_based ? op_path(op, ino, NULL, &step->path) : 0);
}

static void bridge_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    struct fusebridge_op *op = op_new(req, REPLY_DATA);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_READ, ino);
    step->fh = fi->fh;
    step->offset = (uint64_t)off;
    step->size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
    op_submit_or_fail(op, op->mount->path_based ? op_path(op, ino, NULL, &step->path) : 0);
}

static void bridge_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                         struct fuse_file_info *fi)
{
    struct fusebridge_op *op = op_new(req, REPLY_WRITE);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_WRITE, ino);
    step->fh = fi->fh;
    step->offset = (uint64_t)off;
    step->size = (uint32_t)size; /* the kernel's writes are at most max_write (1 MiB) */
    int rc = op_path(op, ino, NULL, &step->path);
    /* The kernel's buffer is gone once this handler returns. */
    if (rc == 0 && !(step->data = op_keep(op, buf, size)))
        rc = -ENOMEM;
    op_submit_or_fail(op, rc);
}

static void bridge_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fusebridge_op *op = op_new(req, REPLY_STATUS);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_RELEASE, ino);
    step->fh = fi->fh;
    step->flags = fi->flags;
    op_submit_or_fail(op, op->mount->path_based ? op_path(op, ino, NULL, &step->path) : 0);
}

static void bridge_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct fusebridge_request *step;
    forward_path(req, REPLY_STATUS, FUSEBRIDGE_FSYNC, ino, NULL, false, &step);
    if (!step)
        return;
    step->datasync = datasync != 0;
    step->fh = fi->fh;
    mount_submit(mount_of(req), container_of(step, struct fusebridge_op, steps[0]), false);
}

static void bridge_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct dir_listing *listing = calloc(1, sizeof(*listing));
    if (!listing) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    struct fusebridge_mount *mount = mount_of(req); /* the reply frees req */
    listing->dir = ino;
    listing->budget_used = mount->listing_bytes;
    fi->fh = (uintptr_t)listing;
    if (fuse_reply_open(req, fi) != 0) {
        free(listing); /* the kernel will not send releasedir for a failed open */
        return;
    }
    listing->refs = 1;
    listing->next = mount->listings;
    if (mount->listings)
        mount->listings->prev = listing;
    mount->listings = listing;
}

/* The directory is closed: it leaves the mount's list and goes when no op holds it any more. */
static void listing_free(struct fusebridge_mount *mount, struct dir_listing *listing)
{
    if (listing->prev)
        listing->prev->next = listing->next;
    else
        mount->listings = listing->next;
    if (listing->next)
        listing->next->prev = listing->prev;
    listing_unref(listing);
}

void listings_free_all(struct fusebridge_mount *mount)
{
    while (mount->listings)
        listing_free(mount, mount->listings);
}

static void listing_reply(fuse_req_t req, struct fusebridge_mount *mount,
                          struct dir_listing *listing, size_t size, off_t offset, bool plus);

/* Serves a loaded listing at once; otherwise asks the provider for it, from the start. */
static void readdir_any(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi, bool plus)
{
    struct dir_listing *listing = (struct dir_listing *)(uintptr_t)fi->fh;
    if (listing->loaded) {
        listing_reply(req, mount_of(req), listing, size, off, plus);
        return;
    }
    struct fusebridge_op *op = op_new(req, REPLY_READDIR);
    if (!op)
        return;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_READDIR, ino);
    listing->refs++;
    listing->changes_then = op->mount->changes;
    listing->asked_at = uv_hrtime();
    op->listing = listing;
    op->readdir_size = size;
    op->readdir_offset = off;
    op->readdir_plus = plus;
    op_submit_or_fail(op, op->mount->path_based ? op_path(op, ino, NULL, &step->path) : 0);
}

static void bridge_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    readdir_any(req, ino, size, off, fi, false);
}

static void bridge_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                               struct fuse_file_info *fi)
{
    readdir_any(req, ino, size, off, fi, true);
}

static void bridge_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    listing_free(mount_of(req), (struct dir_listing *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void bridge_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    (void)fi;
    fuse_reply_err(req, 0); /* the protocol has no directory sync; the provider's own is used */
}

static void bridge_statfs(fuse_req_t req, fuse_ino_t ino)
{
    forward_path(req, REPLY_STATFS, FUSEBRIDGE_STATFS, ino, NULL, false, NULL);
}

static void bridge_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
    struct fusebridge_request *step;
    forward_path(req, REPLY_STATUS, FUSEBRIDGE_ACCESS, ino, NULL, false, &step);
    if (!step)
        return;
    step->mask = mask;
    mount_submit(mount_of(req), container_of(step, struct fusebridge_op, steps[0]), false);
}

static void bridge_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                          struct fuse_file_info *fi)
{
    struct fusebridge_request *step;
    forward_path(req, REPLY_CREATE, FUSEBRIDGE_CREATE, parent, name, true, &step);
    if (!step)
        return;
    struct fusebridge_op *op = container_of(step, struct fusebridge_op, steps[0]);
    step->mode = mode;
    op->open_flags = fi->flags;
    mount_submit(op->mount, op, false);
}

/* Inode-based (JSON) providers can only read: the table leaves every other request to libfuse's
 * default answer (ENOSYS), and the read-only mount stops writes before they get here. Neither
 * table has a flush handler: writes are not buffered here, and a kernel whose FLUSH got ENOSYS
 * once stops sending it, which saves a request on every close(). */
const struct fuse_lowlevel_ops fusebridge_ops = {
    .init = bridge_init,
    .lookup = bridge_lookup,
    .forget = bridge_forget,
    .forget_multi = bridge_forget_multi,
    .getattr = bridge_getattr,
    .open = bridge_open,
    .read = bridge_read,
    .release = bridge_release,
    .opendir = bridge_opendir,
    .readdir = bridge_readdir,
    .readdirplus = bridge_readdirplus,
    .releasedir = bridge_releasedir,
};

const struct fuse_lowlevel_ops fusebridge_path_ops = {
    .init = bridge_init,
    .lookup = bridge_lookup,
    .forget = bridge_forget,
    .forget_multi = bridge_forget_multi,
    .getattr = bridge_getattr,
    .setattr = bridge_setattr,
    .readlink = bridge_readlink,
    .mknod = bridge_mknod,
    .mkdir = bridge_mkdir,
    .unlink = bridge_unlink,
    .rmdir = bridge_rmdir,
    .symlink = bridge_symlink,
    .rename = bridge_rename,
    .link = bridge_link,
    .open = bridge_open,
    .read = bridge_read,
    .write = bridge_write,
    .release = bridge_release,
    .fsync = bridge_fsync,
    .opendir = bridge_opendir,
    .readdir = bridge_readdir,
    .readdirplus = bridge_readdirplus,
    .releasedir = bridge_releasedir,
    .fsyncdir = bridge_fsyncdir,
    .statfs = bridge_statfs,
    .access = bridge_access,
    .create = bridge_create,
};

/* ---- answers (loop thread) ------------------------------------------------------------------ */

const struct fusebridge_request *fusebridge_op_request(const struct fusebridge_op *op)
{
    return &op->steps[op->step];
}

/* The provider opened a handle the kernel never got (a later step failed, or the kernel dropped
 * the reply): no RELEASE will come for it, so one goes to the provider from here, with no kernel
 * request behind it. */
static void handle_orphaned(struct fusebridge_op *from)
{
    struct fusebridge_op *op = calloc(1, sizeof(*op));
    if (!op)
        return; /* the provider keeps the handle until the connection ends */
    op->mount = from->mount;
    op->reply = REPLY_STATUS;
    struct fusebridge_request *step = op_step(op, FUSEBRIDGE_RELEASE, from->steps[0].ino);
    step->fh = from->fh;
    step->flags = from->open_flags;
    if (from->steps[0].path && !(step->path = op_keep_string(op, from->steps[0].path))) {
        op_free(op);
        return;
    }
    mount_submit(op->mount, op, false);
}

/* The kernel's reply went out (rc 0), or not: then the handle in it is orphaned. */
static void handle_delivered(struct fusebridge_op *op, int rc)
{
    if (rc == 0)
        op->fh_open = false;
}

void fusebridge_reply_error(struct fusebridge_op *op, int neg_errno)
{
    if (op->listing)
        listing_drop(op->listing); /* a failed listing is asked again from scratch next time */
    if (neg_errno > 0 || neg_errno < -FUSEBRIDGE_ERRNO_MAX)
        neg_errno = -EIO;
    if (op->req)
        fuse_reply_err(op->req, -neg_errno);
    op_free(op);
}

static void attr_complete(struct stat *st)
{
    if (st->st_blksize == 0)
        st->st_blksize = 4096;
}

/* The inode number programs see in stat. A path-based mount names its inodes itself (one per
 * path), but shows the provider's own number when it has one, so hard links share a number as
 * they do on the provider. */
static ino_t shown_inode(const struct stat *attr, uint64_t ino)
{
    return attr->st_ino != 0 ? attr->st_ino : (ino_t)ino;
}

/* Fills `entry` for the kernel with (parent, name) and its attributes; path-based mounts count
 * the lookup in the inode table. */
static int entry_fill(struct fusebridge_mount *mount, uint64_t parent, const char *name,
                      const struct stat *attr, struct fuse_entry_param *entry)
{
    memset(entry, 0, sizeof(*entry));
    entry->attr = *attr;
    attr_complete(&entry->attr);
    entry->attr_timeout = FUSEBRIDGE_CACHE_SECONDS;
    entry->entry_timeout = FUSEBRIDGE_CACHE_SECONDS;
    if (!mount->path_based) {
        entry->ino = attr->st_ino;
        return 0;
    }
    uint64_t ino, generation;
    int rc = inode_table_remember(&mount->inodes, parent, name, &ino, &generation);
    entry->ino = ino;
    entry->generation = generation;
    entry->attr.st_ino = shown_inode(attr, ino);
    if (rc == 0)
        inode_table_set_attr(&mount->inodes, ino, attr);
    return rc;
}

static int entry_make(struct fusebridge_op *op, const struct stat *attr,
                      struct fuse_entry_param *entry)
{
    return entry_fill(op->mount, op->entry_parent, op->entry_name, attr, entry);
}

/* The kernel did not take the entry (the request was interrupted): undo its lookup count. */
static void entry_unwind(struct fusebridge_op *op, const struct fuse_entry_param *entry, int rc)
{
    if (rc != 0 && op->mount->path_based)
        inode_table_forget(&op->mount->inodes, entry->ino, 1);
}

static void reply_entry(struct fusebridge_op *op, const struct stat *attr)
{
    struct fuse_entry_param entry;
    int rc = entry_make(op, attr, &entry);
    if (rc != 0) {
        fuse_reply_err(op->req, -rc);
        return;
    }
    if (op->reply == REPLY_CREATE) {
        struct fuse_file_info fi = {.fh = op->fh, .flags = op->open_flags};
        int sent = fuse_reply_create(op->req, &entry, &fi);
        entry_unwind(op, &entry, sent);
        handle_delivered(op, sent);
    } else {
        entry_unwind(op, &entry, fuse_reply_entry(op->req, &entry));
    }
}

static void reply_attr_cached(fuse_req_t req, fuse_ino_t ino, const struct stat *cached)
{
    struct stat st = *cached;
    attr_complete(&st);
    st.st_ino = shown_inode(cached, ino);
    fuse_reply_attr(req, &st, FUSEBRIDGE_CACHE_SECONDS);
}

static void reply_attr(struct fusebridge_op *op, const struct stat *attr)
{
    struct stat st = *attr;
    attr_complete(&st);
    if (op->mount->path_based)
        inode_table_set_attr(&op->mount->inodes, op->steps[0].ino, attr);
    st.st_ino = op->mount->path_based ? shown_inode(attr, op->steps[0].ino) : op->steps[0].ino;
    fuse_reply_attr(op->req, &st, FUSEBRIDGE_CACHE_SECONDS);
}

static void reply_readlink(struct fusebridge_op *op, const struct fusebridge_answer *answer)
{
    char target[PATH_MAX];
    if (answer->len == 0 || answer->len >= sizeof(target) ||
        memchr(answer->data, '\0', answer->len)) {
        fuse_reply_err(op->req, EIO);
        return;
    }
    memcpy(target, answer->data, answer->len);
    target[answer->len] = '\0';
    fuse_reply_readlink(op->req, target);
}

/* The kernel caches attributes per inode, and each name of a hard-linked file is its own inode
 * here: when one name comes or goes, the others' link counts are stale. Attributes only (offset
 * -1), so the kernel takes no page locks and this cannot wait on us. */
static void aliases_invalidate(struct fusebridge_op *op, uint64_t provider_ino)
{
    uint64_t inos[64];
    size_t n = inode_table_aliases(&op->mount->inodes, provider_ino, inos, 64);
    for (size_t i = 0; i < n; i++)
        fuse_lowlevel_notify_inval_inode(op->mount->session, inos[i], -1, 0);
}

/* A write or setattr through one name of a hard-linked file leaves the other names' attributes
 * stale, and their cached data. Only attributes are invalidated here, before the kernel gets its
 * reply: that takes no page locks (dropping pages could wait on a write in flight through
 * another name, whose reply may wait on us). The kernel drops the other names' cached pages
 * itself when it next asks their attributes and sees the size or mtime changed (auto_inval_data),
 * in the reader's own context. */
static void others_invalidate(struct fusebridge_op *op)
{
    /* REPLY_ATTR_CACHED: a truncate through a name that is gone (a file unlinked while open). */
    bool changes = op->reply == REPLY_WRITE || op->reply == REPLY_ATTR_CACHED ||
                   (op->reply == REPLY_ATTR && op->nsteps > 1);
    if (!op->mount->path_based || !changes)
        return;
    uint64_t ino = op->steps[0].ino;
    uint64_t shared = inode_table_shared_inode(&op->mount->inodes, ino);
    uint64_t inos[64];
    size_t n = shared ? inode_table_aliases(&op->mount->inodes, shared, inos, 64) : 0;
    for (size_t i = 0; i < n; i++)
        if (inos[i] != ino)
            fuse_lowlevel_notify_inval_inode(op->mount->session, inos[i], -1, 0);
}

static void apply_effect(struct fusebridge_op *op)
{
    struct inode_table *inodes = &op->mount->inodes;
    uint64_t shared = 0;
    if (!op->mount->path_based)
        return;
    if (op->effect == EFFECT_UNLINK)
        shared = inode_table_unlink(inodes, op->entry_parent, op->entry_name);
    else if (op->effect == EFFECT_RENAME)
        shared = inode_table_rename(inodes, op->entry_parent, op->entry_name, op->new_parent,
                                    op->new_name, op->rename_flags);
    if (shared != 0)
        aliases_invalidate(op, shared);
}

static void op_reply(struct fusebridge_op *op, const struct fusebridge_answer *answer)
{
    switch (op->reply) {
    case REPLY_STATUS:
        apply_effect(op);
        if (op->req) /* else a release of an orphaned handle: nobody waits */
            fuse_reply_err(op->req, 0);
        break;
    case REPLY_ENTRY:
    case REPLY_CREATE:
        /* Before the reply: once link() returns, its caller may stat the other names at once,
         * and must not find their old link count in the kernel's cache. */
        if (op->steps[0].kind == FUSEBRIDGE_LINK)
            aliases_invalidate(op, (uint64_t)answer->attr.st_ino);
        reply_entry(op, &answer->attr);
        break;
    case REPLY_ATTR:
        reply_attr(op, &answer->attr);
        break;
    case REPLY_ATTR_CACHED: {
        struct stat st;
        if (inode_table_unlinked_attr(&op->mount->inodes, op->steps[0].ino, &st) == 0)
            reply_attr_cached(op->req, op->steps[0].ino, &st);
        else
            fuse_reply_err(op->req, ESTALE);
        break;
    }
    case REPLY_OPEN: {
        /* Pages read before stay for the next open of the same file: the kernel also drops them
         * itself when fresh attributes show another size or mtime (auto_inval_data, asked for in
         * init). Not for JSON providers: their mtimes have whole seconds, so a file rewritten
         * within one at the same size would stay stale, and they send no ctime. */
        bool keep = op->mount->path_based &&
                    inode_table_open_keeps_cache(&op->mount->inodes, op->steps[0].ino);
        struct fuse_file_info fi = {.fh = op->fh, .flags = op->open_flags, .keep_cache = keep};
        handle_delivered(op, fuse_reply_open(op->req, &fi));
        break;
    }
    case REPLY_DATA:
        fuse_reply_buf(op->req, answer->data, answer->len);
        break;
    case REPLY_WRITE:
        if (op->mount->path_based)
            inode_table_grow(&op->mount->inodes, op->steps[0].ino,
                             op->steps[0].offset + answer->len);
        fuse_reply_write(op->req, answer->len);
        break;
    case REPLY_READLINK:
        reply_readlink(op, answer);
        break;
    case REPLY_STATFS:
        fuse_reply_statfs(op->req, &answer->statfs);
        break;
    case REPLY_READDIR:
        fuse_reply_err(op->req, EIO); /* listings are answered with fusebridge_readdir_done */
        break;
    }
}

static bool opens_a_handle(const struct fusebridge_op *op)
{
    enum fusebridge_kind kind = op->steps[op->step].kind;
    return kind == FUSEBRIDGE_OPEN || kind == FUSEBRIDGE_CREATE;
}

bool fusebridge_op_abandon(struct fusebridge_op *op, int neg_errno)
{
    if (!opens_a_handle(op) || op->abandoned)
        return false;
    if (neg_errno > 0 || neg_errno < -FUSEBRIDGE_ERRNO_MAX)
        neg_errno = -EIO;
    if (op->req)
        fuse_reply_err(op->req, -neg_errno);
    op->req = NULL;
    op->abandoned = true;
    return true;
}

int fusebridge_op_answer(struct fusebridge_op *op, const struct fusebridge_answer *answer)
{
    if (opens_a_handle(op)) {
        op->fh = answer->fh;
        op->fh_open = true;
    }
    if (op->abandoned) { /* nobody takes the handle: op_free releases it */
        op_free(op);
        return 0;
    }
    if (++op->step < op->nsteps) {
        mount_submit(op->mount, op, true);
        return 1;
    }
    others_invalidate(op);
    op_reply(op, answer);
    op_free(op);
    return 0;
}

/* ---- directory listings ---------------------------------------------------------------------- */

static void entry_attr_from_stat(struct entry_attr *a, const struct stat *st)
{
    *a = (struct entry_attr){
        .ino = (uint64_t)st->st_ino,
        .nlink = (uint64_t)st->st_nlink,
        .size = (uint64_t)st->st_size,
        .blocks = (uint64_t)st->st_blocks,
        .rdev = (uint64_t)st->st_rdev,
        .atime = st->st_atim.tv_sec,
        .mtime = st->st_mtim.tv_sec,
        .ctime = st->st_ctim.tv_sec,
        .atime_nsec = (uint32_t)st->st_atim.tv_nsec,
        .mtime_nsec = (uint32_t)st->st_mtim.tv_nsec,
        .ctime_nsec = (uint32_t)st->st_ctim.tv_nsec,
        .mode = st->st_mode,
        .uid = st->st_uid,
        .gid = st->st_gid,
    };
}

static void entry_attr_to_stat(const struct entry_attr *a, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = (ino_t)a->ino;
    st->st_nlink = (nlink_t)a->nlink;
    st->st_size = (off_t)a->size;
    st->st_blocks = (blkcnt_t)a->blocks;
    st->st_rdev = (dev_t)a->rdev;
    st->st_atim = (struct timespec){(time_t)a->atime, a->atime_nsec};
    st->st_mtim = (struct timespec){(time_t)a->mtime, a->mtime_nsec};
    st->st_ctim = (struct timespec){(time_t)a->ctime, a->ctime_nsec};
    st->st_mode = a->mode;
    st->st_uid = a->uid;
    st->st_gid = a->gid;
}

static const char *entry_name(const struct dir_listing *listing, const struct listing_entry *e)
{
    return listing->names + e->name;
}

/* Grows a listing's buffer to hold `need` units, within FUSEBRIDGE_LISTINGS_BYTES for all. */
static int grow(size_t *used, void **buf, size_t *cap, size_t need, size_t unit)
{
    if (need <= *cap)
        return 0;
    size_t next = *cap ? *cap * 2 : 64;
    while (next < need)
        next *= 2;
    size_t more = (next - *cap) * unit;
    if (*used + more > FUSEBRIDGE_LISTINGS_BYTES)
        return -ENOMEM;
    void *grown = realloc(*buf, next * unit);
    if (!grown)
        return -ENOMEM;
    *used += more;
    *buf = grown;
    *cap = next;
    return 0;
}

/* Appends an entry; `attr` may be NULL (then only `ino` is kept). */
static int listing_append(struct dir_listing *listing, const char *name, uint64_t ino,
                          const struct stat *attr)
{
    size_t len = strlen(name) + 1;
    if (listing->count >= FUSEBRIDGE_LISTING_MAX ||
        listing->names_len + len > FUSEBRIDGE_LISTING_NAME_BYTES)
        return -EFBIG;
    if (grow(listing->budget_used, (void **)&listing->entries, &listing->cap, listing->count + 1,
             sizeof(*listing->entries)) != 0 ||
        grow(listing->budget_used, (void **)&listing->names, &listing->names_cap,
             listing->names_len + len, 1) != 0)
        return -ENOMEM;
    struct listing_entry *e = &listing->entries[listing->count++];
    memset(e, 0, sizeof(*e));
    e->attr.ino = ino;
    if (attr) {
        entry_attr_from_stat(&e->attr, attr);
        e->has_attr = true;
    }
    e->name = (uint32_t)listing->names_len;
    memcpy(listing->names + listing->names_len, name, len);
    listing->names_len += len;
    return 0;
}

/* The directory's own entries; the bridge lists them itself, whatever the provider sends. */
static int listing_start(struct dir_listing *listing)
{
    if (listing->count > 0)
        return 0;
    int rc = listing_append(listing, ".", 0, NULL);
    return rc == 0 ? listing_append(listing, "..", 0, NULL) : rc;
}

/* d_ino and d_type of an entry in a plain listing. */
static struct stat entry_dirent_stat(struct fusebridge_mount *mount, struct dir_listing *listing,
                                     size_t index)
{
    const struct listing_entry *e = &listing->entries[index];
    struct stat st = {.st_ino = e->attr.ino, .st_mode = e->has_attr ? e->attr.mode & S_IFMT : 0};
    if (index < 2) {
        st.st_ino = listing->dir;
        st.st_mode = S_IFDIR;
    } else if (mount->path_based && !(e->has_attr && e->attr.ino != 0)) {
        /* The number stat shows: the provider's when it sent one, else the table's. */
        uint64_t ino = inode_table_find(&mount->inodes, listing->dir, entry_name(listing, e));
        st.st_ino = ino != 0 ? ino : FUSEBRIDGE_UNKNOWN_INODE;
    }
    return st;
}

/* Fills buf with plain entries from `index` on; returns the bytes used. */
static size_t listing_fill_plain(fuse_req_t req, struct fusebridge_mount *mount,
                                 struct dir_listing *listing, size_t index, char *buf, size_t size)
{
    size_t used = 0;
    for (; index < listing->count; index++) {
        struct stat st = entry_dirent_stat(mount, listing, index);
        const char *name = entry_name(listing, &listing->entries[index]);
        size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)index + 1);
        if (need > size - used)
            break;
        used += need;
    }
    return used;
}

/* Whether the listing's attributes may go to the kernel. The kernel only guards against
 * attributes older than the readdir call it made; a listing asked for before a file changed
 * through this mount (a write through another name of a hard link, say) would set its attributes
 * back, so then the entries go without. */
static bool listing_attrs_fresh(struct fusebridge_mount *mount, const struct dir_listing *listing)
{
    return mount->changes == listing->changes_then &&
           uv_hrtime() - listing->asked_at < FUSEBRIDGE_LISTING_FRESH_NS;
}

/* Fills buf with entries with attributes from `index` on, counting a lookup for each entry that
 * has them (the kernel takes every entry of the buffer, even those its caller has no room for).
 * Their inodes go to taken[] so that a reply the kernel refuses can be undone. */
static size_t listing_fill_plus(fuse_req_t req, struct fusebridge_mount *mount,
                                struct dir_listing *listing, size_t index, char *buf, size_t size,
                                uint64_t *taken, size_t *ntaken)
{
    bool fresh = listing_attrs_fresh(mount, listing);
    size_t used = 0;
    for (; index < listing->count; index++) {
        const struct listing_entry *e = &listing->entries[index];
        const char *name = entry_name(listing, e);
        size_t need = fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0);
        if (need > size - used)
            break;
        struct fuse_entry_param entry = {.attr = entry_dirent_stat(mount, listing, index)};
        /* "." and ".." and entries without attributes go without a lookup (ino 0); so does an
         * entry the inode table has no room for: the kernel looks it up when it needs it. */
        if (index >= 2 && e->has_attr && fresh) {
            struct stat st;
            entry_attr_to_stat(&e->attr, &st);
            struct fuse_entry_param filled;
            if (entry_fill(mount, listing->dir, name, &st, &filled) == 0) {
                entry = filled;
                if (mount->path_based)
                    taken[(*ntaken)++] = entry.ino;
            }
        }
        used +=
            fuse_add_direntry_plus(req, buf + used, size - used, name, &entry, (off_t)index + 1);
    }
    return used;
}

/* Answers a readdir or readdirplus of `size` bytes from entry `offset` of a loaded listing: a
 * listing already loaded when the kernel asks, or one that just came. */
static void listing_reply(fuse_req_t req, struct fusebridge_mount *mount,
                          struct dir_listing *listing, size_t size, off_t offset, bool plus)
{
    if (offset < 0 || (size_t)offset >= listing->count || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    /* No entry is smaller than one with an empty name: this bounds the entries of one reply. */
    size_t most = size / fuse_add_direntry_plus(req, NULL, 0, "", NULL, 0) + 1;
    char *buf = malloc(size);
    uint64_t *taken = plus ? malloc(most * sizeof(*taken)) : NULL;
    if (!buf || (plus && !taken)) {
        free(buf);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used, ntaken = 0;
    if (plus)
        used = listing_fill_plus(req, mount, listing, (size_t)offset, buf, size, taken, &ntaken);
    else
        used = listing_fill_plain(req, mount, listing, (size_t)offset, buf, size);
    if (fuse_reply_buf(req, buf, used) != 0)
        for (size_t i = 0; i < ntaken; i++)
            inode_table_forget(&mount->inodes, taken[i], 1);
    free(taken);
    free(buf);
}

static bool dirent_name_valid(const char *name)
{
    size_t len = strlen(name);
    return len > 0 && len <= FUSEBRIDGE_NAME_MAX && !strchr(name, '/');
}

int fusebridge_readdir_add(struct fusebridge_op *op, const char *name, uint64_t ino,
                           const struct stat *attr)
{
    struct dir_listing *listing = op->listing;
    int rc = listing_start(listing);
    if (rc != 0)
        return rc;
    if (++listing->received > FUSEBRIDGE_LISTING_MAX)
        return -EFBIG;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    if (!dirent_name_valid(name))
        return -EINVAL;
    return listing_append(listing, name, ino, attr);
}

void fusebridge_readdir_continue(struct fusebridge_op *op, uint64_t cookie)
{
    if (cookie == 0)
        listing_clear(op->listing);
    op->steps[op->step].offset = cookie;
    mount_submit(op->mount, op, true);
}

void fusebridge_readdir_done(struct fusebridge_op *op)
{
    struct dir_listing *listing = op->listing;
    if (listing_start(listing) != 0) {
        fusebridge_reply_error(op, -ENOMEM);
        return;
    }
    listing->loaded = true;
    listing_reply(op->req, op->mount, listing, op->readdir_size, op->readdir_offset,
                  op->readdir_plus);
    op_free(op);
}
