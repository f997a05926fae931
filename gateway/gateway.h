/* gateway: process start-up, options, the libuv loop with libwebsockets on it, signals and the
 * orderly shutdown of webfused. */
#ifndef WEBFUSE_GATEWAY_H
#define WEBFUSE_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

struct json_t;

struct gateway_options {
    int port;               /* provider websocket port */
    const char *bind;       /* address to listen on */
    const char *mount_root; /* filesystems mount below this directory */
    unsigned timeout_sec;   /* per provider request */
    size_t max_message;     /* bytes */
    enum log_level log_level;
    const char *log_target;       /* "stderr", "syslog" or a file path */
    bool check_config;            /* validate, print the verdict and exit */
    bool admin;                   /* serve the admin API and keep the registry */
    int admin_port;               /* admin HTTP port */
    const char *admin_bind;       /* address the admin port listens on */
    const char *admin_token_file; /* bearer token; created when missing */
    const char *db_path;          /* sqlite registry */
    const char *docroot;          /* static files served on the provider port; NULL: none */
    struct json_t *config;        /* keeps the strings borrowed from the configuration file */
};

/* Fills `opt` from the configuration file, then argv. Returns 0 to run, 1 when --help, --version
 * or --check-config was printed, or -EINVAL after printing what is wrong to stderr. Release with
 * gateway_options_free in every case. */
int gateway_options_parse(int argc, char **argv, struct gateway_options *opt);
void gateway_options_free(struct gateway_options *opt);

/* Runs the daemon until SIGINT or SIGTERM. Returns the process exit status. */
int gateway_run(const struct gateway_options *opt);

#endif
