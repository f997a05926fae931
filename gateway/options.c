/* Command-line options of webfused, and the same names in the configuration file. */
#include "gateway_internal.h"

#include "admin.h"

#include <errno.h>
#include <ctype.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <net/if.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "session.h"

#define DEFAULT_PORT 8081
#define DEFAULT_BIND "127.0.0.1"
#define DEFAULT_MOUNT_ROOT "/run/webfuse"
#define DEFAULT_ADMIN_PORT 8082
#define DEFAULT_ADMIN_BIND "127.0.0.1"
#define DEFAULT_ADMIN_TOKEN_FILE "/var/lib/webfuse/admin-token"
#define DEFAULT_DB "/var/lib/webfuse/webfused.db"
#define DEFAULT_CONFIG "/etc/webfuse/webfused.conf"
#define DEFAULT_TIMEOUT_SEC 10
#define DEFAULT_MAX_MESSAGE (16u * 1024 * 1024)
/* A read of 1 MiB must fit, base64-encoded with its envelope. */
#define MIN_MAX_MESSAGE (2u * 1024 * 1024)
#define MAX_MAX_MESSAGE (1024u * 1024 * 1024)
#define READ_BUDGET_MIN (64u * 1024)
#define READ_BUDGET_MAX (1024u * 1024 * 1024)

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: webfused [OPTION]...\n"
            "Websocket gateway: providers connect and attach filesystems, which appear as FUSE\n"
            "mounts under the mount root. Runs in the foreground.\n"
            "\n"
            "  -c, --config FILE       read options from FILE, a JSON object whose keys are the\n"
            "                          long options below without \"--\" (flags take true);\n"
            "                          the command line overrides it (default %s\n"
            "                          when that file exists)\n"
            "      --no-config         read no configuration file, not even the default one\n"
            "                          (the last of --config and --no-config counts)\n"
            "      --check-config      check the configuration and the options, then exit\n"
            "  -p, --port N            provider websocket port (default %d)\n"
            "  -b, --bind ADDR         address to listen on (default %s)\n"
            "  -m, --mount-root DIR    mount filesystems at DIR/<name>; created if missing\n"
            "                          (default %s)\n"
            "  -t, --timeout SEC       fail a provider request with EIO after SEC seconds,\n"
            "                          and drop a provider whose connection stays full that\n"
            "                          long (default %d)\n"
            "      --max-message BYTES largest message accepted from a provider (default %u,\n"
            "                          at least %u)\n"
            "  -l, --log-level LEVEL   error, warn, info or debug (default info)\n"
            "      --log TARGET        stderr (default), syslog, or an absolute file path;\n"
            "                          SIGHUP reopens the file\n"
            "      --docroot DIR       serve the files in DIR over HTTP at / of the provider\n"
            "                          port (e.g. the browser provider page in web/); off\n"
            "                          by default\n"
            "\n"
            "Admin API (REST over HTTP, see webfusectl)%s:\n"
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
            "Security (see the README's security section):\n"
            "      --cert FILE         TLS certificate (PEM) of the provider port: wss://\n"
            "      --key FILE          its private key (PEM)\n"
            "      --admin-cert FILE   TLS certificate of the admin port: https:// (default:\n"
            "                          --cert, so with --cert both ports speak TLS)\n"
            "      --admin-key FILE    its private key (default: --key)\n"
            "      --auth-file FILE    providers must authenticate as a user of FILE and may\n"
            "                          attach only the names listed for them; one line per\n"
            "                          user, NAME:HASH:FS[,FS...] (FS * = any), HASH from\n"
            "                          'webfusectl passwd'. Without it anyone may attach.\n"
            "      --auth-header NAME  webfuse2: the HTTP header carrying USER:PASSWORD\n"
            "                          (default %s; \"Authorization: Bearer\" works too)\n"
            "      --max-sessions N    provider connections at once (default %d)\n"
            "      --max-filesystems N filesystems one connection may attach (default %d)\n"
            "      --max-pending N     requests in flight per connection; more wait (default\n"
            "                          %d)\n"
            "      --max-path BYTES    longest path sent to a webfuse2 provider; longer ones\n"
            "                          fail with ENAMETOOLONG (default %d)\n"
            "      --idle-timeout SEC  close a connection that attached nothing by then; a\n"
            "                          login waiting for its answer does not count (default\n"
            "                          %d)\n"
            "      --busy-poll USEC    after work for a provider that answers within USEC\n"
            "                          microseconds, poll that long instead of sleeping:\n"
            "                          faster round trips for some CPU; 0 = off (default %d)\n"
            "      --read-budget BYTES bytes of reads in flight to all providers together;\n"
            "                          more wait their turn. Smaller keeps many local streams\n"
            "                          within the CPU caches, larger suits slow, distant\n"
            "                          providers (%u to %u, default %u)\n"
            "      --slow-read MS      a read unanswered after MS milliseconds stops counting\n"
            "                          against --read-budget, so a slow provider does not\n"
            "                          hold other providers' reads back (1 to 600000,\n"
            "                          default %d)\n"
            "      --allow-other       let every user of the device use the mounts (file\n"
            "                          modes still apply); by default only webfused's user can\n"
            "      --user NAME         after opening the ports, run as this user (mounts then\n"
            "                          go through fusermount3)\n"
            "      --group NAME        ... and this group (default: the user's group)\n"
            "      --filesystem NAME[=DIR]\n"
            "                          accept only the names given with this option (repeat\n"
            "                          it; a list in the configuration file); NAME mounts at\n"
            "                          DIR, or at <mount root>/NAME without one\n"
            "\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "SIGINT or SIGTERM unmount every filesystem, close every provider connection and\n"
            "exit with status 0. SIGHUP reopens the log file and re-reads --auth-file.\n",
            DEFAULT_CONFIG, DEFAULT_PORT, DEFAULT_BIND, DEFAULT_MOUNT_ROOT, DEFAULT_TIMEOUT_SEC,
            DEFAULT_MAX_MESSAGE, MIN_MAX_MESSAGE,
            admin_available() ? "" : " - not in this build, which runs as with --no-admin",
            DEFAULT_ADMIN_PORT, DEFAULT_ADMIN_BIND, DEFAULT_ADMIN_TOKEN_FILE, DEFAULT_DB,
            SESSION_DEFAULT_AUTH_HEADER, SESSION_DEFAULT_MAX_SESSIONS,
            SESSION_DEFAULT_MAX_FILESYSTEMS, SESSION_DEFAULT_MAX_PENDING, SESSION_DEFAULT_MAX_PATH,
            SESSION_DEFAULT_IDLE_TIMEOUT_SEC, SESSION_DEFAULT_BUSY_POLL_US, READ_BUDGET_MIN,
            READ_BUDGET_MAX, SESSION_DEFAULT_READ_BUDGET, SESSION_DEFAULT_SLOW_READ_MS);
}

