/* producer COUNT STREAM [WIDTH] [END]
 *
 * Writes lines "0\n", "1\n", … "COUNT-1\n" with write(2) (no stdio buffer, so
 * every line is in the pipe before the process ends), to STREAM: out, err or
 * both (each line to stdout, then to stderr). WIDTH > 0 pads every line with
 * '.' to WIDTH bytes including the newline. END says how the program ends:
 * exit:N (default exit:0), kill (SIGKILL itself at once), segv (null write).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char bufs[2][1 << 16];
static size_t used[2];

static void flush_fd(int i) {
    size_t off = 0;
    while (off < used[i]) {
        ssize_t n = write(i + 1, bufs[i] + off, used[i] - off);
        if (n <= 0) exit(99);
        off += (size_t)n;
    }
    used[i] = 0;
}

static void put(int i, const char *line, size_t len) {
    if (used[i] + len > sizeof bufs[i]) flush_fd(i);
    memcpy(bufs[i] + used[i], line, len);
    used[i] += len;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: producer COUNT out|err|both [WIDTH] [exit:N|kill|segv]\n");
        return 64;
    }
    long count = atol(argv[1]);
    int out = strcmp(argv[2], "err") != 0, err = strcmp(argv[2], "out") != 0;
    long width = argc > 3 ? atol(argv[3]) : 0;
    const char *end = argc > 4 ? argv[4] : "exit:0";
    char line[4096];
    for (long i = 0; i < count; i++) {
        int len = snprintf(line, sizeof line - 1, "%ld", i);
        while (len < width - 1 && len < (int)sizeof line - 2) line[len++] = '.';
        line[len++] = '\n';
        if (out) put(0, line, (size_t)len);
        if (err) put(1, line, (size_t)len);
    }
    flush_fd(0);
    flush_fd(1);
    if (strcmp(end, "kill") == 0) raise(SIGKILL);
    if (strcmp(end, "segv") == 0) *(volatile int *)0 = 1;
    if (strncmp(end, "exit:", 5) == 0) return atoi(end + 5);
    return 65;
}
