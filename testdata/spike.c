/* spike MIB [CHUNKS] — a sudden spike: allocates MIB MiB in CHUNKS pieces
 * (4 unless given), each malloc'd and memset at once in allocate(), with
 * nothing in between, not even output. Under a limit below MIB the OOM
 * killer ends it a few tens of milliseconds after it starts; otherwise it
 * prints "done" and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) static char *allocate(long bytes, int fill) {
    char *block = malloc((size_t)bytes);
    if (!block) exit(3);
    memset(block, fill, (size_t)bytes);
    return block;
}

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 0;
    long chunks = argc > 2 ? atol(argv[2]) : 4;
    if (chunks < 1) chunks = 1;
    volatile char *blocks[256];
    if (chunks > 256) chunks = 256;
    for (long i = 0; i < chunks; i++) blocks[i] = allocate((mib << 20) / chunks, (int)i + 1);
    if (write(1, "done\n", 5) != 5) return 4;
    return blocks[0][0] == 1 ? 0 : 5;
}