static int parse_number(const char *origin, const char *text, unsigned long long min,
                        unsigned long long max, unsigned long long *value)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
        fprintf(stderr, "webfused: %s must be a number from %llu to %llu, not \"%s\"\n", origin,
                min, max, text);
        return -EINVAL;
    }
    *value = v;
    return 0;
}

/* libwebsockets takes an IP address or an interface name, and with anything else it runs without
 * listening: refuse it here instead. */
static bool address_valid(const char *origin, const char *text)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, text, addr) == 1 || inet_pton(AF_INET6, text, addr) == 1 ||
        if_nametoindex(text) != 0)
        return true;
    fprintf(stderr, "webfused: %s must be an IP address or a network interface, not \"%s\"\n",
            origin, text);
    return false;
}

/* Checked with the other options: a typo must stop the daemon, not leave it running with a page
 * that answers 404. */
static bool docroot_check(const char *origin, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, R_OK | X_OK) != 0) {
        fprintf(stderr, "webfused: %s must be a readable directory, not \"%s\"\n", origin, dir);
        return false;
    }
    return true;
}

/* Long-only options. */
enum {
    OPT_CERT = 256,
    OPT_KEY,
    OPT_ADMIN_CERT,
    OPT_ADMIN_KEY,
    OPT_AUTH_FILE,
    OPT_AUTH_HEADER,
    OPT_MAX_SESSIONS,
    OPT_MAX_FILESYSTEMS,
    OPT_MAX_PENDING,
    OPT_MAX_PATH,
    OPT_IDLE_TIMEOUT,
    OPT_BUSY_POLL,
    OPT_READ_BUDGET,
    OPT_SLOW_READ,
    OPT_ALLOW_OTHER,
    OPT_USER,
    OPT_GROUP,
    OPT_FILESYSTEM,
    OPT_NO_CONFIG,
};

