/* gateway: process start-up, options, the libuv loop with libwebsockets on it, signals and the
 * orderly shutdown of webfused. */
#ifndef WEBFUSE_GATEWAY_H
#define WEBFUSE_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

struct json_t;

#define GATEWAY_MAX_FILESYSTEMS 64

/* --filesystem NAME[=DIR] */
struct gateway_filesystem {
    char name[65];
    const char *mountpoint; /* NULL: <mount root>/<name> */
};

struct gateway_options {
    int port;               /* provider websocket port */
    const char *bind;       /* address to listen on */
    const char *mount_root; /* filesystems mount below this directory */
    unsigned timeout_sec;   /* per provider request */
    size_t max_message;     /* bytes */
    enum log_level log_level;
    const char *log_target;  /* "stderr", "syslog" or a file path */
    bool check_config;       /* validate, print the verdict and exit */
    const char *config_path; /* the configuration file read, or NULL */
    /* Bit i: long option i (options.c) was last set by the configuration file. */
    uint64_t from_file;
    bool admin;                   /* serve the admin API and keep the registry */
    int admin_port;               /* admin HTTP port */
    const char *admin_bind;       /* address the admin port listens on */
    const char *admin_token_file; /* bearer token; created when missing */
    const char *db_path;          /* sqlite registry */
    /* TLS: certificate and key (PEM) of the provider port, and of the admin port (by default
     * the same as the provider port's); NULL = plain. */
    const char *cert;
    const char *key;
    const char *admin_cert;
    const char *admin_key;
    const char *auth_file;   /* users who may attach; NULL = anyone may attach anything */
    const char *auth_header; /* webfuse2: the HTTP header with the token */
    /* Limits (see session_hub_config). */
    unsigned max_sessions;
    unsigned max_filesystems;
    unsigned max_pending;
    unsigned max_path;
    unsigned idle_timeout_sec;
    unsigned busy_poll_us;
    size_t read_budget;    /* bytes */
    unsigned slow_read_ms;
    bool allow_other;      /* mounts are open to every user of the device */
    const char *run_user;  /* drop to this user once the sockets are open; NULL = stay */
    const char *run_group; /* ... and this group (default: the user's) */
    const char *docroot;   /* static files served on the provider port; NULL: none */
    struct json_t *config; /* keeps the strings borrowed from the configuration file */
    /* With filesystem_count > 0, only these names may be attached. */
    struct gateway_filesystem filesystems[GATEWAY_MAX_FILESYSTEMS];
    size_t filesystem_count;
};

/* Fills `opt` from the configuration file, then argv. Returns 0 to run (or to check, with
 * opt->check_config), 1 when --help or --version was printed, or -EINVAL after printing what is
 * wrong to stderr. Release with gateway_options_free in every case. */
int gateway_options_parse(int argc, char **argv, struct gateway_options *opt);
void gateway_options_free(struct gateway_options *opt);

/* The exit status for bad options or configuration, also when found by a real start (a file
 * it names, an address, a user): restarting will not help (RestartPreventExitStatus= in the
 * unit). */
#define GATEWAY_EXIT_CONFIG 2

/* --check-config: also checks what the options name (TLS files, users file, --user) without
 * starting anything; prints the verdict. Returns the process exit status. */
int gateway_check(const struct gateway_options *opt);

/* Runs the daemon until SIGINT or SIGTERM. Returns the process exit status. */
int gateway_run(const struct gateway_options *opt);

#endif
