/* runas UID PROG ARGS... — runs PROG as user and group UID with no
 * supplementary groups: the test VM has no su, and busybox's setpriv cannot
 * change ids. */
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fputs("usage: runas UID PROG ARGS...\n", stderr);
        return 2;
    }
    uid_t id = (uid_t)strtoul(argv[1], NULL, 10);
    if (setgroups(0, NULL) != 0 || setgid(id) != 0 || setuid(id) != 0) {
        perror("runas");
        return 126;
    }
    execvp(argv[2], argv + 2);
    perror("runas: exec");
    return 127;
}