#define SHORT_OPTIONS "c:p:b:m:t:l:hV"

static const struct option long_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"no-config", no_argument, NULL, OPT_NO_CONFIG},
    {"check-config", no_argument, NULL, 'C'},
    {"log", required_argument, NULL, 'L'},
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
    {"docroot", required_argument, NULL, 'W'},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"admin-cert", required_argument, NULL, OPT_ADMIN_CERT},
    {"admin-key", required_argument, NULL, OPT_ADMIN_KEY},
    {"auth-file", required_argument, NULL, OPT_AUTH_FILE},
    {"auth-header", required_argument, NULL, OPT_AUTH_HEADER},
    {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
    {"max-filesystems", required_argument, NULL, OPT_MAX_FILESYSTEMS},
    {"max-pending", required_argument, NULL, OPT_MAX_PENDING},
    {"max-path", required_argument, NULL, OPT_MAX_PATH},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"busy-poll", required_argument, NULL, OPT_BUSY_POLL},
    {"read-budget", required_argument, NULL, OPT_READ_BUDGET},
    {"slow-read", required_argument, NULL, OPT_SLOW_READ},
    {"allow-other", no_argument, NULL, OPT_ALLOW_OTHER},
    {"user", required_argument, NULL, OPT_USER},
    {"group", required_argument, NULL, OPT_GROUP},
    {"filesystem", required_argument, NULL, OPT_FILESYSTEM},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* --filesystem NAME[=DIR]: a name the gateway accepts and, optionally, where it mounts. */
/* An absolute path with a last component and no "." or ".." ones: what the start makes of it
 * (mkdir with parents, and removing it again when the start fails) follows the text, which a
 * ".." would lead astray (/srv/new/../data made /srv/new and removed /srv/data). */
static bool plain_path(const char *path)
{
    if (path[0] != '/')
        return false;
    bool named = false;
    for (const char *p = path; *p;) {
        p += strspn(p, "/");
        size_t len = strcspn(p, "/");
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        named = named || len > 0;
        p += len;
    }
    return named;
}

static int add_filesystem(const char *origin, const char *arg, struct gateway_options *opt)
{
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    struct gateway_filesystem *fs = &opt->filesystems[opt->filesystem_count];
    if (opt->filesystem_count == GATEWAY_MAX_FILESYSTEMS) {
        fprintf(stderr, "webfused: %s: at most %d filesystems\n", origin, GATEWAY_MAX_FILESYSTEMS);
        return -EINVAL;
    }
    if (len >= sizeof(fs->name) ||
        (memcpy(fs->name, arg, len), fs->name[len] = '\0', !session_name_valid(fs->name))) {
        fprintf(stderr,
                "webfused: %s must be NAME[=DIR], NAME 1-64 of A-Z a-z 0-9 . _ - (not . or ..), "
                "not \"%s\"\n",
                origin, arg);
        return -EINVAL;
    }
    if (eq && !plain_path(eq + 1)) {
        fprintf(stderr,
                "webfused: %s: the mount point of %s must be an absolute path below / without . "
                "or .. components, not \"%s\"\n",
                origin, fs->name, eq + 1);
        return -EINVAL;
    }
    for (size_t i = 0; i < opt->filesystem_count; i++) {
        const struct gateway_filesystem *other = &opt->filesystems[i];
        if (strcmp(other->name, fs->name) == 0) {
            fprintf(stderr, "webfused: %s: %s is listed twice\n", origin, fs->name);
            return -EINVAL;
        }
        /* The second mount would hide the first. */
        if (eq && other->mountpoint && strcmp(other->mountpoint, eq + 1) == 0) {
            fprintf(stderr, "webfused: %s: %s and %s would both mount at %s\n", origin, other->name,
                    fs->name, eq + 1);
            return -EINVAL;
        }
    }
    fs->mountpoint = eq ? eq + 1 : NULL;
    opt->filesystem_count++;
    return 0;
}

/* A header name: 1-64 characters of A-Z a-z 0-9 and '-'. */
static bool header_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-')
            return false;
    return true;
}

