#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
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

static void syslog_write(enum log_level level, const char *fmt, va_list ap)
{
    static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    vsyslog(priorities[level], fmt, ap);
}

void log_write(enum log_level level, const char *fmt, ...)
{
    if (level > current_level)
        return;
    if (to_syslog) {
        va_list ap;
        va_start(ap, fmt);
        syslog_write(level, fmt, ap);
        va_end(ap);
        return;
    }

    char line[1024];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     now.tv_nsec / 1000000, program, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* truncated message: still one whole line */
    line[len++] = '\n';
    ssize_t ignored = write(log_fd, line, len);
    (void)ignored;
}
