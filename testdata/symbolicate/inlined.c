/* Built -O2: read_through() is inlined into checksum(), where the fault is. */
#include <stddef.h>

volatile int *volatile target = NULL;

static inline int read_through(volatile int *p) {
    return *p * 3;
}

__attribute__((noinline)) int checksum(int seed) {
    int v = read_through(target);
    return v + seed;
}

int main(int argc, char **argv) {
    (void)argv;
    return checksum(argc) == 42;
}