static int apply_file_option(int c, const char *origin, const char *arg,
                             struct gateway_options *opt)
{
    static const struct {
        int code;
        size_t offset;
    } files[] = {
        {OPT_CERT, offsetof(struct gateway_options, cert)},
        {OPT_KEY, offsetof(struct gateway_options, key)},
        {OPT_ADMIN_CERT, offsetof(struct gateway_options, admin_cert)},
        {OPT_ADMIN_KEY, offsetof(struct gateway_options, admin_key)},
        {OPT_AUTH_FILE, offsetof(struct gateway_options, auth_file)},
        {OPT_USER, offsetof(struct gateway_options, run_user)},
        {OPT_GROUP, offsetof(struct gateway_options, run_group)},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (files[i].code != c)
            continue;
        if (arg[0] == '\0') {
            fprintf(stderr, "webfused: %s needs a value\n", origin);
            return -EINVAL;
        }
        *(const char **)((char *)opt + files[i].offset) = arg;
        return 0;
    }
    return -ENOENT;
}

/* The security options: files, limits, flags. -ENOENT when `c` is none of them. */
static int apply_security_option(int c, const char *origin, const char *arg,
                                 struct gateway_options *opt)
{
    unsigned long long v = 0;
    int rc = apply_file_option(c, origin, arg, opt);
    if (rc != -ENOENT)
        return rc;
    switch (c) {
    case OPT_AUTH_HEADER:
        if (!header_name_valid(arg)) {
            fprintf(stderr,
                    "webfused: %s must be a header name (1-64 of A-Z a-z 0-9 -), not \"%s\"\n",
                    origin, arg);
            return -EINVAL;
        }
        opt->auth_header = arg;
        return 0;
    case OPT_MAX_SESSIONS:
        rc = parse_number(origin, arg, 1, 100000, &v);
        opt->max_sessions = (unsigned)v;
        return rc;
    case OPT_MAX_FILESYSTEMS:
        rc = parse_number(origin, arg, 1, 1024, &v);
        opt->max_filesystems = (unsigned)v;
        return rc;
    case OPT_MAX_PENDING:
        rc = parse_number(origin, arg, 1, 65536, &v);
        opt->max_pending = (unsigned)v;
        return rc;
    case OPT_MAX_PATH:
        rc = parse_number(origin, arg, 16, 65536, &v);
        opt->max_path = (unsigned)v;
        return rc;
    case OPT_IDLE_TIMEOUT:
        rc = parse_number(origin, arg, 1, 86400, &v);
        opt->idle_timeout_sec = (unsigned)v;
        return rc;
    case OPT_BUSY_POLL:
        rc = parse_number(origin, arg, 0, 10000, &v);
        opt->busy_poll_us = (unsigned)v;
        return rc;
    case OPT_READ_BUDGET:
        rc = parse_number(origin, arg, READ_BUDGET_MIN, READ_BUDGET_MAX, &v);
        opt->read_budget = (size_t)v;
        return rc;
    case OPT_SLOW_READ:
        rc = parse_number(origin, arg, 1, 600000, &v);
        opt->slow_read_ms = (unsigned)v;
        return rc;
    case OPT_ALLOW_OTHER:
        opt->allow_other = true;
        return 0;
    case OPT_FILESYSTEM:
        return add_filesystem(origin, arg, opt);
    default:
        return -ENOENT;
    }
}

static bool admin_option(int c)
{
    return c == 'A' || c == 'B' || c == 'T' || c == 'D';
}

