/* Fuzz target: command-line parsing. The input is an argument list, one argument per line (the
 * program name comes first, as in argv). It goes through webfused's option parser
 * (gateway/options.c), and every argument through webfuse-provider's URL parser
 * (provider/util.c), both exactly as the programs call them. What either accepts must be within
 * the bounds they promise, and parsing the same arguments again gives the same answer.
 * webfused gets --no-config ahead of the input's arguments: the machine's
 * /etc/webfuse/webfused.conf must not decide what an input does (a --config in the input still
 * counts, as the last one does). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_gateway.h"
#include "gateway.h"
#include "provider.h"

#define MAX_ARGS 64

static int check_gateway(int argc, char **argv)
{
    struct gateway_options opt;
    int rc = gateway_options_parse(argc, argv, &opt);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == -EINVAL);
    if (rc == 0)
        fuzz_check_gateway_options(&opt); /* its strings point into argv, still there */
    gateway_options_free(&opt);
    return rc;
}

static void check_url(const char *text)
{
    struct provider_url url;
    int rc = provider_url_parse(text, &url);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -EPROTONOSUPPORT || rc == -ENAMETOOLONG);
    if (rc != 0)
        return;
    FUZZ_CHECK(url.host && url.host[0] != '\0');
    FUZZ_CHECK(url.port >= 1 && url.port <= 65535);
    FUZZ_CHECK(url.path && url.path[0] == '/');
}

/* argv from one argument per line, in a fresh heap copy of the input that *text owns; with
 * `no_config`, "--no-config" goes right after the program name. */
static int split_args(const uint8_t *data, size_t size, bool no_config, char **text,
                      char *argv[MAX_ARGS + 2])
{
    static char no_config_arg[] = "--no-config";
    *text = malloc(size + 1);
    FUZZ_CHECK(*text != NULL);
    memcpy(*text, data, size);
    (*text)[size] = '\0';
    int argc = 0;
    for (char *line = *text; line && argc < MAX_ARGS;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        argv[argc++] = line;
        if (argc == 1 && no_config)
            argv[argc++] = no_config_arg;
        line = next;
    }
    argv[argc] = NULL;
    return argc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text, *argv[MAX_ARGS + 2];
    int argc = split_args(data, size, false, &text, argv);
    for (int i = 0; i < argc; i++)
        check_url(argv[i]);
    free(text);
    argc = split_args(data, size, true, &text, argv);
    int first = check_gateway(argc, argv);
    free(text);
    /* Twice, on a new copy with the first one freed: nothing of the first parse may be left
     * behind (getopt keeps state between calls). */
    argc = split_args(data, size, true, &text, argv);
    FUZZ_CHECK(check_gateway(argc, argv) == first);
    free(text);
    return 0;
}
