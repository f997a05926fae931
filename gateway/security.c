/* Start-up security of webfused: checking the TLS files, dropping root after the ports are open,
 * and warning about a gateway that is open to the network without protection. Start-up only
 * (before the loop runs), so blocking calls are fine here. */
#include "gateway_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"

/* libwebsockets says little when it cannot load a certificate: check the files first. */
static int readable(const char *option, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        log_error("cannot read %s %s: %s", option, path, strerror(-rc));
        return rc;
    }
    close(fd);
    return 0;
}

/* A key with a passphrase would make OpenSSL ask on the terminal; libwebsockets cannot use it. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf, (void)size, (void)rwflag, (void)userdata;
    return 0;
}

/* OpenSSL's reason, as ": REASON", but not its "PEM lib" for a file that is no PEM at all. */
static const char *tls_reason(char *buf, size_t cap)
{
    unsigned long err = ERR_peek_last_error();
    const char *reason = ERR_reason_error_string(err);
    if (!reason || ERR_GET_REASON(err) == ERR_R_PEM_LIB)
        return "";
    snprintf(buf, cap, ": %s", reason);
    return buf;
}

/* Loads the pair as libwebsockets will, so that a mistake is named before anything starts. */
static int tls_pair_check(const char *cert_option, const char *cert, const char *key_option,
                          const char *key)
{
    int rc = readable(cert_option, cert);
    if (rc == 0)
        rc = readable(key_option, key);
    if (rc != 0)
        return rc;
    char reason[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_error("cannot set up TLS%s", tls_reason(reason, sizeof(reason)));
        return -ENOMEM;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    rc = -EINVAL;
    /* The key first: a certificate that does not match it then shows as a mismatch. */
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        log_error("%s %s is not a PEM private key without passphrase%s", key_option, key,
                  tls_reason(reason, sizeof(reason)));
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        log_error("%s %s is not a PEM certificate%s", cert_option, cert,
                  tls_reason(reason, sizeof(reason)));
    else if (SSL_CTX_check_private_key(ctx) != 1)
        log_error("%s %s is not the key of %s %s", key_option, key, cert_option, cert);
    else
        rc = 0;
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return rc;
}

int gateway_tls_check(const struct gateway_options *opt)
{
    int rc = 0;
    if (opt->cert)
        rc = tls_pair_check("--cert", opt->cert, "--key", opt->key);
    if (rc == 0 && opt->admin && opt->admin_cert)
        rc = tls_pair_check("--admin-cert", opt->admin_cert, "--admin-key", opt->admin_key);
    return rc;
}

/* Read as fusermount3 reads it: lines of up to 255 bytes that end in a newline (the rest of a
 * longer line, and a last line without one, are not options); '#' starts a comment; blanks
 * around an option do not count. */
static bool fuse_conf_allows_other(void)
{
    FILE *f = fopen(GATEWAY_FUSE_CONF, "re");
    if (!f)
        return false;
    char line[256];
    bool allowed = false, line_start = true;
    while (!allowed && fgets(line, sizeof(line), f)) {
        bool whole = line_start && strchr(line, '\n');
        line_start = strchr(line, '\n') != NULL;
        if (!whole)
            continue;
        line[strcspn(line, "#\n")] = '\0';
        char *start = line;
        while (isspace((unsigned char)*start))
            start++;
        size_t len = strlen(start);
        while (len > 0 && isspace((unsigned char)start[len - 1]))
            len--;
        allowed = len == strlen("user_allow_other") && strncmp(start, "user_allow_other", len) == 0;
    }
    fclose(f);
    return allowed;
}

/* Without root (from the start or after --user), fusermount3 mounts for us; it refuses
 * allow_other unless fuse.conf allows it, and would say so only on our stderr, at each attach. */
static int allow_other_check(const struct gateway_options *opt)
{
    if (!opt->allow_other || fuse_conf_allows_other())
        return 0;
    log_error("--allow-other needs a line 'user_allow_other' in %s when webfused does not run as "
              "root",
              GATEWAY_FUSE_CONF);
    return -EPERM;
}

int gateway_identity_resolve(const struct gateway_options *opt, struct gateway_identity *id)
{
    id->drop = opt->run_user != NULL;
    if (!id->drop)
        return geteuid() == 0 ? 0 : allow_other_check(opt);
    if (geteuid() != 0) {
        log_error("--user needs webfused to start as root");
        return -EPERM;
    }
    struct passwd *pw = getpwnam(opt->run_user);
    if (!pw) {
        log_error("--user %s: no such user", opt->run_user);
        return -ENOENT;
    }
    id->uid = pw->pw_uid;
    id->gid = pw->pw_gid;
    if (opt->run_group) {
        struct group *gr = getgrnam(opt->run_group);
        if (!gr) {
            log_error("--group %s: no such group", opt->run_group);
            return -ENOENT;
        }
        id->gid = gr->gr_gid;
    }
    if (id->uid == 0) {
        log_error("--user %s is root: nothing to drop", opt->run_user);
        return -EINVAL;
    }
    return allow_other_check(opt);
}

int gateway_identity_hand_over(const struct gateway_identity *id, const char *path)
{
    if (!id->drop)
        return 0;
    if (chown(path, id->uid, id->gid) != 0) {
        int rc = -errno;
        log_error("cannot hand %s to uid %u: %s", path, (unsigned)id->uid, strerror(-rc));
        return rc;
    }
    return 0;
}

int gateway_identity_can_write(const struct gateway_identity *id, const char *user,
                               const char *path)
{
    struct stat st;
    if (!id->drop)
        return 0;
    if (stat(path, &st) != 0) {
        int rc = -errno;
        log_error("cannot look at %s: %s", path, strerror(-rc));
        return rc;
    }
    bool writable = (st.st_uid == id->uid && (st.st_mode & S_IWUSR)) ||
                    (st.st_gid == id->gid && (st.st_mode & S_IWGRP)) || (st.st_mode & S_IWOTH);
    if (writable)
        return 0;
    log_error("--user %s cannot write to %s, where fusermount3 would mount: chown it to %s", user,
              path, user);
    return -EACCES;
}

int gateway_identity_drop(const struct gateway_identity *id, const char *user)
{
    if (!id->drop)
        return 0;
    /* Groups first: once the uid is gone, so is the right to change them. */
    if (setgroups(0, NULL) != 0 || setgid(id->gid) != 0 || setuid(id->uid) != 0) {
        int rc = -errno;
        log_error("cannot drop privileges to %s: %s", user, strerror(-rc));
        return rc;
    }
    if (setuid(0) == 0) {
        log_error("dropped to %s, but root could be regained: refusing to run", user);
        return -EPERM;
    }
    log_info("running as %s (uid %u, gid %u); mounts go through fusermount3", user,
             (unsigned)id->uid, (unsigned)id->gid);
    return 0;
}

/* Whether `ifa` is the address `want` of family `family` (4 or 16 bytes). */
static bool ifaddr_is(const struct ifaddrs *ifa, int family, const void *want)
{
    if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != family)
        return false;
    if (family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)ifa->ifa_addr)->sin_addr, want, 4) == 0;
    return memcmp(&((const struct sockaddr_in6 *)ifa->ifa_addr)->sin6_addr, want, 16) == 0;
}

