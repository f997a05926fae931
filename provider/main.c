/* webfuse-provider: command line. Exit status 2 for bad arguments, else what provider_run says. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "log.h"
#include "provider.h"
#include "session.h"

#define PROGRAM "webfuse-provider"
#define EXIT_USAGE 2

static const char usage_text[] =
    "Usage: " PROGRAM " --url ws[s]://HOST[:PORT]/NAME --path DIR [--read-only]\n"
    "                        [--user NAME | --token TOKEN] [--ca FILE] [--reconnect]\n"
    "                        [--log-level LEVEL]\n"
    "       " PROGRAM " --protocol json --url ws[s]://HOST[:PORT][/PATH] --fs NAME=DIR\n"
    "                        [--fs NAME=DIR ...] [--user NAME] [--ca FILE] [--reconnect]\n"
    "                        [--log-level LEVEL]\n"
    "\n"
    "Serves local directories to a webfuse gateway (webfused) over one websocket connection.\n"
    "\n"
    "webfuse2 (the default protocol): serves the one directory DIR, read-write, as one\n"
    "filesystem. The gateway names it after the last segment of the URL path: with\n"
    "ws://dev:8081/firmware it appears as <mount root>/firmware on the gateway; webfused gives a\n"
    "URL path of / a generated name. Every operation is served: reading, writing, creating,\n"
    "renaming (also RENAME_NOREPLACE and RENAME_EXCHANGE), hard and symbolic links, deleting,\n"
    "modes, owners, sizes and times. Regular files, directories, symbolic links, FIFOs and\n"
    "sockets can be created; device nodes cannot (EPERM). Modes are used exactly as the\n"
    "gateway sends them (this process's umask is not applied again). Symbolic links are\n"
    "served as they are, for the gateway's kernel to follow on its side; no path the gateway\n"
    "sends reaches anything outside DIR on this machine, not even through a symbolic link\n"
    "(one that leads out of DIR cannot be followed here: EACCES).\n"
    "\n"
    "json (--protocol json, the first-generation protocol): serves one or more directories\n"
    "read-only, each attached as its own filesystem NAME (the URL path does not matter).\n"
    "Regular files and directories below DIR are served; symbolic links, devices, FIFOs and\n"
    "sockets are left out, and nothing outside DIR can be reached.\n"
    "\n"
    "  -u, --url URL          gateway to connect to, ws://HOST[:PORT][/PATH], or wss:// for\n"
    "                         TLS; PORT defaults to 80 (ws) or 443 (wss), PATH to /. An IPv6\n"
    "                         address goes in brackets: ws://[::1]:8080/.\n"
    "  -c, --ca FILE          wss://: also trust the certificates in FILE (PEM), e.g. the\n"
    "                         gateway's own self-signed certificate. The gateway's name (or\n"
    "                         address) must match its certificate.\n"
    "  -U, --user NAME        authenticate as NAME (a user of the gateway's --auth-file). The\n"
    "                         password comes from the WEBFUSE_PASSWORD environment variable,\n"
    "                         else it is asked for on the terminal. json: sent with\n"
    "                         authenticate; webfuse2: answers getcreds with NAME:PASSWORD.\n"
    "  -P, --path DIR         webfuse2: the directory to serve (required; exactly one).\n"
    "  -R, --read-only        webfuse2: refuse every change (writes, creating, deleting,\n"
    "                         renaming, attributes, times) with EROFS (the gateway cannot\n"
    "                         know: its mount still shows rw). json is always read-only, so\n"
    "                         there it changes nothing.\n"
    "  -t, --token TOKEN      webfuse2: the credentials sent when the gateway asks for them\n"
    "                         (getcreds); webfused takes USER:PASSWORD. Default: the\n"
    "                         WEBFUSE_TOKEN environment variable, else an empty string.\n"
    "  -f, --fs NAME=DIR      json: serve directory DIR as filesystem NAME (1-64 characters of\n"
    "                         A-Z a-z 0-9 . _ -, not . or ..). Repeat for more, up to 64.\n"
    "  -p, --protocol NAME    wire protocol: webfuse2 (default; binary, read-write) or json\n"
    "                         (webfuse-adapter-server, read-only). --path belongs to webfuse2,\n"
    "                         --fs to json; mixing them is an error.\n"
    "  -r, --reconnect        when the connection fails or drops, retry after 0.5 s, doubling\n"
    "                         up to 30 s (back to 0.5 s once a connection served: json: a\n"
    "                         filesystem attached; webfuse2: a request answered), and attach\n"
    "                         again. Without it the provider exits when the connection fails\n"
    "                         or ends. Files the gateway had open are closed on every drop.\n"
    "                         A close with status 1000 (an operator detached or disconnected\n"
    "                         the provider on the device) is not retried: the provider exits 0.\n"
    "  -l, --log-level LEVEL  error, warn, info (default) or debug; logs go to stderr.\n"
    "  -h, --help             show this help and exit.\n"
    "  -V, --version          show the version and exit.\n"
    "\n"
    "SIGINT (Ctrl-C) or SIGTERM closes the connection cleanly and exits; a second one exits at\n"
    "once. json: if the gateway refuses a filesystem (name in use, bad name), the error is\n"
    "logged and the others are still served. webfuse2: a gateway that refuses the filesystem\n"
    "(name in use, bad name) closes the connection with the reason, which is logged.\n"
    "\n"
    "Exit status: 0 after a clean stop, or when the gateway ended the connection with\n"
    "status 1000; 1 when the connection could not be made or ended otherwise (without\n"
    "--reconnect), or when the gateway refused a filesystem (json); 2 for bad arguments.\n";

struct cli {
    const char *url;
    const char *protocol;
    const char *path;
    const char *token;
    const char *user;
    const char *ca_file;
    char password[AUTH_PASSWORD_MAX + 1];
    char *user_token; /* webfuse2 with --user: "NAME:PASSWORD" (owned) */
    bool read_only;
    bool token_given; /* --token on the command line (not from the environment) */
    bool reconnect;
    enum log_level log_level;
    struct provider_export_spec exports[PROVIDER_MAX_EXPORTS];
    char *names[PROVIDER_MAX_EXPORTS]; /* owned copies; exports[i].name points here */
    size_t export_count;
};

