/* The reference provider: exports local directories read-only over one websocket connection.
 *
 * Layers, bottom up (see provider.h): export (directory serving), protocol (JSON today), connection
 * (libwebsockets client). All of it runs on the one thread of the lws service loop; file system
 * calls block that loop for the time of one local system call, which is what a provider is for:
 * the gateway keeps many requests in flight and waits for answers, the provider answers them in
 * order.
 */
#include "provider.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "log.h"
#include "session.h"

/* Largest message in either direction. Incoming fragments are reassembled up to this size; a
 * larger message closes the connection (1009). Outgoing answers that would be larger (a huge
 * directory) are answered with an error instead. */
#define PROVIDER_MAX_MESSAGE (16u * 1024 * 1024)
/* Largest read answered at once, as old gateways capped it; a longer request gets a short read. */
#define PROVIDER_MAX_READ (1024u * 1024)
/* Outgoing queue: above PAUSE bytes the provider stops reading requests until the queue drained
 * to half of it; MAX bytes or messages can only be reached by answers to requests that had been
 * received already, and drop the connection when they are. */
#define PROVIDER_QUEUE_PAUSE_BYTES (8u * 1024 * 1024)
#define PROVIDER_QUEUE_MAX_BYTES (64u * 1024 * 1024)
#define PROVIDER_QUEUE_MAX_MESSAGES 4096
/* Reconnect backoff: first delay, doubled after each failed attempt up to MAX. */
#define PROVIDER_BACKOFF_FIRST_MS 500u
#define PROVIDER_BACKOFF_MAX_MS 30000u
/* How long a clean close (our close frame, the gateway's answer) may take on SIGINT/SIGTERM. */
#define PROVIDER_CLOSE_TIMEOUT_MS 3000u
/* Open files the process may hold: a soft RLIMIT_NOFILE below this is raised (up to the hard
 * limit) so that EXPORT_MAX_HANDLES per export are usable. */
#define PROVIDER_NOFILE_WANTED 65536u

/* Provider inode numbers of one export; each number stays bound to one real file (dev, ino). */
#define EXPORT_MAX_INODES 1000000u
/* Files one export keeps open for the gateway at once; more opens fail with EMFILE. */
#define EXPORT_MAX_HANDLES 1024u
/* Directory levels between the export root and any inode; deeper paths are refused (ELOOP). */
#define EXPORT_MAX_DEPTH 1024u

/* ------------------------------------------------------------------------------------------------
 * Small helpers
 * ----------------------------------------------------------------------------------------------*/

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF): JSON strings can carry
 * only that, so names that are not UTF-8 cannot be sent. */
static bool utf8_valid(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        unsigned char c = *s;
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false; /* also stops at the terminating NUL */
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        s += n + 1;
    }
    return true;
}

bool provider_fs_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 64 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static int url_parse_port(const char *text, int *port)
{
    if (*text == '\0' || strlen(text) > 5)
        return -EINVAL;
    int value = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9')
            return -EINVAL;
        value = value * 10 + (*c - '0');
    }
    if (value < 1 || value > 65535)
        return -EINVAL;
    *port = value;
    return 0;
}

/* Splits the authority "host", "host:port", "[v6]" or "[v6]:port" (already copied into the
 * buffer, so it may be cut with NULs). */
