/* The registry: sqlite history of sessions, filesystems and events.
 *
 * One connection, used by one thread at a time: the main thread opens, migrates and cleans up at
 * start-up (before the loop runs), then only the registry thread touches it. The loop thread
 * hands work over through a bounded queue (registry_submit) and gets query results back through
 * a uv_async_t; it never waits for sqlite. Consecutive records are written in one transaction, so
 * a burst of events costs one commit. The database is in WAL mode with synchronous=NORMAL: a power
 * cut may lose the last commits but never corrupts it.
 */
#include "admin_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"

/* Jobs waiting for the registry thread; records past this are dropped (and counted). */
#define REGISTRY_QUEUE_MAX 4096
/* History kept: older rows are deleted as new ones come. */
#define REGISTRY_KEEP_EVENTS 100000
/* Of those, refused admin requests: anyone who reaches the admin port can make them, as fast as
 * they like, and they must not push the sessions' history out. */
#define REGISTRY_KEEP_AUTH_FAILURES 1000
#define REGISTRY_KEEP_ROWS 20000
/* Records between two prunings. */
#define REGISTRY_PRUNE_EVERY 1000
/* How long sqlite waits for a lock held by another process (e.g. an operator's sqlite3 shell). */
#define REGISTRY_BUSY_TIMEOUT_MS 2000

/* Schema migrations: migrations[i] brings user_version i to i + 1, in one transaction. Append new
 * steps; never change a released one. */
static const char *const migrations[] = {
    /* 0 -> 1: the tables */
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY,"
    "  started_at TEXT NOT NULL,"
    "  stopped_at TEXT,"
    "  pid INTEGER,"
    "  version TEXT);"
    "CREATE TABLE sessions ("
    "  row INTEGER PRIMARY KEY,"
    "  run INTEGER NOT NULL,"
    "  id INTEGER NOT NULL,"
    "  remote TEXT,"
    "  protocol TEXT,"
    "  user TEXT,"
    "  connected_at TEXT NOT NULL,"
    "  disconnected_at TEXT,"
    "  state TEXT NOT NULL CHECK (state IN ('active', 'closed', 'lost')),"
    "  reason TEXT,"
    "  requests INTEGER NOT NULL DEFAULT 0,"
    "  bytes_in INTEGER NOT NULL DEFAULT 0,"
    "  bytes_out INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (run, id));"
    "CREATE TABLE filesystems ("
    "  row INTEGER PRIMARY KEY,"
    "  run INTEGER NOT NULL,"
    "  session_id INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  mountpoint TEXT,"
    "  protocol TEXT,"
    "  mounted_at TEXT NOT NULL,"
    "  detached_at TEXT,"
    "  state TEXT NOT NULL CHECK (state IN ('mounted', 'detached', 'lost')),"
    "  reason TEXT,"
    "  requests INTEGER NOT NULL DEFAULT 0,"
    "  bytes_read INTEGER NOT NULL DEFAULT 0,"
    "  bytes_written INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time TEXT NOT NULL,"
    "  run INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  session_id INTEGER,"
    "  remote TEXT,"
    "  protocol TEXT,"
    "  filesystem TEXT,"
    "  mountpoint TEXT,"
    "  detail TEXT);",
    /* 1 -> 2: what the queries and updates look rows up by */
    "CREATE INDEX sessions_by_state ON sessions (state, row);"
    "CREATE INDEX filesystems_by_session ON filesystems (run, session_id, name);"
    "CREATE INDEX filesystems_by_state ON filesystems (state);",
    /* 2 -> 3: refused admin requests are kept apart (see prune) */
    "CREATE INDEX events_by_kind ON events (kind, id);",
};
#define REGISTRY_SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum statement {
    ST_EVENT,
    ST_SESSION_OPEN,
    ST_SESSION_CLOSE,
    ST_FS_OPEN,
    ST_FS_CLOSE,
    ST_SESSIONS_COUNT,
    ST_SESSIONS_PAGE,
    ST_SESSION_FILESYSTEMS,
    ST_EVENTS_SINCE,
    ST_EVENTS_NEWEST,
    ST_COUNT
};

