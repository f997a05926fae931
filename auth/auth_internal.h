/* Private to auth/: what its files share. */
#ifndef WEBFUSE_AUTH_INTERNAL_H
#define WEBFUSE_AUTH_INTERNAL_H

#include "auth.h"

/* Slow (crypt). Hashes `password` with a fresh random salt for the method `prefix` ("$y$" for
 * yescrypt, "$6$" for SHA-512) into out[0..cap). 0 or a negative errno. */
int auth_hash_with(const char *prefix, const char *password, char *out, size_t cap);

/* Whether `hash` has the shape of a hash this module accepts: "$y$" or "$6$", then only the
 * characters crypt(3) writes, at most CRYPT_OUTPUT_SIZE - 1 long. */
bool auth_hash_supported(const char *hash);

#endif
