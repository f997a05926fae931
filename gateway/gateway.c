/* webfused's process: one libuv loop, libwebsockets running on it as a foreign loop, the session
 * hub for providers, signals and the orderly shutdown. */
#include "gateway_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <unistd.h>
#include <sys/file.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <libwebsockets.h>
#include <uv.h>

#include "admin.h"
#include "auth.h"
#include "fusebridge.h"
#include "session.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* How long providers get to close and mounts to go before the loop is stopped anyway. */
#define GATEWAY_SHUTDOWN_GRACE_MS 5000
#define FUSECTL_DIR "/sys/fs/fuse/connections"
#define FUSECTL_SUPER_MAGIC 0x65735543
/* libwebsockets builds a file's path as "<docroot>/<uri>" in a 256-byte buffer and serves
 * whatever that truncates to: keep the root short enough that real file names fit. */
#define GATEWAY_DOCROOT_MAX 160

struct gateway {
    uv_loop_t loop;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_signal_t sighup;
    uv_timer_t grace;
    struct lws_context *lws;
    struct session_hub *hub;
    struct admin *admin; /* NULL with --no-admin */
    char docroot[PATH_MAX];
    struct lws_http_mount docroot_mount; /* libwebsockets keeps a pointer for the vhost's life */
    int locks[2];              /* held for the process's life: the mount root, the history */
    size_t made_mount_root;    /* see mkdir_parents */
    char mount_root[PATH_MAX]; /* resolved, as the mount table shows it */
    /* Each --filesystem DIR as the mount table shows it (NULL without one), and what of it the
     * start made (see mkdir_parents). */
    char *fixed_dirs[GATEWAY_MAX_FILESYSTEMS];
    size_t made_fixed[GATEWAY_MAX_FILESYSTEMS];
    const struct gateway_options *opt;
    struct auth_users *users; /* from --auth-file; NULL: anyone may attach */
    /* SIGHUP re-reads the users file on the thread pool; one read at a time. */
    uv_work_t reload;
    struct auth_users *reloaded;
    int reload_rc;
    char reload_error[512];
    bool reloading;
    bool reload_again; /* another SIGHUP came while reading */
    bool stopping;
    bool forced; /* the grace period ran out */
};

/* ---- start-up (before the loop runs, so blocking calls are fine) ------------------------------
 */

static int mkdir_one(const char *dir, size_t len, size_t *made_from)
{
    if (mkdir(dir, 0755) == 0) {
        if (made_from && *made_from == 0)
            *made_from = len;
        return 0;
    }
    return errno == EEXIST ? 0 : -errno;
}

/* Sets *made_from (when not NULL) to the length of the first prefix of path it created, so
 * mkdir_undo can remove what it made. */
static int mkdir_parents(const char *path, size_t *made_from)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir_one(buf, (size_t)(p - buf), made_from);
        if (rc != 0)
            return rc;
        *p = '/';
    }
    return mkdir_one(buf, strlen(buf), made_from);
}

/* Removes the directories mkdir_parents made for path, deepest first (only while empty; the
 * deepest may be missing when making them stopped half-way). */