static const char *const statement_sql[ST_COUNT] = {
    [ST_EVENT] = "INSERT INTO events (time, run, kind, session_id, remote, protocol, filesystem,"
                 " mountpoint, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_SESSION_OPEN] = "INSERT OR IGNORE INTO sessions (run, id, remote, protocol,"
                        " connected_at, state) VALUES (?1, ?2, ?3, ?4, ?5, 'active')",
    [ST_SESSION_CLOSE] = "UPDATE sessions SET state = 'closed', disconnected_at = ?3,"
                         " reason = ?4, user = coalesce(?5, user),"
                         " requests = coalesce(?6, requests), bytes_in = coalesce(?7, bytes_in),"
                         " bytes_out = coalesce(?8, bytes_out)"
                         " WHERE run = ?1 AND id = ?2 AND state = 'active'",
    [ST_FS_OPEN] = "INSERT INTO filesystems (run, session_id, name, mountpoint, protocol,"
                   " mounted_at, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'mounted')",
    [ST_FS_CLOSE] = "UPDATE filesystems SET state = 'detached', detached_at = ?4, reason = ?5,"
                    " requests = coalesce(?6, requests), bytes_read = coalesce(?7, bytes_read),"
                    " bytes_written = coalesce(?8, bytes_written)"
                    " WHERE run = ?1 AND session_id = ?2 AND name = ?3 AND state = 'mounted'",
    [ST_SESSIONS_COUNT] = "SELECT count(*) FROM sessions WHERE state IN ('closed', 'lost')",
    [ST_SESSIONS_PAGE] = "SELECT id, run, state, remote, protocol, user,"
                         " connected_at AS connected_since, disconnected_at, reason, requests,"
                         " bytes_in, bytes_out FROM sessions"
                         " WHERE state IN ('closed', 'lost') ORDER BY row DESC LIMIT ?1 OFFSET ?2",
    [ST_SESSION_FILESYSTEMS] = "SELECT name, mountpoint, session_id AS session, protocol, state,"
                               " mounted_at AS mounted_since, detached_at, reason, requests,"
                               " bytes_read, bytes_written FROM filesystems"
                               " WHERE run = ?1 AND session_id = ?2 ORDER BY row",
    [ST_EVENTS_SINCE] = "SELECT id, time, run, kind, session_id AS session, remote, protocol,"
                        " filesystem,"
                        " mountpoint, detail FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_EVENTS_NEWEST] = "SELECT * FROM (SELECT id, time, run, kind, session_id AS session, remote,"
                         " protocol,"
                         " filesystem, mountpoint, detail FROM events ORDER BY id DESC LIMIT ?2)"
                         " ORDER BY id",
};

struct registry {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int64_t run;
    char run_started[32];

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* Guarded by lock. */
    struct registry_job *head;
    struct registry_job *tail;
    size_t count;
    bool stop;
    const char *stop_detail; /* of the run's stop event */
    struct registry_job *done_head;
    struct registry_job *done_tail;
    bool deliver; /* the async handle may be signalled */

    uv_async_t async;
    bool async_started;
    bool closed; /* registry_close ran: submissions are refused */
    void (*done)(struct registry_job *job, void *arg);
    void *done_arg;

    /* Loop thread only. */
    uint64_t dropped;
    /* Registry thread writes, loop thread reads. */
    atomic_uint_fast64_t write_errors;
    atomic_uint_fast64_t written;
    atomic_uint_fast64_t queued;
    /* Registry thread only. */
    unsigned since_prune;
};

/* ---- jobs -------------------------------------------------------------------------------------
 */

struct registry_job *registry_job_new(enum registry_job_kind kind)
{
    struct registry_job *job = calloc(1, sizeof(*job));
    if (job)
        job->kind = kind;
    return job;
}

void registry_job_free(struct registry_job *job)
{
    if (!job)
        return;
    struct registry_record *r = &job->record;
    free(r->remote);
    free(r->protocol);
    free(r->user);
    free(r->fs_name);
    free(r->mountpoint);
    free(r->detail);
    if (job->result)
        json_decref(job->result);
    free(job);
}

/* ---- start-up: open, migrate, clean up --------------------------------------------------------
 */

static int exec_sql(sqlite3 *db, const char *sql)
{
    char *message = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &message);
    if (rc != SQLITE_OK) {
        log_error("registry: %s", message ? message : sqlite3_errstr(rc));
        sqlite3_free(message);
    }
    return rc;
}

static int pragma_int(sqlite3 *db, const char *sql, int *value)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int migrate(sqlite3 *db, const char *path)
{
    int version = 0;
    int rc = pragma_int(db, "PRAGMA user_version", &version);
    if (rc != SQLITE_OK)
        return rc;
    if (version > REGISTRY_SCHEMA_VERSION) {
        log_error("registry: %s has schema version %d, newer than this webfused knows (%d)", path,
                  version, REGISTRY_SCHEMA_VERSION);
        return SQLITE_MISMATCH;
    }
    while (version < REGISTRY_SCHEMA_VERSION) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", version + 1);
        rc = exec_sql(db, "BEGIN IMMEDIATE");
        if (rc == SQLITE_OK)
            rc = exec_sql(db, migrations[version]);
        if (rc == SQLITE_OK)
            rc = exec_sql(db, bump);
        if (rc == SQLITE_OK)
            rc = exec_sql(db, "COMMIT");
        if (rc != SQLITE_OK) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            log_error("registry: migrating %s from schema version %d failed", path, version);
            return rc;
        }
        log_info("registry: %s migrated to schema version %d", path, version + 1);
        version++;
    }
    return SQLITE_OK;
}

