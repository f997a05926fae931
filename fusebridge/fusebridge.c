/* fusebridge: FUSE mounts whose requests are answered asynchronously from the loop thread.
 *
 * Threads: everything of a mount runs on the loop thread, the reading of /dev/fuse included (a
 * uv_poll on the non-blocking FUSE descriptor): a kernel request reaches the provider without a
 * hand-over between threads, and a mount costs no thread. Its handlers never wait: they either
 * answer at once (forget, opendir, a cached directory listing) or queue an op for the owner.
 * What can block runs on the libuv thread pool: mounting (mkdir, mount(2) or fusermount3),
 * unmounting and aborting, and tearing the FUSE session down (unmount, close, rmdir).
 */
#include "fusebridge_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

/* Kernel requests read in one go before the loop serves other mounts and connections. */
#define FUSEBRIDGE_READ_BATCH 64

void mount_submit(struct fusebridge_mount *mount, struct fusebridge_op *op, bool front)
{
    if (op_changes_files(op))
        mount->changes++;
    if (mount->closing) {
        fusebridge_reply_error(op, -EIO);
        return;
    }
    bool was_empty = mount->head == NULL;
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
    /* While kernel requests are being read the owner hears once, after the batch; otherwise
     * (the next step of an op, from inside the owner's own answer) on the next loop turn. */
    if (was_empty && !mount->reading)
        uv_async_send(&mount->wakeup);
}

/* ---- mounting (thread pool) ------------------------------------------------------------------ */

const char *fusebridge_mount_error(int status)
{
    switch (status) {
    case -ELOOP:
        return "mount point is a symbolic link";
    case -EEXIST:
        return "mount point is not a directory";
    case -ENOTEMPTY:
        return "mount point holds files";
    default:
        return strerror(-status);
    }
}

/* 0 when the directory `path` has no entries but . and .., else -ENOTEMPTY or another error. */
static int directory_empty(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *dir = fd < 0 ? NULL : fdopendir(fd);
    if (!dir) {
        int rc = -errno;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    int rc = 0;
    const struct dirent *entry;
    errno = 0;
    while (rc == 0 && (entry = readdir(dir)))
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
            rc = -ENOTEMPTY;
    if (rc == 0 && errno != 0)
        rc = -errno; /* not read to its end: not known to be empty */
    closedir(dir);
    return rc;
}

/* Makes the mount point unless it exists; teardown removes only one made here (a directory an
 * administrator made for --filesystem NAME=DIR stays). One that exists is checked: whoever put a
 * symbolic link, a file or a directory of files in the mount root did not mean the mount to go
 * there (a link to /etc would have it mount over /etc). */
static int mountpoint_prepare(struct fusebridge_mount *mount)
{
    if (mkdir(mount->mountpoint, 0755) == 0) {
        mount->made_mountpoint = true;
        return 0;
    }
    if (errno != EEXIST)
        return -errno;
    struct stat st;
    if (lstat(mount->mountpoint, &st) != 0)
        return -errno;
    if (S_ISLNK(st.st_mode))
        return -ELOOP;
    if (!S_ISDIR(st.st_mode))
        return -EEXIST;
    return mount->mountpoint_configured ? 0 : directory_empty(mount->mountpoint);
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
    /* The loop thread reads requests as they come and never waits for one. */
    int fd = fuse_session_fd(mount->session);
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        int rc = -errno;
        fuse_session_unmount(mount->session);
        fuse_session_destroy(mount->session);
        mount->session = NULL;
        return rc;
    }
    return 0;
}

struct connection_search {
    const char *mountpoint;
    unsigned minor;
    bool found;
};

static void connection_visit(const struct fusebridge_mountinfo *entry, void *arg)
{
    struct connection_search *search = arg;
    /* Another filesystem mounted over ours has its own minor. */
    if (strcmp(entry->path, search->mountpoint) == 0 && strncmp(entry->fstype, "fuse", 4) == 0) {
        search->minor = entry->minor;
        search->found = true; /* keep going: the last mount on a path is the visible one */
    }
}

/* Finds the FUSE connection number (the mount's minor device) in the mount table. */
static int connection_of(const char *mountpoint, unsigned *minor)
{
    struct connection_search search = {.mountpoint = mountpoint};
    int rc = fusebridge_mountinfo_each(connection_visit, &search);
    if (rc == 0 && !search.found)
        rc = -ENOENT;
    *minor = search.minor;
    return rc;
}

/* The connection's fusectl directory, held open: once the connection ends its number may go to
 * another FUSE mount, whose directory has the same name; this one then has no entries, and an
 * abort through it reaches nobody else. */
