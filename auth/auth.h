/* auth: who may attach what.
 *
 *  - the users file (webfused --auth-file): one user per line, "NAME:HASH:FS[,FS...]", where
 *    HASH is a crypt(3) hash (yescrypt "$y$" or SHA-512 "$6$") and FS the filesystem names the
 *    user may attach ("*" for any); '#' starts a comment line, blank lines are ignored;
 *  - password hashing and checking with libxcrypt, compared in constant time;
 *  - the per-address throttle that slows down an address after repeated failures;
 *  - reading a password from the terminal without echo.
 *
 * Nothing here knows sockets or the event loop. auth_password_verify and auth_password_hash are
 * slow on purpose (yescrypt: tens of milliseconds): the caller picks the thread they run on.
 */
#ifndef WEBFUSE_AUTH_H
#define WEBFUSE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A user name: 1-64 characters of [A-Za-z0-9._@-]. */
#define AUTH_NAME_MAX 64
/* Longest password (or webfuse2 token) checked; longer ones fail without hashing. */
#define AUTH_PASSWORD_MAX 1024
/* Longest line of a users file, and most users in one. */
#define AUTH_LINE_MAX 4096
#define AUTH_USERS_MAX 10000

/* ---- the users file ----------------------------------------------------------------------------
 */

struct auth_users;
struct auth_user;

/* Start-up (blocking). Reads and parses `path`. Returns 0 with *out owned by the caller, -EINVAL
 * for a malformed file (err holds "PATH:LINE: what is wrong"), or another negative errno when the
 * file cannot be read (err says so). */
int auth_users_load(const char *path, struct auth_users **out, char *err, size_t err_cap);

/* Parses the text of a users file; `origin` names it in error messages. Same results as
 * auth_users_load. Also makes the decoy hash (one crypt call). */
int auth_users_parse(const char *text, size_t len, const char *origin, struct auth_users **out,
                     char *err, size_t err_cap);

void auth_users_free(struct auth_users *users);
size_t auth_users_count(const struct auth_users *users);

/* The user called `name`, or NULL. Borrowed: valid until auth_users_free. */
const struct auth_user *auth_users_find(const struct auth_users *users, const char *name);
/* A hash of a random password in the strongest format the file uses: checking a password of an
 * unknown user against it costs as much time as checking a known user's. */
const char *auth_users_decoy_hash(const struct auth_users *users);
/* The hash a login as `name` is checked against: the user's, or the decoy (with *known false)
 * for a name that is not in the file or not a valid name at all, so that both cost the same
 * check and the answer is no. Borrowed: valid until auth_users_free. */
const char *auth_users_hash_for(const struct auth_users *users, const char *name, bool *known);

const char *auth_user_name(const struct auth_user *user);
const char *auth_user_hash(const struct auth_user *user);
/* Whether the user may attach filesystem `fs_name`. */
bool auth_user_may_attach(const struct auth_user *user, const char *fs_name);

/* 1-64 characters of [A-Za-z0-9._@-]. */
bool auth_name_valid(const char *name);

/* ---- passwords ---------------------------------------------------------------------------------
 */

/* Slow (crypt). 0 when `password` matches `hash`, -EACCES when it does not, -EINVAL for a
 * password over AUTH_PASSWORD_MAX bytes or a hash crypt does not take, -ENOMEM. */
int auth_password_verify(const char *hash, const char *password);

/* Slow (crypt). Hashes `password` with yescrypt and a fresh random salt into out[0..cap).
 * Returns 0, -EINVAL (password too long), -ENOBUFS, or another negative errno. */
int auth_password_hash(const char *password, char *out, size_t cap);

/* Writes the users-file line "NAME:HASH:FS" (no newline) into out[0..cap). `fs_list` is "*" or
 * comma-separated filesystem names. Returns 0, -EINVAL for a bad name, hash or list (with a
 * reason in err), or -ENOBUFS. */
int auth_line_format(const char *name, const char *hash, const char *fs_list, char *out, size_t cap,
                     char *err, size_t err_cap);

/* True when a[0..a_len) equals b[0..b_len). The time depends only on a_len (the expected side),
 * never on where the first difference is or on b_len. */
bool auth_equal(const char *a, size_t a_len, const char *b, size_t b_len);

/* Reads one line from the controlling terminal (/dev/tty) with echo off, after writing `prompt`
 * there. Returns 0 with a NUL-terminated password in buf, -ENXIO when there is no terminal,
 * -ENAMETOOLONG when the line does not fit, or another negative errno. */
int auth_password_prompt(const char *prompt, char *buf, size_t cap);

/* ---- throttling repeated failures --------------------------------------------------------------
 */

/* Failures an address may have before its answers are delayed. */
#define AUTH_THROTTLE_FREE_FAILURES 5
/* The first delay; it doubles with every further failure, up to the maximum. The maximum is
 * also the longest any attempt waits, queued behind others from its address or not. */
#define AUTH_THROTTLE_FIRST_DELAY_MS 1000u
#define AUTH_THROTTLE_MAX_DELAY_MS 60000u
/* An address's failures are forgotten this long after the last one. */
#define AUTH_THROTTLE_FORGET_MS (15u * 60 * 1000)
/* Addresses remembered at once; when full, the one used least recently is forgotten. */
#define AUTH_THROTTLE_ADDRESSES 1024

struct auth_throttle;

int auth_throttle_new(struct auth_throttle **out);
void auth_throttle_free(struct auth_throttle *t);
/* An attempt from `address` begins at `now_ms`. Returns 0 with *wait_ms, how long it must wait
 * before it is checked: 0 for the first AUTH_THROTTLE_FREE_FAILURES, then the delay after the
 * turn of the address's previous delayed attempt, so that parallel attempts queue up. An
 * attempt counts as a failure until it ends with exactly one of auth_throttle_failure,
 * auth_throttle_success or auth_throttle_abandon. Returns -EAGAIN (and counts nothing) when
 * the wait would exceed AUTH_THROTTLE_MAX_DELAY_MS: too many attempts from there at once. */
int auth_throttle_begin(struct auth_throttle *t, const char *address, uint64_t now_ms,
                        uint64_t *wait_ms);
/* The attempt, a login as `user` (NULL: none could be read), failed. */
void auth_throttle_failure(struct auth_throttle *t, const char *address, const char *user,
                           uint64_t now_ms);
/* The attempt, a login as `user`, succeeded: the failures of `address` are cleared if they all
 * were this user's (mistyped passwords); failures for other users stay. */
void auth_throttle_success(struct auth_throttle *t, const char *address, const char *user,
                           uint64_t now_ms);
/* The attempt ended unanswered (its connection went away): it no longer counts. */
void auth_throttle_abandon(struct auth_throttle *t, const char *address, uint64_t now_ms);

#endif
