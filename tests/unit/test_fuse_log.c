/* Unit tests for the forwarding of libfuse's own messages (fusebridge.c): libfuse reports some
 * failures itself (a mount point it cannot reach, a device write that fails), to stderr unless
 * told otherwise; they must reach the gateway's log target at the matching level, one line each,
 * and those below the log level must not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fusebridge_internal.h"
#include "log.h"

static void libfuse_lines_reach_the_log_file_at_our_levels(void **state)
{
    (void)state;
    char path[] = "/tmp/test_fuse_log.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    log_set_level(LOG_LEVEL_WARN);
    assert_int_equal(log_open(path), 0);
    mount_log_forward();

    fuse_log(FUSE_LOG_ERR, "fuse: failed to access mountpoint %s: %s\n", "/run/x", "gone");
    fuse_log(FUSE_LOG_WARNING, "fuse: a warning\n");
    fuse_log(FUSE_LOG_INFO, "fuse: below the level\n");
    fuse_log(FUSE_LOG_DEBUG, "fuse: far below the level\n");

    char text[1024] = "";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(path);
    const char *first = strstr(text, " error: fuse: failed to access mountpoint /run/x: gone\n");
    const char *second = strstr(text, " warn: fuse: a warning\n");
    assert_non_null(first);
    assert_non_null(second);
    assert_true(first < second);
    assert_null(strstr(text, "below the level"));
    assert_null(strstr(text, "\n\n")); /* libfuse's own newline is not doubled */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(libfuse_lines_reach_the_log_file_at_our_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
