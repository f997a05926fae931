/* What the fuzz targets of webfused's options (fuzz_options.c: the command line; fuzz_config.c:
 * the configuration file) check of options that parsed: they are within the bounds the
 * gateway relies on, and every string they hold can be read (a string borrowed from a freed
 * argument or document would be caught by AddressSanitizer here). */
#ifndef WEBFUSE_FUZZ_GATEWAY_H
#define WEBFUSE_FUZZ_GATEWAY_H

#include <string.h>

#include "fuzz.h"
#include "gateway.h"

static inline void fuzz_check_string(const char *text)
{
    FUZZ_CHECK(text == NULL || strlen(text) < ((size_t)1 << 30));
}

static inline void fuzz_check_gateway_options(const struct gateway_options *opt)
{
    FUZZ_CHECK(opt->port >= 1 && opt->port <= 65535);
    FUZZ_CHECK(opt->admin_port >= 1 && opt->admin_port <= 65535);
    FUZZ_CHECK(opt->timeout_sec >= 1);
    FUZZ_CHECK(opt->mount_root && opt->mount_root[0] == '/');
    FUZZ_CHECK(opt->bind && opt->bind[0] && opt->admin_bind && opt->admin_bind[0]);
    FUZZ_CHECK(opt->admin_token_file && opt->admin_token_file[0] && opt->db_path &&
               opt->db_path[0]);
    FUZZ_CHECK(opt->log_level >= LOG_LEVEL_ERROR && opt->log_level <= LOG_LEVEL_DEBUG);
    FUZZ_CHECK(opt->filesystem_count <= GATEWAY_MAX_FILESYSTEMS);
    /* A certificate always comes with its key (the checks after parsing promise it). */
    FUZZ_CHECK(!opt->cert == !opt->key && !opt->admin_cert == !opt->admin_key);
    FUZZ_CHECK(!opt->run_group || opt->run_user);
    const char *strings[] = {opt->log_target, opt->cert,      opt->key,         opt->admin_cert,
                             opt->admin_key,  opt->auth_file, opt->auth_header, opt->run_user,
                             opt->run_group,  opt->docroot,   opt->config_path};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        fuzz_check_string(strings[i]);
    for (size_t i = 0; i < opt->filesystem_count; i++) {
        FUZZ_CHECK(opt->filesystems[i].name[0] != '\0');
        FUZZ_CHECK(!opt->filesystems[i].mountpoint || opt->filesystems[i].mountpoint[0] == '/');
    }
}

#endif
