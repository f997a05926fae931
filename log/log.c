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
    /* dup2 swaps the file under log_fd in one step: a thread writing now writes to one of the two.
     */
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

/* Whether the character at s (n bytes of valid UTF-8) could break or disguise a line. */
static bool char_is_control(const unsigned char *s, size_t n)
{
    if (n == 1)
        return s[0] < 0x20 || s[0] == 0x7f;
    if (n == 2) /* C1: U+0080 to U+009F */
        return s[0] == 0xc2 && s[1] < 0xa0;
    if (n == 3 && s[0] == 0xe2 && s[1] == 0x80) /* U+2028 to U+202E: separators, bidi */
        return s[2] >= 0xa8 && s[2] <= 0xae;
    if (n == 3 && s[0] == 0xe2 && s[1] == 0x81) /* U+2066 to U+2069: bidi isolates */
        return s[2] >= 0xa6 && s[2] <= 0xa9;
    return false;
}

/* Writes \xNN for each of the n bytes at s. */
static void escape_bytes(char *out, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t k = 0; k < n; k++) {
        out[4 * k] = '\\';
        out[4 * k + 1] = 'x';
        out[4 * k + 2] = hex[s[k] >> 4];
        out[4 * k + 3] = hex[s[k] & 0xf];
    }
}

size_t log_escape(char *out, size_t size, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t used = 0;
    size_t i = 0;
    if (size == 0)
        return 0;
    while (i < len) {
        size_t n = log_utf8_char(s + i, len - i);
        bool plain = n > 0 && !char_is_control(s + i, n);
        if (n == 0)
            n = 1; /* a byte outside UTF-8 */
        size_t need = plain ? n : 4 * n;
        if (need > size - 1 - used)
            break;
        if (plain)
            memcpy(out + used, s + i, n);
        else
            escape_bytes(out + used, s + i, n);
        used += need;
        i += n;
    }
    out[used] = '\0';
    return i;
}

static void syslog_write(enum log_level level, const char *message, size_t len)
{
    static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char escaped[2048];
    log_escape(escaped, sizeof(escaped), message, len); /* cut short if need be */
    syslog(priorities[level], "%s", escaped);
}

/* One write(2) per line, so that lines from several threads never interleave. */
static void file_write(enum log_level level, const char *message, size_t len)
{
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
    log_escape(line + n, sizeof(line) - (size_t)n - 1, message, len);
    size_t used = (size_t)n + strlen(line + n);
    line[used++] = '\n';
    ssize_t ignored = write(log_fd, line, used);
    (void)ignored;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    if (level > current_level)
        return;
    char message[1024]; /* longer messages are cut (and may end in half a character, escaped) */
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    size_t len = m < 0 ? 0 : (size_t)m;
    if (len >= sizeof(message))
        len = sizeof(message) - 1;
    if (to_syslog)
        syslog_write(level, message, len);
    else
        file_write(level, message, len);
}
