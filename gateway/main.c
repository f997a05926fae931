#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

int main(int argc, char **argv)
{
    struct gateway_options options;
    log_set_program("webfused");
    int rc = gateway_options_parse(argc, argv, &options);
    if (rc != 0) {
        gateway_options_free(&options);
        return rc > 0 ? EXIT_SUCCESS : 2;
    }
    log_set_level(options.log_level);
    if (options.check_config) {
        int status = gateway_check(&options);
        gateway_options_free(&options);
        return status;
    }
    rc = log_open(options.log_target);
    if (rc != 0) {
        log_error("cannot open the log %s: %s", options.log_target, strerror(-rc));
        gateway_options_free(&options);
        return GATEWAY_EXIT_CONFIG;
    }
    int status = gateway_run(&options);
    gateway_options_free(&options);
    return status;
}
