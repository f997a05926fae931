/* fusebridge: FUSE mounts whose requests are answered asynchronously from the loop thread.
 *
 * Threads: each mount has one worker thread that mounts, runs fuse_session_loop, and tears the
 * FUSE session down. Its handlers never wait: they either answer at once (forget, opendir, a
 * cached directory listing) or queue an op for the loop thread. Unmounting runs on the libuv
 * thread pool. Everything else (popping ops, replying, the mount's state machine) runs on the loop
 * thread.
 */
#define FUSE_USE_VERSION 314

#include "fusebridge.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "log.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* How long the kernel may cache names and attributes. Providers cannot tell us when a file
 * changes, so this bounds how stale a listing can be; one second keeps `ls -l` and repeated stat
 * calls from each costing a network round trip. */
#define FUSEBRIDGE_CACHE_SECONDS 1.0

/* A directory entry's name as the kernel accepts it (NAME_MAX). */
#define FUSEBRIDGE_NAME_MAX 255

extern char **environ;

/* An open directory: the whole listing, asked from the provider once per opendir and then served
 * in pieces as the kernel asks for them (offsets are byte offsets into `buf`). */
struct dir_listing {
    struct dir_listing *prev; /* in the mount's open listings (worker thread only) */
    struct dir_listing *next;
    bool loaded;
    char *buf;
    size_t size;
    size_t cap;
};

struct fusebridge_op {
    struct fusebridge_op *next; /* in the mount's queue */
    fuse_req_t req;
    struct fusebridge_request request;
    struct dir_listing *listing; /* READDIR */
    size_t readdir_size;         /* READDIR: bytes the kernel asked for */
    off_t readdir_offset;        /* READDIR: where the kernel is in the listing */
    char name[];                 /* LOOKUP: the entry name, owned here */
};

enum mount_state { MOUNT_MOUNTING, MOUNT_MOUNTED, MOUNT_UNMOUNTING, MOUNT_GONE };

struct fusebridge_mount {
    uv_loop_t *loop;
    uv_async_t wakeup; /* worker -> loop: ops queued, mounted, exited */
    uv_thread_t worker;
    uv_work_t unmount_work;
    struct fusebridge_callbacks callbacks;
    void *user;
    char *mountpoint;
    char *fsname;
    bool read_only;

    /* Loop thread only. */
    enum mount_state state;
    bool close_requested;
    bool unmount_running;
    bool finishing;

    /* Shared with the worker, under `lock`. */
    uv_mutex_t lock;
    struct fusebridge_op *head;
    struct fusebridge_op *tail;
    bool closing;       /* new kernel requests fail with EIO */
    bool mount_done;    /* the worker's mount attempt has ended ... */
    int mount_status;   /* ... with this status */
    bool mount_seen;    /* the loop thread has acted on mount_done */
    bool worker_exited; /* the worker has torn the FUSE session down and ends */

    struct fuse_session *session; /* worker thread only */
    /* Open directories, freed at teardown when an aborted connection never sends releasedir.
     * Worker thread only. */
    struct dir_listing *listings;
};

static void op_free(struct fusebridge_op *op)
{
    free(op);
}

/* ---- the worker side: kernel requests ------------------------------------------------------ */

static struct fusebridge_mount *mount_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static struct fusebridge_op *op_new(fuse_req_t req, enum fusebridge_kind kind, fuse_ino_t ino,
                                    const char *name)
{
    size_t name_len = name ? strlen(name) + 1 : 0;
    struct fusebridge_op *op = calloc(1, sizeof(*op) + name_len);
    if (!op) {
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    op->req = req;
    op->request.kind = kind;
    op->request.ino = ino;
    if (name) {
        memcpy(op->name, name, name_len);
        op->request.name = op->name;
    }
    return op;
}

/* Worker thread. Hands the op to the loop thread, or fails it when the mount is closing. */
static void op_submit(struct fusebridge_op *op)
{
    struct fusebridge_mount *mount = mount_of(op->req);
    bool wake = false;

    uv_mutex_lock(&mount->lock);
    bool closing = mount->closing;
    if (!closing) {
        wake = mount->head == NULL;
        if (mount->tail)
            mount->tail->next = op;
        else
            mount->head = op;
        mount->tail = op;
    }
    uv_mutex_unlock(&mount->lock);

    if (closing)
        fusebridge_reply_error(op, -EIO);
    else if (wake)
        uv_async_send(&mount->wakeup);
}

static void bridge_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /* Several reads in flight per file is what keeps a remote provider busy. */
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
}

