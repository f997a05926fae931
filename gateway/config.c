/* webfused's configuration file: one JSON object whose keys are the long command-line options
 * without "--", e.g. {"port": 8081, "mount-root": "/run/webfuse", "no-admin": true}; an option
 * that may be repeated takes a list. One set of
 * names and one validation for both, so the file cannot drift from --help. */
#include "gateway_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

/* Options that steer the parsing itself and have no meaning inside the file. */
static bool key_forbidden(const char *key)
{
    static const char *const forbidden[] = {"config", "no-config", "check-config", "help",
                                            "version"};
    for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++)
        if (strcmp(key, forbidden[i]) == 0)
            return true;
    return false;
}

/* Keys that name a file or directory and may be relative. */
static bool key_is_path(const char *key)
{
    static const char *const paths[] = {"db",         "admin-token-file", "cert",      "key",
                                        "admin-cert", "admin-key",        "auth-file", "docroot"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (strcmp(key, paths[i]) == 0)
            return true;
    return false;
}

/* A relative path in the file is relative to the file's directory, not to wherever webfused was
 * started (/ under systemd). Kept alive in `keep`; NULL when out of memory. */
static const char *path_in_file(const char *file, const char *text, json_t *keep)
{
    const char *slash = strrchr(file, '/');
    if (text[0] == '/' || text[0] == '\0' || !slash) /* an empty one stays wrong */
        return text;
    json_t *joined = json_sprintf("%.*s/%s", (int)(slash - file), file, text);
    if (!joined || json_array_append_new(keep, joined) != 0)
        return NULL;
    return json_string_value(joined);
}

/* The option's argument as text; numbers are converted and kept alive in `keep`. */
static const char *value_text(json_t *value, json_t *keep)
{
    if (json_is_string(value))
        return json_string_value(value);
    if (!json_is_integer(value))
        return NULL;
    char buf[32];
    snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    json_t *text = json_string(buf);
    if (!text || json_array_append_new(keep, text) != 0)
        return NULL;
    return json_string_value(text);
}

static int apply_key(struct gateway_options *opt, const char *path, const char *key, json_t *value)
{
    char origin[512];
    snprintf(origin, sizeof(origin), "%s: key \"%s\"", path, key);
    enum option_arg kind = options_arg_kind(key);
    if (kind == OPTION_ARG_UNKNOWN || key_forbidden(key)) {
        fprintf(stderr, "webfused: %s: unknown key \"%s\" (see webfused --help for the names)\n",
                path, key);
        return -EINVAL;
    }
    if (kind == OPTION_ARG_NONE) {
        if (!json_is_boolean(value)) {
            fprintf(stderr, "webfused: %s must be true or false\n", origin);
            return -EINVAL;
        }
        return json_is_true(value) ? options_set(opt, key, NULL, origin) : 0;
    }
    if (kind == OPTION_ARG_LIST && json_is_array(value)) {
        if (json_array_size(value) == 0) { /* no list means any name: say it, do not guess */
            fprintf(stderr, "webfused: %s: an empty list; leave the key out to accept any\n",
                    origin);
            return -EINVAL;
        }
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item)
        {
            const char *text = value_text(item, opt->config);
            if (!text) {
                fprintf(stderr, "webfused: %s: item %zu must be a string\n", origin, i);
                return -EINVAL;
            }
            int rc = options_set(opt, key, text, origin);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    const char *text = value_text(value, opt->config);
    if (!text) {
        fprintf(stderr, "webfused: %s must be a string or an integer\n", origin);
        return -EINVAL;
    }
    if (key_is_path(key) && !(text = path_in_file(path, text, opt->config))) {
        fprintf(stderr, "webfused: out of memory\n");
        return -ENOMEM;
    }
    return options_set(opt, key, text, origin);
}

/* A configuration is a small regular file: anything else (a device, a FIFO, a huge file) is a
 * mistake, and reading it could take forever. */
#define CONFIG_MAX_SIZE (1024 * 1024)

static int config_check_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "webfused: %s: %s\n", path, strerror(errno));
        return -EINVAL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_SIZE) {
        fprintf(stderr, "webfused: %s: must be a regular file of at most %d bytes\n", path,
                CONFIG_MAX_SIZE);
        return -EINVAL;
    }
    return 0;
}

int config_apply_file(struct gateway_options *opt, const char *path)
{
    if (config_check_file(path) != 0)
        return -EINVAL;
    json_error_t error;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
    if (!root) {
        if (error.line < 0)
            fprintf(stderr, "webfused: %s: %s\n", path, error.text);
        else
            fprintf(stderr, "webfused: %s:%d:%d: %s\n", path, error.line, error.column, error.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        fprintf(stderr, "webfused: %s: must hold one JSON object\n", path);
        json_decref(root);
        return -EINVAL;
    }
    /* The options borrow strings from the document: it lives as long as they do. */
    if (!opt->config)
        opt->config = json_array();
    if (!opt->config || json_array_append_new(opt->config, root) != 0) {
        fprintf(stderr, "webfused: out of memory\n");
        return -ENOMEM;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        int rc = apply_key(opt, path, key, value);
        if (rc != 0)
            return rc;
    }
    return 0;
}