/* libwebsockets finds the address to listen on among the interfaces. When the address is on none
 * it listens nowhere, quietly, until one has it; when it cannot list them (no netlink socket,
 * as in a sandbox that forbids AF_NETLINK) it listens on every address. Both are checked here,
 * with the same list, before anything starts. */
static int listen_address_check(const char *option, const char *address)
{
    unsigned char want[sizeof(struct in6_addr)];
    int family = inet_pton(AF_INET, address, want) == 1    ? AF_INET
                 : inet_pton(AF_INET6, address, want) == 1 ? AF_INET6
                                                           : AF_UNSPEC;
    static const unsigned char any[sizeof(struct in6_addr)];
    if (family != AF_UNSPEC && memcmp(want, any, family == AF_INET ? 4 : 16) == 0)
        return 0; /* 0.0.0.0 or :: */
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0) {
        int rc = -errno;
        log_error("%s %s: cannot list the network interfaces (%s); a sandbox must allow "
                  "AF_NETLINK sockets",
                  option, address, strerror(-rc));
        return rc;
    }
    bool found = false;
    for (const struct ifaddrs *ifa = list; ifa && !found; ifa = ifa->ifa_next)
        found = family == AF_UNSPEC ? strcmp(ifa->ifa_name, address) == 0
                                    : ifaddr_is(ifa, family, want);
    freeifaddrs(list);
    if (found)
        return 0;
    log_error("%s %s: %s", option, address,
              family == AF_UNSPEC ? "no such network interface"
                                  : "no network interface has this address");
    return -EADDRNOTAVAIL;
}

int gateway_listen_check(const struct gateway_options *opt)
{
    int rc = listen_address_check("--bind", opt->bind);
    if (rc == 0 && opt->admin)
        rc = listen_address_check("--admin-bind", opt->admin_bind);
    return rc;
}

/* Loopback addresses and the loopback interface; anything else reaches the network. */
static bool loopback(const char *address)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, address, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, address, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return strcmp(address, "lo") == 0;
}

void gateway_warn_exposure(const struct gateway_options *opt)
{
    if (!loopback(opt->bind)) {
        if (!opt->auth_file)
            log_warn("listening on %s without --auth-file: anyone who can reach port %d can "
                     "attach filesystems on this device",
                     opt->bind, opt->port);
        if (!opt->cert)
            log_warn("listening on %s without --cert: providers' data and credentials cross "
                     "the network in clear text",
                     opt->bind);
    }
    if (opt->admin && !loopback(opt->admin_bind) && !opt->admin_cert)
        log_warn("the admin API listens on %s without TLS: its token crosses the network in "
                 "clear text",
                 opt->admin_bind);
}
