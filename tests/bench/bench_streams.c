/* Concurrent streams for scripts/bench.sh: `bench_streams FILE...` starts one reader process per
 * FILE, each streaming its file to the end in 1 MiB reads (as `dd bs=1M` of the sequential read),
 * and prints the aggregate MB/s.
 * Every reader opens its file, faults its buffer in and waits at a gate; the clock starts when
 * the gate opens and stops when the last reader is done. Starting 64 processes one after another
 * from a shell takes about 100 ms on a small machine, a quarter of a 512 MiB run, and would
 * count as streaming time. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1024 * 1024)
#define MAX_READERS 1024

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The child: opens `path`, says so on `ready`, waits for `gate` to close, streams the file and
 * reports the bytes read on `result`. */
static void reader(const char *path, int ready, int gate, int result)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(path);
        _exit(1);
    }
    off_t offset = 0, end = st.st_size;
    char *buf = malloc(CHUNK);
    char byte = 1;
    if (buf)
        memset(buf, 0, CHUNK); /* faulted in now, not while the clock runs */
    if (!buf || write(ready, &byte, 1) != 1)
        _exit(1);
    close(ready); /* once every reader has, a reader that failed shows as an end of file */
    if (read(gate, &byte, 1) != 0)
        _exit(1);
    long long total = 0;
    while (offset < end) {
        size_t want = end - offset < CHUNK ? (size_t)(end - offset) : CHUNK;
        ssize_t n = pread(fd, buf, want, offset);
        if (n <= 0) {
            if (n < 0)
                perror(path);
            else
                fprintf(stderr, "%s: ends early\n", path);
            _exit(1);
        }
        total += n;
        offset += n;
    }
    _exit(write(result, &total, sizeof(total)) == sizeof(total) ? 0 : 1);
}

int main(int argc, char **argv)
{
    int readers = argc - 1;
    if (readers < 1 || readers > MAX_READERS) {
        fprintf(stderr, "usage: %s FILE... (at most %d)\n", argv[0], MAX_READERS);
        return 2;
    }
    int ready[2], gate[2], result[2];
    if (pipe(ready) < 0 || pipe(gate) < 0 || pipe(result) < 0) {
        perror("pipe");
        return 1;
    }
    static pid_t pids[MAX_READERS];
    for (int i = 0; i < readers; i++) {
        pid_t pid = pids[i] = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            close(ready[0]);
            close(gate[1]);
            reader(argv[i + 1], ready[1], gate[0], result[1]);
        }
    }
    close(ready[1]);
    close(gate[0]);
    close(result[1]);
    char byte;
    for (int i = 0; i < readers; i++)
        if (read(ready[0], &byte, 1) != 1) {
            fprintf(stderr, "a reader failed before streaming\n");
            for (int j = 0; j < readers; j++)
                kill(pids[j], SIGKILL);
            return 1;
        }
    double start = now_seconds();
    close(gate[1]); /* every reader's read of the gate returns 0: they all start now */
    int failed = 0, status;
    pid_t pid;
    while ((pid = wait(&status)) > 0 || (pid < 0 && errno == EINTR))
        if (pid > 0)
            failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    double elapsed = now_seconds() - start;
    long long bytes = 0, total;
    while (read(result[0], &total, sizeof(total)) == sizeof(total))
        bytes += total;
    if (failed) {
        fprintf(stderr, "a reader failed\n");
        return 1;
    }
    printf("%.1f\n", (double)bytes / elapsed / 1e6);
    return 0;
}
