/* log: leveled, line-oriented logging to stderr, a file or syslog, safe from any thread. */
#ifndef WEBFUSE_LOG_H
#define WEBFUSE_LOG_H

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
 * several threads never interleave; to syslog, the message with the matching priority. */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
