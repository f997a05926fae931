/* Unit tests for the inode table of path-based mounts (fusebridge/inodes.c): the names of one
 * provider file (hard links) find each other, and a provider's inode numbers cannot make that
 * search reach further than it should. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fusebridge_internal.h"

struct table_state {
    struct inode_table table;
};

static int table_setup(void **state)
{
    static struct table_state s;
    if (inode_table_init(&s.table) != 0)
        return -1;
    *state = &s;
    return 0;
}

static int table_teardown(void **state)
{
    struct table_state *s = *state;
    inode_table_destroy(&s->table);
    return 0;
}

/* Looks up `name` in the root and gives it the provider's attributes. */
static uint64_t file(struct inode_table *t, const char *name, uint64_t provider_ino, nlink_t nlink,
                     off_t size)
{
    uint64_t ino, generation;
    assert_int_equal(inode_table_remember(t, FUSEBRIDGE_ROOT_INODE, name, &ino, &generation), 0);
    struct stat attr = {
        .st_ino = provider_ino, .st_mode = S_IFREG | 0644, .st_nlink = nlink, .st_size = size};
    inode_table_set_attr(t, ino, &attr);
    return ino;
}

static struct stat unlinked_attr(struct inode_table *t, const char *name, uint64_t ino)
{
    struct stat attr;
    inode_table_unlink(t, FUSEBRIDGE_ROOT_INODE, name);
    assert_int_equal(inode_table_unlinked_attr(t, ino, &attr), 0);
    return attr;
}

static void names_of_one_file_share_its_attributes(void **state)
{
    struct inode_table *t = &((struct table_state *)*state)->table;
    uint64_t a = file(t, "a", 42, 2, 10);
    uint64_t b = file(t, "b", 42, 2, 10);
    uint64_t other = file(t, "other", 43, 1, 5);
    uint64_t found[8];
    assert_int_equal(inode_table_aliases(t, 42, found, 8), 2);
    assert_true((found[0] == a && found[1] == b) || (found[0] == b && found[1] == a));
    assert_int_equal(inode_table_shared_inode(t, a), 42);
    assert_int_equal(inode_table_shared_inode(t, other), 0);

    /* A write through a grows b; new attributes through b reach a. */
    inode_table_grow(t, a, 100);
    assert_int_equal(unlinked_attr(t, "b", b).st_size, 100);
    struct stat attr = {.st_ino = 42, .st_mode = S_IFREG | 0600, .st_nlink = 3, .st_size = 7};
    inode_table_set_attr(t, a, &attr);
    assert_int_equal(unlinked_attr(t, "a", a).st_mode, S_IFREG | 0600);
    /* b's name was gone before: it keeps its own link count. */
    assert_int_equal(inode_table_unlinked_attr(t, b, &attr), 0);
    assert_int_equal(attr.st_size, 7);
    assert_int_equal(attr.st_nlink, 1);
    assert_int_equal(unlinked_attr(t, "other", other).st_size, 5);
}

static void a_name_given_another_file_leaves_the_old_ones_aliases(void **state)
{
    struct inode_table *t = &((struct table_state *)*state)->table;
    uint64_t a = file(t, "a", 42, 2, 10);
    file(t, "b", 42, 2, 10);
    uint64_t found[8];
    file(t, "a", 77, 2, 3); /* the provider replaced a with a link to another file */
    assert_int_equal(inode_table_aliases(t, 42, found, 8), 1);
    assert_int_equal(inode_table_aliases(t, 77, found, 8), 1);
    assert_int_equal(found[0], a);
}

static void forgotten_names_leave_the_index(void **state)
{
    struct inode_table *t = &((struct table_state *)*state)->table;
    uint64_t a = file(t, "a", 42, 2, 10);
    uint64_t b = file(t, "b", 42, 2, 10);
    inode_table_forget(t, a, 1);
    uint64_t found[8];
    assert_int_equal(inode_table_aliases(t, 42, found, 8), 1);
    assert_int_equal(found[0], b);
    inode_table_forget(t, b, 1);
    assert_int_equal(inode_table_aliases(t, 42, found, 8), 0);
    assert_int_equal(inode_table_count(t), 0);
}

/* A provider that gives every file one number (and says each has other names): an update
 * reaches a bounded number of the others, and all of them can be forgotten again. */
static void one_number_for_every_file_stays_bounded(void **state)
{
    struct inode_table *t = &((struct table_state *)*state)->table;
    enum { FILES = 20000 };
    uint64_t inos[FILES];
    char name[32];
    for (int i = 0; i < FILES; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        inos[i] = file(t, name, 5, 2, i);
    }
    uint64_t found[128];
    assert_int_equal(inode_table_aliases(t, 5, found, 128), 64);
    for (int i = 0; i < FILES; i++)
        inode_table_forget(t, inos[i], 1);
    assert_int_equal(inode_table_count(t), 0);
    assert_int_equal(inode_table_aliases(t, 5, found, 128), 0);
}

static void files_without_a_number_have_no_aliases(void **state)
{
    struct inode_table *t = &((struct table_state *)*state)->table;
    file(t, "a", 0, 2, 1);
    file(t, "b", 0, 2, 1);
    uint64_t found[8];
    assert_int_equal(inode_table_aliases(t, 0, found, 8), 0);
}

/* An open keeps the kernel's cached pages only for the file of the last open: same provider
 * inode and ctime (size and mtime the kernel compares itself). */
static void an_open_keeps_the_cache_only_for_the_same_file(void **state)
{
    struct inode_table *t = &((struct table_state *)*state)->table;
    uint64_t ino = file(t, "fw", 42, 1, 10);
    assert_false(inode_table_open_keeps_cache(t, ino)); /* the first open: nothing cached yet */
    assert_true(inode_table_open_keeps_cache(t, ino));
    struct stat attr = {.st_ino = 42, .st_mode = S_IFREG | 0644, .st_nlink = 1, .st_size = 10};
    attr.st_ctim.tv_nsec = 1; /* written over, its mtime set back */
    inode_table_set_attr(t, ino, &attr);
    assert_false(inode_table_open_keeps_cache(t, ino));
    assert_true(inode_table_open_keeps_cache(t, ino));
    attr.st_ino = 43; /* another file renamed over it */
    inode_table_set_attr(t, ino, &attr);
    assert_false(inode_table_open_keeps_cache(t, ino));
    assert_true(inode_table_open_keeps_cache(t, ino));
    assert_false(inode_table_open_keeps_cache(t, 9999)); /* unknown: nothing to keep */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(names_of_one_file_share_its_attributes, table_setup,
                                        table_teardown),
        cmocka_unit_test_setup_teardown(a_name_given_another_file_leaves_the_old_ones_aliases,
                                        table_setup, table_teardown),
        cmocka_unit_test_setup_teardown(forgotten_names_leave_the_index, table_setup,
                                        table_teardown),
        cmocka_unit_test_setup_teardown(one_number_for_every_file_stays_bounded, table_setup,
                                        table_teardown),
        cmocka_unit_test_setup_teardown(files_without_a_number_have_no_aliases, table_setup,
                                        table_teardown),
        cmocka_unit_test_setup_teardown(an_open_keeps_the_cache_only_for_the_same_file,
                                        table_setup, table_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