static void mkdir_undo(const char *path, size_t made_from)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    while (made_from > 0 && strlen(buf) >= made_from && (rmdir(buf) == 0 || errno == ENOENT)) {
        char *slash = strrchr(buf, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
}

/* Whether `path` is where a filesystem of ours mounts by its name: a child of the (resolved)
 * mount root. Not deeper: a webfused whose mount root below ours owns what is mounted there. */
static bool below_root(const struct gateway *gw, const char *path)
{
    size_t root_len = strlen(gw->mount_root);
    return strncmp(path, gw->mount_root, root_len) == 0 && path[root_len] == '/' &&
           path[root_len + 1] && !strchr(path + root_len + 1, '/');
}

static bool fixed_dir(const struct gateway *gw, const char *path)
{
    for (size_t i = 0; i < gw->opt->filesystem_count; i++)
        if (gw->fixed_dirs[i] && strcmp(gw->fixed_dirs[i], path) == 0)
            return true;
    return false;
}

static void stale_visit(const struct fusebridge_mountinfo *entry, void *arg)
{
    const struct gateway *gw = arg;
    bool fixed = fixed_dir(gw, entry->path);
    if (strcmp(entry->fstype, "fuse.webfuse") != 0 || !(fixed || below_root(gw, entry->path)))
        return;
    if (umount2(entry->path, MNT_DETACH) == 0) {
        log_warn("detached stale mount %s", entry->path);
        if (!fixed) /* a --filesystem DIR is configuration: it stays */
            rmdir(entry->path);
    } else {
        log_warn("cannot detach stale mount %s: %s", entry->path, strerror(errno));
    }
}

/* Mounts of ours left by a crashed daemon would block new mounts of the same names and answer
 * every access with ENOTCONN: detach them. */
static void unmount_stale(const struct gateway *gw)
{
    int rc = fusebridge_mountinfo_each(stale_visit, (void *)gw);
    if (rc != 0)
        log_warn("cannot look for stale mounts: /proc/self/mountinfo: %s", strerror(-rc));
}

static void lws_log_line(int level, const char *line)
{
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    /* A port that cannot be opened gets a line of ours saying what to do; libwebsockets' own
     * ("ERROR on binding fd 13 to port 8081 (-1 98)", "init server failed") would only come
     * before it. */
    bool said_by_us = strncmp(line, "ERROR on binding", 16) == 0 ||
                      strncmp(line, "init server failed", 18) == 0;
    enum log_level ours = level == LLL_ERR && !said_by_us ? LOG_LEVEL_ERROR : LOG_LEVEL_DEBUG;
    if (ours <= log_get_level())
        log_write(ours, "libwebsockets: %.*s", (int)len, line);
}

/* Types libwebsockets 4.1 does not know by itself (it refuses to serve a file without one).
 * Browsers load ES modules only when they come as JavaScript. */
static const struct lws_protocol_vhost_options mime_other = {NULL, NULL, "*",
                                                             "application/octet-stream"};
static const struct lws_protocol_vhost_options mime_mjs = {&mime_other, NULL, ".mjs",
                                                           "text/javascript"};

/* Static files at / of the provider port. Websocket upgrades are taken before mounts are looked
 * at, so providers connect to any path as before; the request parser of libwebsockets resolves
 * "." and ".." segments (also percent-encoded ones) before the path reaches the mount, so no
 * request names a file outside the root. */
static int docroot_prepare(struct gateway *gw, const char *dir)
{
    if (!realpath(dir, gw->docroot)) {
        int rc = -errno;
        log_error("cannot resolve --docroot %s: %s", dir, strerror(-rc));
        return rc;
    }
    if (strlen(gw->docroot) > GATEWAY_DOCROOT_MAX) {
        log_error("--docroot %s is longer than %d characters", gw->docroot, GATEWAY_DOCROOT_MAX);
        return -ENAMETOOLONG;
    }
    gw->docroot_mount = (struct lws_http_mount){
        .mountpoint = "/",
        .mountpoint_len = 1,
        .origin = gw->docroot,
        .def = "index.html",
        .origin_protocol = LWSMPRO_FILE,
        .extra_mimetypes = &mime_mjs,
    };
    return 0;
}

/* TLS on a vhost when a certificate is configured. A plain client on such a port fails its
 * handshake and is dropped; nothing else notices. */
static void tls_set(struct lws_context_creation_info *vhost, const char *cert, const char *key)
{
    if (!cert)
        return;
    vhost->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    vhost->ssl_cert_filepath = cert;
    vhost->ssl_private_key_filepath = key;
    /* HTTP/1.1 only, as without TLS (where upgrades to HTTP/2 are refused): nothing here needs
     * HTTP/2, and libwebsockets' HTTP/2 paths could be reached by anyone who connects. */
    vhost->alpn = "http/1.1";
}

/* libwebsockets 4.1 with IPv6 on listens on every address of both families when given an IPv4
 * address (warmcat/libwebsockets#2290): --bind 127.0.0.1 would open the port to the network. An
 * IPv4 address therefore gets an IPv4-only socket; IPv6 addresses and interface names keep both. */
static uint64_t listen_options(const char *bind)
{
    struct in_addr addr;
    return inet_pton(AF_INET, bind, &addr) == 1 ? LWS_SERVER_OPTION_DISABLE_IPV6 : 0;
}

/* One libwebsockets context on our loop, with a vhost per listening socket: providers' websockets
 * (and the static files of --docroot) on --port, the admin API's HTTP on --admin-port. */
static int lws_start(struct gateway *gw, const struct gateway_options *opt)
{
    void *foreign_loops[] = {&gw->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    /* No LWS_SERVER_OPTION_VALIDATE_UTF8: libwebsockets checks a byte at a time, which halved the
     * JSON read rate; the JSON codec rejects what is not UTF-8 (closing with 1007 as well), and
     * webfuse2 frames are binary. */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (opt->cert || (opt->admin && opt->admin_cert))
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = foreign_loops;
    /* Cleared by libwebsockets once the context is wholly destroyed (see gateway_run). */
    info.pcontext = &gw->lws;
    /* Socket reads go through this buffer (one for the loop thread): 4 KiB (the default) costs a
     * loop turn per 4 KiB of a large read answer. At the size of the largest (1 MiB and its
     * header) more answers come whole, to be decoded where they lie, and the rest in fewer
     * pieces: 64 streams ran about 8% faster than with 256 KiB, one stream the same. */
    info.pt_serv_buf_size = SESSION_RX_BUFFER;
    info.gid = (gid_t)-1;
    info.uid = (uid_t)-1;

    lws_set_log_level(opt->log_level >= LOG_LEVEL_DEBUG ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR,
                      lws_log_line);
    gw->lws = lws_create_context(&info);
    if (!gw->lws) {
        log_error("cannot create the libwebsockets context");
        return -ENOMEM;
    }

    struct lws_context_creation_info vhost;
    memset(&vhost, 0, sizeof(vhost));
    vhost.vhost_name = "providers";
    vhost.port = opt->port;
    vhost.iface = opt->bind;
    vhost.options = listen_options(opt->bind);
    vhost.protocols = session_hub_protocols(gw->hub);
    if (opt->docroot) {
        int rc = docroot_prepare(gw, opt->docroot);
        if (rc != 0)
            return rc;
        vhost.mounts = &gw->docroot_mount;
    }
    tls_set(&vhost, opt->cert, opt->key);
    if (!lws_create_vhost(gw->lws, &vhost)) {
        log_error("cannot listen on %s:%d (is the port in use or the address wrong?%s)", opt->bind,
                  opt->port,
                  opt->cert ? " are --cert and --key a PEM certificate and its key?" : "");
        return -EADDRINUSE;
    }
    if (gw->admin) {
        memset(&vhost, 0, sizeof(vhost));
        vhost.vhost_name = "admin";
        vhost.port = opt->admin_port;
        vhost.iface = opt->admin_bind;
        vhost.options = listen_options(opt->admin_bind);
        vhost.protocols = admin_protocols(gw->admin);
        tls_set(&vhost, opt->admin_cert, opt->admin_key);
        if (!lws_create_vhost(gw->lws, &vhost)) {
            log_error("cannot listen for the admin API on %s:%d (is the port in use or the "
                      "address wrong?%s --no-admin turns it off)",
                      opt->admin_bind, opt->admin_port,
                      opt->admin_cert ? " are the admin certificate and key a PEM pair?" : "");
            return -EADDRINUSE;
        }
    }
    return 0;
}

/* ---- shutdown ---------------------------------------------------------------------------------
 */

static void gateway_finish(struct gateway *gw)
{
    uv_timer_stop(&gw->grace);
    uv_close((uv_handle_t *)&gw->grace, NULL);
    uv_close((uv_handle_t *)&gw->sigint, NULL);
    uv_close((uv_handle_t *)&gw->sigterm, NULL);
    uv_close((uv_handle_t *)&gw->sighup, NULL);
    if (gw->admin)
        admin_close(gw->admin);
    /* libwebsockets closes its own handles; the loop runs until they are gone. */
    if (gw->lws)
        lws_context_destroy(gw->lws);
}

static void on_finish_due(uv_timer_t *timer)
{
    gateway_finish(container_of(timer, struct gateway, grace));
}

/* Called from inside a libwebsockets callback (the last session's close): destroying the
 * context there would pull it from under lws, so the teardown runs on the next loop turn. */
static void on_sessions_gone(void *arg)
{
    struct gateway *gw = arg;
    log_info("all sessions closed");
    uv_timer_start(&gw->grace, on_finish_due, 0, 0);
}

static void on_grace_expired(uv_timer_t *timer)
{
    struct gateway *gw = container_of(timer, struct gateway, grace);
    log_error("shutdown took longer than %d ms; %zu session(s) left, stopping anyway",
              GATEWAY_SHUTDOWN_GRACE_MS, session_hub_count(gw->hub));
    gw->forced = true;
    uv_stop(&gw->loop);
}

/* How the run ended, for the history's stop event. */
static const char *run_end(const struct gateway *gw, int status)
{
    if (status != EXIT_SUCCESS)
        return "webfused could not start";
    return gw->forced ? "webfused stopped before its sessions had closed" : "webfused stopped";
}

static void on_signal(uv_signal_t *signal, int signum)
{
    struct gateway *gw = signal->data;
    if (gw->stopping)
        return;
    gw->stopping = true;
    log_info("%s received: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    notify_systemd("STOPPING=1");
    /* The handlers stay until the end: a second signal must not kill us halfway. */
    uv_timer_start(&gw->grace, on_grace_expired, GATEWAY_SHUTDOWN_GRACE_MS, 0);
    session_hub_shutdown(gw->hub, on_sessions_gone, gw);
}

static void users_reload_start(struct gateway *gw);

static void users_reload_work(uv_work_t *work)
{
    struct gateway *gw = container_of(work, struct gateway, reload);
    gw->reloaded = NULL;
    gw->reload_rc = auth_users_load(gw->opt->auth_file, &gw->reloaded, gw->reload_error,
                                    sizeof(gw->reload_error));
}

static void users_reload_done(uv_work_t *work, int status)
{
    struct gateway *gw = container_of(work, struct gateway, reload);
    gw->reloading = false;
    if (status != 0 || gw->reload_rc != 0) {
        log_error("SIGHUP: keeping the users as they were: %s",
                  status != 0 ? "the read was cancelled" : gw->reload_error);
    } else if (gw->stopping) {
        auth_users_free(gw->reloaded);
    } else {
        session_hub_set_users(gw->hub, gw->reloaded);
        auth_users_free(gw->users);
        gw->users = gw->reloaded;
        log_info("SIGHUP: %zu user(s) may attach filesystems (from %s)",
                 auth_users_count(gw->users), gw->opt->auth_file);
    }
    gw->reloaded = NULL;
    if (gw->reload_again && !gw->stopping) {
        gw->reload_again = false;
        users_reload_start(gw);
    }
}

/* Reading and hashing the file (the decoy hash is one crypt call) is slow: not on the loop. */
static void users_reload_start(struct gateway *gw)
{
    if (gw->reloading) {
        gw->reload_again = true;
        return;
    }
    gw->reloading = true;
    if (uv_queue_work(&gw->loop, &gw->reload, users_reload_work, users_reload_done) != 0) {
        gw->reloading = false;
        log_error("SIGHUP: cannot start reading %s", gw->opt->auth_file);
    }
}

/* SIGHUP: logrotate moved the log file away, or the users file changed. Sessions are not
 * touched. */
static void on_reload(uv_signal_t *signal, int signum)
{
    (void)signum;
    struct gateway *gw = signal->data;
    bool log_file = gw->opt->log_target[0] == '/';
    if (log_file) {
        int rc = log_reopen();
        if (rc != 0)
            log_error("SIGHUP: cannot reopen the log: %s", strerror(-rc));
        else
            log_info("SIGHUP: log reopened");
    }
    if (gw->opt->auth_file && !gw->stopping)
        users_reload_start(gw);
    else if (!log_file)
        log_info("SIGHUP: nothing to reload (the log is not a file, and there is no --auth-file)");
}

static int signals_start(struct gateway *gw)
{
    gw->sigint.data = gw;
    gw->sigterm.data = gw;
    gw->sighup.data = gw;
    int rc = uv_signal_init(&gw->loop, &gw->sigint);
    if (rc == 0)
        rc = uv_signal_init(&gw->loop, &gw->sigterm);
    if (rc == 0)
        rc = uv_signal_init(&gw->loop, &gw->sighup);
    if (rc == 0)
        rc = uv_signal_start(&gw->sigint, on_signal, SIGINT);
    if (rc == 0)
        rc = uv_signal_start(&gw->sigterm, on_signal, SIGTERM);
    if (rc == 0)
        rc = uv_signal_start(&gw->sighup, on_reload, SIGHUP);
    return rc;
}

/* ---- run --------------------------------------------------------------------------------------
 */

/* Aborting a FUSE connection (to end a mount that a process still holds open) needs fusectl.
 * systemd mounts it at boot; on devices without systemd we do it ourselves when we can. */
static void fusectl_mount(void)
{
    struct stat st;
    if (stat(FUSECTL_DIR, &st) != 0)
        return; /* no FUSE in this kernel, or no sysfs */
    struct statfs fs;
    if (statfs(FUSECTL_DIR, &fs) == 0 && fs.f_type == FUSECTL_SUPER_MAGIC)
        return;
    if (mount("fusectl", FUSECTL_DIR, "fusectl", 0, NULL) != 0)
        log_debug("cannot mount fusectl at %s: %s", FUSECTL_DIR, strerror(errno));
}

/* Each mount holds two descriptors (its FUSE device and its fusectl directory) and each
 * connection one: the usual soft limit of 1024 would cap a gateway at a few hundred mounts. The
 * limit is raised to what the configured maxima need (within the hard limit), and no further:
 * libwebsockets sizes its tables by it. */
#define GATEWAY_NOFILE_MAX 65536

static void nofile_raise(const struct gateway_options *opt)
{
    rlim_t want = 64 + opt->max_sessions + 2 * (rlim_t)opt->max_sessions * opt->max_filesystems;
    if (want > GATEWAY_NOFILE_MAX)
        want = GATEWAY_NOFILE_MAX;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= want)
        return;
    limit.rlim_cur = want < limit.rlim_max ? want : limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
        log_debug("cannot raise the limit of open files: %s", strerror(errno));
}

/* Takes an exclusive lock on `path` (a directory or a file, created if missing) for the rest of
 * the process, so a second webfused cannot take over the mounts or the history of a running one:
 * its start-up clean-up would detach live mounts and mark live sessions lost. */
static int lock_exclusive(const char *path, bool directory, const char *what, int *fd_out)
{
    int flags = O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : O_CREAT);
    int fd = open(path, flags, 0600);
    if (fd < 0) {
        log_error("cannot open %s %s: %s", what, path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int rc = -errno;
        if (rc == -EWOULDBLOCK)
            log_error("another webfused is already using %s %s", what, path);
        else
            log_error("cannot lock %s %s: %s", what, path, strerror(-rc));
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static int lock_history(const char *db_path, int *fd_out)
{
    char lock_path[PATH_MAX];
    if (snprintf(lock_path, sizeof(lock_path), "%s.lock", db_path) >= (int)sizeof(lock_path))
        return -ENAMETOOLONG;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", db_path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        int rc = mkdir_parents(dir, NULL);
        if (rc != 0) {
            log_error("cannot create %s: %s", dir, strerror(-rc));
            return rc;
        }
    }
    return lock_exclusive(lock_path, false, "the history database's lock file", fd_out);
}

/* DIR as the mount table will show it: no symbolic link, no trailing slash. DIR exists by now,
 * but may be a stale mount that cannot be looked at (ENOTCONN): then its parent is resolved. */
static int fixed_dir_resolve(const char *dir, char **out)
{
    *out = realpath(dir, NULL);
    if (*out)
        return 0;
    char parent[PATH_MAX];
    if (snprintf(parent, sizeof(parent), "%s", dir) >= (int)sizeof(parent))
        return -ENAMETOOLONG;
    size_t len = strlen(parent);
    while (len > 1 && parent[len - 1] == '/')
        parent[--len] = '\0';
    char *base = strrchr(parent, '/');
    *base++ = '\0';
    char resolved[PATH_MAX];
    if (!realpath(parent[0] ? parent : "/", resolved))
        return -errno;
    if (asprintf(out, "%s/%s", strcmp(resolved, "/") == 0 ? "" : resolved, base) < 0) {
        *out = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* --filesystem NAME=DIR: made with its parents while we are still root, and resolved (two names
 * at one directory would hide each other). */
static int fixed_dirs_make(const struct gateway_options *opt, struct gateway *gw)
{
    for (size_t i = 0; i < opt->filesystem_count; i++) {
        const char *dir = opt->filesystems[i].mountpoint;
        if (!dir)
            continue;
        int rc = mkdir_parents(dir, &gw->made_fixed[i]);
        if (rc == 0)
            rc = fixed_dir_resolve(dir, &gw->fixed_dirs[i]);
        if (rc != 0) {
            log_error("cannot create %s for --filesystem %s: %s", dir, opt->filesystems[i].name,
                      strerror(-rc));
            return rc;
        }
        for (size_t j = 0; j < i; j++)
            if (gw->fixed_dirs[j] && strcmp(gw->fixed_dirs[j], gw->fixed_dirs[i]) == 0) {
                log_error("--filesystem %s and %s would both mount at %s", opt->filesystems[j].name,
                          opt->filesystems[i].name, gw->fixed_dirs[i]);
                return -EINVAL;
            }
    }
    return 0;
}

/* With --user, fusermount3 mounts at a --filesystem DIR and wants write access: a DIR made here
 * is handed to the user, one that existed is checked (never given away: it could be /srv, or a
 * typo for /etc). They stay after a detach: they are configuration. */
static int fixed_dirs_hand_over(const struct gateway_options *opt, const struct gateway *gw,
                                const struct gateway_identity *identity)
{
    for (size_t i = 0; i < opt->filesystem_count; i++) {
        const char *dir = gw->fixed_dirs[i];
        if (!dir)
            continue;
        int rc = gw->made_fixed[i] ? gateway_identity_hand_over(identity, dir)
                                   : gateway_identity_can_write(identity, opt->run_user, dir);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int prepare_mount_root(const struct gateway_options *opt, struct gateway *gw)
{
    const char *mount_root = opt->mount_root;
    int rc = mkdir_parents(mount_root, &gw->made_mount_root);
    if (rc != 0) {
        log_error("cannot create mount root %s: %s", mount_root, strerror(-rc));
        return rc;
    }
    rc = lock_exclusive(mount_root, true, "the mount root", &gw->locks[0]);
    if (rc != 0)
        return rc;
    /* As the mount table shows it: no trailing slash, no symbolic link. */
    if (!realpath(mount_root, gw->mount_root)) {
        rc = -errno;
        log_error("cannot resolve mount root %s: %s", mount_root, strerror(-rc));
        return rc;
    }
    rc = fixed_dirs_make(opt, gw);
    if (rc != 0)
        return rc;
    unmount_stale(gw);
    fusectl_mount();
    nofile_raise(opt);
    return 0;
}

/* SCHEME://ADDRESS:PORT/, an IPv6 address in brackets, for the log. */
static void url_of(char *out, size_t cap, const char *scheme, const char *address, int port)
{
    bool v6 = strchr(address, ':') != NULL;
    snprintf(out, cap, "%s://%s%s%s:%d/", scheme, v6 ? "[" : "", address, v6 ? "]" : "", port);
}

/* Releases what the start-up took. A start that fails leaves the machine as it was: the
 * directories it made go again. */
static void prepared_release(struct gateway *gw, bool started)
{
    /* The mount root is still locked: a webfused starting now does not take a directory about to
     * go (a --filesystem DIR is not locked: only a start with the same options would take it). */
    if (!started) {
        for (size_t i = gw->opt->filesystem_count; i-- > 0;)
            if (gw->opt->filesystems[i].mountpoint)
                mkdir_undo(gw->opt->filesystems[i].mountpoint, gw->made_fixed[i]);
        mkdir_undo(gw->opt->mount_root, gw->made_mount_root);
    }
    for (size_t i = 0; i < gw->opt->filesystem_count; i++)
        free(gw->fixed_dirs[i]);
    for (size_t i = 0; i < sizeof(gw->locks) / sizeof(gw->locks[0]); i++)
        if (gw->locks[i] >= 0)
            close(gw->locks[i]);
}

/* What a start would refuse in the paths the options name, found without making anything (a
 * start makes the mount root, the log file and the token file when missing). */
static int paths_check(const struct gateway_options *opt)
{
    struct stat st;
    int found = stat(opt->mount_root, &st) == 0 ? 0 : -errno;
    if ((found == 0 && !S_ISDIR(st.st_mode)) || found == -ENOTDIR) {
        log_error("mount root %s is not a directory%s", opt->mount_root,
                  found ? " (a file is in its path)" : "");
        return -ENOTDIR;
    }
    if (opt->log_target[0] == '/') {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", opt->log_target);
        *strrchr(dir, '/') = '\0';
        if (stat(dir[0] ? dir : "/", &st) != 0 || !S_ISDIR(st.st_mode)) {
            log_error("cannot open the log %s: %s is not a directory", opt->log_target, dir);
            return -ENOTDIR;
        }
    }
    if (!opt->admin)
        return 0;
    struct admin_config admin = {.token_file = opt->admin_token_file, .db_path = opt->db_path};
    return admin_check(&admin);
}

/* Start-up checks and loads that need no loop: TLS files, listen addresses, --user, paths, the
 * users file. */
static int gateway_prepare(const struct gateway_options *opt, struct gateway_identity *identity,
                           struct auth_users **users)
{
    int rc = gateway_tls_check(opt);
    if (rc == 0)
        rc = gateway_listen_check(opt);
    if (rc == 0)
        rc = gateway_identity_resolve(opt, identity);
    if (rc == 0)
        rc = paths_check(opt);
    if (rc != 0 || !opt->auth_file)
        return rc;
    char err[512];
    rc = auth_users_load(opt->auth_file, users, err, sizeof(err));
    if (rc != 0) {
        log_error("--auth-file: %s", err);
        return rc;
    }
    log_info("%zu user(s) may attach filesystems (from %s)", auth_users_count(*users),
             opt->auth_file);
    return 0;
}

int gateway_check(const struct gateway_options *opt)
{
    struct gateway_identity identity = {0};
    struct auth_users *users = NULL;
    int rc = gateway_prepare(opt, &identity, &users);
    auth_users_free(users);
    if (rc != 0)
        return GATEWAY_EXIT_CONFIG;
    printf("webfused: configuration %s is valid\n",
           opt->config_path ? opt->config_path : "(command line only)");
    return EXIT_SUCCESS;
}

/* With --user, the log file was opened as root: the user must own it to reopen it on SIGHUP. */
static int log_hand_over(const struct gateway_options *opt, const struct gateway_identity *id)
{
    if (opt->log_target[0] != '/')
        return 0; /* stderr or syslog */
    return gateway_identity_hand_over(id, opt->log_target);
}

int gateway_run(const struct gateway_options *opt)
{
    struct gateway gw;
    memset(&gw, 0, sizeof(gw));
    gw.locks[0] = gw.locks[1] = -1;
    gw.opt = opt;
    signal(SIGPIPE, SIG_IGN);
    struct gateway_identity identity = {0};
    int rc = gateway_prepare(opt, &identity, &gw.users);
    if (rc != 0) {
        auth_users_free(gw.users);
        /* An address may come later (DHCP, a network manager): a restart may find it. */
        return rc == -EADDRNOTAVAIL ? EXIT_FAILURE : GATEWAY_EXIT_CONFIG;
    }
    rc = prepare_mount_root(opt, &gw);
    if (rc == 0)
        rc = gateway_identity_hand_over(&identity, gw.mount_root);
    if (rc == 0)
        rc = fixed_dirs_hand_over(opt, &gw, &identity);
    if (rc == 0)
        rc = log_hand_over(opt, &identity);
    if (rc == 0 && opt->admin)
        rc = lock_history(opt->db_path, &gw.locks[1]);
    if (rc != 0) {
        prepared_release(&gw, false);
        auth_users_free(gw.users);
        return rc == -EINVAL ? GATEWAY_EXIT_CONFIG : EXIT_FAILURE;
    }
    if (uv_loop_init(&gw.loop) != 0 || uv_timer_init(&gw.loop, &gw.grace) != 0 ||
        signals_start(&gw) != 0) {
        log_error("cannot set up the event loop");
        prepared_release(&gw, false);
        auth_users_free(gw.users);
        return EXIT_FAILURE;
    }
    struct session_hub_config hub_config = {
        .mount_root = gw.mount_root,
        .timeout_ms = opt->timeout_sec * 1000,
        .max_message = opt->max_message,
        .max_sessions = opt->max_sessions,
        .max_filesystems = opt->max_filesystems,
        .max_pending = opt->max_pending,
        .max_path = opt->max_path,
        .idle_timeout_ms = opt->idle_timeout_sec * 1000,
        .busy_poll_us = opt->busy_poll_us,
        .read_budget = opt->read_budget,
        .slow_read_ms = opt->slow_read_ms,
        .allow_other = opt->allow_other,
        .users = gw.users,
        .auth_header = opt->auth_header,
    };
    struct session_fixed_fs fixed[GATEWAY_MAX_FILESYSTEMS];
    for (size_t i = 0; i < opt->filesystem_count; i++)
        fixed[i] = (struct session_fixed_fs){opt->filesystems[i].name, gw.fixed_dirs[i]};
    hub_config.fixed = fixed;
    hub_config.fixed_count = opt->filesystem_count;
    int status = EXIT_FAILURE;
    if (session_hub_new(&gw.loop, &hub_config, &gw.hub) != 0)
        goto out;
    if (opt->admin) {
        char listen[300];
        url_of(listen, sizeof(listen), opt->admin_cert ? "https" : "http", opt->admin_bind,
               opt->admin_port);
        struct admin_config admin_config = {
            .token_file = opt->admin_token_file,
            .db_path = opt->db_path,
            .listen = listen,
        };
        if (admin_new(&gw.loop, gw.hub, &admin_config, &gw.admin) != 0)
            goto out_hub;
    }
    if (lws_start(&gw, opt) != 0 || gateway_identity_drop(&identity, opt->run_user) != 0)
        goto out_hub;

    gateway_warn_exposure(opt);
    char url[300];
    url_of(url, sizeof(url), opt->cert ? "wss" : "ws", opt->bind, opt->port);
    log_info("listening on %s, mounting under %s%s", url, gw.mount_root,
             gw.users ? ", providers must authenticate" : "");
    if (opt->docroot) {
        url_of(url, sizeof(url), opt->cert ? "https" : "http", opt->bind, opt->port);
        log_info("serving %s at %s", gw.docroot, url);
    }
    notify_systemd("READY=1");
    uv_run(&gw.loop, UV_RUN_DEFAULT);
    status = EXIT_SUCCESS;

out_hub:
    if (!uv_is_closing((uv_handle_t *)&gw.grace))
        gateway_finish(&gw);
    /* Let close callbacks run; after a forced stop, something may never close. */
    uv_run(&gw.loop, gw.forced ? UV_RUN_NOWAIT : UV_RUN_DEFAULT);
    /* With a foreign loop, destruction ends in a second call once the loop has closed the
     * context's handles. That call unloads libwebsockets' libuv plugin: after a forced stop,
     * handles of it may still be open, and running the loop again would call into unmapped
     * code, so the process ends with them. */
    if (gw.lws) {
        lws_context_destroy(gw.lws);
        if (!gw.forced)
            uv_run(&gw.loop, UV_RUN_DEFAULT);
    }
    /* The registry thread writes what is left (blocking is fine now: the loop is done). */
    admin_free(gw.admin, run_end(&gw, status));
    session_hub_free(gw.hub);
out:
    if (uv_loop_close(&gw.loop) != 0)
        log_debug("event loop closed with handles left");
    prepared_release(&gw, status == EXIT_SUCCESS);
    auth_users_free(gw.users);
    log_info("exiting with status %d", status);
    return status;
}
