/* The inode table of a path-based mount: kernel inode numbers <-> (parent, name) nodes.
 *
 * A node knows its parent and its name, so its path is built by walking up, and renaming a
 * directory moves every path below it at once. A second index finds the nodes of one provider
 * inode (the names of a hard-linked file) without a walk over the table. The kernel's lookup count
 * keeps a node alive, and so does every child that refers to it. Inode numbers of freed nodes are
 * reused with a new generation, so the kernel never confuses a new file with an old one.
 *
 * Loop thread only, like everything of a mount.
 */
#include "fusebridge_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct inode_node {
    uint64_t ino;
    struct inode_node *parent; /* NULL only for the root */
    char *name;
    uint64_t nlookup;
    uint64_t children;
    bool unlinked; /* no longer reachable by name; its last path is kept */
    bool has_attr;
    bool linked; /* has had other names: a name may be gone while a process still has it open */
    struct stat attr;             /* as the provider last described it (st_ino: the provider's) */
    /* The provider's file as it was at the last open (inode number and ctime), so the next open
     * can tell whether the pages the kernel cached still belong to it. */
    bool opened;
    uint64_t opened_ino;
    struct timespec opened_ctime;
    struct inode_node *hash_next; /* in the name index, unless unlinked */
    /* In the provider inode index once it has attributes (see ino_indexed). */
    struct inode_node *ino_next;
    struct inode_node **ino_pprev; /* what points to this node in the index */
};

struct inode_slot {
    struct inode_node *node;
    uint64_t generation;
};

/* Small at first: an idle mount should cost little; all grow by doubling. */
#define INODE_BUCKETS_MIN 64
#define INODE_SLOTS_MIN 64

/* The most names of one file that changes through one of them reach. A provider decides inode
 * numbers: one that gives every file the same number must not make each update a walk over
 * the whole table. */
#define INODE_ALIASES_MAX 64

