/* Runs a fuzz target's entry point on files, without libFuzzer: every regular file in each
 * directory given (a missing directory counts as empty), or a file given by name. Normal builds
 * run it on each target's seed corpus and on the inputs of crashes found earlier
 * (tests/fuzz/regressions/<target>/), so those stay fixed in every build, sanitized or not.
 * Exit status 0 when at least one input ran; a bad input crashes it. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Weak: a target without an initializer leaves it undefined (NULL). */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    /* An exact-size heap block, so that reads past the input's end are caught. */
    uint8_t *data = malloc(size ? size : 1);
    if (!data || fread(data, 1, size, f) != size) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

/* Runs every regular file of `dir` in name order; returns how many, or -1. */
static int run_dir(const char *dir)
{
    struct dirent **entries;
    int n = scandir(dir, &entries, NULL, alphasort);
    if (n < 0)
        return errno == ENOENT ? 0 : -1;
    int ran = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, entries[i]->d_name);
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(path);
            ran++;
        }
        free(entries[i]);
    }
    free(entries);
    return rc < 0 ? -1 : ran;
}

/* A file runs once; a directory runs its files. Returns how many ran, or -1. */
static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return run_file(path) == 0 ? 1 : -1;
    return run_dir(path);
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int ran = run_path(argv[i]);
        if (ran < 0) {
            fprintf(stderr, "replay: cannot read %s\n", argv[i]);
            return 1;
        }
        printf("%s: %d input(s)\n", argv[i], ran);
        total += ran;
    }
    if (total == 0) {
        fprintf(stderr, "replay: no inputs\n");
        return 1;
    }
    printf("%d input(s) ran\n", total);
    return 0;
}
