/* fusebridge: the mount table of this process's mount namespace (/proc/self/mountinfo). */
#include "fusebridge_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mountinfo writes a space, tab, newline or backslash in a path as \ooo. */
static void unescape(char *s)
{
    char *out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

/* id parent major:minor root mountpoint options [optional fields...] - fstype source options */
int mountinfo_parse(char *line, struct fusebridge_mountinfo *entry)
{
    line[strcspn(line, "\n")] = '\0';
    char *rest = line;
    char *field[5];
    for (int i = 0; i < 5; i++)
        if (!(field[i] = strsep(&rest, " ")) || !rest)
            return -EINVAL;
    unsigned major, minor;
    char *dash = strstr(rest, " - ");
    if (sscanf(field[2], "%u:%u", &major, &minor) != 2 || !dash)
        return -EINVAL;
    char *fstype = dash + 3;
    fstype[strcspn(fstype, " ")] = '\0';
    unescape(field[4]);
    entry->minor = minor;
    entry->path = field[4];
    entry->fstype = fstype;
    return 0;
}

int fusebridge_mountinfo_each(void (*visit)(const struct fusebridge_mountinfo *entry, void *arg),
                              void *arg)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    struct fusebridge_mountinfo entry;
    while (getline(&line, &cap, f) > 0)
        if (mountinfo_parse(line, &entry) == 0)
            visit(&entry, arg);
    int rc = ferror(f) ? -EIO : 0;
    free(line);
    fclose(f);
    return rc;
}