static int apply_option(int c, const char *origin, const char *arg, struct gateway_options *opt)
{
    int rc = apply_security_option(c, origin, arg, opt);
    if (rc != -ENOENT)
        return rc;
    unsigned long long v;
    if (admin_option(c) && !admin_available()) {
        fprintf(stderr, "webfused: %s: this webfused was built without the admin API\n", origin);
        return -EINVAL;
    }
    switch (c) {
    case 'p':
        if (parse_number(origin, arg, 1, 65535, &v) != 0)
            return -EINVAL;
        opt->port = (int)v;
        return 0;
    case 'b':
        if (!address_valid(origin, arg))
            return -EINVAL;
        opt->bind = arg;
        return 0;
    case 'm':
        if (!plain_path(arg)) {
            fprintf(stderr,
                    "webfused: %s must be an absolute path below / without . or .. components, "
                    "not \"%s\"\n",
                    origin, arg);
            return -EINVAL;
        }
        opt->mount_root = arg;
        return 0;
    case 't':
        if (parse_number(origin, arg, 1, 3600, &v) != 0)
            return -EINVAL;
        opt->timeout_sec = (unsigned)v;
        return 0;
    case 'M':
        if (parse_number(origin, arg, MIN_MAX_MESSAGE, MAX_MAX_MESSAGE, &v) != 0)
            return -EINVAL;
        opt->max_message = (size_t)v;
        return 0;
    case 'A':
        if (parse_number(origin, arg, 1, 65535, &v) != 0)
            return -EINVAL;
        opt->admin_port = (int)v;
        return 0;
    case 'B':
        if (!address_valid(origin, arg))
            return -EINVAL;
        opt->admin_bind = arg;
        return 0;
    case 'T':
    case 'D':
        if (arg[0] == '\0') {
            fprintf(stderr, "webfused: %s needs a file name\n", origin);
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
    case 'C':
        opt->check_config = true;
        return 0;
    case 'L':
        if (log_check_target(arg) != 0) {
            fprintf(stderr, "webfused: %s must be stderr, syslog or an absolute path, not \"%s\"\n",
                    origin, arg);
            return -EINVAL;
        }
        opt->log_target = arg;
        return 0;
    case 'W':
        if (!docroot_check(origin, arg))
            return -EINVAL;
        opt->docroot = arg;
        return 0;
    case 'l':
        if (log_parse_level(arg, &opt->log_level) != 0) {
            fprintf(stderr, "webfused: %s must be error, warn, info or debug\n", origin);
            return -EINVAL;
        }
        return 0;
    default:
        fprintf(stderr, "Try 'webfused --help' for more information.\n");
        return -EINVAL;
    }
}

static const struct option *option_by_name(const char *name)
{
    for (const struct option *o = long_options; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

/* opt->from_file has one bit per entry of long_options. */
_Static_assert(sizeof(long_options) / sizeof(long_options[0]) <= 64,
               "gateway_options.from_file has too few bits");

static uint64_t option_bit(const struct option *o)
{
    return (uint64_t)1 << (o - long_options);
}

static bool set_by_file(const struct gateway_options *opt, const char *name)
{
    const struct option *o = option_by_name(name);
    return o && (opt->from_file & option_bit(o));
}

/* A mistake in how two options `a` and `b` go together: names the configuration file when it
 * set either of them. Returns -EINVAL. */
static int pair_error(const struct gateway_options *opt, const char *a, const char *b,
                      const char *what)
{
    if (set_by_file(opt, a) || set_by_file(opt, b))
        fprintf(stderr, "webfused: %s: %s\n", opt->config_path, what);
    else
        fprintf(stderr, "webfused: %s\n", what);
    return -EINVAL;
}

/* A certificate needs its key and the other way round; the admin port takes the provider
 * port's pair unless it has its own. --group goes with --user. */
static int security_options_check(struct gateway_options *opt)
{
    if (!opt->cert != !opt->key)
        return pair_error(opt, "cert", "key", "--cert and --key go together");
    if (!opt->admin_cert != !opt->admin_key)
        return pair_error(opt, "admin-cert", "admin-key",
                          "--admin-cert and --admin-key go together");
    if (!opt->admin_cert)
        opt->admin_cert = opt->cert;
    if (!opt->admin_key)
        opt->admin_key = opt->key;
    if (opt->run_group && !opt->run_user)
        return pair_error(opt, "group", "user", "--group needs --user");
    return 0;
}

static const struct option *option_by_code(int c)
{
    for (const struct option *o = long_options; o->name; o++)
        if (o->val == c)
            return o;
    return NULL;
}

enum option_arg options_arg_kind(const char *name)
{
    const struct option *o = option_by_name(name);
    if (!o)
        return OPTION_ARG_UNKNOWN;
    if (o->val == OPT_FILESYSTEM)
        return OPTION_ARG_LIST;
    return o->has_arg == no_argument ? OPTION_ARG_NONE : OPTION_ARG_VALUE;
}

int options_set(struct gateway_options *opt, const char *name, const char *value,
                const char *origin)
{
    const struct option *o = option_by_name(name);
    if (!o)
        return -EINVAL;
    opt->from_file |= option_bit(o);
    return apply_option(o->val, origin, value, opt);
}

static void options_defaults(struct gateway_options *opt)
{
    *opt = (struct gateway_options){
        .port = DEFAULT_PORT,
        .bind = DEFAULT_BIND,
        .mount_root = DEFAULT_MOUNT_ROOT,
        .timeout_sec = DEFAULT_TIMEOUT_SEC,
        .max_message = DEFAULT_MAX_MESSAGE,
        .log_level = LOG_LEVEL_INFO,
        .log_target = "stderr",
        .admin = admin_available(),
        .admin_port = DEFAULT_ADMIN_PORT,
        .admin_bind = DEFAULT_ADMIN_BIND,
        .admin_token_file = DEFAULT_ADMIN_TOKEN_FILE,
        .db_path = DEFAULT_DB,
        .auth_header = SESSION_DEFAULT_AUTH_HEADER,
        .max_sessions = SESSION_DEFAULT_MAX_SESSIONS,
        .max_filesystems = SESSION_DEFAULT_MAX_FILESYSTEMS,
        .max_pending = SESSION_DEFAULT_MAX_PENDING,
        .max_path = SESSION_DEFAULT_MAX_PATH,
        .idle_timeout_sec = SESSION_DEFAULT_IDLE_TIMEOUT_SEC,
        .busy_poll_us = SESSION_DEFAULT_BUSY_POLL_US,
        .read_budget = SESSION_DEFAULT_READ_BUDGET,
        .slow_read_ms = SESSION_DEFAULT_SLOW_READ_MS,
    };
}

/* The file named by the last --config (the command line overrides it, so it is read first), or
 * the default file when it exists; NULL for none, or when --no-config came last. getopt itself
 * finds them, so that every form it accepts counts: -c FILE, -cFILE, --config=FILE, an
 * abbreviation such as --conf FILE. Mistakes are left to parse_command_line, which reports
 * them. */
static const char *config_path(int argc, char **argv)
{
    const char *path = NULL;
    bool none = false;
    int saved_opterr = opterr;
    opterr = 0;
    optind = 0; /* glibc: 0 starts getopt afresh, forgetting a previous parse's position */
    int c;
    while ((c = getopt_long(argc, argv, SHORT_OPTIONS, long_options, NULL)) != -1) {
        if (c == 'c' || c == OPT_NO_CONFIG) {
            path = c == 'c' ? optarg : NULL;
            none = c == OPT_NO_CONFIG;
        }
    }
    opterr = saved_opterr;
    if (!path && !none && access(DEFAULT_CONFIG, F_OK) == 0)
        path = DEFAULT_CONFIG;
    return path;
}

static int parse_command_line(int argc, char **argv, struct gateway_options *opt)
{
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, SHORT_OPTIONS, long_options, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == 'V') {
            printf("webfused %s\n", WEBFUSE_VERSION);
            return 1;
        }
        if (c == 'c' || c == OPT_NO_CONFIG)
            continue; /* decided before the command line (config_path) */
        const struct option *o = option_by_code(c);
        if (o)
            opt->from_file &= ~option_bit(o); /* the command line overrides the file */
        char origin[64];
        snprintf(origin, sizeof(origin), "--%s", o ? o->name : "?");
        if (!o || apply_option(c, origin, optarg, opt) != 0) {
            if (!o)
                fprintf(stderr, "Try 'webfused --help' for more information.\n");
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "webfused: unexpected argument \"%s\"\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

int gateway_options_parse(int argc, char **argv, struct gateway_options *opt)
{
    options_defaults(opt);
    opt->config_path = config_path(argc, argv);
    if (opt->config_path && config_apply_file(opt, opt->config_path) != 0)
        return -EINVAL;
    int rc = parse_command_line(argc, argv, opt);
    if (rc != 0)
        return rc;
    if (opt->admin && opt->admin_port == opt->port && strcmp(opt->admin_bind, opt->bind) == 0)
        return pair_error(opt, "admin-port", "port", "--admin-port must differ from --port");
    return security_options_check(opt);
}

void gateway_options_free(struct gateway_options *opt)
{
    json_decref(opt->config);
    opt->config = NULL;
}