static int fusectl_open(unsigned minor)
{
    char path[64];
    snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u", minor);
    return open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

static void mount_work(uv_work_t *work)
{
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, pool_work);
    int status = mountpoint_prepare(mount);
    if (status == 0)
        status = session_create(mount);
    /* The end of an earlier mount of the name may remove the directory between the two: once
     * more, then it stays (that mount is gone). */
    if (status != 0 && !mount->session && access(mount->mountpoint, F_OK) != 0 &&
        errno == ENOENT && (status = mountpoint_prepare(mount)) == 0)
        status = session_create(mount);
    /* Known now, while the mount is visible: aborting may come after the lazy unmount. */
    if (status == 0)
        mount->connection_known = connection_of(mount->mountpoint, &mount->connection) == 0;
    if (mount->connection_known)
        mount->fusectl_fd = fusectl_open(mount->connection);
    if (status != 0 && !mount->session && mount->made_mountpoint)
        rmdir(mount->mountpoint); /* nothing to tear down: the mount point goes now */
    mount->mount_status = status;
}

/* Read-ahead of a mount, in KiB. The kernel's default (128 KiB) is one request at a time; this
 * lets it keep several requests of the largest size (1 MiB, max_pages) in flight per file, which
 * is what hides the round trip to the provider. */
#define FUSEBRIDGE_READAHEAD_KB 4096

/* FUSE's init can only lower read-ahead, so it is raised through the mount's backing device in
 * sysfs, once init is done (the kernel applies init's value when it gets the reply). Needs root;
 * without it the default stays. Writing a sysfs attribute only sets a number: it does not wait. */
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

/* ---- unmounting and tearing down (thread pool) ----------------------------------------------- */

static void connection_abort(int fusectl_fd)
{
    int fd = openat(fusectl_fd, "abort", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* the connection is already gone */
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
static void unmount_lazily(const char *mountpoint)
{
    if (umount2(mountpoint, MNT_DETACH) != 0 && errno == EPERM)
        unmount_unprivileged(mountpoint);
}

static void unmount_work(uv_work_t *work)
{
    unmount_lazily(container_of(work, struct fusebridge_mount, unmount_work)->mountpoint);
}

/* Aborting ends the mount even while a process keeps a file open; those processes get ENOTCONN
 * from then on. */
static void abort_work(uv_work_t *work)
{
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, abort_work);
    if (mount->fusectl_fd >= 0) /* without fusectl, the mount ends when programs let go */
        connection_abort(mount->fusectl_fd);
}

/* The device reports an error once the connection has ended (unmounted or aborted). */
static bool connection_ended(struct fuse_session *session)
{
    struct pollfd pfd = {.fd = fuse_session_fd(session)};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR);
}

/* The kernel side is gone and every request is answered: the session may go. */
static void teardown_work(uv_work_t *work)
{
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, pool_work);
    bool ended = connection_ended(mount->session);
    fuse_session_unmount(mount->session);
    /* libfuse leaves the mount of an aborted connection in place (it takes the error on the
     * device for an unmount already done), and the dead mount would stay at the mountpoint.
     * Ended and still mounted is what an abort looks like; a live connection that libfuse could
     * not unmount is not one. */
    unsigned minor;
    if (mount->connection_known && connection_of(mount->mountpoint, &minor) == 0 &&
        minor == mount->connection) {
        mount->aborted_outside = ended;
        unmount_lazily(mount->mountpoint);
    }
    fuse_session_destroy(mount->session);
    mount->session = NULL;
    if (mount->made_mountpoint)
        rmdir(mount->mountpoint);
}

/* ---- the loop side ----------------------------------------------------------------------------
 */

static void mount_release(struct fusebridge_mount *mount)
{
    if (mount->fusectl_fd >= 0)
        close(mount->fusectl_fd);
    if (mount->path_based)
        inode_table_destroy(&mount->inodes);
    free(mount->request.mem);
    free(mount->mountpoint);
    free(mount->fsname);
    free(mount);
}

static void polling_stop(struct fusebridge_mount *mount);

static void handle_closed(uv_handle_t *handle)
{
    struct fusebridge_mount *mount = handle->data;
    if (--mount->open_handles > 0)
        return;
    if (mount->started)
        mount->callbacks.on_closed(mount, mount->user);
    mount_release(mount);
}

/* Frees the mount once nothing on the pool refers to it and the session is gone. */
static void mount_finish(struct fusebridge_mount *mount)
{
    if (mount->pool_running || mount->unmount_running || mount->session || mount->finishing)
        return;
    mount->finishing = true;
    polling_stop(mount);
    uv_close((uv_handle_t *)&mount->wakeup, handle_closed);
}

static void pool_done(uv_work_t *work, int status)
{
    (void)status;
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, pool_work);
    mount->pool_running = false;
    mount_finish(mount);
}

static void abort_work_done(uv_work_t *work, int status)
{
    (void)status;
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, abort_work);
    mount->unmount_running = false;
    mount_finish(mount);
}