static void cli_free(struct cli *cli)
{
    for (size_t i = 0; i < cli->export_count; i++)
        free(cli->names[i]);
    explicit_bzero(cli->password, sizeof(cli->password));
    if (cli->user_token) {
        explicit_bzero(cli->user_token, strlen(cli->user_token));
        free(cli->user_token);
    }
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, PROGRAM ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" PROGRAM " --help' for more information.\n");
    return -EINVAL;
}

/* --ca must hold a PEM certificate: libwebsockets would only log that it could not load it and
 * then refuse the gateway's certificate, which points the wrong way. A regular file: a FIFO or
 * /dev/zero would never end. */
static int cli_check_ca(const char *path)
{
    char why[PATH_MAX + 100];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO would block the open */
    struct stat st;
    FILE *f = NULL;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        f = fdopen(fd, "r");
    else if (fd >= 0)
        errno = EINVAL; /* not a regular file */
    if (!f) {
        snprintf(why, sizeof(why), "cannot read --ca %s: %s", path,
                 errno == EINVAL ? "not a regular file" : strerror(errno));
        if (fd >= 0)
            close(fd);
        return usage_error("%s", why);
    }
    char line[256];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strncmp(line, "-----BEGIN ", 11) == 0 && strstr(line, "CERTIFICATE-----");
    fclose(f);
    if (found)
        return 0;
    snprintf(why, sizeof(why), "--ca %s holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
             path);
    return usage_error("%s", why);
}

static int cli_check_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) < 0) {
        fprintf(stderr, PROGRAM ": cannot serve %s: %s\n", dir, strerror(errno));
        return -EINVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, PROGRAM ": cannot serve %s: not a directory\n", dir);
        return -EINVAL;
    }
    return 0;
}

