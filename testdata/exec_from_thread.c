#define _GNU_SOURCE
/* exec_from_thread [crash]
 * Without arguments: a second thread execs this program again with "crash",
 * while the main thread sleeps (exec from a non-leader thread: the kernel
 * gives the exec'ing thread the leader's pid). With "crash": prints
 * "exec_pid=N" and writes through NULL. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char *self;

static void *execer(void *arg) {
    (void)arg;
    char *argv[] = {self, "crash", NULL};
    execv("/proc/self/exe", argv);
    perror("execv");
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "crash") == 0) {
        printf("exec_pid=%d\n", (int)getpid());
        fflush(stdout);
        *(volatile int *)0 = 1;
        return 0;
    }
    self = argv[0];
    pthread_t t;
    pthread_create(&t, NULL, execer, NULL);
    for (;;) pause();
}
