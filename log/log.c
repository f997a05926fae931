#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_LEVEL_INFO;
static const char *program = "webfuse";
static int log_fd = STDERR_FILENO;
static bool to_syslog;
static const char *log_path; /* NULL unless logging to a file */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
    current_level = level;
}

enum log_level log_get_level(void)
{
    return current_level;
}

void log_set_program(const char *name)
{
    program = name;
}

int log_parse_level(const char *text, enum log_level *level)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

int log_check_target(const char *target)
{
    if (strcmp(target, "stderr") == 0 || strcmp(target, "syslog") == 0 || target[0] == '/')
        return 0;
    return -EINVAL;
}

static int open_log_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return fd < 0 ? -errno : fd;
}

int log_open(const char *target)
{
    if (strcmp(target, "syslog") == 0) {
        openlog(program, LOG_PID | LOG_NDELAY, LOG_DAEMON);
        to_syslog = true;
        return 0;
    }
    if (strcmp(target, "stderr") == 0)
        return 0;
    int fd = open_log_file(target);
    if (fd < 0)
        return fd;
    log_fd = fd;
    log_path = target;
    return 0;
}

int log_reopen(void)
{
    if (!log_path)
        return 0;
    int fd = open_log_file(log_path);
    if (fd < 0)
        return fd;
    /* dup2 swaps the file under log_fd in one step: a thread writing now writes to one of the two. */
    int rc = dup2(fd, log_fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

size_t log_utf8_char(const unsigned char *s, size_t n)
{
    size_t more;
    uint32_t cp;
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        more = 1;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        more = 2;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        more = 3;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (more >= n)
        return 0;
    for (size_t i = 1; i <= more; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return more + 1;
}

size_t log_escape(char *out, size_t size, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)text;
    size_t used = 0;
    size_t i = 0;
    if (size == 0)
        return 0;
    while (i < len) {
        size_t n = log_utf8_char(s + i, len - i);
        bool plain = n > 1 || (n == 1 && s[i] >= 0x20 && s[i] != 0x7f);
        size_t need = plain ? n : 4;
        if (need > size - 1 - used)
            break;
        if (plain) {
            memcpy(out + used, s + i, n);
        } else {
            out[used] = '\\';
            out[used + 1] = 'x';
            out[used + 2] = hex[s[i] >> 4];
            out[used + 3] = hex[s[i] & 0xf];
            n = 1;
        }
        used += need;
        i += n;
    }
    out[used] = '\0';
    return i;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    if (level > current_level)
        return;
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    size_t message_len = m < 0 ? 0 : (size_t)m;
    if (message_len >= sizeof(message))
        message_len = sizeof(message) - 1;
    if (to_syslog) {
        static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        char escaped[sizeof(message)];
        log_escape(escaped, sizeof(escaped), message, message_len);
        syslog(priorities[level], "%s", escaped);
        return;
    }

    char line[2048];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     now.tv_nsec / 1000000, program, level_names[level]);
    /* a long message is cut short: still one whole line */
    log_escape(line + n, sizeof(line) - (size_t)n - 1, message, message_len);
    size_t len = (size_t)n + strlen(line + n);
    line[len++] = '\n';
    ssize_t ignored = write(log_fd, line, len);
    (void)ignored;
}
