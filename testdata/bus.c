/* Touching a file mapping past the end of the file: SIGBUS (BUS_ADRERR).
 * The file is unlinked first, so its mapping shows as "(deleted)" but is not
 * executable: the preservation logic must ignore it. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void) {
    char path[] = "/tmp/proto-capture-bus-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { perror("mkstemp"); return 2; }
    unlink(path);
    if (ftruncate(fd, 16) != 0) { perror("ftruncate"); return 2; }
    long page = sysconf(_SC_PAGESIZE);
    volatile char *p = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 2; }
    p[0] = 1;         /* inside the file: fine */
    p[2 * page] = 1;  /* beyond EOF: SIGBUS */
    return 0;
}
