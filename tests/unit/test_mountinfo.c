/* Unit tests for the reading of /proc/self/mountinfo lines (fusebridge/mountinfo.c): escaped
 * paths come out as the kernel was given them, optional fields do not shift the type, and lines
 * that are not mount lines are refused rather than half read. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fusebridge_internal.h"

/* Parses a copy of `text` (the parser writes into its line). */
static int parse(const char *text, char *buf, size_t cap, struct fusebridge_mountinfo *entry)
{
    snprintf(buf, cap, "%s", text);
    return mountinfo_parse(buf, entry);
}

/* A FUSE mount of ours, and one with optional fields (which must not shift the type). */
static void mounts_give_their_minor_path_and_type(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        unsigned minor;
        const char *path;
        const char *fstype;
    } cases[] = {
        {"47 27 0:41 / /run/webfuse/fw rw,nosuid,nodev,relatime - fuse.webfuse webfuse:fw "
         "rw,user_id=0,group_id=0\n",
         41, "/run/webfuse/fw", "fuse.webfuse"},
        {"36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 shared:7 - ext3 /dev/root "
         "rw,errors=continue",
         0, "/mnt/parent", "ext3"},
    };
    char buf[512];
    struct fusebridge_mountinfo e;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(cases[i].line, buf, sizeof(buf), &e), 0);
        assert_int_equal(e.minor, cases[i].minor);
        assert_string_equal(e.path, cases[i].path);
        assert_string_equal(e.fstype, cases[i].fstype);
    }
}

static void escaped_space_tab_newline_and_backslash_are_decoded(void **state)
{
    (void)state;
    char buf[512];
    struct fusebridge_mountinfo e;
    assert_int_equal(parse("50 27 0:52 / /mnt/a\\040b\\011c\\012d\\134e rw - fuse.webfuse x rw",
                           buf, sizeof(buf), &e),
                     0);
    assert_string_equal(e.path, "/mnt/a b\tc\nd\\e");
    /* Not an escape: left as it is. */
    assert_int_equal(
        parse("51 27 0:53 / /mnt/x\\9y\\4 rw - ext4 /dev/sda1 rw", buf, sizeof(buf), &e), 0);
    assert_string_equal(e.path, "/mnt/x\\9y\\4");
}

static void lines_that_are_not_mounts_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "\n",
        "47 27 0:41 / /run/webfuse/fw",               /* ends at the mount point */
        "47 27 0:41 / /run/webfuse/fw rw fuse x rw",  /* no separator */
        "47 27 041 / /run/webfuse/fw rw - fuse x rw", /* no major:minor */
    };
    char buf[512];
    struct fusebridge_mountinfo e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(bad[i], buf, sizeof(buf), &e), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mounts_give_their_minor_path_and_type),
        cmocka_unit_test(escaped_space_tab_newline_and_backslash_are_decoded),
        cmocka_unit_test(lines_that_are_not_mounts_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
