/* provider: the reference webfuse provider.
 *
 * Serves local directories to a webfuse gateway over one websocket client connection, in one of
 * two wire protocols:
 *  - webfuse2 (the default): one directory, read-write (or read-only), by path; the gateway names
 *    the filesystem after the URL path's last segment;
 *  - json (first generation): several directories, read-only, by inode, each attached under its
 *    own name with add_filesystem.
 * main.c parses the command line and calls what this header names; the layers behind it are
 * described in provider_internal.h.
 */
#ifndef WEBFUSE_PROVIDER_H
#define WEBFUSE_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

/* Most --fs options one provider takes. */
#define PROVIDER_MAX_EXPORTS 64

/* A parsed ws:// or wss:// URL. Strings point into `buffer`. */
struct provider_url {
    char buffer[1024];
    const char *host; /* without brackets for an IPv6 literal */
    int port;         /* 80 (ws) or 443 (wss) when the URL names none */
    bool port_given;  /* the URL names the port */
    const char *path; /* starts with '/'; "/" when the URL names none */
    bool tls;         /* wss:// */
};

/* Parses "ws://HOST[:PORT][/PATH]" or "wss://...". Returns 0, -EPROTONOSUPPORT for another
 * scheme, -EINVAL for a malformed URL, -ENAMETOOLONG when it is longer than the buffer. */
int provider_url_parse(const char *text, struct provider_url *url);

/* True when `name` is a --protocol value this build speaks ("webfuse2", "json"). */
bool provider_protocol_known(const char *name);

struct provider_export_spec {
    const char *name; /* filesystem name sent to the gateway */
    const char *dir;  /* local directory to export */
};

struct provider_options {
    const char *url;      /* as given on the command line; must parse with provider_url_parse */
    const char *protocol; /* a name provider_protocol_known accepts */
    /* json: the filesystems to attach */
    const struct provider_export_spec *exports;
    size_t export_count; /* 1..PROVIDER_MAX_EXPORTS, names unique */
    /* webfuse2: the one directory served, and how */
    const char *path;
    bool read_only;    /* refuse every change with EROFS */
    const char *token; /* answer to getcreds; NULL answers an empty string */
    bool reconnect;    /* retry with backoff instead of exiting when the connection ends */
    /* json: authenticate as this user (with `password`) before attaching; NULL = do not. */
    const char *user;
    const char *password;
    const char *ca_file; /* wss://: trust the gateway certificates in this PEM file too */
};

struct provider;

/* Opens every exported directory (json) or the served one (webfuse2). Strings in `options` are
 * borrowed and must outlive the provider. Returns 0 with *out owned by the caller, or a negative
 * errno after logging why (-ENOTDIR, -EACCES, -ENOENT for a directory that cannot be served;
 * -ENOSYS when the kernel lacks openat2, without which webfuse2 cannot keep paths inside the
 * directory; -EINVAL for bad options; -ENOMEM). webfuse2 sets the process umask to 0: modes
 * come from the gateway with the caller's umask already applied. */
int provider_new(const struct provider_options *options, struct provider **out);

/* Connects and serves until SIGINT/SIGTERM or, without reconnect, until the connection ends.
 * Installs handlers for SIGINT and SIGTERM for its duration. Returns the process exit status:
 * 0 after a clean stop, 1 when the connection failed or ended on its own or when the gateway
 * refused a filesystem (json). */
int provider_run(struct provider *provider);

void provider_free(struct provider *provider);

#endif
