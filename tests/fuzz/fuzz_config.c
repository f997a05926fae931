/* Fuzz target: the configuration file. The input is the file's content; it goes through
 * webfused's option parser exactly as at start-up, as "webfused --no-config --config FILE" with
 * FILE a memory file holding the input (gateway/config.c reads it with jansson and applies
 * every key through the same checks as the command line; gateway/options.c then checks how
 * options go together). What it accepts must be within the bounds the gateway relies on, and
 * parsing the same content again gives the same answer. */
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_gateway.h"
#include "gateway.h"

/* The memory file the input is written to, and its name for --config. */
static int config_fd = -1;
static char config_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    config_fd = memfd_create("webfused.conf", MFD_CLOEXEC);
    FUZZ_CHECK(config_fd >= 0);
    snprintf(config_path, sizeof(config_path), "/proc/self/fd/%d", config_fd);
    return 0;
}

static int parse(void)
{
    char program[] = "webfused", no_config[] = "--no-config", config[] = "--config";
    char *argv[] = {program, no_config, config, config_path, NULL};
    struct gateway_options opt;
    int rc = gateway_options_parse(4, argv, &opt);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL);
    if (rc == 0) {
        /* Its strings are borrowed from the parsed document, which opt keeps alive. */
        fuzz_check_gateway_options(&opt);
        FUZZ_CHECK(opt.config_path == config_path);
    }
    gateway_options_free(&opt);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_CHECK(ftruncate(config_fd, 0) == 0);
    FUZZ_CHECK(size == 0 || pwrite(config_fd, data, size, 0) == (ssize_t)size);
    int first = parse();
    FUZZ_CHECK(parse() == first);
    return 0;
}