static void bridge_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fusebridge_op *op = op_new(req, FUSEBRIDGE_LOOKUP, parent, name);
    if (op)
        op_submit(op);
}

static void bridge_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    /* The provider's inode numbers are used as they are: there is no table to shrink. */
    (void)ino;
    (void)nlookup;
    fuse_reply_none(req);
}

static void bridge_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct fusebridge_op *op = op_new(req, FUSEBRIDGE_GETATTR, ino, NULL);
    if (op)
        op_submit(op);
}

static void bridge_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fusebridge_op *op = op_new(req, FUSEBRIDGE_OPEN, ino, NULL);
    if (op) {
        op->request.flags = fi->flags;
        op_submit(op);
    }
}

static void bridge_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    struct fusebridge_op *op = op_new(req, FUSEBRIDGE_READ, ino, NULL);
    if (op) {
        op->request.fh = fi->fh;
        op->request.offset = (uint64_t)off;
        op->request.size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
        op_submit(op);
    }
}

static void bridge_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fusebridge_op *op = op_new(req, FUSEBRIDGE_RELEASE, ino, NULL);
    if (op) {
        op->request.fh = fi->fh;
        op->request.flags = fi->flags;
        op_submit(op);
    }
}

static void bridge_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    struct dir_listing *listing = calloc(1, sizeof(*listing));
    if (!listing) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    struct fusebridge_mount *mount = mount_of(req); /* the reply frees req */
    fi->fh = (uintptr_t)listing;
    if (fuse_reply_open(req, fi) != 0) {
        free(listing); /* the kernel will not send releasedir for a failed open */
        return;
    }
    listing->next = mount->listings;
    if (mount->listings)
        mount->listings->prev = listing;
    mount->listings = listing;
}

static void listing_free(struct fusebridge_mount *mount, struct dir_listing *listing)
{
    if (listing->prev)
        listing->prev->next = listing->next;
    else
        mount->listings = listing->next;
    if (listing->next)
        listing->next->prev = listing->prev;
    free(listing->buf);
    free(listing);
}

static void listing_reply(fuse_req_t req, const struct dir_listing *listing, size_t size,
                          off_t offset)
{
    if (offset < 0 || (size_t)offset >= listing->size) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t left = listing->size - (size_t)offset;
    /* A cut through an entry is fine: the kernel stops at the last whole one and asks again from
     * that entry's offset. */
    fuse_reply_buf(req, listing->buf + offset, left < size ? left : size);
}

static void bridge_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    struct dir_listing *listing = (struct dir_listing *)(uintptr_t)fi->fh;
    if (listing->loaded) {
        listing_reply(req, listing, size, off);
        return;
    }
    struct fusebridge_op *op = op_new(req, FUSEBRIDGE_READDIR, ino, NULL);
    if (op) {
        op->listing = listing;
        op->readdir_size = size;
        op->readdir_offset = off;
        op_submit(op);
    }
}

