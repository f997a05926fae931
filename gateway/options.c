/* Command-line options of webfused. */
#include "gateway.h"

#include <errno.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <net/if.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PORT 8081
#define DEFAULT_BIND "127.0.0.1"
#define DEFAULT_MOUNT_ROOT "/run/webfuse"
#define DEFAULT_ADMIN_PORT 8082
#define DEFAULT_ADMIN_BIND "127.0.0.1"
#define DEFAULT_ADMIN_TOKEN_FILE "/var/lib/webfuse/admin-token"
#define DEFAULT_DB "/var/lib/webfuse/webfused.db"
#define DEFAULT_TIMEOUT_SEC 10
#define DEFAULT_MAX_MESSAGE (16u * 1024 * 1024)
/* A read of 1 MiB must fit, base64-encoded with its envelope. */
#define MIN_MAX_MESSAGE (2u * 1024 * 1024)
#define MAX_MAX_MESSAGE (1024u * 1024 * 1024)

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: webfused [OPTION]...\n"
            "Websocket gateway: providers connect and attach filesystems, which appear as FUSE\n"
            "mounts under the mount root. Runs in the foreground and logs to stderr.\n"
            "\n"
            "  -p, --port N            provider websocket port (default %d)\n"
            "  -b, --bind ADDR         address to listen on (default %s)\n"
            "  -m, --mount-root DIR    mount filesystems at DIR/<name>; created if missing\n"
            "                          (default %s)\n"
            "  -t, --timeout SEC       fail a provider request with EIO after SEC seconds\n"
            "                          (default %d)\n"
            "      --max-message BYTES largest message accepted from a provider (default %u,\n"
            "                          at least %u)\n"
            "  -l, --log-level LEVEL   error, warn, info or debug (default info)\n"
            "\n"
            "Admin API (REST over HTTP, see webfusectl):\n"
            "      --admin-port N      admin HTTP port (default %d)\n"
            "      --admin-bind ADDR   address the admin port listens on (default %s)\n"
            "      --admin-token-file FILE\n"
            "                          bearer token every admin request but /healthz must\n"
            "                          carry; created with a random token (mode 0600) when\n"
            "                          missing (default %s)\n"
            "      --db FILE           sqlite history of sessions, filesystems and events;\n"
            "                          created when missing (default %s)\n"
            "      --no-admin          no admin port and no history database\n"
            "\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "SIGINT or SIGTERM unmount every filesystem, close every provider connection and\n"
            "exit with status 0.\n",
            DEFAULT_PORT, DEFAULT_BIND, DEFAULT_MOUNT_ROOT, DEFAULT_TIMEOUT_SEC,
            DEFAULT_MAX_MESSAGE, MIN_MAX_MESSAGE, DEFAULT_ADMIN_PORT, DEFAULT_ADMIN_BIND,
            DEFAULT_ADMIN_TOKEN_FILE, DEFAULT_DB);
}

static int parse_number(const char *option, const char *text, unsigned long long min,
                        unsigned long long max, unsigned long long *value)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
        fprintf(stderr, "webfused: %s must be a number from %llu to %llu, not \"%s\"\n", option,
                min, max, text);
        return -EINVAL;
    }
    *value = v;
    return 0;
}

/* libwebsockets takes an IP address or an interface name, and with anything else it runs without
 * listening: refuse it here instead. */
static bool address_valid(const char *option, const char *text)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, text, addr) == 1 || inet_pton(AF_INET6, text, addr) == 1 ||
        if_nametoindex(text) != 0)
        return true;
    fprintf(stderr, "webfused: %s must be an IP address or a network interface, not \"%s\"\n",
            option, text);
    return false;
}

