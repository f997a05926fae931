/* The users file: parsing, lookups, and the decoy hash for unknown users. */
#include "auth_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "session.h"

/* Largest users file read (AUTH_USERS_MAX full lines fit). */
#define AUTH_FILE_MAX (64u * 1024 * 1024)

struct auth_user {
    char name[AUTH_NAME_MAX + 1];
    char *hash;
    bool any;     /* "*": every filesystem name */
    char **names; /* else these */
    size_t name_count;
};

struct auth_users {
    struct auth_user *users;
    size_t count;
    char *decoy;
};

bool auth_name_valid(const char *name)
{
    static const char allowed[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-";
    size_t len = strlen(name);
    return len >= 1 && len <= AUTH_NAME_MAX && strspn(name, allowed) == len;
}

static void user_clear(struct auth_user *u)
{
    if (u->hash) {
        explicit_bzero(u->hash, strlen(u->hash));
        free(u->hash);
    }
    for (size_t i = 0; i < u->name_count; i++)
        free(u->names[i]);
    free(u->names);
}

void auth_users_free(struct auth_users *users)
{
    if (!users)
        return;
    for (size_t i = 0; i < users->count; i++)
        user_clear(&users->users[i]);
    free(users->users);
    free(users->decoy);
    free(users);
}

size_t auth_users_count(const struct auth_users *users)
{
    return users->count;
}

const struct auth_user *auth_users_find(const struct auth_users *users, const char *name)
{
    for (size_t i = 0; i < users->count; i++)
        if (strcmp(users->users[i].name, name) == 0)
            return &users->users[i];
    return NULL;
}

const char *auth_users_decoy_hash(const struct auth_users *users)
{
    return users->decoy;
}

const char *auth_users_hash_for(const struct auth_users *users, const char *name, bool *known)
{
    const struct auth_user *u = auth_name_valid(name) ? auth_users_find(users, name) : NULL;
    *known = u != NULL;
    return u ? u->hash : users->decoy;
}

const char *auth_user_name(const struct auth_user *user)
{
    return user->name;
}

const char *auth_user_hash(const struct auth_user *user)
{
    return user->hash;
}

bool auth_user_may_attach(const struct auth_user *user, const char *fs_name)
{
    if (user->any)
        return true;
    for (size_t i = 0; i < user->name_count; i++)
        if (strcmp(user->names[i], fs_name) == 0)
            return true;
    return false;
}

/* ---- parsing ----------------------------------------------------------------------------------
 */

struct parser {
    const char *origin; /* NULL: a line being made, not read from a file */
    unsigned line;
    char *err;
    size_t err_cap;
};

static int parse_error(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int parse_error(struct parser *p, const char *fmt, ...)
{
    int n = p->origin ? snprintf(p->err, p->err_cap, "%s:%u: ", p->origin, p->line) : 0;
    if (n >= 0 && (size_t)n < p->err_cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->err_cap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Fills u's filesystem names from "*" or "a,b,c" (modified in place). */
static int parse_names(struct parser *p, struct auth_user *u, char *list)
{
    if (strcmp(list, "*") == 0) {
        u->any = true;
        return 0;
    }
    if (list[0] == '\0')
        return parse_error(p, "user \"%s\" has no filesystem names (use * for any)", u->name);
    size_t count = 1;
    for (const char *c = list; *c; c++)
        count += *c == ',';
    u->names = calloc(count, sizeof(*u->names));
    if (!u->names)
        return -ENOMEM;
    char *next = list;
    while (next) {
        char *name = next;
        char *comma = strchr(name, ',');
        next = comma ? comma + 1 : NULL;
        if (comma)
            *comma = '\0';
        if (strcmp(name, "*") == 0)
            return parse_error(p, "\"*\" stands alone: it already means every filesystem");
        if (!session_name_valid(name))
            return parse_error(p,
                               "bad filesystem name \"%.80s\" for user \"%s\": use 1-64 "
                               "characters of A-Z a-z 0-9 . _ - (not . or ..)",
                               name, u->name);
        u->names[u->name_count] = strdup(name);
        if (!u->names[u->name_count])
            return -ENOMEM;
        u->name_count++;
    }
    return 0;
}

/* One non-blank, non-comment line (modified in place) into u. */
static int parse_user(struct parser *p, const struct auth_users *users, char *line,
                      struct auth_user *u)
{
    char *hash = strchr(line, ':');
    char *list = hash ? strchr(hash + 1, ':') : NULL;
    if (!list || strchr(list + 1, ':'))
        return parse_error(p, "expected NAME:HASH:FILESYSTEMS (three fields separated by ':')");
    *hash++ = '\0';
    *list++ = '\0';
    if (!auth_name_valid(line))
        return parse_error(p, "bad user name \"%.80s\": use 1-%d characters of A-Z a-z 0-9 . _ @ -",
                           line, AUTH_NAME_MAX);
    if (auth_users_find(users, line))
        return parse_error(p, "user \"%s\" is listed twice", line);
    strcpy(u->name, line);
    if (!auth_hash_supported(hash))
        return parse_error(p,
                           "the password hash of user \"%s\" is not a yescrypt ($y$...) or "
                           "SHA-512 ($6$...) crypt hash (make one with 'webfusectl passwd')",
                           u->name);
    u->hash = strdup(hash);
    if (!u->hash)
        return -ENOMEM;
    return parse_names(p, u, list);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int parse_line(struct parser *p, struct auth_users *users, const char *start, size_t len)
{
    if (len > AUTH_LINE_MAX)
        return parse_error(p, "line longer than %d bytes", AUTH_LINE_MAX);
    if (memchr(start, '\0', len))
        return parse_error(p, "NUL byte in the line");
    char buf[AUTH_LINE_MAX + 1];
    memcpy(buf, start, len);
    buf[len] = '\0';
    char *line = trim(buf);
    int rc = 0;
    if (line[0] != '\0' && line[0] != '#') {
        if (users->count == AUTH_USERS_MAX) {
            rc = parse_error(p, "more than %d users", AUTH_USERS_MAX);
        } else {
            struct auth_user *u = &users->users[users->count];
            memset(u, 0, sizeof(*u));
            rc = parse_user(p, users, line, u);
            if (rc == 0)
                users->count++;
            else
                user_clear(u);
        }
    }
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

/* The decoy costs what a real check costs: yescrypt when any user has it, else SHA-512. */
static int make_decoy(struct auth_users *users)
{
    const char *prefix = "$6$";
    for (size_t i = 0; i < users->count; i++)
        if (strncmp(users->users[i].hash, "$y$", 3) == 0)
            prefix = "$y$";
    unsigned char raw[24];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -EIO;
    char password[2 * sizeof(raw) + 1];
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(password + 2 * i, 3, "%02x", raw[i]);
    char hash[512];
    int rc = auth_hash_with(prefix, password, hash, sizeof(hash));
    explicit_bzero(password, sizeof(password));
    if (rc != 0)
        return rc;
    users->decoy = strdup(hash);
    return users->decoy ? 0 : -ENOMEM;
}

int auth_users_parse(const char *text, size_t len, const char *origin, struct auth_users **out,
                     char *err, size_t err_cap)
{
    struct parser p = {.origin = origin, .line = 0, .err = err, .err_cap = err_cap};
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    struct auth_users *users = calloc(1, sizeof(*users));
    if (users)
        users->users =
            calloc(lines < AUTH_USERS_MAX ? lines : AUTH_USERS_MAX, sizeof(*users->users));
    if (!users || !users->users) {
        auth_users_free(users);
        snprintf(err, err_cap, "%s: out of memory", origin);
        return -ENOMEM;
    }
    int rc = 0;
    size_t pos = 0;
    while (rc == 0 && pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        p.line++;
        rc = parse_line(&p, users, text + pos, end - pos);
        pos = end + 1;
    }
    if (rc == 0 && users->count == 0) {
        snprintf(err, err_cap, "%s: no users in the file", origin);
        rc = -EINVAL;
    }
    if (rc == 0 && (rc = make_decoy(users)) != 0)
        snprintf(err, err_cap, "%s: cannot make a decoy hash: %s", origin, strerror(-rc));
    if (rc == -ENOMEM)
        snprintf(err, err_cap, "%s: out of memory", origin);
    if (rc != 0) {
        auth_users_free(users);
        return rc;
    }
    *out = users;
    return 0;
}

int auth_users_load(const char *path, struct auth_users **out, char *err, size_t err_cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int rc = -errno;
        snprintf(err, err_cap, "cannot read %s: %s", path, strerror(-rc));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size > AUTH_FILE_MAX) {
        close(fd);
        snprintf(err, err_cap, "%s is not a regular file of at most %u bytes", path, AUTH_FILE_MAX);
        return -EINVAL;
    }
    char *text = malloc((size_t)st.st_size + 1);
    size_t len = 0;
    int rc = text ? 0 : -ENOMEM;
    while (rc == 0 && len < (size_t)st.st_size) {
        ssize_t n = read(fd, text + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -errno;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (rc != 0) {
        snprintf(err, err_cap, "cannot read %s: %s", path, strerror(-rc));
        free(text);
        return rc;
    }
    rc = auth_users_parse(text, len, path, out, err, err_cap);
    explicit_bzero(text, len);
    free(text);
    return rc;
}

/* ---- writing a line ---------------------------------------------------------------------------
 */

int auth_line_format(const char *name, const char *hash, const char *fs_list, char *out, size_t cap,
                     char *err, size_t err_cap)
{
    if (!auth_name_valid(name)) {
        snprintf(err, err_cap,
                 "bad user name \"%.80s\": use 1-%d characters of A-Z a-z 0-9 . _ @ -", name,
                 AUTH_NAME_MAX);
        return -EINVAL;
    }
    /* The list must read back as it was meant: parse it exactly as the daemon will. */
    char line[AUTH_LINE_MAX + 2];
    int n = snprintf(line, sizeof(line), "%s:%s:%s", name, hash, fs_list);
    if (n < 0 || (size_t)n > AUTH_LINE_MAX) {
        snprintf(err, err_cap, "the line would be longer than %d bytes", AUTH_LINE_MAX);
        return -EINVAL;
    }
    struct auth_users scratch = {0};
    struct auth_user user = {0};
    struct parser p = {.origin = NULL, .line = 1, .err = err, .err_cap = err_cap};
    char copy[sizeof(line)];
    memcpy(copy, line, (size_t)n + 1);
    int rc = parse_user(&p, &scratch, copy, &user);
    user_clear(&user);
    if (rc != 0)
        return rc;
    if ((size_t)n >= cap)
        return -ENOBUFS;
    memcpy(out, line, (size_t)n + 1);
    return 0;
}
