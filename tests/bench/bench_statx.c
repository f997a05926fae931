/* Uncached getattr round trips for scripts/bench.sh: `bench_statx PATH COUNT` calls statx with
 * AT_STATX_FORCE_SYNC (so a FUSE mount asks its file system every time instead of answering from
 * the attribute cache) COUNT times and prints the median and 99th percentile in microseconds. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PATH COUNT\n", argv[0]);
        return 2;
    }
    long count = strtol(argv[2], NULL, 10);
    double *samples = count > 0 ? malloc(sizeof(*samples) * (size_t)count) : NULL;
    if (!samples) {
        fprintf(stderr, "bad count\n");
        return 2;
    }
    for (long i = 0; i < count; i++) {
        struct statx stx;
        double start = now_us();
        if (statx(AT_FDCWD, argv[1], AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &stx) != 0) {
            perror(argv[1]);
            return 1;
        }
        samples[i] = now_us() - start;
    }
    qsort(samples, (size_t)count, sizeof(*samples), by_value);
    printf("%.1f %.1f\n", samples[count / 2], samples[(count * 99) / 100]);
    free(samples);
    return 0;
}
