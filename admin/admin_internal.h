/* Private to admin/: what its files share. Nothing outside admin/ includes this. */
#ifndef WEBFUSE_ADMIN_INTERNAL_H
#define WEBFUSE_ADMIN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "admin.h"
#include "session.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* A token longer than this is refused at start-up; a presented one longer than this fails. */
#define ADMIN_TOKEN_MAX 256
/* Random bytes of a generated token (written as hex). */
#define ADMIN_TOKEN_BYTES 32
/* Largest request body accepted (DELETE may carry {"reason": "..."}); larger ones get 413. */
#define ADMIN_MAX_BODY (8 * 1024)
/* Longest request path accepted; longer ones get 404 (no route is that long). */
#define ADMIN_PATH_MAX 512
/* Query arguments kept per request, and the longest one ("name=value"); no endpoint takes more
 * than three, so more, or longer ones, are refused with 400. */
#define ADMIN_ARGS_MAX 8
#define ADMIN_ARG_MAX 128
/* A close reason must fit a websocket close frame (123 bytes) with room to spare. */
#define ADMIN_REASON_MAX 120
/* Paging of history: default and largest page. */
#define ADMIN_DEFAULT_LIMIT 100
#define ADMIN_MAX_LIMIT 1000
/* Response bodies are written in pieces of at most this size, one per writeable callback. */
#define ADMIN_WRITE_CHUNK (16 * 1024)
/* HTTP status codes counted separately in /metrics; others count as "other". */
#define ADMIN_STATUS_SLOTS 12

/* ---- token.c: the bearer token and small file helpers ----------------------------------------*/

/* Start-up. Reads the token from `path` (surrounding whitespace ignored), or, when the file does
 * not exist, creates its directory (0700) and the file (0600) with a random token. Returns 0 with
 * the NUL-terminated token in token[0..cap), or a negative errno after logging why. */
int admin_token_load(const char *path, char *token, size_t cap);

/* Compares in time that depends only on the expected token's length, never on where the first
 * difference is or on how long the presented token is. */
bool admin_token_equal(const char *expected, const char *given, size_t given_len);

/* Whether the value of an Authorization header is "Bearer <expected>" (the scheme's case and the
 * spaces around the token do not matter). Compares as admin_token_equal does. */
bool admin_authorization_valid(const char *expected, const char *value);

/* mkdir -p with `mode` for the directories it creates. Returns 0 or a negative errno. */
int admin_mkdir_parents(const char *dir, mode_t mode);

/* A Unix time in milliseconds as UTC "YYYY-MM-DDTHH:MM:SS.mmmZ" (buf of at least 32 bytes), the
 * one form of every time the API shows. */
void admin_time_format(int64_t unix_ms, char *buf, size_t cap);
void admin_time_now(char *buf, size_t cap);
/* admin_time_format as a JSON string, or NULL (JSON null) for 0. Returns a new reference. */
json_t *admin_time_json(int64_t unix_ms);

/* ---- registry.c: the sqlite database, written and read by its own thread ---------------------*/

struct registry;

enum registry_job_kind {
    REGISTRY_RECORD,   /* write an event (and the rows it changes) */
    REGISTRY_SESSIONS, /* read closed sessions: offset, limit */
    REGISTRY_EVENTS,   /* read events: since (or the newest), limit */
};

/* One event to record. Strings are owned by the job (NULL = none). */
struct registry_record {
    char time[32];    /* when it happened, UTC (admin_time_format) */
    const char *kind; /* static: "connect", "disconnect", "attach", ... */
    uint64_t session_id;
    char *remote;
    char *protocol;
    char *user;
    char *fs_name;
    char *mountpoint;
    char *detail;
    bool has_counters; /* disconnect / detach: final counters of the session or filesystem */
    uint64_t requests;
    uint64_t bytes_in; /* session: message bytes; filesystem: file bytes read */
    uint64_t bytes_out;
};

/* A unit of work for the registry thread. Created and submitted on the loop thread; the registry
 * owns it from a successful registry_submit until it hands it back through `done`. */
struct registry_job {
    struct registry_job *next;
    enum registry_job_kind kind;
    struct registry_record record; /* REGISTRY_RECORD */
    int64_t offset;                /* REGISTRY_SESSIONS */
    int64_t limit;                 /* REGISTRY_SESSIONS, REGISTRY_EVENTS */
    int64_t since;                 /* REGISTRY_EVENTS; -1 = the newest `limit` events */
    void *owner;                   /* queries: who waits for the answer */
    /* Set by the registry thread for queries: a new object, or NULL with error < 0. */
    json_t *result;
    int error;
};

/* Allocates a job of `kind` (zeroed). NULL when out of memory. */
struct registry_job *registry_job_new(enum registry_job_kind kind);
/* Frees the job, its strings and its result. */
void registry_job_free(struct registry_job *job);

/* Start-up (blocking): opens or creates the database at `path`, migrates its schema, closes rows
 * left active by an earlier run as "lost" and records this run. Returns 0 or a negative errno
 * after logging why. */
int registry_open(const char *path, struct registry **out);

/* Start-up: starts the registry thread. Query jobs come back through done(job, arg) on the loop
 * thread (the callee then owns the job); record jobs are freed by the registry. */
int registry_start(struct registry *reg, uv_loop_t *loop,
                   void (*done)(struct registry_job *job, void *arg), void *arg);

