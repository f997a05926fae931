/* Small helpers of the provider: URL parsing, name and UTF-8 checks. Pure functions. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "provider_internal.h"

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF): JSON strings can carry
 * only that, so names that are not UTF-8 cannot be sent. */
bool provider_utf8_valid(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t left = strlen(text);
    while (left > 0) {
        size_t n = log_utf8_char(s, left);
        if (n == 0)
            return false;
        s += n;
        left -= n;
    }
    return true;
}

static int url_parse_port(const char *text, int *port)
{
    if (*text == '\0' || strlen(text) > 5)
        return -EINVAL;
    int value = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9')
            return -EINVAL;
        value = value * 10 + (*c - '0');
    }
    if (value < 1 || value > 65535)
        return -EINVAL;
    *port = value;
    return 0;
}

/* Splits the authority "host", "host:port", "[v6]" or "[v6]:port" (already copied into the
 * buffer, so it may be cut with NULs). */
static int url_parse_authority(char *authority, struct provider_url *url)
{
    char *port = NULL;
    if (authority[0] == '[') {
        char *end = strchr(authority, ']');
        if (!end || end == authority + 1)
            return -EINVAL;
        *end = '\0';
        url->host = authority + 1;
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return -EINVAL;
    } else {
        char *colon = strchr(authority, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
        url->host = authority;
    }
    if (url->host[0] == '\0' || strpbrk(url->host, "@?#") != NULL)
        return -EINVAL;
    url->port = url->tls ? 443 : 80;
    url->port_given = port != NULL;
    return port ? url_parse_port(port, &url->port) : 0;
}

int provider_url_parse(const char *text, struct provider_url *url)
{
    memset(url, 0, sizeof(*url));
    const char *rest;
    if (strncmp(text, "ws://", 5) == 0) {
        rest = text + 5;
    } else if (strncmp(text, "wss://", 6) == 0) {
        rest = text + 6;
        url->tls = true;
    } else {
        return strstr(text, "://") ? -EPROTONOSUPPORT : -EINVAL;
    }
    /* The buffer holds "authority\0path\0" or "authority\0/\0": two more bytes than rest. */
    if (strlen(rest) + 3 > sizeof(url->buffer))
        return -ENAMETOOLONG;
    size_t authority_len = strcspn(rest, "/");
    memcpy(url->buffer, rest, authority_len);
    url->buffer[authority_len] = '\0';
    char *path = url->buffer + authority_len + 1;
    strcpy(path, rest[authority_len] == '/' ? rest + authority_len : "/");
    url->path = path;
    return url_parse_authority(url->buffer, url);
}

enum io_kind { IO_READ, IO_WRITE, IO_READ_CACHED };

static ssize_t io_once(int fd, char *at, size_t len, off_t pos, enum io_kind kind)
{
    if (kind == IO_WRITE)
        return pwrite(fd, at, len, pos);
    if (kind == IO_READ)
        return pread(fd, at, len, pos);
    struct iovec iov = {at, len};
    return preadv2(fd, &iov, 1, pos, RWF_NOWAIT);
}

static long io_full(int fd, void *buf, size_t size, uint64_t offset, enum io_kind kind)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = io_once(fd, (char *)buf + done, size - done, (off_t)(offset + done), kind);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && kind == IO_READ_CACHED && (errno == EAGAIN || errno == EOPNOTSUPP))
            return -EAGAIN;
        if (n < 0 && done == 0)
            return -errno;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    return (long)done;
}

long provider_read_cached(int fd, void *buf, size_t size, uint64_t offset)
{
    return io_full(fd, buf, size, offset, IO_READ_CACHED);
}

long provider_io_full(int fd, void *buf, size_t size, uint64_t offset, bool write)
{
    return io_full(fd, buf, size, offset, write ? IO_WRITE : IO_READ);
}
