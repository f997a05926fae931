/* Export: one directory served by inode number for the JSON protocol, read-only.
 *
 * Provider inode numbers are stable for the life of the provider (across reconnects too); each
 * stands for one real file (dev, ino) and remembers where it was last seen (parent, name). Every
 * access walks that path from the export root one component at a time with O_NOFOLLOW, so neither
 * a symlink nor ".." can lead out of the exported tree, even while the tree changes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "provider_internal.h"

/* Provider inode numbers of one export; each number stays bound to one real file (dev, ino). */
#define EXPORT_MAX_INODES 1000000u
/* Directory levels between the export root and any inode; deeper paths are refused (ELOOP). */
#define EXPORT_MAX_DEPTH 1024u

/* ------------------------------------------------------------------------------------------------
 * Inode table: provider inode number <-> real file (dev, ino) and where it was last seen
 * ----------------------------------------------------------------------------------------------*/

struct inode_entry {
    dev_t dev;
    ino_t ino;
    mode_t type; /* S_IFREG or S_IFDIR: a real inode reused for another type gets a new number */
    uint64_t parent; /* provider inode of the directory it was last found in; 0 for the root */
    char *name;      /* its name in that directory; NULL for the root */
    bool stale;      /* replaced by a file of another type: never matched or opened again */
};

/* Entries are never removed (the JSON protocol has no "forget"), so numbers stay stable for the
 * life of the provider, across reconnects too. */
struct inode_table {
    struct inode_entry *entries; /* entries[i] is provider inode i + 1 */
    size_t count;
    size_t capacity;
    uint32_t *slots;   /* open addressing over (dev, ino); 0 = empty, else entry index + 1 */
    size_t slot_count; /* a power of two, kept above twice count */
};

static size_t inode_table_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull;
    h ^= ((uint64_t)dev + 0x632be59bd9b4e019ull) * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ (h >> 29));
}

