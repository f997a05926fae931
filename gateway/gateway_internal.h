/* Private to gateway/: what its files share. */
#ifndef WEBFUSE_GATEWAY_INTERNAL_H
#define WEBFUSE_GATEWAY_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

#include "gateway.h"

/* security.c; all of it start-up only. */

/* Who webfused becomes once its ports are open (--user, --group). */
struct gateway_identity {
    bool drop; /* false: stay who we are */
    uid_t uid;
    gid_t gid;
};

/* Checks that the TLS certificate and key files can be read (0 or a negative errno, logged). */
int gateway_tls_check(const struct gateway_options *opt);
/* Looks up --user and --group. 0 or a negative errno, logged. */
int gateway_identity_resolve(const struct gateway_options *opt, struct gateway_identity *id);
/* Gives `path` (the mount root) to the identity we drop to, so that it can create mount points
 * there. No-op without --user. */
int gateway_identity_hand_over(const struct gateway_identity *id, const char *path);
/* Becomes the identity for good (supplementary groups cleared). No-op without --user. */
int gateway_identity_drop(const struct gateway_identity *id, const char *user);
/* Logs warnings for ports open to the network without authentication or TLS. */
void gateway_warn_exposure(const struct gateway_options *opt);

#endif
