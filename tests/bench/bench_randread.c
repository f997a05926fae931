/* Random 4 KiB reads for scripts/bench.sh: `bench_randread FILE COUNT [SEED]` reads COUNT blocks
 * at 4 KiB-aligned offsets drawn from a fixed seeded generator (the same pattern on every file
 * system) and prints the reads per second. One reader, one read at a time: what it measures is
 * the round trip of an uncached read. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

/* xorshift64*: small, fast and the same everywhere, unlike rand(). */
static uint64_t next_random(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ull;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE COUNT [SEED]\n", argv[0]);
        return 2;
    }
    long count = strtol(argv[2], NULL, 10);
    uint64_t state = argc > 3 ? strtoull(argv[3], NULL, 10) : 42;
    if (state == 0)
        state = 42; /* xorshift never leaves 0 */
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < BLOCK || count <= 0) {
        perror(argv[1]);
        return 1;
    }
    uint64_t blocks = (uint64_t)st.st_size / BLOCK;
    char buf[BLOCK];
    double start = now_seconds();
    for (long i = 0; i < count; i++) {
        off_t offset = (off_t)(next_random(&state) % blocks) * BLOCK;
        if (pread(fd, buf, BLOCK, offset) != BLOCK) {
            perror("pread");
            return 1;
        }
    }
    double elapsed = now_seconds() - start;
    close(fd);
    printf("%.0f\n", (double)count / elapsed);
    return 0;
}
