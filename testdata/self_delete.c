/* Deletes its own executable, then crashes: the binary must be preserved
 * from /proc/PID/map_files before the process dies. */
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 2;
    self[n] = 0;
    if (unlink(self) != 0) { perror("unlink"); return 2; }
    *(volatile int *)0 = 1;
    return 0;
}
