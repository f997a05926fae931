/* Shared between the files of gateway/ only. */
#ifndef WEBFUSE_GATEWAY_INTERNAL_H
#define WEBFUSE_GATEWAY_INTERNAL_H

#include <stdbool.h>

#include "gateway.h"

/* What a long option (its name without "--") takes. */
enum option_arg { OPTION_ARG_NONE, OPTION_ARG_VALUE, OPTION_ARG_UNKNOWN };
enum option_arg options_arg_kind(const char *name);

/* Sets the long option `name` to `value` (NULL for an option without argument). `origin` names
 * it in error messages, e.g. "--port" or "FILE: key \"port\"". The value is borrowed and must
 * outlive the options. Returns 0 or -EINVAL after printing what is wrong. */
int options_set(struct gateway_options *opt, const char *name, const char *value,
                const char *origin);

/* Applies every key of the JSON configuration file `path` with options_set. Keeps what the
 * options borrow in opt->config. Returns 0 or -EINVAL after printing what is wrong. */
int config_apply_file(struct gateway_options *opt, const char *path);

/* Tells systemd our state ("READY=1", "STOPPING=1", ...) when it started us with Type=notify;
 * does nothing otherwise. Never blocks. */
void notify_systemd(const char *state);

#endif
