/* Password hashes with libxcrypt: making, checking (in constant time), and reading a password
 * from the terminal. */
#include "auth_internal.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

bool auth_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
    /* Every byte of `a` is looked at once, whatever `b` is. */
    unsigned diff = a_len != b_len;
    for (size_t i = 0; i < a_len; i++) {
        unsigned char other = i < b_len ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)a[i] ^ other;
    }
    return diff == 0;
}

/* The fields after the method's "$y$" or "$6$", each non-empty: yescrypt has its parameters,
 * salt and hash; SHA-512 its salt and hash, with an optional "rounds=N" before them. */
static bool hash_fields_complete(const char *hash)
{
    bool yescrypt = hash[1] == 'y';
    size_t fields = 0;
    for (const char *p = hash + 3; *p;) {
        size_t n = strcspn(p, "$");
        if (n == 0)
            return false;
        fields++;
        p += n;
        if (*p == '$' && *++p == '\0')
            return false; /* a trailing '$': the hash itself is missing */
    }
    if (yescrypt)
        return fields == 3;
    return fields == 2 || (fields == 3 && strncmp(hash + 3, "rounds=", 7) == 0);
}

bool auth_hash_supported(const char *hash)
{
    if (strncmp(hash, "$y$", 3) != 0 && strncmp(hash, "$6$", 3) != 0)
        return false;
    size_t len = strlen(hash);
    if (len >= CRYPT_OUTPUT_SIZE)
        return false;
    static const char alphabet[] =
        "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz$=";
    return strspn(hash, alphabet) == len && hash_fields_complete(hash);
}

int auth_password_verify(const char *hash, const char *password)
{
    if (strlen(password) > AUTH_PASSWORD_MAX || !auth_hash_supported(hash))
        return -EINVAL;
    struct crypt_data *data = calloc(1, sizeof(*data));
    if (!data)
        return -ENOMEM;
    int rc;
    const char *computed = crypt_rn(password, hash, data, sizeof(*data));
    if (!computed || computed[0] == '*')
        rc = -EINVAL; /* crypt could not use the setting */
    else
        rc = auth_equal(hash, strlen(hash), computed, strlen(computed)) ? 0 : -EACCES;
    explicit_bzero(data, sizeof(*data));
    free(data);
    return rc;
}

int auth_hash_with(const char *prefix, const char *password, char *out, size_t cap)
{
    if (strlen(password) > AUTH_PASSWORD_MAX)
        return -EINVAL;
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    /* NULL random bytes: libxcrypt takes them from the kernel itself. */
    if (!crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof(setting)))
        return errno ? -errno : -EINVAL;
    struct crypt_data *data = calloc(1, sizeof(*data));
    if (!data)
        return -ENOMEM;
    int rc = 0;
    const char *hash = crypt_rn(password, setting, data, sizeof(*data));
    if (!hash || hash[0] == '*')
        rc = -EINVAL;
    else if (strlen(hash) >= cap)
        rc = -ENOBUFS;
    else
        strcpy(out, hash);
    explicit_bzero(data, sizeof(*data));
    free(data);
    return rc;
}

int auth_password_hash(const char *password, char *out, size_t cap)
{
    return auth_hash_with("$y$", password, out, cap);
}

int auth_password_prompt(const char *prompt, char *buf, size_t cap)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -ENXIO;
    struct termios saved, quiet;
    bool restore = tcgetattr(fd, &saved) == 0;
    if (restore) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL; /* the newline still shows, so the next output starts a line */
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    ssize_t ignored = write(fd, prompt, strlen(prompt));
    (void)ignored;
    size_t len = 0;
    int rc = 0;
    for (;;) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || c == '\n')
            break;
        if (len + 1 >= cap) {
            rc = -ENAMETOOLONG;
            continue; /* read the rest of the line, keep nothing of it */
        }
        buf[len++] = c;
    }
    if (restore)
        tcsetattr(fd, TCSAFLUSH, &saved);
    close(fd);
    if (rc != 0)
        explicit_bzero(buf, cap);
    else
        buf[len] = '\0';
    return rc;
}
