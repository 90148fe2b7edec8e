/* spike MIB [CHUNKS [hold]] — a sudden spike: allocates MIB MiB in CHUNKS
 * pieces (4 unless given), each malloc'd and every page of it written at once in allocate(),
 * with nothing in between, not even output. Under a limit below MIB the OOM
 * killer ends it a few tens of milliseconds after it starts; otherwise it
 * prints "done" and exits 0 (with "hold": once its stdin is at EOF, keeping
 * its memory until then). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One byte per page, in a loop of its own rather than memset: the child is
 * stopped for its snapshot right here, and a frame-pointer walk from here
 * is exact (a static libc's memset may have no unwind information). */
__attribute__((noinline)) static char *allocate(long bytes, int fill) {
    char *block = malloc((size_t)bytes);
    if (!block) exit(3);
    for (long off = 0; off < bytes; off += 4096) ((volatile char *)block)[off] = (char)fill;
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
    if (argc > 3 && strcmp(argv[3], "hold") == 0) {
        char c;
        while (read(0, &c, 1) > 0) {
        }
    }
    return blocks[0][0] == 1 ? 0 : 5;
}
