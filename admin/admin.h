/* admin: the operator's view of webfused.
 *
 *  - the REST API under /api/v1 (JSON via jansson), GET /healthz and GET /metrics (Prometheus
 *    text), served over HTTP by a libwebsockets protocol that the gateway puts on its own vhost;
 *  - the bearer token every request but /healthz must carry;
 *  - the registry: an sqlite database of sessions, filesystems and events, written and read by a
 *    thread of its own, fed from the session hub's events.
 *
 * Live state comes from the session hub (memory); history comes from the registry.
 */
#ifndef WEBFUSE_ADMIN_H
#define WEBFUSE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

struct admin;
struct lws_protocols;
struct session_hub;

struct admin_config {
    const char *token_file; /* read, or created with a random token (mode 0600) when missing */
    const char *db_path;    /* sqlite database; created with its directory when missing */
    const char *listen;     /* "http://ADDR:PORT", for the log line only */
};

/* False when webfused was built without the admin API (-DWEBFUSE_ADMIN=OFF). */
bool admin_available(void);

/* --check-config: the token file, when it exists, holds a valid token (it is made at start when
 * missing). 0 or a negative errno, logged. Blocking. */
int admin_check(const struct admin_config *config);

/* Start-up, before the loop runs: blocking is allowed here. Reads (or creates) the token, opens and
 * migrates the database, closes rows an earlier run left active as "lost", starts the registry
 * thread and observes `hub`. `loop` and `hub` must outlive the admin. Returns 0 with *out owned by
 * the caller, or a negative errno after logging what went wrong. */
int admin_new(uv_loop_t *loop, struct session_hub *hub, const struct admin_config *config,
              struct admin **out);

/* The libwebsockets protocols (terminated by a zeroed entry) of the admin vhost; the first one
 * serves HTTP. Each protocol's `user` is the admin. Valid until admin_free. */
const struct lws_protocols *admin_protocols(struct admin *admin);

/* Loop thread, during shutdown and before the libwebsockets context is destroyed: stops taking
 * requests and closes the admin's loop handles. Requests still waiting for the registry are
 * dropped when their connection closes. */
void admin_close(struct admin *admin);

/* After the loop has stopped (blocking is allowed again): stops observing the hub, lets the
 * registry thread write what is queued and the run's `stop` event with `stop_detail` (static
 * text, says how the run ended), joins it and frees everything. */
void admin_free(struct admin *admin, const char *stop_detail);

#endif
