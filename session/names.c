/* Filesystem names, checked the same way by the gateway and by providers. */
#include <string.h>

#include "session.h"

bool session_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 64 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}