static void bridge_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    listing_free(mount_of(req), (struct dir_listing *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops bridge_ops = {
    .init = bridge_init,
    .lookup = bridge_lookup,
    .forget = bridge_forget,
    .getattr = bridge_getattr,
    .open = bridge_open,
    .read = bridge_read,
    .release = bridge_release,
    .opendir = bridge_opendir,
    .readdir = bridge_readdir,
    .releasedir = bridge_releasedir,
};

/* ---- the worker thread ----------------------------------------------------------------------- */

static int mountpoint_prepare(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

static int session_create(struct fusebridge_mount *mount)
{
    char options[512];
    snprintf(options, sizeof(options), "fsname=webfuse:%s,subtype=webfuse,default_permissions%s",
             mount->fsname, mount->read_only ? ",ro" : "");
    char *argv[] = {"webfused", "-o", options, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);

    mount->session = fuse_session_new(&args, &bridge_ops, sizeof(bridge_ops), mount);
    fuse_opt_free_args(&args);
    if (!mount->session)
        return -EINVAL;
    if (fuse_session_mount(mount->session, mount->mountpoint) != 0) {
        fuse_session_destroy(mount->session);
        mount->session = NULL;
        while (mount->listings)
            listing_free(mount, mount->listings);
        return -EIO;
    }
    return 0;
}

static void worker_post(struct fusebridge_mount *mount, bool mounted_event, int status)
{
    uv_mutex_lock(&mount->lock);
    if (mounted_event) {
        mount->mount_done = true;
        mount->mount_status = status;
    } else {
        mount->worker_exited = true;
    }
    uv_mutex_unlock(&mount->lock);
    uv_async_send(&mount->wakeup);
}

static void worker_main(void *arg)
{
    struct fusebridge_mount *mount = arg;
    int status = mountpoint_prepare(mount->mountpoint);
    if (status == 0)
        status = session_create(mount);
    worker_post(mount, true, status);

    if (status == 0) {
        /* Returns once the mount is gone: unmounted, aborted, or by hand. */
        fuse_session_loop(mount->session);
        fuse_session_unmount(mount->session);
        fuse_session_destroy(mount->session);
        mount->session = NULL;
        while (mount->listings)
            listing_free(mount, mount->listings);
        rmdir(mount->mountpoint);
    }
    worker_post(mount, false, 0);
}

static void mount_finish(struct fusebridge_mount *mount);

/* ---- unmounting (thread pool) -----------------------------------------------------------------
 */

/* Finds the FUSE connection number (the mount's minor device) in /proc/self/mountinfo. */
static int connection_of(const char *mountpoint, unsigned *minor)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char line[4096];
    int rc = -ENOENT;
    while (fgets(line, sizeof(line), f)) {
        unsigned major, min;
        char path[PATH_MAX];
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &major, &min, path) == 3 &&
            strcmp(path, mountpoint) == 0) {
            *minor = min;
            rc = 0; /* keep going: the last mount on a path is the visible one */
        }
    }
    fclose(f);
    return rc;
}

static void connection_abort(unsigned minor)
{
    char path[64];
    snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort", minor);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* fusectl not mounted, or the connection is already gone */
    ssize_t ignored = write(fd, "1", 1);
    (void)ignored;
    close(fd);
}

static void unmount_unprivileged(const char *mountpoint)
{
    char *argv[] = {"fusermount3", "-u", "-z", (char *)mountpoint, NULL};
    pid_t pid;
    if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) != 0)
        return;
    int status;
    waitpid(pid, &status, 0);
}

static void unmount_work(uv_work_t *work)
{
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, unmount_work);
    unsigned minor = 0;
    bool known = connection_of(mount->mountpoint, &minor) == 0;

    /* Lazy: processes that still hold files keep them, but the name is gone at once. */
    if (umount2(mount->mountpoint, MNT_DETACH) != 0 && errno == EPERM)
        unmount_unprivileged(mount->mountpoint);
    /* Aborting ends the worker's loop even while a process keeps a file open. */
    if (known)
        connection_abort(minor);
}

static void unmount_done(uv_work_t *work, int status)
{
    (void)status;
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, unmount_work);
    mount->unmount_running = false;
    if (mount->state == MOUNT_GONE)
        mount_finish(mount);
}

/* ---- the loop side ----------------------------------------------------------------------------
 */

static void mount_release(struct fusebridge_mount *mount)
{
    uv_mutex_destroy(&mount->lock);
    free(mount->mountpoint);
    free(mount->fsname);
    free(mount);
}

static void mount_free(uv_handle_t *handle)
{
    struct fusebridge_mount *mount = container_of(handle, struct fusebridge_mount, wakeup);
    mount->callbacks.on_closed(mount, mount->user);
    mount_release(mount);
}

static void mount_free_unstarted(uv_handle_t *handle)
{
    mount_release(container_of(handle, struct fusebridge_mount, wakeup));
}

/* The worker has ended: join it and free the mount once no unmount work still refers to it. */
static void mount_finish(struct fusebridge_mount *mount)
{
    if (mount->unmount_running || mount->finishing)
        return;
    mount->finishing = true;
    uv_thread_join(&mount->worker);
    uv_close((uv_handle_t *)&mount->wakeup, mount_free);
}

