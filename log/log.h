/* log: leveled, line-oriented logging to stderr, a file or syslog, safe from any thread. */
#ifndef WEBFUSE_LOG_H
#define WEBFUSE_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Messages above `level` are dropped. Set once at start-up, before threads exist. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug"; returns 0 or -EINVAL. */
int log_parse_level(const char *text, enum log_level *level);

/* Checks a log target: "stderr", "syslog" or an absolute file path. Returns 0 or -EINVAL. */
int log_check_target(const char *target);

/* Sends lines to `target` (see log_check_target) from now on. Called once at start-up, before
 * threads exist. Returns 0, or a negative errno when the file cannot be opened (lines then keep
 * going to stderr). */
int log_open(const char *target);

/* Reopens the log file (after logrotate moved it away); a no-op for stderr and syslog. Safe while
 * other threads log: the new file replaces the old one under the same descriptor. */
int log_reopen(void);

/* Writes one line "<time> <prog> <LEVEL> <message>\n" with a single write(2), so lines from
 * several threads never interleave; to syslog, the message with the matching priority. The
 * message is escaped (log_escape): names a peer sent go into it as they came. */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The length of the UTF-8 character at `s` (1 to 4 bytes, at most `n`), or 0 when the bytes there
 * are not one: overlong forms, surrogates, code points above U+10FFFF and cut-off sequences are
 * not. */
size_t log_utf8_char(const unsigned char *s, size_t n);

/* Copies `len` bytes of `text` to `out` (NUL-terminated, at most size - 1 bytes, and never half
 * an escape or a character), writing as \xNN each byte of: control characters (C0, DEL, C1),
 * the Unicode line and paragraph separators and bidirectional overrides, and whatever is not
 * valid UTF-8. Text from the network then cannot start a forged line, move a terminal's cursor,
 * reorder what a reader sees or make a file binary. Lossy on purpose: a backslash stays as it
 * is, so escaping twice changes nothing. Returns how many bytes of `text` it took: fewer than
 * `len` when `out` was too small. log_write does this to every message; others use it for text
 * they keep, send or print. */
size_t log_escape(char *out, size_t size, const char *text, size_t len);

/* The program name printed on each line (borrowed; must outlive logging). */
void log_set_program(const char *name);

#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_LEVEL_DEBUG)                                                    \
            log_write(LOG_LEVEL_DEBUG, __VA_ARGS__);                                               \
    } while (0)

#endif
