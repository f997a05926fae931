/* The admin token: read or created at start-up, compared in constant time per request. Plus the
 * small file and time helpers admin/ shares. */
#include "admin_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

int admin_mkdir_parents(const char *dir, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* The directory part of `path` into buf ("." when there is none). */
static void dir_of(const char *path, char *buf, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, cap, ".");
    else if (slash == path)
        snprintf(buf, cap, "/");
    else
        snprintf(buf, cap, "%.*s", (int)(slash - path), path);
}

static int fill_random(unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Creates `path` with a new random token; -EEXIST when someone else created it first. */
static int token_create(const char *path)
{
    char dir[PATH_MAX];
    dir_of(path, dir, sizeof(dir));
    int rc = admin_mkdir_parents(dir, 0700);
    if (rc != 0) {
        log_error("cannot create the directory of the admin token file %s: %s", path,
                  strerror(-rc));
        return rc;
    }
    unsigned char raw[ADMIN_TOKEN_BYTES];
    rc = fill_random(raw, sizeof(raw));
    if (rc != 0) {
        log_error("cannot get random bytes for the admin token: %s", strerror(-rc));
        return rc;
    }
    char text[2 * ADMIN_TOKEN_BYTES + 2];
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(text + 2 * i, 3, "%02x", raw[i]);
    text[2 * ADMIN_TOKEN_BYTES] = '\n';
    text[2 * ADMIN_TOKEN_BYTES + 1] = '\0';

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        if (rc != -EEXIST)
            log_error("cannot create the admin token file %s: %s", path, strerror(-rc));
        return rc;
    }
    rc = write_all(fd, text, strlen(text));
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc != 0) {
        log_error("cannot write the admin token file %s: %s", path, strerror(-rc));
        unlink(path);
        return rc;
    }
    log_info("created the admin token file %s (mode 0600)", path);
    return 0;
}

static int token_read(const char *path, char *token, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 0077) != 0)
        log_warn("the admin token file %s can be read by others (mode %04o); chmod 600 it", path,
                 (unsigned)(st.st_mode & 07777));
    char buf[ADMIN_TOKEN_MAX + 64];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        if (n == 0 || len + (size_t)n == sizeof(buf) - 1) {
            len += (size_t)n;
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    char *start = buf;
    while (*start == ' ' || *start == '\t' || *start == '\n' || *start == '\r')
        start++;
    size_t n = strlen(start);
    while (n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t' || start[n - 1] == '\n' ||
                     start[n - 1] == '\r'))
        n--;
    if (n == 0 || n >= cap || n > ADMIN_TOKEN_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)start[i];
        if (c <= ' ' || c >= 0x7f)
            return -EINVAL; /* it has to travel in an HTTP header */
    }
    memcpy(token, start, n);
    token[n] = '\0';
    explicit_bzero(buf, sizeof(buf));
    return 0;
}

static int token_refused(const char *path, int rc)
{
    if (rc == -EINVAL)
        log_error("the admin token file %s must hold one token of 1 to %d printable characters "
                  "without spaces",
                  path, ADMIN_TOKEN_MAX);
    else if (rc != 0)
        log_error("cannot read the admin token file %s: %s", path, strerror(-rc));
    return rc;
}

int admin_token_load(const char *path, char *token, size_t cap)
{
    int rc = token_read(path, token, cap);
    if (rc == -ENOENT) {
        rc = token_create(path);
        if (rc == 0 || rc == -EEXIST)
            rc = token_read(path, token, cap);
        else
            return rc;
    }
    return token_refused(path, rc);
}

int admin_check(const struct admin_config *config)
{
    char token[ADMIN_TOKEN_MAX + 1];
    int rc = token_read(config->token_file, token, sizeof(token));
    explicit_bzero(token, sizeof(token));
    return rc == -ENOENT ? 0 : token_refused(config->token_file, rc);
}

bool admin_token_equal(const char *expected, const char *given, size_t given_len)
{
    size_t expected_len = strlen(expected);
    /* Every byte of the expected token is looked at once, whatever was presented. */
    unsigned diff = expected_len != given_len;
    for (size_t i = 0; i < expected_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)expected[i] ^ g;
    }
    return diff == 0;
}

bool admin_authorization_valid(const char *expected, const char *value)
{
    if (strncasecmp(value, "Bearer ", 7) != 0)
        return false;
    const char *given = value + 7;
    while (*given == ' ')
        given++;
    size_t len = strlen(given);
    while (len > 0 && given[len - 1] == ' ')
        len--;
    return admin_token_equal(expected, given, len);
}

void admin_time_format(int64_t unix_ms, char *buf, size_t cap)
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03dZ", base, (int)(unix_ms % 1000));
}

void admin_time_now(char *buf, size_t cap)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    admin_time_format((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, buf, cap);
}

json_t *admin_time_json(int64_t unix_ms)
{
    if (unix_ms <= 0)
        return json_null();
    char buf[32];
    admin_time_format(unix_ms, buf, sizeof(buf));
    return json_string(buf);
}
