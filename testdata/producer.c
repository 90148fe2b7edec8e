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
    /* The number is kept as decimal text and incremented in place, so the
     * producer is fast enough not to be what a benchmark measures. */
    char digits[32] = "0", line[4096];
    int ndigits = 1;
    if (width > (long)sizeof line - 1) width = sizeof line - 1;
    for (long i = 0; i < count; i++) {
        memcpy(line, digits, (size_t)ndigits);
        int len = ndigits;
        if (len < width - 1) {
            memset(line + len, '.', (size_t)(width - 1 - len));
            len = (int)width - 1;
        }
        line[len++] = '\n';
        if (out) put(0, line, (size_t)len);
        if (err) put(1, line, (size_t)len);
        int d = ndigits - 1;
        while (d >= 0 && digits[d] == '9') digits[d--] = '0';
        if (d >= 0) {
            digits[d]++;
        } else {
            memmove(digits + 1, digits, (size_t)ndigits++);
            digits[0] = '1';
        }
    }
    flush_fd(0);
    flush_fd(1);
    if (strcmp(end, "kill") == 0) raise(SIGKILL);
    if (strcmp(end, "segv") == 0) *(volatile int *)0 = 1;
    if (strncmp(end, "exit:", 5) == 0) return atoi(end + 5);
    return 65;
}