static uint64_t name_hash(uint64_t parent, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ parent;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static struct inode_node **bucket_of(struct inode_table *t, uint64_t parent, const char *name)
{
    return &t->buckets[name_hash(parent, name) & (t->nbuckets - 1)];
}

static struct inode_node *node_find(struct inode_table *t, uint64_t parent, const char *name)
{
    for (struct inode_node *n = *bucket_of(t, parent, name); n; n = n->hash_next)
        if (n->parent && n->parent->ino == parent && strcmp(n->name, name) == 0)
            return n;
    return NULL;
}

static void index_remove(struct inode_table *t, struct inode_node *node)
{
    struct inode_node **it = bucket_of(t, node->parent->ino, node->name);
    for (; *it; it = &(*it)->hash_next) {
        if (*it == node) {
            *it = node->hash_next;
            node->hash_next = NULL;
            return;
        }
    }
}

static void index_insert(struct inode_table *t, struct inode_node *node)
{
    struct inode_node **bucket = bucket_of(t, node->parent->ino, node->name);
    node->hash_next = *bucket;
    *bucket = node;
}

/* Doubles the name index when it is full; a failed resize only costs speed. */
static void index_grow(struct inode_table *t)
{
    if (t->count < t->nbuckets)
        return;
    size_t nbuckets = t->nbuckets * 2;
    struct inode_node **buckets = calloc(nbuckets, sizeof(*buckets));
    if (!buckets)
        return;
    struct inode_node **old = t->buckets;
    size_t old_n = t->nbuckets;
    t->buckets = buckets;
    t->nbuckets = nbuckets;
    for (size_t i = 0; i < old_n; i++) {
        for (struct inode_node *n = old[i], *next; n; n = next) {
            next = n->hash_next;
            index_insert(t, n);
        }
    }
    free(old);
}

/* ---- provider inode index: st_ino -> nodes (those with attributes and a number) ----
 * Doubly linked, so that a node leaves in constant time even when a provider gives many files
 * one number. */

/* The provider picks the numbers: with a seed it cannot know, it cannot pick many that share a
 * bucket (and make every update walk them). */
static struct inode_node **ino_bucket_of(struct inode_table *t, uint64_t provider_ino)
{
    uint64_t h = (provider_ino ^ t->ino_seed) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    return &t->ino_buckets[(h * 0xbf58476d1ce4e5b9ull >> 32) & (t->ino_nbuckets - 1)];
}

static bool ino_indexed(const struct inode_node *node)
{
    return node->has_attr && node->attr.st_ino != 0;
}

static void ino_link(struct inode_table *t, struct inode_node *node)
{
    struct inode_node **bucket = ino_bucket_of(t, (uint64_t)node->attr.st_ino);
    node->ino_next = *bucket;
    if (*bucket)
        (*bucket)->ino_pprev = &node->ino_next;
    *bucket = node;
    node->ino_pprev = bucket;
}

/* Doubles the provider inode index when it is full; a failed resize only costs speed. */
static void ino_index_grow(struct inode_table *t)
{
    if (t->ino_count < t->ino_nbuckets)
        return;
    struct inode_node **buckets = calloc(t->ino_nbuckets * 2, sizeof(*buckets));
    if (!buckets)
        return;
    struct inode_node **old = t->ino_buckets;
    size_t old_n = t->ino_nbuckets;
    t->ino_buckets = buckets;
    t->ino_nbuckets = old_n * 2;
    for (size_t i = 0; i < old_n; i++) {
        for (struct inode_node *n = old[i], *next; n; n = next) {
            next = n->ino_next;
            ino_link(t, n);
        }
    }
    free(old);
}

static void ino_index_insert(struct inode_table *t, struct inode_node *node)
{
    if (!ino_indexed(node))
        return;
    ino_link(t, node);
    t->ino_count++;
    ino_index_grow(t);
}

static void ino_index_remove(struct inode_table *t, struct inode_node *node)
{
    if (!ino_indexed(node))
        return;
    *node->ino_pprev = node->ino_next;
    if (node->ino_next)
        node->ino_next->ino_pprev = node->ino_pprev;
    node->ino_next = NULL;
    node->ino_pprev = NULL;
    t->ino_count--;
}

static int slot_take(struct inode_table *t, uint64_t *ino)
{
    if (t->nfree > 0) {
        *ino = t->free_inos[--t->nfree];
        return 0;
    }
    if (t->nslots == t->slot_cap) {
        size_t cap = t->slot_cap * 2;
        struct inode_slot *slots = realloc(t->slots, cap * sizeof(*slots));
        if (!slots)
            return -ENOMEM;
        memset(slots + t->slot_cap, 0, (cap - t->slot_cap) * sizeof(*slots));
        t->slots = slots;
        t->slot_cap = cap;
    }
    *ino = t->nslots++;
    return 0;
}

static void slot_give_back(struct inode_table *t, uint64_t ino)
{
    t->slots[ino].node = NULL;
    if (t->nfree == t->free_cap) {
        size_t cap = t->free_cap ? t->free_cap * 2 : 256;
        uint64_t *grown = realloc(t->free_inos, cap * sizeof(*grown));
        if (!grown)
            return; /* the number is simply never reused */
        t->free_inos = grown;
        t->free_cap = cap;
    }
    t->free_inos[t->nfree++] = ino;
}

static struct inode_node *node_get(struct inode_table *t, uint64_t ino)
{
    return ino < t->nslots ? t->slots[ino].node : NULL;
}

/* Frees nodes nobody refers to any more, walking up through parents that become free too. */
static void node_release_if_unused(struct inode_table *t, struct inode_node *node)
{
    while (node && node->parent && node->nlookup == 0 && node->children == 0) {
        struct inode_node *parent = node->parent;
        if (!node->unlinked)
            index_remove(t, node);
        ino_index_remove(t, node);
        t->count--;
        slot_give_back(t, node->ino);
        free(node->name);
        free(node);
        parent->children--;
        node = parent;
    }
}

int inode_table_init(struct inode_table *t)
{
    memset(t, 0, sizeof(*t));
    t->nbuckets = INODE_BUCKETS_MIN;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    t->ino_nbuckets = INODE_BUCKETS_MIN;
    if (getrandom(&t->ino_seed, sizeof(t->ino_seed), GRND_NONBLOCK) != sizeof(t->ino_seed))
        t->ino_seed = (uint64_t)(uintptr_t)t; /* where the heap is: unknown to a provider too */
    t->ino_buckets = calloc(t->ino_nbuckets, sizeof(*t->ino_buckets));
    t->slot_cap = INODE_SLOTS_MIN;
    t->slots = calloc(t->slot_cap, sizeof(*t->slots));
    struct inode_node *root = calloc(1, sizeof(*root));
    if (!t->buckets || !t->ino_buckets || !t->slots || !root) {
        free(t->buckets);
        free(t->ino_buckets);
        free(t->slots);
        free(root);
        return -ENOMEM;
    }
    /* Slot 0 is never an inode; slot 1 is the root, which the kernel never forgets. */
    root->ino = FUSEBRIDGE_ROOT_INODE;
    root->nlookup = 1;
    t->slots[FUSEBRIDGE_ROOT_INODE].node = root;
    t->slots[FUSEBRIDGE_ROOT_INODE].generation = 1;
    t->nslots = FUSEBRIDGE_ROOT_INODE + 1;
    return 0;
}

void inode_table_destroy(struct inode_table *t)
{
    for (size_t i = 0; i < t->nslots; i++) {
        if (t->slots[i].node) {
            free(t->slots[i].node->name);
            free(t->slots[i].node);
        }
    }
    free(t->slots);
    free(t->buckets);
    free(t->ino_buckets);
    free(t->free_inos);
}

/* Writes the path of `node` (then "/name" when name is given) into out[PATH_MAX]. */
static int node_path(const struct inode_node *node, const char *name, char *out)
{
    char *end = out + PATH_MAX;
    char *p = end - 1;
    *p = '\0';
    if (name) {
        size_t len = strlen(name);
        if ((size_t)(p - out) < len + 1)
            return -ENAMETOOLONG;
        p -= len;
        memcpy(p, name, len);
        *--p = '/';
    }
    for (; node->parent; node = node->parent) {
        size_t len = strlen(node->name);
        if ((size_t)(p - out) < len + 1)
            return -ENAMETOOLONG;
        p -= len;
        memcpy(p, node->name, len);
        *--p = '/';
    }
    if (*p == '\0')
        *--p = '/'; /* the root itself */
    memmove(out, p, (size_t)(end - p));
    return 0;
}

int inode_table_path(struct inode_table *t, uint64_t ino, const char *name, char *out)
{
    const struct inode_node *node = node_get(t, ino);
    int rc = node ? node_path(node, name, out) : -ESTALE;
    return rc;
}

static int node_create(struct inode_table *t, struct inode_node *parent, const char *name,
                       struct inode_node **out)
{
    struct inode_node *node = calloc(1, sizeof(*node));
    char *copy = strdup(name);
    uint64_t ino;
    if (!node || !copy || slot_take(t, &ino) != 0) {
        free(node);
        free(copy);
        return -ENOMEM;
    }
    node->ino = ino;
    node->parent = parent;
    node->name = copy;
    parent->children++;
    t->slots[ino].node = node;
    t->slots[ino].generation++;
    t->count++;
    index_insert(t, node);
    index_grow(t);
    *out = node;
    return 0;
}

int inode_table_remember(struct inode_table *t, uint64_t parent, const char *name, uint64_t *ino,
                         uint64_t *generation)
{
    int rc = 0;
    struct inode_node *dir = node_get(t, parent);
    struct inode_node *node = dir ? node_find(t, parent, name) : NULL;
    if (!dir)
        rc = -ESTALE;
    else if (!node)
        rc = node_create(t, dir, name, &node);
    if (rc == 0) {
        node->nlookup++;
        *ino = node->ino;
        *generation = t->slots[node->ino].generation;
    }
    return rc;
}

uint64_t inode_table_find(struct inode_table *t, uint64_t parent, const char *name)
{
    const struct inode_node *node = node_find(t, parent, name);
    uint64_t ino = node ? node->ino : 0;
    return ino;
}

void inode_table_forget(struct inode_table *t, uint64_t ino, uint64_t nlookup)
{
    struct inode_node *node = node_get(t, ino);
    if (node && node->parent) {
        node->nlookup = nlookup < node->nlookup ? node->nlookup - nlookup : 0;
        node_release_if_unused(t, node);
    }
}

/* The provider inode of a file that has (or had) other names: they change with this one. */
static uint64_t node_shared_inode(const struct inode_node *node)
{
    return node->has_attr && node->linked ? (uint64_t)node->attr.st_ino : 0;
}

static void node_set_attr(struct inode_node *node, const struct stat *attr)
{
    node->attr = *attr;
    node->has_attr = true;
    /* A directory's link count counts its subdirectories, not other names: directories are
     * never hard-linked, and treating them so would search for aliases on every update. */
    node->linked = node->linked || (attr->st_nlink > 1 && !S_ISDIR(attr->st_mode));
}

static void node_take_attr(struct inode_table *t, struct inode_node *node, const struct stat *attr)
{
    /* First attributes, or the provider now has another file under this name. */
    bool moves = !node->has_attr || node->attr.st_ino != attr->st_ino;
    if (moves)
        ino_index_remove(t, node);
    node_set_attr(node, attr);
    if (moves)
        ino_index_insert(t, node);
}

static void node_unlink(struct inode_table *t, struct inode_node *node)
{
    if (node->unlinked)
        return;
    index_remove(t, node);
    node->unlinked = true;
    if (node->has_attr && node->attr.st_nlink > 0)
        node->attr.st_nlink--;
    node_release_if_unused(t, node);
}

uint64_t inode_table_unlink(struct inode_table *t, uint64_t parent, const char *name)
{
    struct inode_node *node = node_find(t, parent, name);
    uint64_t provider_ino = node ? node_shared_inode(node) : 0;
    if (node)
        node_unlink(t, node);
    return provider_ino;
}

/* Moves `node` to (dir, name); the caller removed any node there. */
static int node_move(struct inode_table *t, struct inode_node *node, struct inode_node *dir,
                     const char *name)
{
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    index_remove(t, node);
    struct inode_node *old_parent = node->parent;
    free(node->name);
    node->name = copy;
    node->parent = dir;
    dir->children++;
    index_insert(t, node);
    old_parent->children--;
    node_release_if_unused(t, old_parent);
    return 0;
}

static void nodes_exchange(struct inode_table *t, struct inode_node *a, struct inode_node *b)
{
    index_remove(t, a);
    index_remove(t, b);
    struct inode_node *parent = a->parent;
    char *name = a->name;
    a->parent = b->parent;
    a->name = b->name;
    b->parent = parent;
    b->name = name;
    index_insert(t, a);
    index_insert(t, b);
}

uint64_t inode_table_rename(struct inode_table *t, uint64_t parent, const char *name,
                            uint64_t newparent, const char *newname, unsigned flags)
{
    struct inode_node *node = node_find(t, parent, name);
    struct inode_node *target = node_find(t, newparent, newname);
    struct inode_node *dir = node_get(t, newparent);
    uint64_t replaced = target && target != node && !(flags & FUSEBRIDGE_RENAME_EXCHANGE)
                            ? node_shared_inode(target)
                            : 0;
    if (flags & FUSEBRIDGE_RENAME_EXCHANGE) {
        if (node && target)
            nodes_exchange(t, node, target);
        else if (node) /* the other side was never looked up: ours moves, the unknown one is new */
            node_unlink(t, node);
        else if (target)
            node_unlink(t, target);
    } else {
        if (target && target != node)
            node_unlink(t, target);
        /* On failure the node is forgotten by name; a later lookup makes a fresh one. */
        if (node && dir && node_move(t, node, dir, newname) != 0)
            node_unlink(t, node);
    }
    return replaced;
}

/* Calls fn on up to INODE_ALIASES_MAX nodes of provider inode `provider_ino` besides `except`. */
static size_t nodes_of_provider_inode(struct inode_table *t, uint64_t provider_ino,
                                      const struct inode_node *except,
                                      void (*fn)(struct inode_node *alias, void *arg), void *arg)
{
    size_t n = 0;
    for (struct inode_node *alias = provider_ino ? *ino_bucket_of(t, provider_ino) : NULL;
         alias && n < INODE_ALIASES_MAX; alias = alias->ino_next) {
        if (alias != except && (uint64_t)alias->attr.st_ino == provider_ino) {
            fn(alias, arg);
            n++;
        }
    }
    return n;
}

/* Calls fn on the other nodes that name the same file as `node` (a hard link). */
static void node_for_aliases(struct inode_table *t, const struct inode_node *node,
                             void (*fn)(struct inode_node *alias, void *arg), void *arg)
{
    nodes_of_provider_inode(t, node_shared_inode(node), node, fn, arg);
}

/* The provider inode number is the same, so the alias stays where it is in the index. */
static void alias_take_attr(struct inode_node *alias, void *arg)
{
    const struct stat *attr = arg;
    /* An unlinked alias keeps its own (lower) link count: that name is gone. */
    nlink_t nlink = alias->unlinked ? alias->attr.st_nlink : attr->st_nlink;
    node_set_attr(alias, attr);
    alias->attr.st_nlink = nlink;
}

static void alias_grow(struct inode_node *alias, void *arg)
{
    const uint64_t *end = arg;
    if ((uint64_t)alias->attr.st_size < *end)
        alias->attr.st_size = (off_t)*end;
}

void inode_table_set_attr(struct inode_table *t, uint64_t ino, const struct stat *attr)
{
    struct inode_node *node = node_get(t, ino);
    if (node) {
        node_take_attr(t, node, attr);
        node_for_aliases(t, node, alias_take_attr, (void *)attr);
    }
}

bool inode_table_open_keeps_cache(struct inode_table *t, uint64_t ino)
{
    struct inode_node *node = node_get(t, ino);
    if (!node || !node->has_attr)
        return false;
    const struct stat *now = &node->attr;
    bool same = node->opened && node->opened_ino == (uint64_t)now->st_ino &&
                node->opened_ctime.tv_sec == now->st_ctim.tv_sec &&
                node->opened_ctime.tv_nsec == now->st_ctim.tv_nsec;
    node->opened = true;
    node->opened_ino = (uint64_t)now->st_ino;
    node->opened_ctime = now->st_ctim;
    return same;
}

void inode_table_grow(struct inode_table *t, uint64_t ino, uint64_t end)
{
    struct inode_node *node = node_get(t, ino);
    if (node && node->has_attr) {
        alias_grow(node, &end);
        node_for_aliases(t, node, alias_grow, &end);
    }
}

int inode_table_unlinked_setattr(struct inode_table *t, uint64_t ino, const struct stat *attr,
                                 int to_set, struct stat *out)
{
    struct inode_node *node = node_get(t, ino);
    int rc = node && node->unlinked && node->has_attr ? 0 : -ENOENT;
    if (rc == 0) {
        struct stat *a = &node->attr;
        if (to_set & FUSE_SET_ATTR_MODE)
            a->st_mode = (a->st_mode & S_IFMT) | (attr->st_mode & 07777);
        if (to_set & FUSE_SET_ATTR_UID)
            a->st_uid = attr->st_uid;
        if (to_set & FUSE_SET_ATTR_GID)
            a->st_gid = attr->st_gid;
        if (to_set & FUSE_SET_ATTR_SIZE)
            a->st_size = attr->st_size;
        if (to_set & FUSE_SET_ATTR_ATIME)
            a->st_atim = attr->st_atim;
        if (to_set & FUSE_SET_ATTR_MTIME)
            a->st_mtim = attr->st_mtim;
        *out = *a;
    }
    return rc;
}

int inode_table_unlinked_attr(struct inode_table *t, uint64_t ino, struct stat *attr)
{
    const struct inode_node *node = node_get(t, ino);
    int rc = node && node->unlinked && node->has_attr ? 0 : -ENOENT;
    if (rc == 0)
        *attr = node->attr;
    return rc;
}

struct alias_list {
    uint64_t *out;
    size_t n, max;
};

static void alias_collect(struct inode_node *alias, void *arg)
{
    struct alias_list *list = arg;
    if (list->n < list->max)
        list->out[list->n++] = alias->ino;
}

size_t inode_table_aliases(struct inode_table *t, uint64_t provider_ino, uint64_t *out, size_t max)
{
    struct alias_list list = {out, 0, max};
    nodes_of_provider_inode(t, provider_ino, NULL, alias_collect, &list);
    return list.n;
}

uint64_t inode_table_shared_inode(struct inode_table *t, uint64_t ino)
{
    const struct inode_node *node = node_get(t, ino);
    uint64_t provider_ino = node ? node_shared_inode(node) : 0;
    return provider_ino;
}

size_t inode_table_count(struct inode_table *t)
{
    size_t count = t->count;
    return count;
}