/* Adds one --fs NAME=DIR. */
static int cli_add_export(struct cli *cli, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || eq[1] == '\0')
        return usage_error("--fs needs NAME=DIR, got '%s'", arg);
    if (cli->export_count == PROVIDER_MAX_EXPORTS)
        return usage_error("too many --fs options (at most %s)", "64");
    char *name = strndup(arg, (size_t)(eq - arg));
    if (!name)
        return -ENOMEM;
    cli->names[cli->export_count] = name; /* owned by cli from here on */
    cli->exports[cli->export_count].name = name;
    cli->exports[cli->export_count].dir = eq + 1;
    cli->export_count++;
    if (!session_name_valid(name))
        return usage_error("bad filesystem name '%s': use 1-64 characters of A-Z a-z 0-9 . _ - "
                           "(not . or ..)",
                           name);
    for (size_t i = 0; i + 1 < cli->export_count; i++)
        if (strcmp(cli->exports[i].name, name) == 0)
            return usage_error("filesystem name '%s' given twice", name);
    return cli_check_dir(eq + 1);
}

/* --path once, and a directory. */
static int cli_set_path(struct cli *cli, const char *dir)
{
    if (cli->path)
        return usage_error("--path given twice (webfuse2 serves one directory; '%s')", dir);
    cli->path = dir;
    return cli_check_dir(dir);
}

/* What each protocol needs, and nothing that belongs to the other one. */
static int cli_check_protocol(const struct cli *cli)
{
    if (strcmp(cli->protocol, "json") == 0) {
        if (cli->path)
            return usage_error("%s", "--path is for webfuse2; with --protocol json use --fs "
                                     "NAME=DIR");
        if (cli->token_given)
            return usage_error("%s", "--token is for webfuse2; --protocol json sends none");
        if (cli->export_count == 0)
            return usage_error("%s", "missing --fs NAME=DIR (--protocol json)");
        return 0;
    }
    if (cli->export_count > 0)
        return usage_error("%s", "--fs is for --protocol json; webfuse2 (the default) serves "
                                 "one directory: use --path DIR");
    if (!cli->path)
        return usage_error("%s", "missing --path DIR (or --protocol json with --fs NAME=DIR)");
    return 0;
}

/* webfuse2 names the filesystem after the URL path's last segment; catching a bad one here
 * beats a refusal (or a different name) from the gateway. */
