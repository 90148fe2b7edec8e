/* Prints `ready pid=N`, waits for one line on stdin, then writes through
 * NULL: a crash the test triggers when it is watching. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    char line[64];
    printf("ready pid=%d\n", (int)getpid());
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL)
        return 1;
    *(volatile int *)0 = 42;
    return 0;
}