static int configure(sqlite3 *db)
{
    sqlite3_busy_timeout(db, REGISTRY_BUSY_TIMEOUT_MS);
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    bool wal = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return rc;
    if (!wal)
        log_warn("registry: the database is not in WAL mode (the file system may not support it)");
    return exec_sql(db, "PRAGMA synchronous = NORMAL");
}

/* Rows an earlier run left active were not closed: that run ended without its shutdown (a crash,
 * kill -9, power loss). Marks them lost, with an event each, and records this run. */
static int start_run(struct registry *reg)
{
    sqlite3 *db = reg->db;
    char sql[1024];
    int rc = exec_sql(db, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK)
        return rc;
    snprintf(sql, sizeof(sql),
             "INSERT INTO runs (started_at, pid, version) VALUES ('%s', %ld, '%s')",
             reg->run_started, (long)getpid(), WEBFUSE_VERSION);
    rc = exec_sql(db, sql);
    if (rc != SQLITE_OK)
        goto fail;
    reg->run = sqlite3_last_insert_rowid(db);

    snprintf(sql, sizeof(sql),
             "INSERT INTO events (time, run, kind, session_id, remote, protocol, detail)"
             " SELECT '%s', %lld, 'lost', id, remote, protocol,"
             " 'session of run ' || run || ' was active when that gateway stopped unexpectedly'"
             " FROM sessions WHERE state = 'active' ORDER BY row",
             reg->run_started, (long long)reg->run);
    rc = exec_sql(db, sql);
    if (rc != SQLITE_OK)
        goto fail;
    int lost_sessions = sqlite3_changes(db);
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (time, run, kind, session_id, protocol, filesystem, mountpoint,"
             " detail) SELECT '%s', %lld, 'lost', session_id, protocol, name, mountpoint,"
             " 'filesystem of run ' || run || ' was mounted when that gateway stopped"
             " unexpectedly' FROM filesystems WHERE state = 'mounted' ORDER BY row",
             reg->run_started, (long long)reg->run);
    rc = exec_sql(db, sql);
    if (rc != SQLITE_OK)
        goto fail;
    int lost_filesystems = sqlite3_changes(db);
    snprintf(sql, sizeof(sql),
             "UPDATE sessions SET state = 'lost', disconnected_at = '%s',"
             " reason = 'gateway stopped unexpectedly' WHERE state = 'active';"
             "UPDATE filesystems SET state = 'lost', detached_at = '%s',"
             " reason = 'gateway stopped unexpectedly' WHERE state = 'mounted';",
             reg->run_started, reg->run_started);
    rc = exec_sql(db, sql);
    if (rc != SQLITE_OK)
        goto fail;
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (time, run, kind, detail) VALUES ('%s', %lld, 'start',"
             " 'webfused %s started (pid %ld); %d session(s) and %d filesystem(s) of an earlier"
             " run marked lost')",
             reg->run_started, (long long)reg->run, WEBFUSE_VERSION, (long)getpid(), lost_sessions,
             lost_filesystems);
    rc = exec_sql(db, sql);
    if (rc != SQLITE_OK)
        goto fail;
    rc = exec_sql(db, "COMMIT");
    if (rc != SQLITE_OK)
        goto fail;
    if (lost_sessions || lost_filesystems)
        log_warn("registry: %d session(s) and %d filesystem(s) left active by an earlier run "
                 "marked lost",
                 lost_sessions, lost_filesystems);
    return SQLITE_OK;
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void registry_destroy(struct registry *reg)
{
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(reg->st[i]);
    if (reg->db)
        sqlite3_close(reg->db);
    pthread_mutex_destroy(&reg->lock);
    pthread_cond_destroy(&reg->wake);
    free(reg);
}

/* Opens, configures and migrates; SQLITE_NOTADB / SQLITE_CORRUPT tell the caller to move the file
 * aside. */
static int open_db(struct registry *reg, const char *path)
{
    int rc = sqlite3_open_v2(
        path, &reg->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = configure(reg->db);
    if (rc == SQLITE_OK)
        rc = migrate(reg->db, path);
    if (rc == SQLITE_OK)
        rc = start_run(reg);
    if (rc == SQLITE_OK) {
        for (int i = 0; i < ST_COUNT && rc == SQLITE_OK; i++)
            rc = sqlite3_prepare_v3(reg->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &reg->st[i], NULL);
    }
    if (rc != SQLITE_OK) {
        log_error("registry: cannot use %s: %s", path,
                  reg->db ? sqlite3_errmsg(reg->db) : sqlite3_errstr(rc));
        for (int i = 0; i < ST_COUNT; i++) {
            sqlite3_finalize(reg->st[i]);
            reg->st[i] = NULL;
        }
        sqlite3_close(reg->db);
        reg->db = NULL;
    }
    return rc;
}

/* A file that is not a database (or a damaged one) would keep the gateway from starting: keep it
 * for inspection under another name and start a new one. */
static int move_aside(const char *path)
{
    char aside[PATH_MAX];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    if (snprintf(aside, sizeof(aside), "%s.corrupt-%s", path, stamp) >= (int)sizeof(aside))
        return -ENAMETOOLONG;
    if (rename(path, aside) != 0)
        return -errno;
    for (const char *suffix = "-wal"; suffix; suffix = suffix[1] == 'w' ? "-shm" : NULL) {
        char side[PATH_MAX];
        snprintf(side, sizeof(side), "%s%s", path, suffix);
        unlink(side);
    }
    log_warn("registry: %s was damaged or not a database; kept as %s, starting a new one", path,
             aside);
    return 0;
}

int registry_open(const char *path, struct registry **out)
{
    struct registry *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return -ENOMEM;
    pthread_mutex_init(&reg->lock, NULL);
    pthread_cond_init(&reg->wake, NULL);
    atomic_init(&reg->write_errors, 0);
    atomic_init(&reg->written, 0);
    atomic_init(&reg->queued, 0);
    admin_time_now(reg->run_started, sizeof(reg->run_started));

    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        int rc = admin_mkdir_parents(dir, 0700);
        if (rc != 0) {
            log_error("registry: cannot create the directory of %s: %s", path, strerror(-rc));
            registry_destroy(reg);
            return rc;
        }
    }
    /* History names peers and users: readable by root only. The -wal and -shm files sqlite
     * creates take the database file's mode. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0)
        close(fd);
    int rc = open_db(reg, path);
    if ((rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) && move_aside(path) == 0)
        rc = open_db(reg, path);
    if (rc != SQLITE_OK) {
        registry_destroy(reg);
        return rc == SQLITE_CANTOPEN || rc == SQLITE_PERM ? -EACCES : -EIO;
    }
    log_info("registry: %s, run %lld", path, (long long)reg->run);
    *out = reg;
    return 0;
}

int64_t registry_run(const struct registry *reg)
{
    return reg->run;
}

/* ---- the registry thread: writing -------------------------------------------------------------
 */

static void bind_text(sqlite3_stmt *st, int index, const char *text)
{
    if (text)
        sqlite3_bind_text(st, index, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, index);
}

static void bind_counter(sqlite3_stmt *st, int index, bool present, uint64_t value)
{
    if (present)
        sqlite3_bind_int64(st, index, value > INT64_MAX ? INT64_MAX : (int64_t)value);
    else
        sqlite3_bind_null(st, index);
}

/* Runs a bound statement that returns no rows and resets it. */
static int run_statement(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void write_failed(struct registry *reg, const char *what)
{
    uint64_t n = atomic_fetch_add(&reg->write_errors, 1) + 1;
    /* A full disk fails every write: say so, but not thousands of times. */
    if (n <= 10 || n % 1000 == 0)
        log_warn("registry: writing %s failed: %s (%llu write errors so far)", what,
                 sqlite3_errmsg(reg->db), (unsigned long long)n);
}

static int write_rows(struct registry *reg, const struct registry_record *r)
{
    sqlite3_stmt *st;
    int64_t sid = (int64_t)r->session_id;
    if (strcmp(r->kind, "connect") == 0) {
        st = reg->st[ST_SESSION_OPEN];
        sqlite3_bind_int64(st, 1, reg->run);
        sqlite3_bind_int64(st, 2, sid);
        bind_text(st, 3, r->remote);
        bind_text(st, 4, r->protocol);
        bind_text(st, 5, r->time);
        return run_statement(st);
    }
    if (strcmp(r->kind, "disconnect") == 0) {
        st = reg->st[ST_SESSION_CLOSE];
        sqlite3_bind_int64(st, 1, reg->run);
        sqlite3_bind_int64(st, 2, sid);
        bind_text(st, 3, r->time);
        bind_text(st, 4, r->detail);
        bind_text(st, 5, r->user);
        bind_counter(st, 6, r->has_counters, r->requests);
        bind_counter(st, 7, r->has_counters, r->bytes_in);
        bind_counter(st, 8, r->has_counters, r->bytes_out);
        return run_statement(st);
    }
    if (strcmp(r->kind, "attach") == 0 && r->fs_name) {
        st = reg->st[ST_FS_OPEN];
        sqlite3_bind_int64(st, 1, reg->run);
        sqlite3_bind_int64(st, 2, sid);
        bind_text(st, 3, r->fs_name);
        bind_text(st, 4, r->mountpoint);
        bind_text(st, 5, r->protocol);
        bind_text(st, 6, r->time);
        return run_statement(st);
    }
    if (strcmp(r->kind, "detach") == 0 && r->fs_name) {
        st = reg->st[ST_FS_CLOSE];
        sqlite3_bind_int64(st, 1, reg->run);
        sqlite3_bind_int64(st, 2, sid);
        bind_text(st, 3, r->fs_name);
        bind_text(st, 4, r->time);
        bind_text(st, 5, r->detail);
        bind_counter(st, 6, r->has_counters, r->requests);
        bind_counter(st, 7, r->has_counters, r->bytes_in);
        bind_counter(st, 8, r->has_counters, r->bytes_out);
        return run_statement(st);
    }
    return SQLITE_OK;
}

static void write_record(struct registry *reg, const struct registry_record *r)
{
    if (write_rows(reg, r) != SQLITE_OK) {
        write_failed(reg, r->kind);
        return;
    }
    sqlite3_stmt *st = reg->st[ST_EVENT];
    bind_text(st, 1, r->time);
    sqlite3_bind_int64(st, 2, reg->run);
    bind_text(st, 3, r->kind);
    if (r->session_id)
        sqlite3_bind_int64(st, 4, (int64_t)r->session_id);
    else
        sqlite3_bind_null(st, 4);
    bind_text(st, 5, r->remote);
    bind_text(st, 6, r->protocol);
    bind_text(st, 7, r->fs_name);
    bind_text(st, 8, r->mountpoint);
    bind_text(st, 9, r->detail);
    if (run_statement(st) != SQLITE_OK) {
        write_failed(reg, "an event");
        return;
    }
    atomic_fetch_add(&reg->written, 1);
    reg->since_prune++;
}

/* Keeps the database bounded: drops the oldest events and closed rows past the limits. Events
 * are counted, not numbered: ids of pruned refusals leave gaps. */
static void prune(struct registry *reg)
{
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "DELETE FROM events WHERE kind = 'admin_auth_failed' AND id < (SELECT id FROM events"
             " WHERE kind = 'admin_auth_failed' ORDER BY id DESC LIMIT 1 OFFSET %d);"
             "DELETE FROM events WHERE id < (SELECT id FROM events ORDER BY id DESC LIMIT 1"
             " OFFSET %d);"
             "DELETE FROM sessions WHERE state != 'active' AND row <= (SELECT max(row) FROM"
             " sessions) - %d;"
             "DELETE FROM filesystems WHERE state != 'mounted' AND row <= (SELECT max(row) FROM"
             " filesystems) - %d;",
             REGISTRY_KEEP_AUTH_FAILURES - 1, REGISTRY_KEEP_EVENTS - 1, REGISTRY_KEEP_ROWS,
             REGISTRY_KEEP_ROWS);
    if (sqlite3_exec(reg->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        write_failed(reg, "the pruning of old rows");
    reg->since_prune = 0;
}

static bool begin(struct registry *reg)
{
    if (sqlite3_exec(reg->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK)
        return true;
    write_failed(reg, "a transaction start");
    return false;
}

static void commit(struct registry *reg)
{
    if (sqlite3_exec(reg->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return;
    write_failed(reg, "a commit");
    sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
}

/* At the end of a run that was not killed: what is still active (sessions the shutdown could not
 * close in time) is closed now, so that the next start does not take it for lost. */
static void finish_run(struct registry *reg, const char *stop_detail)
{
    char now[32];
    char sql[1024];
    admin_time_now(now, sizeof(now));
    sqlite3_snprintf(sizeof(sql), sql,
                     "BEGIN;"
                     "UPDATE sessions SET state = 'closed', disconnected_at = '%s',"
                     " reason = 'gateway stopped' WHERE run = %lld AND state = 'active';"
                     "UPDATE filesystems SET state = 'detached', detached_at = '%s',"
                     " reason = 'gateway stopped' WHERE run = %lld AND state = 'mounted';"
                     "UPDATE runs SET stopped_at = '%s' WHERE id = %lld;"
                     "INSERT INTO events (time, run, kind, detail) VALUES ('%s', %lld, 'stop', %Q);"
                     "COMMIT;",
                     now, (long long)reg->run, now, (long long)reg->run, now, (long long)reg->run,
                     now, (long long)reg->run, stop_detail);
    if (sqlite3_exec(reg->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        write_failed(reg, "the end of this run");
        sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

/* ---- the registry thread: reading -------------------------------------------------------------
 */

static json_t *column_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, i));
    case SQLITE_TEXT:
        return json_stringn((const char *)sqlite3_column_text(st, i),
                            (size_t)sqlite3_column_bytes(st, i));
    default:
        return json_null();
    }
}

/* One row as an object keyed by the statement's column names (the SQL names them for the API). */
static json_t *row_json(sqlite3_stmt *st)
{
    json_t *row = json_object();
    int n = sqlite3_column_count(st);
    for (int i = 0; row && i < n; i++)
        json_object_set_new(row, sqlite3_column_name(st, i), column_json(st, i));
    return row;
}

static int query_sessions(struct registry *reg, struct registry_job *job)
{
    sqlite3_stmt *count = reg->st[ST_SESSIONS_COUNT];
    sqlite3_stmt *page = reg->st[ST_SESSIONS_PAGE];
    sqlite3_stmt *fs = reg->st[ST_SESSION_FILESYSTEMS];
    int64_t total = 0;
    int rc = sqlite3_step(count);
    if (rc == SQLITE_ROW)
        total = sqlite3_column_int64(count, 0);
    sqlite3_reset(count);
    if (rc != SQLITE_ROW)
        return -EIO;

    json_t *rows = json_array();
    sqlite3_bind_int64(page, 1, job->limit);
    sqlite3_bind_int64(page, 2, job->offset);
    while (rows && (rc = sqlite3_step(page)) == SQLITE_ROW) {
        json_t *row = row_json(page);
        json_t *filesystems = json_array();
        sqlite3_bind_int64(fs, 1, sqlite3_column_int64(page, 1));
        sqlite3_bind_int64(fs, 2, sqlite3_column_int64(page, 0));
        while (sqlite3_step(fs) == SQLITE_ROW)
            json_array_append_new(filesystems, row_json(fs));
        sqlite3_reset(fs);
        json_object_set_new(row, "filesystems", filesystems);
        json_array_append_new(rows, row);
    }
    sqlite3_reset(page);
    sqlite3_clear_bindings(page);
    if (!rows || rc != SQLITE_DONE) {
        json_decref(rows);
        return -EIO;
    }
    job->result = json_pack("{s:o, s:I}", "rows", rows, "total", (json_int_t)total);
    return job->result ? 0 : -ENOMEM;
}

static int query_events(struct registry *reg, struct registry_job *job)
{
    sqlite3_stmt *st = reg->st[job->since >= 0 ? ST_EVENTS_SINCE : ST_EVENTS_NEWEST];
    sqlite3_bind_int64(st, 1, job->since);
    sqlite3_bind_int64(st, 2, job->limit);
    json_t *events = json_array();
    int64_t next = job->since > 0 ? job->since : 0;
    int rc;
    while (events && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        next = sqlite3_column_int64(st, 0);
        json_array_append_new(events, row_json(st));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (!events || rc != SQLITE_DONE) {
        json_decref(events);
        return -EIO;
    }
    job->result = json_pack("{s:o, s:I}", "events", events, "next", (json_int_t)next);
    return job->result ? 0 : -ENOMEM;
}

/* Hands a query's job back to the loop thread. */
static void deliver(struct registry *reg, struct registry_job *job)
{
    pthread_mutex_lock(&reg->lock);
    job->next = NULL;
    bool was_empty = !reg->done_head;
    if (reg->done_tail)
        reg->done_tail->next = job;
    else
        reg->done_head = job;
    reg->done_tail = job;
    /* uv_async_send only while the handle is open: registry_close clears `deliver` under the same
     * lock, so the handle is never signalled while or after it closes. */
    if (was_empty && reg->deliver)
        uv_async_send(&reg->async);
    pthread_mutex_unlock(&reg->lock);
}

static void process(struct registry *reg, struct registry_job *jobs)
{
    bool in_transaction = false;
    while (jobs) {
        struct registry_job *job = jobs;
        jobs = job->next;
        if (job->kind == REGISTRY_RECORD) {
            if (!in_transaction)
                in_transaction = begin(reg);
            write_record(reg, &job->record);
            registry_job_free(job);
            continue;
        }
        /* Reads see every record queued before them. */
        if (in_transaction) {
            commit(reg);
            in_transaction = false;
        }
        job->error =
            job->kind == REGISTRY_SESSIONS ? query_sessions(reg, job) : query_events(reg, job);
        deliver(reg, job);
    }
    if (reg->since_prune >= REGISTRY_PRUNE_EVERY) {
        if (!in_transaction)
            in_transaction = begin(reg);
        prune(reg);
    }
    if (in_transaction)
        commit(reg);
}

static void *registry_main(void *arg)
{
    struct registry *reg = arg;
    for (;;) {
        pthread_mutex_lock(&reg->lock);
        while (!reg->head && !reg->stop)
            pthread_cond_wait(&reg->wake, &reg->lock);
        struct registry_job *jobs = reg->head;
        reg->head = reg->tail = NULL;
        reg->count = 0;
        bool stop = reg->stop;
        const char *stop_detail = reg->stop_detail;
        pthread_mutex_unlock(&reg->lock);
        atomic_store(&reg->queued, 0);
        if (!jobs && stop) {
            finish_run(reg, stop_detail);
            break;
        }
        process(reg, jobs);
    }
    return NULL;
}

/* ---- the loop side ----------------------------------------------------------------------------
 */

static void on_async(uv_async_t *async)
{
    struct registry *reg = container_of(async, struct registry, async);
    pthread_mutex_lock(&reg->lock);
    struct registry_job *jobs = reg->done_head;
    reg->done_head = reg->done_tail = NULL;
    pthread_mutex_unlock(&reg->lock);
    while (jobs) {
        struct registry_job *job = jobs;
        jobs = job->next;
        job->next = NULL;
        reg->done(job, reg->done_arg);
    }
}

int registry_start(struct registry *reg, uv_loop_t *loop,
                   void (*done)(struct registry_job *job, void *arg), void *arg)
{
    reg->done = done;
    reg->done_arg = arg;
    int rc = uv_async_init(loop, &reg->async, on_async);
    if (rc != 0)
        return rc;
    reg->async_started = true;
    reg->deliver = true;
    rc = pthread_create(&reg->thread, NULL, registry_main, reg);
    if (rc != 0) {
        log_error("registry: cannot start its thread: %s", strerror(rc));
        return -rc;
    }
    reg->thread_started = true;
    return 0;
}

int registry_submit(struct registry *reg, struct registry_job *job)
{
    /* Records are still taken while the gateway shuts down: the last disconnects belong in the
     * history. Queries could no longer be answered. */
    if (reg->closed && job->kind != REGISTRY_RECORD)
        return -ESHUTDOWN;
    pthread_mutex_lock(&reg->lock);
    if (reg->count >= REGISTRY_QUEUE_MAX) {
        pthread_mutex_unlock(&reg->lock);
        if (job->kind == REGISTRY_RECORD && reg->dropped++ % 1000 == 0)
            log_warn("registry: queue full (%d jobs): event \"%s\" not recorded (%llu dropped)",
                     REGISTRY_QUEUE_MAX, job->record.kind, (unsigned long long)reg->dropped);
        return -EAGAIN;
    }
    job->next = NULL;
    if (reg->tail)
        reg->tail->next = job;
    else
        reg->head = job;
    reg->tail = job;
    reg->count++;
    atomic_store(&reg->queued, reg->count);
    pthread_cond_signal(&reg->wake);
    pthread_mutex_unlock(&reg->lock);
    return 0;
}

void registry_close(struct registry *reg)
{
    if (reg->closed)
        return;
    reg->closed = true;
    pthread_mutex_lock(&reg->lock);
    reg->deliver = false;
    pthread_mutex_unlock(&reg->lock);
    if (reg->async_started)
        uv_close((uv_handle_t *)&reg->async, NULL);
}

void registry_free(struct registry *reg, const char *stop_detail)
{
    if (!reg)
        return;
    reg->closed = true;
    if (reg->thread_started) {
        pthread_mutex_lock(&reg->lock);
        reg->stop = true;
        reg->stop_detail = stop_detail;
        reg->deliver = false;
        pthread_cond_signal(&reg->wake);
        pthread_mutex_unlock(&reg->lock);
        pthread_join(reg->thread, NULL);
    }
    /* Nothing else runs now: hand back the answers nobody picked up. */
    struct registry_job *jobs = reg->done_head;
    reg->done_head = reg->done_tail = NULL;
    while (jobs) {
        struct registry_job *job = jobs;
        jobs = job->next;
        job->next = NULL;
        reg->done(job, reg->done_arg);
    }
    registry_destroy(reg);
}

void registry_get_stats(struct registry *reg, struct registry_stats *stats)
{
    stats->queued = atomic_load(&reg->queued);
    stats->dropped = reg->dropped;
    stats->write_errors = atomic_load(&reg->write_errors);
    stats->written = atomic_load(&reg->written);
}
