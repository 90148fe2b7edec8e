/* Prints `ready pid=N`, waits for one line on stdin, then writes through
 * NULL: a crash the test triggers when it is watching. With `delete-self`,
 * it first unlinks its own executable (which must then be preserved). */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char line[64];
    if (argc > 1 && strcmp(argv[1], "delete-self") == 0) {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) return 2;
        self[n] = 0;
        if (unlink(self) != 0) { perror("unlink"); return 2; }
    }
    printf("ready pid=%d\n", (int)getpid());
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL)
        return 1;
    *(volatile int *)0 = 42;
    return 0;
}