/* Loop thread. Queues a job; takes ownership on success. -EAGAIN when the queue is full (the bound
 * is REGISTRY_QUEUE_MAX jobs), -ESHUTDOWN for a query once closed. Never blocks on sqlite. */
int registry_submit(struct registry *reg, struct registry_job *job);

/* Loop thread, during shutdown: no more deliveries through `done`; closes the async handle. */
void registry_close(struct registry *reg);

/* After the loop: the thread writes what is queued and the `stop` event with `stop_detail`
 * (static text), and stops; query jobs that were not delivered go through `done`
 * here, on the calling thread. Then the database is closed and `reg` freed. */
void registry_free(struct registry *reg, const char *stop_detail);

/* This run's number in the runs table. */
int64_t registry_run(const struct registry *reg);

struct registry_stats {
    uint64_t queued;       /* jobs waiting now */
    uint64_t dropped;      /* records refused because the queue was full */
    uint64_t write_errors; /* failed writes */
    uint64_t written;      /* records written */
};
void registry_get_stats(struct registry *reg, struct registry_stats *stats);

/* ---- admin.c, http.c, routes.c, metrics.c ----------------------------------------------------*/

struct admin {
    uv_loop_t *loop;
    struct session_hub *hub;
    struct registry *registry;
    struct lws_protocols protocols[2];
    char token[ADMIN_TOKEN_MAX + 1];
    int64_t started_at; /* Unix time */
    bool closing;
    uint64_t responses[ADMIN_STATUS_SLOTS]; /* by status code, see admin_status_slot */
    uint64_t auth_failures;
    uint64_t refusals_logged_at; /* uv_now of the last logged bad token, 0: none yet */
    uint64_t refusals_unlogged;  /* bad tokens since then, not logged */
    uint64_t requests_refused;   /* queries refused because the registry queue was full */
};

/* One HTTP request on the admin port, from its headers to the end of its response. Owned by its
 * connection (the protocol's per-connection data points to it) until the connection closes; if a
 * registry query is then still out, the query's completion frees it. */
struct admin_req {
    struct admin *admin;
    struct lws *wsi; /* NULL once the connection closed, or when driven without one (fuzzing) */
    bool orphaned;   /* its connection closed while a registry query was out */
    int method;      /* LWSHUMETH_* */
    char path[ADMIN_PATH_MAX];
    char args[ADMIN_ARGS_MAX][ADMIN_ARG_MAX]; /* query arguments, "name=value", URL-decoded */
    size_t arg_count;
    bool args_overflow; /* more than ADMIN_ARGS_MAX arguments, or one too long */
    char remote[64];
    char *body;
    size_t body_len;
    size_t body_expected; /* Content-Length */
    bool waiting;         /* a registry query will answer it */
    json_t *live;         /* ?state=all: live sessions, merged with the history when it comes */
    int64_t live_total;   /* live sessions in all (not just on this page) */
    int64_t offset;
    int64_t limit;
    /* The response, once decided. */
    bool responded;
    unsigned status;
    const char *content_type;
    const char *allow; /* 405: the methods the path does accept */
    bool close_after;  /* send "Connection: close" and close after the response */
    char *resp;
    size_t resp_len;
    size_t resp_sent;
    bool headers_sent;
};

/* http.c */
int admin_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);

/* The headers of a request that decide how it is read; NULL when absent. */
struct admin_headers {
    const char *authorization;
    const char *content_length;
    bool chunked; /* a Transfer-Encoding header came */
};

/* The transport's three steps for one request, free of sockets so that they can be driven
 * directly (tests/fuzz/fuzz_admin.c). Start: req's admin, wsi, method, path, args and remote are
 * filled in; checks the token and the body's size, then answers, routes, or waits for a body.
 * Body: a piece of the body (-1: more than Content-Length announced: close the connection).
 * Done: the body is complete: route. Each returns 0, or -1 when the connection must close. */
int admin_request_start(struct admin_req *req, const struct admin_headers *headers);
int admin_request_body(struct admin_req *req, const void *in, size_t len);
void admin_request_body_done(struct admin_req *req);

/* Loop thread. Responses: each takes ownership of what it is given, and the request's
 * connection is asked for a writeable callback (unless it is gone). */
void admin_respond(struct admin_req *req, unsigned status, const char *content_type, char *body,
                   size_t len);
void admin_respond_json(struct admin_req *req, unsigned status, json_t *body);
void admin_respond_error(struct admin_req *req, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void admin_req_free(struct admin_req *req);
int admin_status_slot(unsigned status);
extern const unsigned admin_status_codes[ADMIN_STATUS_SLOTS];

/* routes.c */
/* Decides the response to a complete request (headers and body): answers at once, or submits a
 * registry query and sets req->waiting. */
void admin_route(struct admin_req *req);
/* A query job came back (loop thread); takes ownership of the job. */
void admin_registry_done(struct registry_job *job, void *arg);

/* admin.c */
/* Records an event that did not come from the hub (admin actions, refused tokens). */
void admin_record(struct admin *admin, const char *kind, const char *remote, uint64_t session_id,
                  const char *fs_name, const char *detail);

/* metrics.c */
/* The Prometheus text exposition; a new string (NULL when out of memory). */
char *admin_metrics_text(struct admin *admin, size_t *len);

#endif
