#include <stdlib.h>

#include "gateway.h"

int main(int argc, char **argv)
{
    struct gateway_options options;
    log_set_program("webfused");
    int rc = gateway_options_parse(argc, argv, &options);
    if (rc != 0)
        return rc > 0 ? EXIT_SUCCESS : 2;
    log_set_level(options.log_level);
    return gateway_run(&options);
}
