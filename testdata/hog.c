/* hog MIB — allocates and touches memory 1 MiB at a time up to MIB, printing
 * "allocated N MiB" every 8 MiB (with write(2): nothing is lost in a buffer
 * when the OOM killer strikes), then prints "done" and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long target = argc > 1 ? atol(argv[1]) : 0;
    char line[64];
    for (long mib = 1; mib <= target; mib++) {
        char *block = malloc(1 << 20);
        if (!block) return 3;
        memset(block, (int)mib, 1 << 20);
        if (mib % 8 == 0) {
            int n = snprintf(line, sizeof line, "allocated %ld MiB\n", mib);
            if (write(1, line, (size_t)n) != n) return 4;
        }
    }
    if (write(1, "done\n", 5) != 5) return 4;
    return 0;
}