static int url_parse_authority(char *authority, struct provider_url *url)
{
    char *port = NULL;
    if (authority[0] == '[') {
        char *end = strchr(authority, ']');
        if (!end || end == authority + 1)
            return -EINVAL;
        *end = '\0';
        url->host = authority + 1;
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return -EINVAL;
    } else {
        char *colon = strchr(authority, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
        url->host = authority;
    }
    if (url->host[0] == '\0' || strpbrk(url->host, "@?#") != NULL)
        return -EINVAL;
    url->port = 80;
    return port ? url_parse_port(port, &url->port) : 0;
}

int provider_url_parse(const char *text, struct provider_url *url)
{
    static const char scheme[] = "ws://";
    memset(url, 0, sizeof(*url));
    if (strncmp(text, scheme, sizeof(scheme) - 1) != 0)
        return strstr(text, "://") ? -EPROTONOSUPPORT : -EINVAL;
    const char *rest = text + sizeof(scheme) - 1;
    /* The buffer holds "authority\0path\0" or "authority\0/\0": two more bytes than rest. */
    if (strlen(rest) + 3 > sizeof(url->buffer))
        return -ENAMETOOLONG;
    size_t authority_len = strcspn(rest, "/");
    memcpy(url->buffer, rest, authority_len);
    url->buffer[authority_len] = '\0';
    char *path = url->buffer + authority_len + 1;
    strcpy(path, rest[authority_len] == '/' ? rest + authority_len : "/");
    url->path = path;
    return url_parse_authority(url->buffer, url);
}

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
    return true; /* deeper than any walk will go: treat as a loop */
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

/* Called by export_readdir for each listed entry; a negative return stops the listing. */
typedef int (*export_entry_fn)(void *user, const char *name, uint64_t ino);

static bool export_type_served(mode_t mode)
{
    return S_ISREG(mode) || S_ISDIR(mode);
}

static int export_new(const char *name, const char *dir, struct export **out)
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

static void export_close_handles(struct export *exp)
{
    for (size_t i = 0; i < EXPORT_MAX_HANDLES; i++) {
        if (exp->handles[i].fd >= 0) {
            close(exp->handles[i].fd);
            exp->handles[i].fd = -1;
        }
    }
}

static void export_free(struct export *exp)
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
static int export_lookup(struct export *exp, uint64_t parent, const char *name, struct stat *st)
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

static int export_getattr(struct export *exp, uint64_t pino, struct stat *st)
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
static int export_readdir(struct export *exp, uint64_t pino, export_entry_fn fn, void *user)
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
        if (rc < 0 || (rc = fn(user, de->d_name, child)) < 0)
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
static int export_open(struct export *exp, uint64_t pino, int flags, uint64_t *handle)
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
static int export_read(struct export *exp, uint64_t pino, uint64_t handle, uint64_t offset,
                       void *buf, size_t size, size_t *out)
{
    struct export_handle *h = export_find_handle(exp, pino, handle);
    if (!h)
        return -EBADF;
    if (offset > (uint64_t)INT64_MAX - size)
        return -EINVAL;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(h->fd, (char *)buf + done, size - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *out = done;
    return 0;
}

static int export_release(struct export *exp, uint64_t pino, uint64_t handle)
{
    struct export_handle *h = export_find_handle(exp, pino, handle);
    if (!h)
        return -EBADF;
    close(h->fd);
    h->fd = -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * The provider object and what the protocol layer may ask of the connection
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

struct provider_fs {
    struct export *export; /* owned */
    enum provider_fs_state state;
};

struct provider;

/* A wire protocol the provider can speak; the connection layer calls these. */
struct provider_protocol {
    const char *name;        /* --protocol value */
    const char *subprotocol; /* websocket subprotocol asked for */
    /* The connection is open: queue what the protocol starts with. */
    void (*on_connected)(struct provider *p);
    /* One whole incoming message (borrowed for the call). */
    void (*on_message)(struct provider *p, const char *data, size_t len);
};

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
    struct provider_fs fs[PROVIDER_MAX_EXPORTS];
    size_t fs_count;
    char *read_buffer; /* PROVIDER_MAX_READ bytes: the data of one read answer */

    struct lws_context *context;
    struct lws_protocols lws_protocols[2];
    struct lws *wsi;
    enum provider_conn_state state;
    enum lws_close_status close_status; /* sent in our close frame */
    const char *close_reason;
    bool stopping; /* a signal asked us to stop */
    bool done;     /* leave the service loop */
    bool any_refused;
    int exit_status;
    unsigned failed_attempts; /* since the last connection that attached a filesystem */
    lws_sorted_usec_list_t retry_timer;
    lws_sorted_usec_list_t close_timer;

    /* The incoming message being reassembled from fragments. */
    char *rx;
    size_t rx_len;
    size_t rx_cap;
    bool rx_in_message;

    /* Outgoing queue, oldest first. */
    struct provider_msg *queue_head;
    struct provider_msg *queue_tail;
    size_t queue_count;
    size_t queue_bytes;
    bool rx_paused; /* reading stopped until the queue drains */
};

static int provider_send(struct provider *p, struct provider_msg *msg);
static void provider_close_connection(struct provider *p, enum lws_close_status status,
                                      const char *reason);

static struct provider_msg *provider_msg_new(size_t cap)
{
    struct provider_msg *msg = malloc(sizeof(*msg) + LWS_PRE + cap);
    if (!msg)
        return NULL;
    msg->next = NULL;
    msg->len = 0;
    return msg;
}

static char *provider_msg_payload(struct provider_msg *msg)
{
    return (char *)msg->bytes + LWS_PRE;
}

static struct provider_fs *provider_find_fs(struct provider *p, const char *name)
{
    for (size_t i = 0; i < p->fs_count; i++)
        if (strcmp(p->fs[i].export->name, name) == 0)
            return &p->fs[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * JSON protocol ("webfuse-adapter-server")
 * ----------------------------------------------------------------------------------------------*/

/* What to encode: a tagged set of the codec's provider-side encoders, so that one function can
 * size the buffer, encode and retry with the size the codec asks for. */
enum json_out_kind {
    JSON_OUT_ADD_FILESYSTEM,
    JSON_OUT_ERROR,
    JSON_OUT_ATTR,
    JSON_OUT_OPEN,
    JSON_OUT_READ,
    JSON_OUT_READDIR,
};

struct json_out {
    enum json_out_kind kind;
    int64_t id;
    const char *name;                        /* ADD_FILESYSTEM */
    int status;                              /* ERROR */
    const struct stat *st;                   /* ATTR */
    uint64_t handle;                         /* OPEN */
    const void *data;                        /* READ */
    size_t size;                             /* READ */
    const struct codec_json_dirent *entries; /* READDIR */
    size_t count;                            /* READDIR */
};

static int json_encode(char *buf, size_t cap, size_t *len, const struct json_out *out)
{
    switch (out->kind) {
    case JSON_OUT_ADD_FILESYSTEM:
        return codec_json_encode_add_filesystem(buf, cap, len, out->id, out->name);
    case JSON_OUT_ERROR:
        return codec_json_encode_error(buf, cap, len, out->id, out->status);
    case JSON_OUT_ATTR:
        return codec_json_encode_attr_result(buf, cap, len, out->id, out->st);
    case JSON_OUT_OPEN:
        return codec_json_encode_open_result(buf, cap, len, out->id, out->handle);
    case JSON_OUT_READ:
        return codec_json_encode_read_result(buf, cap, len, out->id, out->data, out->size);
    case JSON_OUT_READDIR:
        return codec_json_encode_readdir_result(buf, cap, len, out->id, out->entries, out->count);
    }
    return -EINVAL;
}

/* A first guess at the encoded size; the codec reports the real need when it is short. */
static size_t json_size_hint(const struct json_out *out)
{
    switch (out->kind) {
    case JSON_OUT_READ:
        return base64_encoded_size(out->size) + 256;
    case JSON_OUT_READDIR:
        return out->count * 64 + 256;
    default:
        return 512;
    }
}

/* Encodes `out` into a new message and queues it. */
static int json_send(struct provider *p, const struct json_out *out)
{
    size_t cap = json_size_hint(out);
    for (int attempt = 0; attempt < 2; attempt++) {
        struct provider_msg *msg = provider_msg_new(cap);
        if (!msg)
            return -ENOMEM;
        size_t len = 0;
        int rc = json_encode(provider_msg_payload(msg), cap, &len, out);
        if (rc == 0) {
            msg->len = len;
            return provider_send(p, msg);
        }
        free(msg);
        if (rc != -ENOBUFS)
            return rc;
        if (len >= PROVIDER_MAX_MESSAGE)
            return -EFBIG;
        cap = len + 1;
    }
    return -ENOBUFS;
}

static void json_send_error(struct provider *p, int64_t id, int status)
{
    struct json_out out = {.kind = JSON_OUT_ERROR, .id = id, .status = status};
    int rc = json_send(p, &out);
    if (rc < 0 && rc != -ENOTCONN && rc != -ECONNABORTED)
        log_warn("cannot answer request %" PRId64 " with error %d: %s", id, status, strerror(-rc));
}

/* Sends a result; when it cannot be encoded (too large, ...) the request gets an error instead,
 * so the gateway is never left waiting. */
static void json_send_result(struct provider *p, const struct json_out *out)
{
    int rc = json_send(p, out);
    if (rc < 0 && rc != -ENOTCONN && rc != -ECONNABORTED) {
        log_warn("cannot send the answer to request %" PRId64 ": %s", out->id, strerror(-rc));
        json_send_error(p, out->id, codec_json_errno_to_status(rc));
    }
}

static void json_answer_attr(struct provider *p, int64_t id, int rc, const struct stat *st)
{
    if (rc < 0) {
        json_send_error(p, id, codec_json_errno_to_status(rc));
        return;
    }
    struct json_out out = {.kind = JSON_OUT_ATTR, .id = id, .st = st};
    json_send_result(p, &out);
}

static void json_lookup(struct provider *p, struct export *exp, int64_t id,
                        const struct fusebridge_request *req)
{
    struct stat st;
    int rc = export_lookup(exp, req->ino, req->name, &st);
    log_debug("%s: lookup %" PRIu64 "/%s: %s", exp->name, req->ino, req->name,
              rc < 0 ? strerror(-rc) : "ok");
    json_answer_attr(p, id, rc, &st);
}

static void json_getattr(struct provider *p, struct export *exp, int64_t id,
                         const struct fusebridge_request *req)
{
    struct stat st;
    int rc = export_getattr(exp, req->ino, &st);
    log_debug("%s: getattr %" PRIu64 ": %s", exp->name, req->ino, rc < 0 ? strerror(-rc) : "ok");
    json_answer_attr(p, id, rc, &st);
}

/* Directory entries collected for one readdir answer; names are owned copies. */
struct json_listing {
    struct codec_json_dirent *entries;
    size_t count;
    size_t capacity;
    size_t bytes; /* encoded size estimate, bounded by PROVIDER_MAX_MESSAGE */
    const char *fs_name;
};

static int json_listing_add(void *user, const char *name, uint64_t ino)
{
    struct json_listing *l = user;
    if (!utf8_valid(name)) {
        log_debug("%s: not listing a name that is not valid UTF-8", l->fs_name);
        return 0;
    }
    l->bytes += strlen(name) + 32;
    if (l->bytes > PROVIDER_MAX_MESSAGE)
        return -EFBIG;
    if (l->count == l->capacity) {
        size_t capacity = l->capacity ? l->capacity * 2 : 64;
        struct codec_json_dirent *entries = realloc(l->entries, capacity * sizeof(*entries));
        if (!entries)
            return -ENOMEM;
        l->entries = entries;
        l->capacity = capacity;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    l->entries[l->count++] = (struct codec_json_dirent){.name = copy, .ino = ino};
    return 0;
}

static void json_listing_free(struct json_listing *l)
{
    for (size_t i = 0; i < l->count; i++)
        free((char *)l->entries[i].name);
    free(l->entries);
}

static void json_readdir(struct provider *p, struct export *exp, int64_t id,
                         const struct fusebridge_request *req)
{
    struct json_listing listing = {.fs_name = exp->name};
    int rc = export_readdir(exp, req->ino, json_listing_add, &listing);
    log_debug("%s: readdir %" PRIu64 ": %zu entries, %s", exp->name, req->ino, listing.count,
              rc < 0 ? strerror(-rc) : "ok");
    if (rc == -EFBIG || rc == -ENOSPC)
        log_warn("%s: directory inode %" PRIu64 " is too large to list: %s", exp->name, req->ino,
                 strerror(-rc));
    if (rc < 0) {
        json_send_error(p, id, codec_json_errno_to_status(rc));
    } else {
        struct json_out out = {
            .kind = JSON_OUT_READDIR, .id = id, .entries = listing.entries, .count = listing.count};
        json_send_result(p, &out);
    }
    json_listing_free(&listing);
}

static void json_open(struct provider *p, struct export *exp, int64_t id,
                      const struct fusebridge_request *req)
{
    uint64_t handle = 0;
    int rc = export_open(exp, req->ino, req->flags, &handle);
    log_debug("%s: open %" PRIu64 " flags 0%o: %s, handle %" PRIu64, exp->name, req->ino,
              (unsigned)req->flags, rc < 0 ? strerror(-rc) : "ok", handle);
    if (rc == -EMFILE)
        log_warn("%s: too many open files (limit %u per filesystem)", exp->name,
                 EXPORT_MAX_HANDLES);
    if (rc < 0) {
        json_send_error(p, id, codec_json_errno_to_status(rc));
        return;
    }
    struct json_out out = {.kind = JSON_OUT_OPEN, .id = id, .handle = handle};
    json_send_result(p, &out);
}

static void json_read(struct provider *p, struct export *exp, int64_t id,
                      const struct fusebridge_request *req)
{
    size_t size = req->size < PROVIDER_MAX_READ ? req->size : PROVIDER_MAX_READ;
    size_t n = 0;
    int rc = export_read(exp, req->ino, req->fh, req->offset, p->read_buffer, size, &n);
    log_debug(
        "%s: read %" PRIu64 " handle %" PRIu64 " at %" PRIu64 " size %" PRIu32 ": %s, %zu bytes",
        exp->name, req->ino, req->fh, req->offset, req->size, rc < 0 ? strerror(-rc) : "ok", n);
    if (rc < 0) {
        json_send_error(p, id, codec_json_errno_to_status(rc));
        return;
    }
    struct json_out out = {.kind = JSON_OUT_READ, .id = id, .data = p->read_buffer, .size = n};
    json_send_result(p, &out);
}

/* "close" is a notification: never answered (the codec refuses one that carries an id). */
static void json_close(struct export *exp, const struct fusebridge_request *req)
{
    int rc = export_release(exp, req->ino, req->fh);
    if (rc < 0)
        log_warn("%s: close of unknown handle %" PRIu64 " (inode %" PRIu64 ")", exp->name, req->fh,
                 req->ino);
    else
        log_debug("%s: close %" PRIu64 " handle %" PRIu64, exp->name, req->ino, req->fh);
}

static bool json_method_known(const char *method)
{
    static const char *const methods[] = {"lookup", "getattr", "readdir", "open", "read", "close"};
    for (size_t i = 0; method && i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(method, methods[i]) == 0)
            return true;
    return false;
}

/* A request the codec could not decode: a known method with bad params is a format error, any
 * other method is not implemented. */
static void json_refuse_request(struct provider *p, const struct codec_json_msg *msg, bool has_id)
{
    const char *method = codec_json_msg_method(msg);
    bool known = json_method_known(method);
    log_warn("gateway sent %s \"%.64s\"%s", known ? "bad parameters for" : "unknown method",
             method ? method : "", has_id ? "" : " as a notification (not answered)");
    if (has_id)
        json_send_error(p, codec_json_msg_id(msg),
                        known ? CODEC_JSON_BAD_FORMAT : CODEC_JSON_BAD_NOTIMPLEMENTED);
}

static void json_on_request(struct provider *p, const struct codec_json_msg *msg, bool has_id)
{
    int64_t id = codec_json_msg_id(msg);
    const char *fs_name = NULL;
    struct fusebridge_request req;
    if (codec_json_decode_request(msg, &fs_name, &req) < 0) {
        json_refuse_request(p, msg, has_id);
        return;
    }
    struct provider_fs *fs = provider_find_fs(p, fs_name);
    if (!fs || (fs->state != PROVIDER_FS_ADDING && fs->state != PROVIDER_FS_ATTACHED)) {
        log_warn("gateway sent %s for filesystem \"%.64s\", which is not attached",
                 codec_json_msg_method(msg), fs_name);
        if (has_id)
            json_send_error(p, id, codec_json_errno_to_status(-ENODEV));
        return;
    }
    if (!has_id && req.kind != FUSEBRIDGE_RELEASE) {
        log_warn("%s: gateway sent %s without an id: not answered", fs->export->name,
                 codec_json_msg_method(msg));
        return;
    }
    struct export *exp = fs->export;
    switch (req.kind) {
    case FUSEBRIDGE_LOOKUP:
        json_lookup(p, exp, id, &req);
        break;
    case FUSEBRIDGE_GETATTR:
        json_getattr(p, exp, id, &req);
        break;
    case FUSEBRIDGE_READDIR:
        json_readdir(p, exp, id, &req);
        break;
    case FUSEBRIDGE_OPEN:
        json_open(p, exp, id, &req);
        break;
    case FUSEBRIDGE_READ:
        json_read(p, exp, id, &req);
        break;
    case FUSEBRIDGE_RELEASE:
        json_close(exp, &req);
        break;
    }
}

static const char *json_status_meaning(int status)
{
    switch (status) {
    case CODEC_JSON_BAD:
        return "name already in use or mount failed";
    case CODEC_JSON_BAD_NOTIMPLEMENTED:
        return "not implemented";
    case CODEC_JSON_BAD_BUSY:
        return "busy";
    case CODEC_JSON_BAD_FORMAT:
        return "name not accepted";
    case CODEC_JSON_BAD_ACCESS_DENIED:
        return "access denied, authentication required";
    default:
        return "error";
    }
}

/* Closes the connection when every filesystem was refused: there is nothing to serve. */
static void json_check_attached(struct provider *p)
{
    size_t attached = 0;
    for (size_t i = 0; i < p->fs_count; i++) {
        if (p->fs[i].state == PROVIDER_FS_ADDING)
            return;
        attached += p->fs[i].state == PROVIDER_FS_ATTACHED;
    }
    if (attached == 0) {
        log_error("the gateway refused every filesystem");
        provider_close_connection(p, LWS_CLOSE_STATUS_NORMAL, "no filesystem attached");
    }
}

/* The gateway's answer to one of our add_filesystem requests (id = index + 1). */
static void json_on_response(struct provider *p, const struct codec_json_msg *msg)
{
    int64_t id = codec_json_msg_id(msg);
    if (id < 1 || (uint64_t)id > p->fs_count || p->fs[id - 1].state != PROVIDER_FS_ADDING) {
        log_warn("gateway sent a response with unexpected id %" PRId64, id);
        return;
    }
    struct provider_fs *fs = &p->fs[id - 1];
    if (codec_json_msg_kind(msg) == CODEC_JSON_RESULT) {
        fs->state = PROVIDER_FS_ATTACHED;
        p->failed_attempts = 0; /* a working connection: the next drop retries quickly again */
        log_info("%s: attached, exporting %s", fs->export->name, fs->export->dir);
    } else {
        int status = codec_json_msg_error_status(msg);
        fs->state = PROVIDER_FS_REFUSED;
        p->any_refused = true;
        log_error("%s: the gateway refused the filesystem: code %d (%s)", fs->export->name, status,
                  json_status_meaning(status));
    }
    json_check_attached(p);
}

static void json_on_message(struct provider *p, const char *data, size_t len)
{
    struct codec_json_msg *msg;
    if (codec_json_parse(data, len, &msg) < 0) {
        log_warn("ignoring a message from the gateway that is not a JSON request or response "
                 "(%zu bytes)",
                 len);
        return;
    }
    switch (codec_json_msg_kind(msg)) {
    case CODEC_JSON_REQUEST:
        json_on_request(p, msg, true);
        break;
    case CODEC_JSON_NOTIFICATION:
        json_on_request(p, msg, false);
        break;
    case CODEC_JSON_RESULT:
    case CODEC_JSON_ERROR:
        json_on_response(p, msg);
        break;
    }
    codec_json_msg_free(msg);
}

/* A new connection starts by adding every filesystem; ids are the index + 1. */
static void json_on_connected(struct provider *p)
{
    for (size_t i = 0; i < p->fs_count; i++) {
        struct provider_fs *fs = &p->fs[i];
        struct json_out out = {
            .kind = JSON_OUT_ADD_FILESYSTEM, .id = (int64_t)i + 1, .name = fs->export->name};
        int rc = json_send(p, &out);
        if (rc < 0) {
            log_error("%s: cannot send add_filesystem: %s", fs->export->name, strerror(-rc));
            fs->state = PROVIDER_FS_REFUSED;
            p->any_refused = true;
            continue;
        }
        fs->state = PROVIDER_FS_ADDING;
        log_debug("%s: add_filesystem sent", fs->export->name);
    }
    json_check_attached(p);
}

static const struct provider_protocol provider_protocols[] = {
    {
        .name = "json",
        .subprotocol = CODEC_JSON_SUBPROTOCOL,
        .on_connected = json_on_connected,
        .on_message = json_on_message,
    },
};

bool provider_protocol_known(const char *name)
{
    for (size_t i = 0; i < sizeof(provider_protocols) / sizeof(provider_protocols[0]); i++)
        if (strcmp(provider_protocols[i].name, name) == 0)
            return true;
    return false;
}

static const struct provider_protocol *provider_protocol_find(const char *name)
{
    for (size_t i = 0; i < sizeof(provider_protocols) / sizeof(provider_protocols[0]); i++)
        if (strcmp(provider_protocols[i].name, name) == 0)
            return &provider_protocols[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Connection: libwebsockets client
 * ----------------------------------------------------------------------------------------------*/

/* Signals reach the service loop through these: the handler only counts and wakes lws
 * (lws_cancel_service writes to lws's wake-up pipe). The only process-wide state of the provider;
 * set by provider_run around its loop. The process has one thread (lws runs no threads of its
 * own here), so once the context pointer is cleared no handler can still be using it. */
static volatile sig_atomic_t provider_signals;
static struct lws_context *volatile provider_signal_context;
static struct sigaction provider_old_sigint;
static struct sigaction provider_old_sigterm;

static void provider_on_signal(int signo)
{
    (void)signo;
    provider_signals++;
    if (provider_signal_context)
        lws_cancel_service(provider_signal_context);
}

/* Ping after 30 s without traffic; give the connection up after 70 s without a valid frame, so a
 * silently dead gateway ends in a reconnect instead of a connection that waits forever. */
static const lws_retry_bo_t provider_idle_policy = {
    .secs_since_valid_ping = 30,
    .secs_since_valid_hangup = 70,
};

static void provider_queue_drop(struct provider *p)
{
    while (p->queue_head) {
        struct provider_msg *msg = p->queue_head;
        p->queue_head = msg->next;
        free(msg);
    }
    p->queue_tail = NULL;
    p->queue_count = 0;
    p->queue_bytes = 0;
    p->rx_paused = false;
}

/* Takes ownership of `msg` and queues it for the next writeable callback. Returns 0, -ENOTCONN
 * when no connection is open, or -ECONNABORTED when the queue is full (the connection is then
 * being closed). */
static int provider_send(struct provider *p, struct provider_msg *msg)
{
    if (p->state != PROVIDER_CONN_OPEN) {
        free(msg);
        return -ENOTCONN;
    }
    if (p->queue_count >= PROVIDER_QUEUE_MAX_MESSAGES ||
        p->queue_bytes + msg->len > PROVIDER_QUEUE_MAX_BYTES) {
        free(msg);
        log_error("outgoing queue full (%zu messages, %zu bytes): closing the connection",
                  p->queue_count, p->queue_bytes);
        provider_close_connection(p, LWS_CLOSE_STATUS_POLICY_VIOLATION, "provider queue full");
        return -ECONNABORTED;
    }
    if (p->queue_tail)
        p->queue_tail->next = msg;
    else
        p->queue_head = msg;
    p->queue_tail = msg;
    p->queue_count++;
    p->queue_bytes += msg->len;
    if (!p->rx_paused && p->queue_bytes > PROVIDER_QUEUE_PAUSE_BYTES) {
        /* The gateway asks faster than the socket takes the answers: stop reading requests. */
        lws_rx_flow_control(p->wsi, 0);
        p->rx_paused = true;
        log_debug("%zu bytes of answers queued: reading paused", p->queue_bytes);
    }
    lws_callback_on_writable(p->wsi);
    return 0;
}

/* Asks for our close frame to go out at the next writeable callback. */
static void provider_close_connection(struct provider *p, enum lws_close_status status,
                                      const char *reason)
{
    if (p->state != PROVIDER_CONN_OPEN)
        return;
    p->state = PROVIDER_CONN_CLOSING;
    p->close_status = status;
    p->close_reason = reason;
    lws_callback_on_writable(p->wsi);
}

static void provider_rx_reset(struct provider *p)
{
    p->rx_len = 0;
    p->rx_in_message = false;
    if (p->rx_cap > PROVIDER_MAX_READ) { /* do not keep a huge buffer after one huge message */
        free(p->rx);
        p->rx = NULL;
        p->rx_cap = 0;
    }
}

static int provider_rx_append(struct provider *p, const void *data, size_t len)
{
    if (len > PROVIDER_MAX_MESSAGE - p->rx_len)
        return -EMSGSIZE;
    if (p->rx_len + len > p->rx_cap) {
        size_t cap = p->rx_cap ? p->rx_cap : 65536;
        while (cap < p->rx_len + len)
            cap *= 2;
        if (cap > PROVIDER_MAX_MESSAGE)
            cap = PROVIDER_MAX_MESSAGE;
        char *rx = realloc(p->rx, cap);
        if (!rx)
            return -ENOMEM;
        p->rx = rx;
        p->rx_cap = cap;
    }
    memcpy(p->rx + p->rx_len, data, len);
    p->rx_len += len;
    return 0;
}

/* One piece of an incoming message; whole messages go to the protocol. */
static int provider_on_receive(struct provider *p, struct lws *wsi, const void *in, size_t len)
{
    if (p->state != PROVIDER_CONN_OPEN)
        return 0; /* closing: nothing more is answered */
    bool final = lws_is_final_fragment(wsi);
    if (!p->rx_in_message && final) {
        p->protocol->on_message(p, in, len); /* common case: no copy */
        return 0;
    }
    int rc = provider_rx_append(p, in, len);
    if (rc < 0) {
        log_error("gateway sent a message larger than %u bytes: closing the connection",
                  PROVIDER_MAX_MESSAGE);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
        return -1;
    }
    p->rx_in_message = true;
    if (final) {
        p->protocol->on_message(p, p->rx, p->rx_len);
        provider_rx_reset(p);
    }
    return 0;
}

/* Writes one queued message (one lws_write per callback, as lws requires) or the close frame. */
static int provider_on_writeable(struct provider *p, struct lws *wsi)
{
    if (p->state == PROVIDER_CONN_CLOSING) {
        const char *reason = p->close_reason ? p->close_reason : "";
        lws_close_reason(wsi, p->close_status, (unsigned char *)reason, strlen(reason));
        return -1;
    }
    struct provider_msg *msg = p->queue_head;
    if (!msg)
        return 0;
    p->queue_head = msg->next;
    if (!p->queue_head)
        p->queue_tail = NULL;
    p->queue_count--;
    p->queue_bytes -= msg->len;
    int n = lws_write(wsi, msg->bytes + LWS_PRE, msg->len, LWS_WRITE_TEXT);
    size_t len = msg->len;
    free(msg);
    if (n < 0 || (size_t)n < len) {
        log_error("writing to %s failed", p->options->url);
        return -1;
    }
    if (p->rx_paused && p->queue_bytes <= PROVIDER_QUEUE_PAUSE_BYTES / 2) {
        lws_rx_flow_control(wsi, 1);
        p->rx_paused = false;
        log_debug("%zu bytes of answers queued: reading resumed", p->queue_bytes);
    }
    if (p->queue_head)
        lws_callback_on_writable(wsi);
    return 0;
}

static void provider_connect(struct provider *p);

static void provider_on_retry_timer(lws_sorted_usec_list_t *sul)
{
    struct provider *p = lws_container_of(sul, struct provider, retry_timer);
    provider_connect(p);
}

/* The connection failed or ended: retry after the backoff delay, or end with status 1. */
static void provider_retry_or_exit(struct provider *p)
{
    if (!p->options->reconnect) {
        p->exit_status = 1;
        p->done = true;
        return;
    }
    unsigned shift = p->failed_attempts < 16 ? p->failed_attempts : 16;
    unsigned delay_ms = PROVIDER_BACKOFF_FIRST_MS << shift;
    if (delay_ms > PROVIDER_BACKOFF_MAX_MS)
        delay_ms = PROVIDER_BACKOFF_MAX_MS;
    p->failed_attempts++;
    log_info("reconnecting to %s in %u.%u s", p->options->url, delay_ms / 1000,
             delay_ms % 1000 / 100);
    lws_sul_schedule(p->context, 0, &p->retry_timer, provider_on_retry_timer,
                     (lws_usec_t)delay_ms * LWS_US_PER_MS);
}

static void provider_on_connect_error(struct provider *p, const char *reason)
{
    if (p->state != PROVIDER_CONN_CONNECTING)
        return;
    p->state = PROVIDER_CONN_IDLE;
    p->wsi = NULL;
    if (p->stopping) {
        p->done = true;
        return;
    }
    if (p->options->reconnect)
        log_warn("cannot connect to %s: %s", p->options->url, reason);
    else
        log_error("cannot connect to %s: %s", p->options->url, reason);
    provider_retry_or_exit(p);
}

static void provider_on_established(struct provider *p, struct lws *wsi)
{
    p->wsi = wsi;
    p->state = PROVIDER_CONN_OPEN;
    provider_rx_reset(p);
    log_info("connected to %s", p->options->url);
    p->protocol->on_connected(p);
}

/* Logs the close code and reason the gateway sent. */
static void provider_on_peer_close(const unsigned char *in, size_t len)
{
    int code = len >= 2 ? (in[0] << 8) | in[1] : 0;
    int reason_len = len > 2 ? (int)(len - 2) : 0;
    if (reason_len > 123)
        reason_len = 123; /* a control frame payload is at most 125 bytes */
    log_info("the gateway closes the connection: code %d%s%.*s", code, reason_len ? ", " : "",
             reason_len, len > 2 ? (const char *)in + 2 : "");
}

static void provider_on_closed(struct provider *p)
{
    if (p->state != PROVIDER_CONN_OPEN && p->state != PROVIDER_CONN_CLOSING)
        return;
    p->state = PROVIDER_CONN_IDLE;
    p->wsi = NULL;
    provider_queue_drop(p);
    provider_rx_reset(p);
    for (size_t i = 0; i < p->fs_count; i++) {
        export_close_handles(p->fs[i].export); /* the gateway's mounts are gone */
        p->fs[i].state = PROVIDER_FS_DETACHED;
    }
    if (p->stopping) {
        log_info("disconnected from %s", p->options->url);
        p->done = true;
        return;
    }
    if (p->options->reconnect)
        log_warn("connection to %s closed", p->options->url);
    else
        log_error("connection to %s closed", p->options->url);
    provider_retry_or_exit(p);
}

static int provider_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len)
{
    (void)user;
    struct provider *p = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        provider_on_connect_error(p, in && len ? (const char *)in : "connection failed");
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        provider_on_established(p, wsi);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return provider_on_receive(p, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return provider_on_writeable(p, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        provider_on_peer_close(in, len);
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        provider_on_closed(p);
        break;
    default:
        break;
    }
    return 0;
}

/* lws gives no reason when a connection cannot even be started; the usual one is a host name
 * that does not resolve, so look for that. */
static void provider_explain_connect_failure(struct provider *p, char *reason, size_t size)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *addresses = NULL;
    int rc = getaddrinfo(p->url.host, NULL, &hints, &addresses);
    if (rc != 0)
        snprintf(reason, size, "cannot resolve %s: %s", p->url.host, gai_strerror(rc));
    else
        snprintf(reason, size, "the connection could not be started");
    if (addresses)
        freeaddrinfo(addresses);
}

static void provider_connect(struct provider *p)
{
    struct lws_client_connect_info info;
    memset(&info, 0, sizeof(info));
    info.context = p->context;
    info.address = p->url.host;
    info.port = p->url.port;
    info.path = p->url.path;
    info.host = p->host_header;
    info.origin = p->host_header;
    info.protocol = p->protocol->subprotocol;
    info.pwsi = &p->wsi;
    info.retry_and_idle_policy = &provider_idle_policy;
    p->state = PROVIDER_CONN_CONNECTING;
    log_debug("connecting to %s", p->options->url);
    /* Name resolution happens inside this call and blocks: fine for a provider, whose loop has
     * nothing else to do while it is not connected. */
    if (!lws_client_connect_via_info(&info)) {
        char reason[256];
        provider_explain_connect_failure(p, reason, sizeof(reason));
        provider_on_connect_error(p, reason);
    }
}

static void provider_on_close_timer(lws_sorted_usec_list_t *sul)
{
    struct provider *p = lws_container_of(sul, struct provider, close_timer);
    log_warn("the gateway did not complete the close in time");
    p->done = true;
}

/* SIGINT/SIGTERM: close the connection with a normal close frame, then leave the loop. */
static void provider_stop(struct provider *p)
{
    p->stopping = true;
    log_info("stopping");
    lws_sul_cancel(&p->retry_timer);
    switch (p->state) {
    case PROVIDER_CONN_OPEN:
        provider_close_connection(p, LWS_CLOSE_STATUS_NORMAL, "provider stopping");
        /* fall through */
    case PROVIDER_CONN_CLOSING:
        lws_sul_schedule(p->context, 0, &p->close_timer, provider_on_close_timer,
                         (lws_usec_t)PROVIDER_CLOSE_TIMEOUT_MS * LWS_US_PER_MS);
        break;
    case PROVIDER_CONN_CONNECTING: /* destroying the context drops the attempt */
    case PROVIDER_CONN_IDLE:
        p->done = true;
        break;
    }
}

/* Forwards libwebsockets' own messages (errors only) to our log. */
static void provider_lws_log(int level, const char *line)
{
    (void)level;
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    log_error("libwebsockets: %.*s", (int)len, line);
}

static int provider_create_context(struct provider *p)
{
    lws_set_log_level(LLL_ERR, provider_lws_log);
    p->lws_protocols[0] = (struct lws_protocols){
        .name = p->protocol->subprotocol,
        .callback = provider_callback,
        .rx_buffer_size = 65536,
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = p->lws_protocols;
    info.user = p;
    info.gid = -1;
    info.uid = -1;
    /* One socket and lws's wake-up pipe: keeps lws from sizing tables by the (raised) fd limit. */
    info.fd_limit_per_thread = 16;
    p->context = lws_create_context(&info);
    if (!p->context) {
        log_error("cannot create the libwebsockets context");
        return -ENOMEM;
    }
    return 0;
}

/* Lets each export keep EXPORT_MAX_HANDLES files open under a low default soft limit. */
static void provider_raise_nofile(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0 || limit.rlim_cur >= PROVIDER_NOFILE_WANTED)
        return;
    rlim_t wanted = PROVIDER_NOFILE_WANTED;
    limit.rlim_cur = limit.rlim_max < wanted ? limit.rlim_max : wanted;
    if (setrlimit(RLIMIT_NOFILE, &limit) < 0)
        log_debug("cannot raise the open file limit: %s", strerror(errno));
}

static void provider_install_signals(struct lws_context *context)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    sigemptyset(&action.sa_mask);
    action.sa_handler = provider_on_signal;
    provider_signals = 0;
    provider_signal_context = context;
    sigaction(SIGINT, &action, &provider_old_sigint);
    sigaction(SIGTERM, &action, &provider_old_sigterm);
}

static void provider_restore_signals(void)
{
    provider_signal_context = NULL;
    sigaction(SIGINT, &provider_old_sigint, NULL);
    sigaction(SIGTERM, &provider_old_sigterm, NULL);
}

int provider_run(struct provider *p)
{
    provider_raise_nofile();
    if (provider_create_context(p) < 0)
        return 1;
    provider_install_signals(p->context);
    provider_connect(p);
    int seen_signals = 0;
    while (!p->done) {
        if (lws_service(p->context, 0) < 0) {
            log_error("libwebsockets service loop failed");
            p->exit_status = 1;
            break;
        }
        if (provider_signals != seen_signals) {
            seen_signals = provider_signals;
            if (p->stopping)
                p->done = true; /* a second signal: do not wait for the close any longer */
            else
                provider_stop(p);
        }
    }
    provider_restore_signals(); /* before the context goes away: no handler may wake it then */
    lws_sul_cancel(&p->retry_timer);
    lws_sul_cancel(&p->close_timer);
    lws_context_destroy(p->context);
    p->context = NULL;
    p->wsi = NULL;
    p->state = PROVIDER_CONN_IDLE;
    provider_queue_drop(p);
    if (p->exit_status == 0 && p->any_refused)
        return 1;
    return p->exit_status;
}

/* ------------------------------------------------------------------------------------------------
 * Construction
 * ----------------------------------------------------------------------------------------------*/

static int provider_set_url(struct provider *p, const char *text)
{
    int rc = provider_url_parse(text, &p->url);
    if (rc < 0) {
        log_error("bad url %s: %s", text, strerror(-rc));
        return -EINVAL;
    }
    bool v6 = strchr(p->url.host, ':') != NULL;
    snprintf(p->host_header, sizeof(p->host_header), "%s%s%s:%d", v6 ? "[" : "", p->url.host,
             v6 ? "]" : "", p->url.port);
    return 0;
}

static int provider_add_exports(struct provider *p, const struct provider_options *options)
{
    if (options->export_count == 0 || options->export_count > PROVIDER_MAX_EXPORTS) {
        log_error("between 1 and %d filesystems can be exported", PROVIDER_MAX_EXPORTS);
        return -EINVAL;
    }
    for (size_t i = 0; i < options->export_count; i++) {
        const struct provider_export_spec *spec = &options->exports[i];
        int rc = export_new(spec->name, spec->dir, &p->fs[i].export);
        if (rc < 0) {
            log_error("cannot export %s: %s", spec->dir, strerror(-rc));
            return rc;
        }
        p->fs_count++;
    }
    return 0;
}

int provider_new(const struct provider_options *options, struct provider **out)
{
    struct provider *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->options = options;
    p->protocol = provider_protocol_find(options->protocol);
    int rc = -EINVAL;
    if (!p->protocol) {
        log_error("unknown protocol %s", options->protocol);
        goto fail;
    }
    if ((rc = provider_set_url(p, options->url)) < 0)
        goto fail;
    if ((rc = provider_add_exports(p, options)) < 0)
        goto fail;
    p->read_buffer = malloc(PROVIDER_MAX_READ);
    if (!p->read_buffer) {
        rc = -ENOMEM;
        goto fail;
    }
    *out = p;
    return 0;
fail:
    provider_free(p);
    return rc;
}

void provider_free(struct provider *p)
{
    if (!p)
        return;
    if (p->context)
        lws_context_destroy(p->context);
    provider_queue_drop(p);
    for (size_t i = 0; i < p->fs_count; i++)
        export_free(p->fs[i].export);
    free(p->read_buffer);
    free(p->rx);
    free(p);
}
