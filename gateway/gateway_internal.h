/* Shared between the files of gateway/ only. */
#ifndef WEBFUSE_GATEWAY_INTERNAL_H
#define WEBFUSE_GATEWAY_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

#include "gateway.h"

/* What a long option (its name without "--") takes; LIST: a value, and it may be repeated. */
enum option_arg { OPTION_ARG_NONE, OPTION_ARG_VALUE, OPTION_ARG_LIST, OPTION_ARG_UNKNOWN };
enum option_arg options_arg_kind(const char *name);

/* Sets the long option `name` to `value` (NULL for an option without argument). `origin` names
 * it in error messages, e.g. "--port" or "FILE: key \"port\"". The value is borrowed and must
 * outlive the options. Returns 0 or -EINVAL after printing what is wrong. */
int options_set(struct gateway_options *opt, const char *name, const char *value,
                const char *origin);

/* Applies every key of the JSON configuration file `path` with options_set. Keeps what the
 * options borrow in opt->config. Returns 0 or -EINVAL after printing what is wrong. */
int config_apply_file(struct gateway_options *opt, const char *path);

/* Tells systemd our state ("READY=1", "STOPPING=1", ...) when it started us with Type=notify;
 * does nothing otherwise. Never blocks. */
void notify_systemd(const char *state);

/* security.c; all of it start-up only. */

/* Who webfused becomes once its ports are open (--user, --group). */
struct gateway_identity {
    bool drop; /* false: stay who we are */
    uid_t uid;
    gid_t gid;
};

/* Checks that the TLS certificate and key files can be read (0 or a negative errno, logged). */
int gateway_tls_check(const struct gateway_options *opt);
/* fusermount3's configuration: allow_other for a user other than root needs its consent. */
#define GATEWAY_FUSE_CONF "/etc/fuse.conf"

/* Looks up --user and --group, and checks that fusermount3 will mount as asked for that user.
 * 0 or a negative errno, logged. */
int gateway_identity_resolve(const struct gateway_options *opt, struct gateway_identity *id);
/* Gives `path` (the mount root) to the identity we drop to, so that it can create mount points
 * there. No-op without --user. */
int gateway_identity_hand_over(const struct gateway_identity *id, const char *path);
/* Whether the identity we drop to may write to the existing directory `path` (fusermount3 wants
 * it of a mount point). 0 or -EACCES, logged. No-op without --user. */
int gateway_identity_can_write(const struct gateway_identity *id, const char *user,
                               const char *path);
/* Becomes the identity for good (supplementary groups cleared). No-op without --user. */
int gateway_identity_drop(const struct gateway_identity *id, const char *user);
/* Checks that --bind (and --admin-bind) name an address or interface this machine has. 0 or a
 * negative errno, logged. */
int gateway_listen_check(const struct gateway_options *opt);
/* Logs warnings for ports open to the network without authentication or TLS. */
void gateway_warn_exposure(const struct gateway_options *opt);

#endif
