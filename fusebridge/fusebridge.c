/* fusebridge: FUSE mounts whose requests are answered asynchronously from the loop thread.
 *
 * Threads: each mount has one worker thread that mounts, runs fuse_session_loop, and tears the
 * FUSE session down. Its handlers never wait: they either answer at once (forget, opendir, a
 * cached directory listing) or queue an op for the loop thread. Unmounting runs on the libuv
 * thread pool. Everything else (popping ops, replying, the mount's state machine) runs on the loop
 * thread.
 */
#include "fusebridge_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

void mount_submit(struct fusebridge_mount *mount, struct fusebridge_op *op, bool front)
{
    if (op_changes_files(op))
        atomic_fetch_add(&mount->changes, 1);
    bool wake = false;
    uv_mutex_lock(&mount->lock);
    bool closing = mount->closing;
    if (!closing) {
        wake = mount->head == NULL;
        if (front) {
            *op_next(op) = mount->head;
            mount->head = op;
            if (!mount->tail)
                mount->tail = op;
        } else {
            *op_next(op) = NULL;
            if (mount->tail)
                *op_next(mount->tail) = op;
            else
                mount->head = op;
            mount->tail = op;
        }
    }
    uv_mutex_unlock(&mount->lock);

    if (closing)
        fusebridge_reply_error(op, -EIO);
    else if (wake)
        uv_async_send(&mount->wakeup);
}

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
    /* nosuid,nodev: a provider's set-user-ID files and device nodes must not act on the
     * device. */
    snprintf(options, sizeof(options),
             "fsname=webfuse:%s,subtype=webfuse,default_permissions,nosuid,nodev%s%s",
             mount->fsname, mount->read_only ? ",ro" : "",
             mount->allow_other ? ",allow_other" : "");
    char *argv[] = {"webfused", "-o", options, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);

    const struct fuse_lowlevel_ops *ops =
        mount->path_based ? &fusebridge_path_ops : &fusebridge_ops;
    mount->session = fuse_session_new(&args, ops, sizeof(*ops), mount);
    fuse_opt_free_args(&args);
    if (!mount->session)
        return -EINVAL;
    if (fuse_session_mount(mount->session, mount->mountpoint) != 0) {
        fuse_session_destroy(mount->session);
        mount->session = NULL;
        return -EIO;
    }
    return 0;
}

enum worker_event { WORKER_MOUNTED, WORKER_LOOP_ENDED, WORKER_EXITED };

static void worker_post(struct fusebridge_mount *mount, enum worker_event event, int status)
{
    uv_mutex_lock(&mount->lock);
    if (event == WORKER_MOUNTED) {
        mount->mount_done = true;
        mount->mount_status = status;
    } else if (event == WORKER_LOOP_ENDED) {
        mount->loop_ended = true;
    } else {
        mount->worker_exited = true;
    }
    uv_mutex_unlock(&mount->lock);
    uv_async_send(&mount->wakeup);
}

static int connection_of(const char *mountpoint, unsigned *minor);

/* Read-ahead of a mount, in KiB. The kernel's default (128 KiB) is one request at a time; this
 * lets it keep several requests of the largest size (1 MiB, max_pages) in flight per file, which
 * is what hides the round trip to the provider. */
#define FUSEBRIDGE_READAHEAD_KB 4096

/* FUSE's init can only lower read-ahead, so it is raised through the mount's backing device in
 * sysfs, once init is done (the kernel applies init's value when it gets the reply). Needs root;
 * without it the default stays. Worker thread. */
void mount_readahead_raise(struct fusebridge_mount *mount)
{
    if (mount->readahead_raised || !mount->connection_known)
        return;
    mount->readahead_raised = true;
    char path[64];
    snprintf(path, sizeof(path), "/sys/class/bdi/0:%u/read_ahead_kb", mount->connection);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char value[16];
    int len = snprintf(value, sizeof(value), "%d", FUSEBRIDGE_READAHEAD_KB);
    if (write(fd, value, (size_t)len) != len)
        log_debug("cannot raise the read-ahead of %s", path);
    close(fd);
}

static void worker_main(void *arg)
{
    struct fusebridge_mount *mount = arg;
    int status = mountpoint_prepare(mount->mountpoint);
    if (status == 0)
        status = session_create(mount);
    /* Known now, while the mount is visible: aborting may come after the lazy unmount. */
    if (status == 0)
        mount->connection_known = connection_of(mount->mountpoint, &mount->connection) == 0;
    worker_post(mount, WORKER_MOUNTED, status);

    if (status == 0) {
        /* Returns once the mount is gone: unmounted, aborted, or by hand. */
        fuse_session_loop(mount->session);
        /* Requests still in the owner's hands are replied through this session: it may only go
         * once the loop thread has answered every one of them. */
        worker_post(mount, WORKER_LOOP_ENDED, 0);
        uv_sem_wait(&mount->ops_answered);
        fuse_session_unmount(mount->session);
        fuse_session_destroy(mount->session);
        mount->session = NULL;
        listings_free_all(mount);
        rmdir(mount->mountpoint);
    }
    worker_post(mount, WORKER_EXITED, 0);
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

/* Lazy: processes that still hold files keep them (and get EIO from us), but the name is gone
 * at once; the mount ends when the last of them lets go, or when it is aborted. */
static void unmount_work(uv_work_t *work)
{
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, unmount_work);
    if (umount2(mount->mountpoint, MNT_DETACH) != 0 && errno == EPERM)
        unmount_unprivileged(mount->mountpoint);
    if (mount->abort_requested && mount->connection_known)
        connection_abort(mount->connection);
}