static const struct option long_options[] = {
    {"port", required_argument, NULL, 'p'},
    {"bind", required_argument, NULL, 'b'},
    {"mount-root", required_argument, NULL, 'm'},
    {"timeout", required_argument, NULL, 't'},
    {"max-message", required_argument, NULL, 'M'},
    {"log-level", required_argument, NULL, 'l'},
    {"admin-port", required_argument, NULL, 'A'},
    {"admin-bind", required_argument, NULL, 'B'},
    {"admin-token-file", required_argument, NULL, 'T'},
    {"db", required_argument, NULL, 'D'},
    {"no-admin", no_argument, NULL, 'N'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int apply_option(int c, const char *arg, struct gateway_options *opt)
{
    unsigned long long v;
    switch (c) {
    case 'p':
        if (parse_number("--port", arg, 1, 65535, &v) != 0)
            return -EINVAL;
        opt->port = (int)v;
        return 0;
    case 'b':
        if (!address_valid("--bind", arg))
            return -EINVAL;
        opt->bind = arg;
        return 0;
    case 'm':
        if (arg[0] != '/') {
            fprintf(stderr, "webfused: --mount-root must be an absolute path, not \"%s\"\n", arg);
            return -EINVAL;
        }
        opt->mount_root = arg;
        return 0;
    case 't':
        if (parse_number("--timeout", arg, 1, 3600, &v) != 0)
            return -EINVAL;
        opt->timeout_sec = (unsigned)v;
        return 0;
    case 'M':
        if (parse_number("--max-message", arg, MIN_MAX_MESSAGE, MAX_MAX_MESSAGE, &v) != 0)
            return -EINVAL;
        opt->max_message = (size_t)v;
        return 0;
    case 'A':
        if (parse_number("--admin-port", arg, 1, 65535, &v) != 0)
            return -EINVAL;
        opt->admin_port = (int)v;
        return 0;
    case 'B':
        if (!address_valid("--admin-bind", arg))
            return -EINVAL;
        opt->admin_bind = arg;
        return 0;
    case 'T':
    case 'D':
        if (arg[0] == '\0') {
            fprintf(stderr, "webfused: %s needs a file name\n",
                    c == 'T' ? "--admin-token-file" : "--db");
            return -EINVAL;
        }
        if (c == 'T')
            opt->admin_token_file = arg;
        else
            opt->db_path = arg;
        return 0;
    case 'N':
        opt->admin = false;
        return 0;
    case 'l':
        if (log_parse_level(arg, &opt->log_level) != 0) {
            fprintf(stderr, "webfused: --log-level must be error, warn, info or debug\n");
            return -EINVAL;
        }
        return 0;
    default:
        fprintf(stderr, "Try 'webfused --help' for more information.\n");
        return -EINVAL;
    }
}

int gateway_options_parse(int argc, char **argv, struct gateway_options *opt)
{
    *opt = (struct gateway_options){
        .port = DEFAULT_PORT,
        .bind = DEFAULT_BIND,
        .mount_root = DEFAULT_MOUNT_ROOT,
        .timeout_sec = DEFAULT_TIMEOUT_SEC,
        .max_message = DEFAULT_MAX_MESSAGE,
        .log_level = LOG_LEVEL_INFO,
        .admin = true,
        .admin_port = DEFAULT_ADMIN_PORT,
        .admin_bind = DEFAULT_ADMIN_BIND,
        .admin_token_file = DEFAULT_ADMIN_TOKEN_FILE,
        .db_path = DEFAULT_DB,
    };
    optind = 0; /* glibc: 0 starts getopt afresh, forgetting a previous parse's position */
    int c;
    while ((c = getopt_long(argc, argv, "p:b:m:t:l:hV", long_options, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == 'V') {
            printf("webfused %s\n", WEBFUSE_VERSION);
            return 1;
        }
        if (apply_option(c, optarg, opt) != 0)
            return -EINVAL;
    }
    if (optind < argc) {
        fprintf(stderr, "webfused: unexpected argument \"%s\"\n", argv[optind]);
        return -EINVAL;
    }
    if (opt->admin && opt->admin_port == opt->port && strcmp(opt->admin_bind, opt->bind) == 0) {
        fprintf(stderr, "webfused: --admin-port must differ from --port\n");
        return -EINVAL;
    }
    return 0;
}