static void mount_start_unmount(struct fusebridge_mount *mount)
{
    mount->state = MOUNT_UNMOUNTING;
    mount->unmount_running = true;
    if (uv_queue_work(mount->loop, &mount->unmount_work, unmount_work, unmount_done) != 0) {
        mount->unmount_running = false;
        log_error("mount %s: cannot schedule unmount", mount->mountpoint);
    }
}

static void mount_on_mount_done(struct fusebridge_mount *mount, int status)
{
    if (status != 0) {
        log_error("mount %s failed: %s", mount->mountpoint, strerror(-status));
        mount->state = MOUNT_GONE;
        if (!mount->close_requested)
            mount->callbacks.on_mounted(mount, status, mount->user);
        return;
    }
    log_debug("mounted %s", mount->mountpoint);
    mount->state = MOUNT_MOUNTED;
    if (mount->close_requested)
        mount_start_unmount(mount);
    else
        mount->callbacks.on_mounted(mount, 0, mount->user);
}

static void mount_wakeup(uv_async_t *async)
{
    struct fusebridge_mount *mount = container_of(async, struct fusebridge_mount, wakeup);
    uv_mutex_lock(&mount->lock);
    bool mount_event = mount->mount_done && !mount->mount_seen;
    mount->mount_seen = mount->mount_done;
    int mount_status = mount->mount_status;
    bool exited = mount->worker_exited;
    bool ready = mount->head != NULL;
    uv_mutex_unlock(&mount->lock);

    if (mount_event)
        mount_on_mount_done(mount, mount_status);
    if (exited) {
        if (mount->state == MOUNT_MOUNTED && !mount->close_requested)
            log_info("mount %s went away", mount->mountpoint);
        mount->state = MOUNT_GONE;
        fusebridge_mount_close(mount); /* fails whatever is still queued */
        mount_finish(mount);
        return;
    }
    if (ready && !mount->close_requested)
        mount->callbacks.on_ready(mount, mount->user);
}

int fusebridge_mount_start(uv_loop_t *loop, const struct fusebridge_options *options,
                           const struct fusebridge_callbacks *callbacks, void *user,
                           struct fusebridge_mount **out)
{
    struct fusebridge_mount *mount = calloc(1, sizeof(*mount));
    if (!mount)
        return -ENOMEM;
    mount->loop = loop;
    mount->callbacks = *callbacks;
    mount->user = user;
    mount->read_only = options->read_only;
    mount->mountpoint = strdup(options->mountpoint);
    mount->fsname = strdup(options->fsname);
    int rc = -ENOMEM;
    if (!mount->mountpoint || !mount->fsname)
        goto fail;
    rc = uv_mutex_init(&mount->lock);
    if (rc != 0)
        goto fail;
    rc = uv_async_init(loop, &mount->wakeup, mount_wakeup);
    if (rc != 0)
        goto fail_mutex;
    rc = uv_thread_create(&mount->worker, worker_main, mount);
    if (rc != 0)
        goto fail_async;
    *out = mount;
    return 0;

fail_async:
    /* No thread runs: free once the handle is closed, without telling the owner. */
    uv_close((uv_handle_t *)&mount->wakeup, mount_free_unstarted);
    return rc;
fail_mutex:
    uv_mutex_destroy(&mount->lock);
fail:
    free(mount->mountpoint);
    free(mount->fsname);
    free(mount);
    return rc;
}

void fusebridge_mount_close(struct fusebridge_mount *mount)
{
    uv_mutex_lock(&mount->lock);
    mount->closing = true;
    struct fusebridge_op *queued = mount->head;
    mount->head = mount->tail = NULL;
    uv_mutex_unlock(&mount->lock);

    while (queued) {
        struct fusebridge_op *next = queued->next;
        fusebridge_reply_error(queued, -EIO);
        queued = next;
    }
    if (mount->close_requested)
        return;
    mount->close_requested = true;
    if (mount->state == MOUNT_MOUNTED)
        mount_start_unmount(mount);
}