/* The slot that holds (dev, ino), or the empty slot where it would go. */
static size_t inode_table_slot(const struct inode_table *t, dev_t dev, ino_t ino)
{
    size_t mask = t->slot_count - 1;
    size_t i = inode_table_hash(dev, ino) & mask;
    while (t->slots[i] != 0) {
        const struct inode_entry *e = &t->entries[t->slots[i] - 1];
        if (e->dev == dev && e->ino == ino)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int inode_table_rehash(struct inode_table *t, size_t slot_count)
{
    uint32_t *old = t->slots;
    size_t old_count = t->slot_count;
    t->slots = calloc(slot_count, sizeof(*t->slots));
    if (!t->slots) {
        t->slots = old;
        return -ENOMEM;
    }
    t->slot_count = slot_count;
    for (size_t i = 0; i < old_count; i++) {
        if (old[i] == 0)
            continue;
        const struct inode_entry *e = &t->entries[old[i] - 1];
        t->slots[inode_table_slot(t, e->dev, e->ino)] = old[i];
    }
    free(old);
    return 0;
}

/* Makes room for one more entry. */
static int inode_table_reserve(struct inode_table *t)
{
    if (t->count >= EXPORT_MAX_INODES)
        return -ENOSPC;
    if (t->count == t->capacity) {
        size_t capacity = t->capacity ? t->capacity * 2 : 1024;
        struct inode_entry *entries = realloc(t->entries, capacity * sizeof(*entries));
        if (!entries)
            return -ENOMEM;
        t->entries = entries;
        t->capacity = capacity;
    }
    if ((t->count + 1) * 2 > t->slot_count)
        return inode_table_rehash(t, t->slot_count ? t->slot_count * 2 : 2048);
    return 0;
}

static int inode_table_init(struct inode_table *t, const struct stat *root)
{
    memset(t, 0, sizeof(*t));
    int rc = inode_table_reserve(t);
    if (rc < 0)
        return rc;
    t->entries[0] = (struct inode_entry){.dev = root->st_dev, .ino = root->st_ino, .type = S_IFDIR};
    t->slots[inode_table_slot(t, root->st_dev, root->st_ino)] = 1;
    t->count = 1;
    return 0;
}

static void inode_table_free(struct inode_table *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->entries[i].name);
    free(t->entries);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* Borrowed entry for a provider inode, or NULL for numbers never handed out and stale ones. */
static struct inode_entry *inode_table_get(struct inode_table *t, uint64_t pino)
{
    if (pino == 0 || pino > t->count)
        return NULL;
    struct inode_entry *e = &t->entries[pino - 1];
    return e->stale ? NULL : e;
}

/* True when `pino` is `ancestor` or lies below it by recorded parents. */
static bool inode_table_is_below(struct inode_table *t, uint64_t pino, uint64_t ancestor)
{
    for (unsigned depth = 0; pino != 0 && depth <= EXPORT_MAX_DEPTH; depth++) {
        if (pino == ancestor)
            return true;
        const struct inode_entry *e = inode_table_get(t, pino);
        if (!e)
            return false;
        pino = e->parent;
    }
    return pino != 0; /* above the root: not below; deeper than any walk goes: a loop */
}

/* Records that (parent, name) was found to be the directory or regular file `st`. */
static int inode_table_move(struct inode_table *t, uint64_t pino, uint64_t parent, const char *name)
{
    struct inode_entry *e = &t->entries[pino - 1];
    if (e->parent == parent && strcmp(e->name, name) == 0)
        return 0;
    /* A directory seen inside itself (bind mounts, or a rename the table has not caught up with)
     * would make the path walk circle: refuse it rather than record it. */
    if (inode_table_is_below(t, parent, pino))
        return -ELOOP;
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    free(e->name);
    e->name = copy;
    e->parent = parent;
    return 0;
}

static int inode_table_add(struct inode_table *t, const struct stat *st, uint64_t parent,
                           const char *name, uint64_t *out)
{
    int rc = inode_table_reserve(t);
    if (rc < 0)
        return rc;
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    size_t slot = inode_table_slot(t, st->st_dev, st->st_ino);
    if (t->slots[slot] != 0)
        t->entries[t->slots[slot] - 1].stale = true;
    t->entries[t->count] = (struct inode_entry){.dev = st->st_dev,
                                                .ino = st->st_ino,
                                                .type = st->st_mode & S_IFMT,
                                                .parent = parent,
                                                .name = copy};
    t->count++;
    t->slots[slot] = (uint32_t)t->count;
    *out = t->count;
    return 0;
}

/* The provider inode for `st`, found as `name` in directory `parent`: the known number of the
 * same real file, else a new one. */
static int inode_table_insert(struct inode_table *t, const struct stat *st, uint64_t parent,
                              const char *name, uint64_t *out)
{
    uint32_t index = t->slots[inode_table_slot(t, st->st_dev, st->st_ino)];
    if (index == 1)
        return -ELOOP; /* the export root, seen below itself through a bind mount */
    if (index != 0 && t->entries[index - 1].type == (st->st_mode & S_IFMT)) {
        *out = index;
        return inode_table_move(t, index, parent, name);
    }
    return inode_table_add(t, st, parent, name, out);
}

/* ------------------------------------------------------------------------------------------------
 * Export: one exported directory, read-only
 * ----------------------------------------------------------------------------------------------*/

struct export_handle {
    int fd;              /* -1 when the slot is free */
    uint64_t id;         /* the number the gateway knows the handle by */
    uint64_t ino;        /* provider inode it was opened for */
    uint32_t generation; /* bumped on every use of the slot, so old ids never match again */
};

struct export
{
    const char *name; /* borrowed from the options */
    const char *dir;  /* borrowed from the options */
    int root_fd;      /* O_PATH descriptor of the exported directory */
    struct inode_table inodes;
    struct export_handle handles[EXPORT_MAX_HANDLES];
};

static bool export_type_served(mode_t mode)
{
    return S_ISREG(mode) || S_ISDIR(mode);
}

int export_new(const char *name, const char *dir, struct export **out)
{
    struct export *exp = calloc(1, sizeof(*exp));
    if (!exp)
        return -ENOMEM;
    exp->name = name;
    exp->dir = dir;
    for (size_t i = 0; i < EXPORT_MAX_HANDLES; i++)
        exp->handles[i].fd = -1;
    struct stat st;
    int rc = 0;
    exp->root_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (exp->root_fd < 0 || fstat(exp->root_fd, &st) < 0)
        rc = -errno;
    else
        rc = inode_table_init(&exp->inodes, &st);
    if (rc < 0) {
        if (exp->root_fd >= 0)
            close(exp->root_fd);
        free(exp);
        return rc;
    }
    *out = exp;
    return 0;
}

void export_close_handles(struct export *exp)
{
    for (size_t i = 0; i < EXPORT_MAX_HANDLES; i++) {
        if (exp->handles[i].fd >= 0) {
            close(exp->handles[i].fd);
            exp->handles[i].fd = -1;
        }
    }
}

const char *export_name(const struct export *exp)
{
    return exp->name;
}

const char *export_dir(const struct export *exp)
{
    return exp->dir;
}

void export_free(struct export *exp)
{
    if (!exp)
        return;
    export_close_handles(exp);
    inode_table_free(&exp->inodes);
    close(exp->root_fd);
    free(exp);
}

/* Fills names[0..*depth) with the path of `pino` below the root, top first (borrowed from the
 * table). The root has depth 0. */
static int export_inode_path(struct export *exp, uint64_t pino, const char **names, size_t *depth)
{
    size_t n = 0;
    while (pino != FUSEBRIDGE_ROOT_INODE) {
        const struct inode_entry *e = inode_table_get(&exp->inodes, pino);
        if (!e)
            return -ENOENT;
        if (n == EXPORT_MAX_DEPTH)
            return -ELOOP;
        names[n++] = e->name;
        pino = e->parent;
    }
    for (size_t i = 0; i < n / 2; i++) {
        const char *swap = names[i];
        names[i] = names[n - 1 - i];
        names[n - 1 - i] = swap;
    }
    *depth = n;
    return 0;
}

/* Opens the directory that holds the last of names[0..depth), walking from the root one component
 * at a time with O_NOFOLLOW: neither a symlink nor ".." (never in the table) can lead out of the
 * exported tree, even when the tree changes under us. Returns a descriptor the caller closes
 * unless it is exp->root_fd. */
static int export_walk_parent(struct export *exp, const char **names, size_t depth)
{
    int dir = exp->root_fd;
    for (size_t i = 0; i + 1 < depth; i++) {
        int next = openat(dir, names[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int err = errno;
        if (dir != exp->root_fd)
            close(dir);
        if (next < 0) /* a symlink or file now where a directory was: the path is gone */
            return (err == ELOOP || err == ENOTDIR) ? -ENOENT : -err;
        dir = next;
    }
    return dir;
}

/* Opens provider inode `pino` with `flags` (O_NOFOLLOW is added) and checks that it is still the
 * real file the number stands for. On success *out is the caller's descriptor and st its stat. */
static int export_open_inode(struct export *exp, uint64_t pino, int flags, int *out,
                             struct stat *st)
{
    const char *names[EXPORT_MAX_DEPTH];
    size_t depth = 0;
    int rc = export_inode_path(exp, pino, names, &depth);
    if (rc < 0)
        return rc;
    int dir = export_walk_parent(exp, names, depth);
    if (dir < 0)
        return dir;
    const char *last = depth == 0 ? "." : names[depth - 1];
    int fd = openat(dir, last, flags | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    if (dir != exp->root_fd)
        close(dir);
    if (fd < 0)
        return err == ELOOP ? -ENOENT : -err; /* ELOOP: a symlink now has that name */
    const struct inode_entry *e = inode_table_get(&exp->inodes, pino);
    if (fstat(fd, st) < 0 || st->st_dev != e->dev || st->st_ino != e->ino) {
        close(fd);
        return -ENOENT; /* replaced by another file since it was looked up */
    }
    *out = fd;
    return 0;
}

/* Entry names the gateway may ask for: one path component, not "." or "..". */
static int export_check_name(const char *name)
{
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -ENOENT;
    if (strchr(name, '/'))
        return -EINVAL;
    if (strlen(name) > NAME_MAX)
        return -ENAMETOOLONG;
    return 0;
}

/* Looks `name` up in directory `parent`. Symlinks, devices, FIFOs and sockets are not served and
 * so do not exist here (ENOENT). On success st describes the file with st_ino = provider inode. */
int export_lookup(struct export *exp, uint64_t parent, const char *name, struct stat *st)
{
    int rc = export_check_name(name);
    if (rc < 0)
        return rc;
    int dir;
    struct stat dir_st;
    rc = export_open_inode(exp, parent, O_PATH | O_DIRECTORY, &dir, &dir_st);
    if (rc < 0)
        return rc;
    if (fstatat(dir, name, st, AT_SYMLINK_NOFOLLOW) < 0)
        rc = -errno;
    close(dir);
    if (rc < 0)
        return rc;
    if (!export_type_served(st->st_mode))
        return -ENOENT;
    uint64_t pino;
    rc = inode_table_insert(&exp->inodes, st, parent, name, &pino);
    if (rc < 0)
        return rc;
    st->st_ino = pino;
    return 0;
}

int export_getattr(struct export *exp, uint64_t pino, struct stat *st)
{
    int fd;
    int rc = export_open_inode(exp, pino, O_PATH, &fd, st);
    if (rc < 0)
        return rc;
    close(fd);
    if (!export_type_served(st->st_mode))
        return -ENOENT;
    st->st_ino = pino;
    return 0;
}

/* Lists directory `pino` without "." and "..", skipping what is not served (symlinks and other
 * special files) and entries that vanish while listing. */
int export_readdir(struct export *exp, uint64_t pino, export_entry_fn fn, void *user)
{
    int fd;
    struct stat st;
    int rc = export_open_inode(exp, pino, O_RDONLY | O_DIRECTORY, &fd, &st);
    if (rc < 0)
        return rc;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        rc = -errno;
        close(fd);
        return rc;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de) {
            rc = -errno;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !export_type_served(st.st_mode))
            continue;
        uint64_t child;
        rc = inode_table_insert(&exp->inodes, &st, pino, de->d_name, &child);
        if (rc == -ELOOP)
            continue; /* the root or an ancestor seen again below itself: not listed */
        st.st_ino = child;
        if (rc < 0 || (rc = fn(user, de->d_name, child, &st)) < 0)
            break;
    }
    closedir(dir);
    return rc;
}

static struct export_handle *export_find_handle(struct export *exp, uint64_t pino, uint64_t id)
{
    if (id == 0)
        return NULL;
    struct export_handle *h = &exp->handles[(id - 1) % EXPORT_MAX_HANDLES];
    if (h->fd < 0 || h->id != id || h->ino != pino)
        return NULL;
    return h;
}

/* Opens regular file `pino` for reading; refuses every request to write (read-only export). */
int export_open(struct export *exp, uint64_t pino, int flags, uint64_t *handle)
{
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC))
        return -EROFS;
    size_t slot = 0;
    while (slot < EXPORT_MAX_HANDLES && exp->handles[slot].fd >= 0)
        slot++;
    if (slot == EXPORT_MAX_HANDLES)
        return -EMFILE;
    struct export_handle *h = &exp->handles[slot];
    /* O_NONBLOCK: if a FIFO took the file's place, opening it must not block the loop. */
    int fd;
    struct stat st;
    int rc = export_open_inode(exp, pino, O_RDONLY | O_NONBLOCK | O_NOCTTY, &fd, &st);
    if (rc < 0)
        return rc;
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? -EISDIR : -ENOENT;
    }
    h->generation++;
    h->fd = fd;
    h->ino = pino;
    h->id = (uint64_t)h->generation * EXPORT_MAX_HANDLES + slot + 1;
    *handle = h->id;
    return 0;
}

/* Reads up to `size` bytes at `offset`; fewer only at end of file. */
int export_read(struct export *exp, uint64_t pino, uint64_t handle, uint64_t offset, void *buf,
                size_t size, size_t *out)
{
    struct export_handle *h = export_find_handle(exp, pino, handle);
    if (!h)
        return -EBADF;
    if (offset > (uint64_t)INT64_MAX - size)
        return -EINVAL;
    long n = provider_io_full(h->fd, buf, size, offset, false);
    if (n < 0)
        return (int)n;
    *out = (size_t)n;
    return 0;
}

int export_release(struct export *exp, uint64_t pino, uint64_t handle)
{
    struct export_handle *h = export_find_handle(exp, pino, handle);
    if (!h)
        return -EBADF;
    close(h->fd);
    h->fd = -1;
    return 0;
}
