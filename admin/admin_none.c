/* The admin API left out of the build (-DWEBFUSE_ADMIN=OFF) for the smallest devices: no HTTP
 * routes, no sqlite. webfused then runs as with --no-admin. */
#include "admin.h"

#include <errno.h>
#include <stdbool.h>

bool admin_available(void)
{
    return false;
}

int admin_check(const struct admin_config *config)
{
    (void)config;
    return 0;
}

int admin_new(uv_loop_t *loop, struct session_hub *hub, const struct admin_config *config,
              struct admin **out)
{
    (void)loop;
    (void)hub;
    (void)config;
    *out = NULL;
    return -ENOTSUP;
}

const struct lws_protocols *admin_protocols(struct admin *admin)
{
    (void)admin;
    return NULL;
}

void admin_close(struct admin *admin)
{
    (void)admin;
}

void admin_free(struct admin *admin, const char *stop_detail)
{
    (void)admin;
    (void)stop_detail;
}