struct fusebridge_op *fusebridge_mount_pop(struct fusebridge_mount *mount)
{
    uv_mutex_lock(&mount->lock);
    struct fusebridge_op *op = mount->head;
    if (op) {
        mount->head = op->next;
        if (!mount->head)
            mount->tail = NULL;
        op->next = NULL;
    }
    uv_mutex_unlock(&mount->lock);
    return op;
}

const struct fusebridge_request *fusebridge_op_request(const struct fusebridge_op *op)
{
    return &op->request;
}

/* ---- replies (any thread; the session calls them from the loop thread) ------------------------
 */

void fusebridge_reply_error(struct fusebridge_op *op, int neg_errno)
{
    if (op->listing)
        op->listing->size = 0; /* a failed listing is asked again from scratch next time */
    fuse_reply_err(op->req, -neg_errno);
    op_free(op);
}

static void attr_complete(struct stat *st)
{
    if (st->st_blksize == 0)
        st->st_blksize = 4096;
}

void fusebridge_reply_entry(struct fusebridge_op *op, const struct stat *st)
{
    struct fuse_entry_param entry = {0};
    entry.ino = st->st_ino;
    entry.attr = *st;
    attr_complete(&entry.attr);
    entry.attr_timeout = FUSEBRIDGE_CACHE_SECONDS;
    entry.entry_timeout = FUSEBRIDGE_CACHE_SECONDS;
    fuse_reply_entry(op->req, &entry);
    op_free(op);
}

void fusebridge_reply_attr(struct fusebridge_op *op, const struct stat *st)
{
    struct stat attr = *st;
    attr_complete(&attr);
    attr.st_ino = op->request.ino;
    fuse_reply_attr(op->req, &attr, FUSEBRIDGE_CACHE_SECONDS);
    op_free(op);
}

void fusebridge_reply_open(struct fusebridge_op *op, uint64_t fh)
{
    struct fuse_file_info fi = {0};
    fi.fh = fh;
    fi.flags = op->request.flags;
    fuse_reply_open(op->req, &fi);
    op_free(op);
}

void fusebridge_reply_data(struct fusebridge_op *op, const void *data, size_t len)
{
    fuse_reply_buf(op->req, data, len);
    op_free(op);
}

static int listing_add(fuse_req_t req, struct dir_listing *listing, const char *name, uint64_t ino,
                       uint32_t mode)
{
    struct stat st = {.st_ino = ino, .st_mode = mode};
    size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
    if (listing->size + need > listing->cap) {
        size_t cap = listing->cap ? listing->cap * 2 : 4096;
        while (cap < listing->size + need)
            cap *= 2;
        char *buf = realloc(listing->buf, cap);
        if (!buf)
            return -ENOMEM;
        listing->buf = buf;
        listing->cap = cap;
    }
    /* Each entry's offset is where the next one starts, so any offset resumes cleanly. */
    fuse_add_direntry(req, listing->buf + listing->size, need, name, &st,
                      (off_t)(listing->size + need));
    listing->size += need;
    return 0;
}

static bool dirent_name_valid(const char *name)
{
    size_t len = strlen(name);
    return len > 0 && len <= FUSEBRIDGE_NAME_MAX && !strchr(name, '/');
}

int fusebridge_readdir_add(struct fusebridge_op *op, const char *name, uint64_t ino, uint32_t mode)
{
    struct dir_listing *listing = op->listing;
    if (listing->size == 0) {
        int rc = listing_add(op->req, listing, ".", op->request.ino, S_IFDIR);
        if (rc == 0)
            rc = listing_add(op->req, listing, "..", op->request.ino, S_IFDIR);
        if (rc != 0)
            return rc;
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    if (!dirent_name_valid(name))
        return -EINVAL;
    return listing_add(op->req, listing, name, ino, mode & S_IFMT);
}

void fusebridge_readdir_done(struct fusebridge_op *op)
{
    struct dir_listing *listing = op->listing;
    if (listing->size == 0 && fusebridge_readdir_add(op, ".", 0, 0) != 0) {
        fusebridge_reply_error(op, -ENOMEM);
        return;
    }
    listing->loaded = true;
    listing_reply(op->req, listing, op->readdir_size, op->readdir_offset);
    op_free(op);
}