static void abort_start(struct fusebridge_mount *mount)
{
    mount->abort_started = true;
    mount->unmount_running = true;
    if (uv_queue_work(mount->loop, &mount->abort_work, abort_work, abort_work_done) != 0)
        mount->unmount_running = false;
}

/* An abort asked for while the unmount ran is due now. The loop decides it, not the pool: an
 * abort that came just as the unmount ended would be lost otherwise. */
static void unmount_work_done(uv_work_t *work, int status)
{
    (void)status;
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, unmount_work);
    mount->unmount_running = false;
    if (mount->abort_requested && !mount->abort_started && mount->state == MOUNT_UNMOUNTING)
        abort_start(mount);
    mount_finish(mount);
}

static void mount_start_unmount(struct fusebridge_mount *mount)
{
    mount->state = MOUNT_UNMOUNTING;
    mount->unmount_running = true;
    if (uv_queue_work(mount->loop, &mount->unmount_work, unmount_work, unmount_work_done) != 0) {
        mount->unmount_running = false;
        log_error("mount %s: cannot schedule unmount", mount->mountpoint);
    }
}

/* Before the session closes the descriptor: libuv forgets a watched descriptor by its number,
 * which by then could be someone else's. */
static void polling_stop(struct fusebridge_mount *mount)
{
    if (!mount->polling)
        return;
    mount->polling = false;
    uv_close((uv_handle_t *)&mount->kernel, handle_closed);
}

static void teardown_start(struct fusebridge_mount *mount)
{
    polling_stop(mount);
    mount->pool_running = true;
    if (uv_queue_work(mount->loop, &mount->pool_work, teardown_work, pool_done) != 0) {
        /* Without the pool, here is the only place left to do it. */
        mount->pool_running = false;
        teardown_work(&mount->pool_work);
        mount_finish(mount);
    }
}

/* The kernel side is gone (unmounted, aborted, or by hand): every op is answered, then the
 * session is torn down. */
static void mount_on_kernel_gone(struct fusebridge_mount *mount)
{
    if (mount->state == MOUNT_MOUNTED && !mount->close_requested)
        log_info("mount %s went away", mount->mountpoint);
    mount->state = MOUNT_GONE;
    fusebridge_mount_close(mount); /* fails whatever is still queued */
    mount->callbacks.on_gone(mount, mount->user);
    listings_free_all(mount);
    teardown_start(mount);
}

/* Reads what the kernel asks, a batch at a time; handlers queue ops, and the owner hears once. */
static void kernel_readable(uv_poll_t *poll, int status, int events)
{
    (void)events;
    struct fusebridge_mount *mount = container_of(poll, struct fusebridge_mount, kernel);
    if (status < 0) { /* an aborted connection reports an error, not data */
        mount_on_kernel_gone(mount);
        return;
    }
    mount->reading = true;
    bool was_empty = mount->head == NULL;
    int rc = 0;
    for (int n = 0; n < FUSEBRIDGE_READ_BATCH; n++) {
        rc = fuse_session_receive_buf(mount->session, &mount->request);
        if (rc == -EINTR)
            continue;
        if (rc <= 0)
            break;
        fuse_session_process_buf(mount->session, &mount->request);
    }
    mount->reading = false;
    /* 0: the device reports the end (ENODEV); other errors than "nothing more now" too. */
    if (rc == 0 || (rc < 0 && rc != -EAGAIN) || fuse_session_exited(mount->session)) {
        mount_on_kernel_gone(mount);
        return;
    }
    if (was_empty && mount->head && !mount->close_requested)
        mount->callbacks.on_ready(mount, mount->user);
}

static void mount_wakeup(uv_async_t *async)
{
    struct fusebridge_mount *mount = container_of(async, struct fusebridge_mount, wakeup);
    if (mount->head && !mount->close_requested)
        mount->callbacks.on_ready(mount, mount->user);
}

static int polling_start(struct fusebridge_mount *mount)
{
    int rc = uv_poll_init(mount->loop, &mount->kernel, fuse_session_fd(mount->session));
    if (rc != 0)
        return rc;
    mount->kernel.data = mount;
    mount->polling = true;
    mount->open_handles++;
    return uv_poll_start(&mount->kernel, UV_READABLE, kernel_readable);
}

