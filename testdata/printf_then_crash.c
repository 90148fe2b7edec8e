/* Prints a line with stdio (buffered when stdout is a pipe, line-buffered
 * when it is a terminal), then dereferences NULL. Under `crashwatch run
 * --pty` the line reaches the report; through a pipe it dies in the buffer. */
#include <stdio.h>

int main(void) {
    printf("last words before the crash\n");
    *(volatile int *)0 = 42;
    return 0;
}
