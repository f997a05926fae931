/* GET /metrics: the Prometheus text exposition format (version 0.0.4) of the hub's counters and
 * the admin's own. Loop thread. */
#include "admin_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* A growing string; on allocation failure it stays failed and the result is NULL. */
struct text {
    FILE *f;
    char *buf;
    size_t len;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
    if (!t->f)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(t->f, fmt, ap);
    va_end(ap);
}

static void header(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void single(struct text *t, const char *name, const char *type, const char *help,
                   unsigned long long value)
{
    header(t, name, type, help);
    put(t, "%s %llu\n", name, value);
}

static void per_operation(struct text *t, const char *name, const char *help,
                          const uint64_t counts[SESSION_PROTOCOLS][SESSION_OP_KINDS])
{
    header(t, name, "counter", help);
    for (int p = 0; p < SESSION_PROTOCOLS; p++)
        for (int k = 0; k < SESSION_OP_KINDS; k++)
            put(t, "%s{protocol=\"%s\",op=\"%s\"} %llu\n", name, session_protocol_name(p),
                session_op_name((enum fusebridge_kind)k), (unsigned long long)counts[p][k]);
}

static void latency(struct text *t, const struct session_metrics *m)
{
    const char *name = "webfuse_request_duration_seconds";
    header(t, name, "histogram",
           "Time from sending a request to the provider to its answer (or failure).");
    unsigned long long cumulative = 0;
    for (int i = 0; i < SESSION_LATENCY_BUCKETS; i++) {
        cumulative += m->latency_count[i];
        if (i == SESSION_LATENCY_BUCKETS - 1)
            put(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, cumulative);
        else
            put(t, "%s_bucket{le=\"%g\"} %llu\n", name, session_latency_bounds[i], cumulative);
    }
    put(t, "%s_sum %.9f\n", name, m->latency_sum);
    put(t, "%s_count %llu\n", name, cumulative);
}

char *admin_metrics_text(struct admin *admin, size_t *len)
{
    struct text t = {0};
    t.f = open_memstream(&t.buf, &t.len);
    if (!t.f)
        return NULL;
    const struct session_metrics *m = session_hub_metrics(admin->hub);
    struct registry_stats reg;
    registry_get_stats(admin->registry, &reg);

    single(&t, "webfuse_sessions_active", "gauge", "Provider sessions connected now.",
           session_hub_count(admin->hub));
    single(&t, "webfuse_sessions_total", "counter", "Provider sessions accepted since start-up.",
           m->sessions_total);
    single(&t, "webfuse_filesystems_mounted", "gauge", "Filesystems mounted now.",
           session_hub_fs_count(admin->hub));
    per_operation(&t, "webfuse_requests_total",
                  "Requests to providers answered or failed, by protocol and operation.",
                  m->requests);
    per_operation(&t, "webfuse_request_errors_total",
                  "Requests to providers that failed (error answer, timeout, disconnect).",
                  m->errors);
    latency(&t, m);
    single(&t, "webfuse_bytes_read_total", "counter", "File bytes read through the mounts.",
           m->bytes_read);
    single(&t, "webfuse_bytes_written_total", "counter", "File bytes written through the mounts.",
           m->bytes_written);
    single(&t, "webfuse_protocol_errors_total", "counter",
           "Malformed messages and other protocol errors of providers.", m->protocol_errors);
    single(&t, "webfuse_read_in_flight_bytes", "gauge",
           "Bytes of reads sent to providers and not answered yet, for at most --slow-read "
           "(bounded by the read budget).",
           session_hub_reads_in_flight(admin->hub));
    single(&t, "webfuse_read_waiting_sessions", "gauge",
           "Sessions whose next read waits for room among the reads in flight.",
           session_hub_reads_waiting(admin->hub));

    header(&t, "webfuse_admin_responses_total", "counter", "Admin API responses by status code.");
    for (int i = 0; i < ADMIN_STATUS_SLOTS; i++) {
        if (admin_status_codes[i])
            put(&t, "webfuse_admin_responses_total{code=\"%u\"} %llu\n", admin_status_codes[i],
                (unsigned long long)admin->responses[i]);
        else
            put(&t, "webfuse_admin_responses_total{code=\"other\"} %llu\n",
                (unsigned long long)admin->responses[i]);
    }
    single(&t, "webfuse_admin_auth_failures_total", "counter",
           "Admin API requests refused for a missing or wrong token.", admin->auth_failures);
    single(&t, "webfuse_registry_queue_length", "gauge", "Jobs waiting for the registry thread.",
           reg.queued);
    single(&t, "webfuse_registry_records_total", "counter", "Events written to the registry.",
           reg.written);
    single(&t, "webfuse_registry_dropped_total", "counter",
           "Events not recorded because the registry queue was full.", reg.dropped);
    single(&t, "webfuse_registry_write_errors_total", "counter", "Failed registry writes.",
           reg.write_errors);
    single(&t, "webfuse_start_time_seconds", "gauge", "When webfused started, Unix time.",
           (unsigned long long)admin->started_at);

    bool failed = ferror(t.f) != 0;
    if (fclose(t.f) != 0 || failed) {
        free(t.buf);
        return NULL;
    }
    *len = t.len;
    return t.buf;
}