/* Aborting ends the worker's loop even while a process keeps a file open; those processes get
 * ENOTCONN from then on. */
static void abort_work(uv_work_t *work)
{
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, abort_work);
    if (mount->connection_known)
        connection_abort(mount->connection);
}

/* Loop thread: pool work on the mount is over; finish if the worker has ended meanwhile. */
static void pool_work_done(struct fusebridge_mount *mount)
{
    mount->unmount_running = false;
    /* Not merely GONE: the worker may still be tearing down, and joining it here would block the
     * loop (or wait forever for the loop). */
    if (mount->worker_exit_seen)
        mount_finish(mount);
}

static void unmount_done(uv_work_t *work, int status)
{
    (void)status;
    pool_work_done(container_of(work, struct fusebridge_mount, unmount_work));
}

static void abort_done(uv_work_t *work, int status)
{
    (void)status;
    pool_work_done(container_of(work, struct fusebridge_mount, abort_work));
}

/* ---- the loop side ----------------------------------------------------------------------------
 */

static void mount_release(struct fusebridge_mount *mount)
{
    if (mount->path_based)
        inode_table_destroy(&mount->inodes);
    uv_sem_destroy(&mount->ops_answered);
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

/* The kernel side is gone (unmounted, aborted, or by hand): every op must be answered before the
 * worker may destroy the FUSE session. */
static void mount_on_loop_ended(struct fusebridge_mount *mount)
{
    if (mount->state == MOUNT_MOUNTED && !mount->close_requested)
        log_info("mount %s went away", mount->mountpoint);
    mount->state = MOUNT_GONE;
    fusebridge_mount_close(mount); /* fails whatever is still queued */
    mount->callbacks.on_gone(mount, mount->user);
    uv_sem_post(&mount->ops_answered);
}

static void mount_wakeup(uv_async_t *async)
{
    struct fusebridge_mount *mount = container_of(async, struct fusebridge_mount, wakeup);
    uv_mutex_lock(&mount->lock);
    bool mount_event = mount->mount_done && !mount->mount_seen;
    mount->mount_seen = mount->mount_done;
    int mount_status = mount->mount_status;
    bool loop_ended = mount->loop_ended && !mount->loop_end_seen;
    mount->loop_end_seen = mount->loop_ended;
    bool exited = mount->worker_exited;
    bool ready = mount->head != NULL;
    uv_mutex_unlock(&mount->lock);

    if (mount_event)
        mount_on_mount_done(mount, mount_status);
    if (loop_ended)
        mount_on_loop_ended(mount);
    if (exited) {
        mount->state = MOUNT_GONE;
        mount->worker_exit_seen = true;
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
    mount->allow_other = options->allow_other;
    mount->mountpoint = strdup(options->mountpoint);
    mount->fsname = strdup(options->fsname);
    int rc = -ENOMEM;
    if (!mount->mountpoint || !mount->fsname)
        goto fail;
    if (options->path_based) {
        rc = inode_table_init(&mount->inodes);
        if (rc != 0)
            goto fail;
        mount->path_based = true;
    }
    rc = uv_mutex_init(&mount->lock);
    if (rc != 0)
        goto fail;
    rc = uv_sem_init(&mount->ops_answered, 0);
    if (rc != 0)
        goto fail_mutex;
    rc = uv_async_init(loop, &mount->wakeup, mount_wakeup);
    if (rc != 0)
        goto fail_sem;
    rc = uv_thread_create(&mount->worker, worker_main, mount);
    if (rc != 0)
        goto fail_async;
    *out = mount;
    return 0;

fail_async:
    /* No thread runs: free once the handle is closed, without telling the owner. */
    uv_close((uv_handle_t *)&mount->wakeup, mount_free_unstarted);
    return rc;
fail_sem:
    uv_sem_destroy(&mount->ops_answered);
fail_mutex:
    uv_mutex_destroy(&mount->lock);
fail:
    if (mount->path_based)
        inode_table_destroy(&mount->inodes);
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
        struct fusebridge_op *next = *op_next(queued);
        fusebridge_reply_error(queued, -EIO);
        queued = next;
    }
    if (mount->close_requested)
        return;
    mount->close_requested = true;
    if (mount->state == MOUNT_MOUNTED)
        mount_start_unmount(mount);
}

void fusebridge_mount_abort(struct fusebridge_mount *mount)
{
    if (mount->abort_requested)
        return;
    mount->abort_requested = true;
    bool unmounting = mount->state == MOUNT_UNMOUNTING && !mount->unmount_running;
    fusebridge_mount_close(mount); /* an unmount it starts aborts too */
    if (!unmounting)
        return;
    /* Already lazily unmounted and still held open: abort on its own. */
    mount->unmount_running = true;
    if (uv_queue_work(mount->loop, &mount->abort_work, abort_work, abort_done) != 0)
        mount->unmount_running = false;
}

struct fusebridge_op *fusebridge_mount_pop(struct fusebridge_mount *mount)
{
    uv_mutex_lock(&mount->lock);
    struct fusebridge_op *op = mount->head;
    if (op) {
        mount->head = *op_next(op);
        if (!mount->head)
            mount->tail = NULL;
        *op_next(op) = NULL;
    }
    uv_mutex_unlock(&mount->lock);
    return op;
}
