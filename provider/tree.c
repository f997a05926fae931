/* Tree: one directory served by path for webfuse2, read-write unless read-only.
 *
 * Security: every path from the gateway is made relative to the tree's root (a leading "/", no
 * NUL, no "." or ".." components) and resolved from the root's descriptor with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): symlinks inside the tree are followed while
 * they stay inside it; one that leads out (absolute, or ".." above the root) fails, and so does
 * every /proc magic link. Calls that act on an entry itself (lstat, readlink, unlink, rename,
 * link, symlink, mkdir, mknod, utimens by path) open the entry's parent that way and then use the
 * *at() call on the final component, which never follows it; chmod and chown open the entry
 * itself with O_PATH | O_NOFOLLOW. Calls that act on what a path names (open, create, truncate,
 * fsync, read and write by path, access, readdir) resolve the whole path with openat2 and then
 * work on the descriptor. Nothing is ever resolved from "/" or the working directory.
 *
 * Handles are the gateway's open files: slot + generation, so a closed handle's number is not
 * valid again until the slot was reused 2^32 times.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "provider_internal.h"

/* openat2 may fail with EAGAIN when a rename races the resolution of ".." (inside a symlink's
 * target); it is retried this many times. */
#define TREE_OPENAT2_ATTEMPTS 8
/* Mode of a file that an open with O_CREAT makes (create carries its own mode). */
#define TREE_OPEN_CREAT_MODE 0644
/* The open flags passed on from the gateway. Others are dropped: O_LARGEFILE (always set by
 * 64-bit services), the kernel's internal __FMODE_EXEC (0x20, sent by FUSE when a program on the
 * mount is executed; openat2 refuses unknown bits), O_NOATIME (judged against the provider's
 * user, not the caller's), O_DIRECT (the caller's wish to bypass its own cache; here it would
 * only demand aligned buffers that messages do not have), O_PATH and O_TMPFILE (meaningless
 * across the wire), O_CLOEXEC. */
#define TREE_OPEN_FLAGS                                                                            \
    (O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC |           \
     O_DIRECTORY | O_NOFOLLOW)

struct tree_handle {
    int fd;              /* -1 when the slot is free */
    uint64_t id;         /* the number the gateway knows the handle by; 0 once released */
    uint32_t generation; /* bumped on every use of the slot, so old ids never match again */
    unsigned reads;      /* reads running on the pool: fd stays open (and the slot taken) */
};

struct tree {
    const char *dir; /* borrowed from the options */
    int root_fd;     /* O_PATH descriptor of the served directory */
    bool read_only;
    struct tree_handle handles[TREE_MAX_HANDLES];
    size_t next_slot; /* where the search for a free slot starts */
};

/* The parent directory of a path's final component, opened beneath the root. */
struct tree_entry {
    int dirfd;          /* O_PATH; the root's descriptor is borrowed, any other one owned */
    const char *name;   /* the final component ("." for the root itself), inside rel */
    char rel[PATH_MAX]; /* the path relative to the root */
};

/* ------------------------------------------------------------------------------------------------
 * Paths and resolution
 * ----------------------------------------------------------------------------------------------*/