static bool url_name_valid(const char *path)
{
    size_t len = strlen(path);
    while (len > 0 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    if (start == len)
        return true; /* "/": the gateway generates a name */
    char name[256];
    if (len - start >= sizeof(name))
        return false;
    memcpy(name, path + start, len - start);
    name[len - start] = '\0';
    return session_name_valid(name);
}

static int cli_check(const struct cli *cli)
{
    if (!cli->url)
        return usage_error("%s", "missing --url");
    struct provider_url url;
    int rc = provider_url_parse(cli->url, &url);
    if (rc == -EPROTONOSUPPORT)
        return usage_error("unsupported url '%s': only ws:// and wss:// are supported", cli->url);
    if (rc < 0)
        return usage_error("bad url '%s': expected ws[s]://HOST[:PORT][/PATH]", cli->url);
    if (cli->ca_file && !url.tls)
        return usage_error("--ca is for wss:// URLs, not '%s'", cli->url);
    if (cli->ca_file && cli_check_ca(cli->ca_file) != 0)
        return -EINVAL;
    if (cli->user && cli->token_given)
        return usage_error("%s", "--user and --token exclude each other");
    if (cli->user && !auth_name_valid(cli->user))
        return usage_error("bad user name '%s': 1-64 characters of A-Z a-z 0-9 . _ @ -", cli->user);
    if (!provider_protocol_known(cli->protocol))
        return usage_error("unknown protocol '%s': use webfuse2 or json", cli->protocol);
    if (strcmp(cli->protocol, "webfuse2") == 0 && !url_name_valid(url.path))
        return usage_error("the last segment of the URL path names the filesystem and must be "
                           "1-64 characters of A-Z a-z 0-9 . _ -, not . or .. (or nothing, for a "
                           "name the gateway chooses): '%s'",
                           url.path);
    return cli_check_protocol(cli);
}

static const struct option long_options[] = {
    {"url", required_argument, NULL, 'u'},
    {"fs", required_argument, NULL, 'f'},
    {"path", required_argument, NULL, 'P'},
    {"read-only", no_argument, NULL, 'R'},
    {"token", required_argument, NULL, 't'},
    {"protocol", required_argument, NULL, 'p'},
    {"reconnect", no_argument, NULL, 'r'},
    {"log-level", required_argument, NULL, 'l'},
    {"help", no_argument, NULL, 'h'},
    {"user", required_argument, NULL, 'U'},
    {"ca", required_argument, NULL, 'c'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Returns 0, 1 when --help or --version was shown, or a negative errno after printing why. */
static int cli_parse(struct cli *cli, int argc, char **argv)
{
    opterr = 0; /* our own messages, below */
    int c;
    while ((c = getopt_long(argc, argv, ":u:f:P:Rt:p:rl:hVU:c:", long_options, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'u':
            cli->url = optarg;
            break;
        case 'f':
            rc = cli_add_export(cli, optarg);
            break;
        case 'P':
            rc = cli_set_path(cli, optarg);
            break;
        case 'R':
            cli->read_only = true;
            break;
        case 't':
            cli->token = optarg;
            cli->token_given = true;
            break;
        case 'p':
            cli->protocol = optarg;
            break;
        case 'U':
            cli->user = optarg;
            break;
        case 'c':
            cli->ca_file = optarg;
            break;
        case 'r':
            cli->reconnect = true;
            break;
        case 'l':
            if (log_parse_level(optarg, &cli->log_level) < 0)
                rc = usage_error("bad log level '%s': use error, warn, info or debug", optarg);
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 1;
        case 'V':
            printf("webfuse-provider %s\n", WEBFUSE_VERSION);
            return 1;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
        if (rc < 0)
            return rc;
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return cli_check(cli);
}

/* --user: the password from WEBFUSE_PASSWORD or the terminal; webfuse2 sends NAME:PASSWORD as
 * its token. */
static int cli_credentials(struct cli *cli)
{
    if (!cli->user)
        return 0;
    const char *env = getenv("WEBFUSE_PASSWORD");
    if (env) {
        if (strlen(env) >= sizeof(cli->password))
            return usage_error("%s", "WEBFUSE_PASSWORD is too long");
        strcpy(cli->password, env);
    } else {
        char prompt[128];
        snprintf(prompt, sizeof(prompt), "Password for %s: ", cli->user);
        int rc = auth_password_prompt(prompt, cli->password, sizeof(cli->password));
        if (rc == -ENXIO)
            return usage_error("%s", "--user needs a password: set WEBFUSE_PASSWORD or run on a "
                                     "terminal");
        if (rc < 0)
            return usage_error("cannot read the password: %s", strerror(-rc));
    }
    if (strcmp(cli->protocol, "webfuse2") == 0 &&
        asprintf(&cli->user_token, "%s:%s", cli->user, cli->password) < 0) {
        cli->user_token = NULL;
        return -ENOMEM;
    }
    return 0;
}

int main(int argc, char **argv)
{
    log_set_program(PROGRAM);
    struct cli cli = {.protocol = "webfuse2", .log_level = LOG_LEVEL_INFO};
    int rc = cli_parse(&cli, argc, argv);
    if (rc == 0)
        rc = cli_credentials(&cli);
    if (rc != 0) {
        cli_free(&cli);
        return rc > 0 ? EXIT_SUCCESS : EXIT_USAGE;
    }
    log_set_level(cli.log_level);

    struct provider_options options = {
        .url = cli.url,
        .protocol = cli.protocol,
        .exports = cli.exports,
        .export_count = cli.export_count,
        .path = cli.path,
        .read_only = cli.read_only,
        .token = cli.user_token    ? cli.user_token
                 : cli.token_given ? cli.token
                                   : getenv("WEBFUSE_TOKEN"),
        .reconnect = cli.reconnect,
        .user = cli.user,
        .password = cli.password,
        .ca_file = cli.ca_file,
    };
    struct provider *provider;
    rc = provider_new(&options, &provider);
    if (rc < 0) {
        cli_free(&cli);
        return rc == -ENOMEM ? EXIT_FAILURE : EXIT_USAGE;
    }
    int status = provider_run(provider);
    provider_free(provider);
    cli_free(&cli);
    return status;
}
