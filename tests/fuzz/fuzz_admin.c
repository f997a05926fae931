/* Fuzz target: the admin API's request handling (admin/http.c and admin/routes.c) without a
 * socket: routing, query parameters, the token check, Content-Length and the JSON body.
 *
 * The input is a request in HTTP's shape, the way libwebsockets hands it over already parsed:
 *
 *     METHOD PATH[?ARG&ARG...]
 *     Authorization: Bearer fuzz-token
 *     Content-Length: 17
 *
 *     {"reason": "..."}
 *
 * Only Authorization, Content-Length and Transfer-Encoding matter; the token of this run is
 * "fuzz-token". The request goes through the same three steps as on a connection (start, body,
 * body done); queries of the history go to a real registry thread and sqlite database in a
 * temporary directory, and the loop runs until they are answered. Every request must end with
 * exactly one response whose status is one the API documents and whose JSON body parses.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "admin_internal.h"
#include "fuzz.h"
#include "log.h"

#define TOKEN "fuzz-token"

static struct {
    char dir[64];
    char token_file[96];
    char db[96];
    uv_loop_t loop;
    struct session_hub *hub;
    struct admin *admin;
} fz;

static const struct {
    const char *name;
    int method;
} methods[] = {
    {"GET", LWSHUMETH_GET},         {"POST", LWSHUMETH_POST},   {"OPTIONS", LWSHUMETH_OPTIONS},
    {"PUT", LWSHUMETH_PUT},         {"PATCH", LWSHUMETH_PATCH}, {"DELETE", LWSHUMETH_DELETE},
    {"CONNECT", LWSHUMETH_CONNECT}, {"HEAD", LWSHUMETH_HEAD},
};

static void remove_files(void)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char path[128];
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", fz.db, suffixes[i]);
        unlink(path);
    }
    unlink(fz.token_file);
    rmdir(fz.dir);
}

static void hub_empty(void *arg)
{
    (void)arg;
}

static void teardown(void)
{
    admin_close(fz.admin);
    session_hub_shutdown(fz.hub, hub_empty, NULL);
    uv_run(&fz.loop, UV_RUN_DEFAULT);
    admin_free(fz.admin, "fuzzing done");
    session_hub_free(fz.hub);
    FUZZ_CHECK(uv_loop_close(&fz.loop) == 0);
    remove_files();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_LEVEL_ERROR);
    snprintf(fz.dir, sizeof(fz.dir), "/tmp/webfuse-fuzz-admin-XXXXXX");
    FUZZ_CHECK(mkdtemp(fz.dir) != NULL);
    snprintf(fz.token_file, sizeof(fz.token_file), "%s/token", fz.dir);
    snprintf(fz.db, sizeof(fz.db), "%s/history.db", fz.dir);
    FILE *f = fopen(fz.token_file, "w");
    FUZZ_CHECK(f != NULL);
    fputs(TOKEN "\n", f);
    fclose(f);
    FUZZ_CHECK(uv_loop_init(&fz.loop) == 0);
    struct session_hub_config hub_config = {
        .mount_root = fz.dir, .timeout_ms = 1000, .max_message = 1 << 20};
    FUZZ_CHECK(session_hub_new(&fz.loop, &hub_config, &fz.hub) == 0);
    struct admin_config config = {.token_file = fz.token_file, .db_path = fz.db};
    FUZZ_CHECK(admin_new(&fz.loop, fz.hub, &config, &fz.admin) == 0);
    atexit(teardown);
    return 0;
}

/* Splits off the next line (without its "\n" or "\r\n"); NULL at the end of the text. */
static char *next_line(char **text)
{
    char *line = *text;
    if (!line)
        return NULL;
    char *nl = strchr(line, '\n');
    *text = nl ? nl + 1 : NULL;
    if (nl) {
        *nl = '\0';
        if (nl > line && nl[-1] == '\r')
            nl[-1] = '\0';
    }
    return line;
}

static int method_of(const char *name)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].name, name) == 0)
            return methods[i].method;
    return -1;
}

/* The request line: method, path and query arguments, as libwebsockets would hand them over. */
static void request_line(struct admin_req *req, char *line)
{
    char *space = strchr(line, ' ');
    char *uri = space ? space + 1 : "";
    if (space)
        *space = '\0';
    req->method = method_of(line);
    char *query = strchr(uri, '?');
    if (query)
        *query++ = '\0';
    snprintf(req->path, sizeof(req->path), "%s", uri);
    for (char *arg = query; arg && *arg;) {
        char *amp = strchr(arg, '&');
        if (amp)
            *amp++ = '\0';
        if (req->arg_count == ADMIN_ARGS_MAX || strlen(arg) >= ADMIN_ARG_MAX) {
            req->args_overflow = true;
            break;
        }
        snprintf(req->args[req->arg_count++], ADMIN_ARG_MAX, "%s", arg);
        arg = amp;
    }
}

static const char *header(const char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) != 0 || line[n] != ':')
        return NULL;
    line += n + 1;
    while (*line == ' ')
        line++;
    return line;
}

/* What every response must be. */
static void check_response(const struct admin_req *req)
{
    FUZZ_CHECK(req->responded);
    FUZZ_CHECK(admin_status_slot(req->status) != ADMIN_STATUS_SLOTS - 1);
    FUZZ_CHECK(req->content_type != NULL);
    FUZZ_CHECK(req->status != 405 || req->allow != NULL);
    if (req->method == LWSHUMETH_HEAD) {
        FUZZ_CHECK(req->resp == NULL && req->close_after);
        return;
    }
    FUZZ_CHECK(req->resp != NULL && req->resp_len > 0);
    if (strcmp(req->content_type, "application/json") == 0) {
        json_error_t error;
        json_t *body = json_loadb(req->resp, req->resp_len, 0, &error);
        FUZZ_CHECK(json_is_object(body));
        FUZZ_CHECK(req->status < 400 || json_is_string(json_object_get(body, "error")));
        json_decref(body);
    }
}

/* Start, body, body done: what the connection does. Returns false when the connection would be
 * closed without a response (a body longer or shorter than announced). */
static bool serve(struct admin_req *req, const struct admin_headers *headers, const char *body,
                  size_t body_len)
{
    if (admin_request_start(req, headers) != 0)
        return false;
    if (!req->responded && req->body_expected > 0) {
        size_t half = body_len / 2;
        if (admin_request_body(req, body, half) != 0 ||
            admin_request_body(req, body + half, body_len - half) != 0)
            return false;
        if (body_len < req->body_expected)
            return false; /* the client stalls; libwebsockets' timeout closes it */
        admin_request_body_done(req);
    }
    while (req->waiting)
        uv_run(&fz.loop, UV_RUN_ONCE);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    struct admin_req *req = calloc(1, sizeof(*req));
    FUZZ_CHECK(req != NULL);
    req->admin = fz.admin;
    snprintf(req->remote, sizeof(req->remote), "fuzz");

    char *rest = text;
    request_line(req, next_line(&rest));
    struct admin_headers headers = {0};
    for (char *line; (line = next_line(&rest)) && *line;) {
        const char *value;
        if ((value = header(line, "Authorization")))
            headers.authorization = value;
        else if ((value = header(line, "Content-Length")))
            headers.content_length = value;
        else if (header(line, "Transfer-Encoding"))
            headers.chunked = true;
    }
    /* The body is the rest of the input, NULs included. */
    size_t body_len = rest ? size - (size_t)(rest - text) : 0;
    if (serve(req, &headers, rest ? rest : "", body_len))
        check_response(req);
    admin_req_free(req);
    free(text);
    return 0;
}