static bool tree_component_dots(const char *c, size_t len)
{
    return (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.');
}

/* Writes `path` relative to the root into out[0..cap) ("." for the root): repeated and trailing
 * slashes are dropped; a path that is not absolute or has NUL, "." or ".." in it is -EINVAL. */
static int tree_path_relative(struct tree_path path, char *out, size_t cap)
{
    if (path.len == 0 || path.ptr[0] != '/' || memchr(path.ptr, '\0', path.len))
        return -EINVAL;
    size_t n = 0;
    for (size_t i = 0; i < path.len;) {
        while (i < path.len && path.ptr[i] == '/')
            i++;
        size_t start = i;
        while (i < path.len && path.ptr[i] != '/')
            i++;
        size_t len = i - start;
        if (len == 0)
            break;
        if (tree_component_dots(path.ptr + start, len))
            return -EINVAL;
        if (n + len + 2 > cap)
            return -ENAMETOOLONG;
        if (n > 0)
            out[n++] = '/';
        memcpy(out + n, path.ptr + start, len);
        n += len;
    }
    if (n == 0)
        out[n++] = '.';
    out[n] = '\0';
    return 0;
}

/* openat2 beneath `dirfd`. EXDEV (the path leads out of the tree) becomes -EACCES. */
static int tree_openat2(int dirfd, const char *rel, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(unsigned)(flags | O_CLOEXEC),
        .mode = mode,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    for (int attempt = 0; attempt < TREE_OPENAT2_ATTEMPTS; attempt++) {
        long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        if (errno != EINTR && errno != EAGAIN)
            break;
    }
    return errno == EXDEV ? -EACCES : -errno;
}

/* Opens what `path` names (following symlinks that stay inside the tree). */
static int tree_resolve(struct tree *t, struct tree_path path, int flags, mode_t mode)
{
    char rel[PATH_MAX];
    int rc = tree_path_relative(path, rel, sizeof(rel));
    if (rc < 0)
        return rc;
    return tree_openat2(t->root_fd, rel, flags, mode);
}

/* Opens the parent of `path`'s final component. Close with tree_entry_close. */
static int tree_entry_open(struct tree *t, struct tree_path path, struct tree_entry *e)
{
    e->dirfd = -1;
    int rc = tree_path_relative(path, e->rel, sizeof(e->rel));
    if (rc < 0)
        return rc;
    char *slash = strrchr(e->rel, '/');
    if (!slash) {
        e->dirfd = t->root_fd;
        e->name = e->rel;
        return 0;
    }
    *slash = '\0';
    e->name = slash + 1;
    rc = tree_openat2(t->root_fd, e->rel, O_PATH | O_DIRECTORY, 0);
    if (rc < 0)
        return rc;
    e->dirfd = rc;
    return 0;
}

static void tree_entry_close(struct tree *t, struct tree_entry *e)
{
    if (e->dirfd >= 0 && e->dirfd != t->root_fd)
        close(e->dirfd);
    e->dirfd = -1;
}

/* Opens the file behind an O_PATH descriptor again with `flags` (through /proc/self/fd, which is
 * our own descriptor: no path from the gateway is involved). */
static int tree_reopen(int path_fd, int flags)
{
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", path_fd);
    /* The /proc entry is a link to follow; creating was decided before. */
    flags &= ~(O_NOFOLLOW | O_CREAT | O_EXCL);
    int fd = open(proc, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

/* Opens what `path` names with `flags` when it is a regular file (or a directory, when
 * `dir_ok`): never opens a device or FIFO, which could block, have side effects (a watchdog, a
 * tape) or hand the gateway a raw disk. */
static int tree_open_plain(struct tree *t, struct tree_path path, int flags, bool dir_ok)
{
    int pfd = tree_resolve(t, path, O_PATH | (flags & O_NOFOLLOW), 0);
    if (pfd < 0)
        return pfd;
    struct stat st;
    int rc = fstat(pfd, &st) < 0 ? -errno : 0;
    if (rc == 0 && S_ISDIR(st.st_mode) && !dir_ok)
        rc = -EISDIR;
    else if (rc == 0 && S_ISLNK(st.st_mode)) /* O_NOFOLLOW, as open(2) says it */
        rc = -ELOOP;
    else if (rc == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        rc = -EINVAL;
    if (rc == 0)
        rc = tree_reopen(pfd, flags);
    close(pfd);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Handles
 * ----------------------------------------------------------------------------------------------*/

static struct tree_handle *tree_handle_find(struct tree *t, uint64_t id)
{
    if (id == 0 || id == CODEC_WF2_HANDLE_NONE)
        return NULL;
    struct tree_handle *h = &t->handles[(id - 1) % TREE_MAX_HANDLES];
    return h->fd >= 0 && h->id == id ? h : NULL;
}

/* The gateway is done with `h`: its id is no longer valid, and its descriptor goes once no read
 * on the pool uses it any more. */
static void tree_handle_drop(struct tree_handle *h)
{
    h->id = 0;
    if (h->reads > 0)
        return;
    close(h->fd);
    h->fd = -1;
}

/* A free slot, or NULL when TREE_MAX_HANDLES files are open. */
static struct tree_handle *tree_handle_free_slot(struct tree *t)
{
    for (size_t i = 0; i < TREE_MAX_HANDLES; i++) {
        size_t slot = (t->next_slot + i) % TREE_MAX_HANDLES;
        if (t->handles[slot].fd < 0) {
            t->next_slot = (slot + 1) % TREE_MAX_HANDLES;
            return &t->handles[slot];
        }
    }
    return NULL;
}

/* Takes ownership of `fd` into slot `h`; returns the handle's id. */
static uint64_t tree_handle_bind(struct tree *t, struct tree_handle *h, int fd)
{
    size_t slot = (size_t)(h - t->handles);
    h->generation++;
    h->fd = fd;
    h->id = (uint64_t)h->generation * TREE_MAX_HANDLES + slot + 1;
    return h->id;
}

/* The descriptor to read or write through: the handle's, or (handle none) `path` opened with
 * `flags` into *temp, which the caller closes. */
static int tree_handle_or_path(struct tree *t, struct tree_path path, uint64_t handle, int flags,
                               int *temp)
{
    *temp = -1;
    if (handle != CODEC_WF2_HANDLE_NONE) {
        struct tree_handle *h = tree_handle_find(t, handle);
        return h ? h->fd : -EBADF;
    }
    int fd = tree_open_plain(t, path, flags, false);
    if (fd >= 0)
        *temp = fd;
    return fd;
}

void tree_close_handles(struct tree *t)
{
    for (size_t i = 0; i < TREE_MAX_HANDLES; i++)
        if (t->handles[i].fd >= 0)
            tree_handle_drop(&t->handles[i]);
}

/* ------------------------------------------------------------------------------------------------
 * Life
 * ----------------------------------------------------------------------------------------------*/

int tree_new(const char *dir, bool read_only, struct tree **out)
{
    struct tree *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->dir = dir;
    t->read_only = read_only;
    for (size_t i = 0; i < TREE_MAX_HANDLES; i++)
        t->handles[i].fd = -1;
    t->root_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int rc = t->root_fd < 0 ? -errno : 0;
    if (rc == 0) {
        /* Without openat2 nothing could be resolved safely: refuse to serve at all. */
        int probe = tree_openat2(t->root_fd, ".", O_PATH | O_DIRECTORY, 0);
        rc = probe < 0 ? probe : close(probe);
    }
    if (rc < 0) {
        if (t->root_fd >= 0)
            close(t->root_fd);
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tree_free(struct tree *t)
{
    if (!t)
        return;
    /* No read runs any more (the pool is gone): every descriptor goes. */
    for (size_t i = 0; i < TREE_MAX_HANDLES; i++)
        if (t->handles[i].fd >= 0)
            close(t->handles[i].fd);
    close(t->root_fd);
    free(t);
}

const char *tree_dir(const struct tree *t)
{
    return t->dir;
}

bool tree_read_only(const struct tree *t)
{
    return t->read_only;
}

/* ------------------------------------------------------------------------------------------------
 * Operations on what a path names
 * ----------------------------------------------------------------------------------------------*/

int tree_access(struct tree *t, struct tree_path path, int mask)
{
    if (mask & ~(R_OK | W_OK | X_OK))
        return -EINVAL;
    int fd = tree_resolve(t, path, O_PATH, 0);
    if (fd < 0)
        return fd;
    int rc = faccessat(fd, "", mask, AT_EMPTY_PATH) < 0 ? -errno : 0;
    close(fd);
    if (rc == 0 && (mask & W_OK) && t->read_only)
        rc = -EROFS;
    return rc;
}

/* The permission bits the gateway may set: never set-user-ID, nor set-group-ID on a file, since
 * a program the gateway wrote would then run with the rights of this provider's user (root,
 * perhaps) for anyone on this machine. A directory keeps set-group-ID: its new entries take its
 * group, nothing runs. */
static mode_t tree_mode(uint32_t mode, bool dir)
{
    return mode & (dir ? (07777 & ~S_ISUID) : (07777 & ~(S_ISUID | S_ISGID)));
}

/* A file made here is a regular one; one that exists is opened only when it is regular (or a
 * directory, when `dir_ok`), see tree_open_plain. */
static int tree_open_fd(struct tree *t, struct tree_path path, int flags, mode_t mode, bool dir_ok)
{
    if (flags & O_CREAT) {
        /* O_NONBLOCK, O_NOCTTY: should a device appear at the name after all. */
        int fd = tree_resolve(t, path, flags | O_EXCL | O_NONBLOCK | O_NOCTTY, mode);
        if (fd != -EEXIST || (flags & O_EXCL))
            return fd;
    }
    return tree_open_plain(t, path, flags, dir_ok);
}

int tree_open(struct tree *t, struct tree_path path, int flags, uint64_t *handle)
{
    flags &= TREE_OPEN_FLAGS;
    if (t->read_only && ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_CREAT))))
        return -EROFS;
    struct tree_handle *h = tree_handle_free_slot(t);
    if (!h)
        return -EMFILE;
    int fd = tree_open_fd(t, path, flags, TREE_OPEN_CREAT_MODE, true);
    if (fd < 0)
        return fd;
    if ((flags & O_ACCMODE) != O_WRONLY)
        posix_fadvise(fd, 0, PROVIDER_INLINE_READ, POSIX_FADV_WILLNEED);
    *handle = tree_handle_bind(t, h, fd);
    return 0;
}

int tree_create(struct tree *t, struct tree_path path, uint32_t mode, uint64_t *handle)
{
    if (t->read_only)
        return -EROFS;
    if ((mode & S_IFMT) != 0 && (mode & S_IFMT) != S_IFREG)
        return -EINVAL;
    struct tree_handle *h = tree_handle_free_slot(t);
    if (!h)
        return -EMFILE;
    /* Read-write, not creat()'s write-only: a program that creates a file and reads it back
     * through the same descriptor must work. No O_TRUNC: create only comes for a name the
     * gateway did not know, and a file that appeared meanwhile keeps its data. */
    int fd = tree_open_fd(t, path, O_RDWR | O_CREAT, tree_mode(mode, false), false);
    if (fd < 0)
        return fd;
    *handle = tree_handle_bind(t, h, fd);
    return 0;
}

int tree_release(struct tree *t, uint64_t handle)
{
    struct tree_handle *h = tree_handle_find(t, handle);
    if (!h)
        return -EBADF;
    tree_handle_drop(h);
    return 0;
}

int tree_read_begin(struct tree *t, struct tree_path path, uint64_t handle, uint64_t offset,
                    size_t size, struct tree_read *r)
{
    if (offset > (uint64_t)INT64_MAX - size)
        return -EINVAL;
    int temp;
    int fd = tree_handle_or_path(t, path, handle, O_RDONLY, &temp);
    if (fd < 0)
        return fd;
    r->fd = fd;
    r->slot = -1;
    if (temp < 0) {
        r->slot = (int)((handle - 1) % TREE_MAX_HANDLES);
        t->handles[r->slot].reads++;
    }
    return 0;
}

void tree_read_end(struct tree *t, struct tree_read *r)
{
    if (r->slot < 0) {
        close(r->fd);
        return;
    }
    struct tree_handle *h = &t->handles[r->slot];
    if (--h->reads == 0 && h->id == 0)
        tree_handle_drop(h);
}

long tree_write(struct tree *t, struct tree_path path, uint64_t handle, uint64_t offset,
                const void *data, size_t size)
{
    if (t->read_only)
        return -EROFS;
    if (offset > (uint64_t)INT64_MAX - size)
        return -EFBIG;
    int temp;
    int fd = tree_handle_or_path(t, path, handle, O_WRONLY, &temp);
    if (fd < 0)
        return fd;
    long rc = provider_io_full(fd, (void *)data, size, offset, true);
    if (temp >= 0)
        close(temp);
    return rc;
}

int tree_truncate(struct tree *t, struct tree_path path, uint64_t size, uint64_t handle)
{
    if (t->read_only)
        return -EROFS;
    if (size > INT64_MAX)
        return -EFBIG;
    int temp;
    int fd = tree_handle_or_path(t, path, handle, O_WRONLY, &temp);
    if (fd < 0)
        return fd;
    int rc = ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
    if (temp >= 0)
        close(temp);
    return rc;
}

int tree_fsync(struct tree *t, struct tree_path path, bool datasync, uint64_t handle)
{
    int fd = -1;
    bool temp = handle == CODEC_WF2_HANDLE_NONE;
    if (temp) {
        fd = tree_open_plain(t, path, O_RDONLY, true);
    } else {
        struct tree_handle *h = tree_handle_find(t, handle);
        fd = h ? h->fd : -EBADF;
    }
    if (fd < 0)
        return fd;
    int rc = (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
    if (temp)
        close(fd);
    return rc;
}

/* Calls fn(user, name) for each entry of the open directory `fd` (taken over and closed). */
static int tree_list(int fd, tree_entry_fn fn, void *user)
{
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de) {
            rc = -errno;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if ((rc = fn(user, de->d_name)) < 0)
            break;
    }
    closedir(dir);
    return rc;
}

int tree_readdir(struct tree *t, struct tree_path path, tree_entry_fn fn, void *user)
{
    int fd = tree_resolve(t, path, O_RDONLY | O_DIRECTORY | O_NONBLOCK, 0);
    if (fd < 0)
        return fd;
    return tree_list(fd, fn, user);
}

/* Cookies are telldir positions plus one, so that 0 stays "from the start". They stay valid
 * across opens of the directory on Linux filesystems (NFS relies on the same). */
int tree_readdirplus(struct tree *t, struct tree_path path, uint64_t cookie, tree_dirent_fn fn,
                     void *user, uint64_t *next)
{
    int fd = tree_resolve(t, path, O_RDONLY | O_DIRECTORY | O_NONBLOCK, 0);
    if (fd < 0)
        return fd;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    if (cookie != 0)
        seekdir(dir, (long)(cookie - 1));
    int rc = 0;
    *next = 0;
    for (;;) {
        long here = telldir(dir);
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de) {
            rc = -errno;
            break;
        }
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* an entry that vanished while listing is not listed */
        rc = fn(user, de->d_name, &st);
        if (rc != 0) {
            if (rc > 0) {
                *next = (uint64_t)here + 1;
                rc = 0;
            }
            break;
        }
    }
    closedir(dir);
    return rc;
}

int tree_statfs(struct tree *t, struct statvfs *st)
{
    return fstatvfs(t->root_fd, st) < 0 ? -errno : 0;
}

/* chmod and chown work on the entry itself (a symlink is not followed): the kernel names the
 * inode it means by its own path. */
int tree_chmod(struct tree *t, struct tree_path path, uint32_t mode)
{
    if (t->read_only)
        return -EROFS;
    int fd = tree_resolve(t, path, O_PATH | O_NOFOLLOW, 0);
    if (fd < 0)
        return fd;
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    if (rc == 0 && S_ISLNK(st.st_mode))
        rc = -EOPNOTSUPP; /* Linux has no mode on symlinks */
    if (rc == 0) {
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        rc = chmod(proc, tree_mode(mode, S_ISDIR(st.st_mode))) < 0 ? -errno : 0;
    }
    close(fd);
    return rc;
}

int tree_chown(struct tree *t, struct tree_path path, uint32_t uid, uint32_t gid)
{
    if (t->read_only)
        return -EROFS;
    int fd = tree_resolve(t, path, O_PATH | O_NOFOLLOW, 0);
    if (fd < 0)
        return fd;
    int rc = fchownat(fd, "", (uid_t)uid, (gid_t)gid, AT_EMPTY_PATH) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Operations on the entry itself: parent directory + final component
 * ----------------------------------------------------------------------------------------------*/

int tree_getattr(struct tree *t, struct tree_path path, struct stat *st)
{
    struct tree_entry e;
    int rc = tree_entry_open(t, path, &e);
    if (rc == 0 && fstatat(e.dirfd, e.name, st, AT_SYMLINK_NOFOLLOW) < 0)
        rc = -errno;
    tree_entry_close(t, &e);
    return rc;
}

int tree_readlink(struct tree *t, struct tree_path path, char *buf, size_t cap, size_t *len)
{
    struct tree_entry e;
    int rc = tree_entry_open(t, path, &e);
    if (rc == 0) {
        ssize_t n = readlinkat(e.dirfd, e.name, buf, cap);
        if (n < 0)
            rc = -errno;
        else if ((size_t)n >= cap)
            rc = -ENAMETOOLONG;
        else
            *len = (size_t)n;
    }
    tree_entry_close(t, &e);
    return rc;
}

int tree_symlink(struct tree *t, struct tree_path target, struct tree_path linkpath)
{
    if (t->read_only)
        return -EROFS;
    char text[PATH_MAX];
    if (target.len > 0 && memchr(target.ptr, '\0', target.len))
        return -EINVAL;
    if (target.len >= sizeof(text))
        return -ENAMETOOLONG;
    if (target.len > 0)
        memcpy(text, target.ptr, target.len);
    text[target.len] = '\0';
    struct tree_entry e;
    int rc = tree_entry_open(t, linkpath, &e);
    if (rc == 0 && symlinkat(text, e.dirfd, e.name) < 0)
        rc = -errno;
    tree_entry_close(t, &e);
    return rc;
}

int tree_link(struct tree *t, struct tree_path from, struct tree_path to)
{
    if (t->read_only)
        return -EROFS;
    struct tree_entry a, b;
    b.dirfd = -1;
    int rc = tree_entry_open(t, from, &a);
    if (rc == 0)
        rc = tree_entry_open(t, to, &b);
    if (rc == 0 && linkat(a.dirfd, a.name, b.dirfd, b.name, 0) < 0)
        rc = -errno;
    tree_entry_close(t, &a);
    tree_entry_close(t, &b);
    return rc;
}

int tree_rename(struct tree *t, struct tree_path from, struct tree_path to, unsigned flags)
{
    if (t->read_only)
        return -EROFS;
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
        return -EINVAL;
    struct tree_entry a, b;
    b.dirfd = -1;
    int rc = tree_entry_open(t, from, &a);
    if (rc == 0)
        rc = tree_entry_open(t, to, &b);
    if (rc == 0 && renameat2(a.dirfd, a.name, b.dirfd, b.name, flags) < 0)
        rc = -errno;
    tree_entry_close(t, &a);
    tree_entry_close(t, &b);
    return rc;
}

int tree_mknod(struct tree *t, struct tree_path path, uint32_t mode, uint64_t rdev)
{
    if (t->read_only)
        return -EROFS;
    mode_t type = (mode & S_IFMT) ? (mode & S_IFMT) : S_IFREG;
    if (type == S_IFCHR || type == S_IFBLK)
        return -EPERM; /* no device nodes on the provider's machine at the gateway's request */
    if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK)
        return -EINVAL;
    (void)rdev; /* only device nodes have one; glibc refuses values above 32 bits */
    struct tree_entry e;
    int rc = tree_entry_open(t, path, &e);
    if (rc == 0 && mknodat(e.dirfd, e.name, type | tree_mode(mode, false), 0) < 0)
        rc = -errno;
    tree_entry_close(t, &e);
    return rc;
}

int tree_mkdir(struct tree *t, struct tree_path path, uint32_t mode)
{
    if (t->read_only)
        return -EROFS;
    struct tree_entry e;
    int rc = tree_entry_open(t, path, &e);
    if (rc == 0 && mkdirat(e.dirfd, e.name, tree_mode(mode, true)) < 0)
        rc = -errno;
    tree_entry_close(t, &e);
    return rc;
}

static int tree_remove(struct tree *t, struct tree_path path, int flags)
{
    if (t->read_only)
        return -EROFS;
    struct tree_entry e;
    int rc = tree_entry_open(t, path, &e);
    if (rc == 0 && unlinkat(e.dirfd, e.name, flags) < 0)
        rc = -errno;
    tree_entry_close(t, &e);
    return rc;
}

int tree_unlink(struct tree *t, struct tree_path path)
{
    return tree_remove(t, path, 0);
}

int tree_rmdir(struct tree *t, struct tree_path path)
{
    return tree_remove(t, path, AT_REMOVEDIR);
}

int tree_utimens(struct tree *t, struct tree_path path, const struct timespec times[2],
                 uint64_t handle)
{
    if (t->read_only)
        return -EROFS;
    if (handle != CODEC_WF2_HANDLE_NONE) {
        struct tree_handle *h = tree_handle_find(t, handle);
        if (!h)
            return -EBADF;
        return futimens(h->fd, times) < 0 ? -errno : 0;
    }
    struct tree_entry e;
    int rc = tree_entry_open(t, path, &e);
    if (rc == 0 && utimensat(e.dirfd, e.name, times, AT_SYMLINK_NOFOLLOW) < 0)
        rc = -errno;
    tree_entry_close(t, &e);
    return rc;
}