static void mount_work_done(uv_work_t *work, int status)
{
    struct fusebridge_mount *mount = container_of(work, struct fusebridge_mount, pool_work);
    mount->pool_running = false;
    int rc = status < 0 ? status : mount->mount_status;
    if (rc == 0)
        rc = polling_start(mount);
    if (rc != 0) {
        log_error("mount %s failed: %s", mount->mountpoint, fusebridge_mount_error(rc));
        mount->state = MOUNT_GONE;
        if (!mount->close_requested)
            mount->callbacks.on_mounted(mount, rc, mount->user);
        if (mount->session)
            teardown_start(mount); /* mounted, but the loop cannot watch it */
        else
            mount_finish(mount);
        return;
    }
    log_debug("mounted %s", mount->mountpoint);
    if (mount->connection_known && mount->fusectl_fd < 0)
        log_debug("mount %s: no fusectl entry: held open, it cannot be cut off", mount->mountpoint);
    mount->state = MOUNT_MOUNTED;
    if (mount->close_requested)
        mount_start_unmount(mount);
    else
        mount->callbacks.on_mounted(mount, 0, mount->user);
}

/* libfuse reports its own failures (a mount point it cannot reach, a device read that fails)
 * through fuse_log, to stderr unless told otherwise: they go where the gateway's lines go. */
static void fuse_log_forward(enum fuse_log_level level, const char *fmt, va_list ap)
{
    enum log_level ours = level <= FUSE_LOG_ERR       ? LOG_LEVEL_ERROR
                          : level == FUSE_LOG_WARNING ? LOG_LEVEL_WARN
                          : level <= FUSE_LOG_INFO    ? LOG_LEVEL_INFO
                                                      : LOG_LEVEL_DEBUG;
    if (ours > log_get_level())
        return;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t len = strlen(line);
    while (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    log_write(ours, "%s", line);
}

void mount_log_forward(void)
{
    fuse_set_log_func(fuse_log_forward);
}

int fusebridge_mount_start(uv_loop_t *loop, const struct fusebridge_options *options,
                           const struct fusebridge_callbacks *callbacks, void *user,
                           struct fusebridge_mount **out)
{
    static bool log_forwarded; /* before the first mount: no pool thread uses libfuse yet */
    if (!log_forwarded) {
        mount_log_forward();
        log_forwarded = true;
    }
    struct fusebridge_mount *mount = calloc(1, sizeof(*mount));
    if (!mount)
        return -ENOMEM;
    mount->fusectl_fd = -1;
    mount->loop = loop;
    mount->callbacks = *callbacks;
    mount->user = user;
    mount->read_only = options->read_only;
    mount->allow_other = options->allow_other;
    mount->made_mountpoint = options->own_mountpoint;
    mount->mountpoint_configured = options->mountpoint_configured;
    mount->listing_bytes = options->listing_bytes;
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
    rc = uv_async_init(loop, &mount->wakeup, mount_wakeup);
    if (rc != 0)
        goto fail;
    mount->wakeup.data = mount;
    mount->open_handles = 1;
    mount->pool_running = true;
    rc = uv_queue_work(loop, &mount->pool_work, mount_work, mount_work_done);
    if (rc != 0) {
        /* Nothing started: free once the handle is closed, without telling the owner. */
        uv_close((uv_handle_t *)&mount->wakeup, handle_closed);
        return rc;
    }
    mount->started = true;
    *out = mount;
    return 0;

fail:
    if (mount->path_based)
        inode_table_destroy(&mount->inodes);
    free(mount->mountpoint);
    free(mount->fsname);
    free(mount);
    return rc;
}

bool fusebridge_mount_in_place(const struct fusebridge_mount *mount)
{
    switch (mount->state) {
    case MOUNT_MOUNTING:
    case MOUNT_MOUNTED:
        return true;
    case MOUNT_UNMOUNTING:
        return mount->unmount_running;
    case MOUNT_GONE:
        return mount->pool_running || mount->unmount_running;
    }
    return true;
}

bool fusebridge_mount_made_mountpoint(const struct fusebridge_mount *mount)
{
    return mount->state != MOUNT_MOUNTING && mount->made_mountpoint; /* set on the pool till then */
}

void fusebridge_mount_close(struct fusebridge_mount *mount)
{
    mount->closing = true;
    struct fusebridge_op *queued = mount->head;
    mount->head = mount->tail = NULL;
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
    fusebridge_mount_close(mount); /* an unmount it starts aborts when it is done */
    /* Already lazily unmounted and still held open: abort now. */
    if (mount->state == MOUNT_UNMOUNTING && !mount->unmount_running)
        abort_start(mount);
}

bool fusebridge_mount_aborted_outside(const struct fusebridge_mount *mount)
{
    return mount->aborted_outside;
}

const struct fusebridge_request *fusebridge_mount_peek(const struct fusebridge_mount *mount)
{
    return mount->head ? fusebridge_op_request(mount->head) : NULL;
}

struct fusebridge_op *fusebridge_mount_pop(struct fusebridge_mount *mount)
{
    struct fusebridge_op *op = mount->head;
    if (op) {
        mount->head = *op_next(op);
        if (!mount->head)
            mount->tail = NULL;
        *op_next(op) = NULL;
    }
    return op;
}
