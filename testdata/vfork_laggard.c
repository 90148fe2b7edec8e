#define _GNU_SOURCE
/* A thread that cannot be ptrace-stopped: it called vfork() and waits
 * (killable, not interruptible) until its child leaves. The main thread
 * crashes meanwhile. The vfork child sleeps, so the stuck thread misses the
 * tracer's stop_timeout and must be left behind ("laggard") without hanging
 * the capture or leaving anything stopped.
 * Prints "stuck_tid=N". */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile pid_t stuck_tid;

static void *vforker(void *arg) {
    (void)arg;
    stuck_tid = (pid_t)syscall(SYS_gettid);
    pid_t child = vfork();
    if (child == 0) {
        /* Own fd table: close the output pipes so that nobody reading them
         * waits for this sleeper. It sleeps longer than crashwatch's 2 s
         * stop timeout. */
        close(1);
        close(2);
        struct timespec nap = { 6, 0 };
        syscall(SYS_nanosleep, &nap, NULL);
        _exit(0);
    }
    for (;;) pause();
    return NULL;
}

static char state_of(pid_t tid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p ? p[2] : '?';
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, vforker, NULL);
    struct timespec tick = { 0, 1000 * 1000 };
    for (int i = 0; i < 5000 && (stuck_tid == 0 || state_of(stuck_tid) != 'D'); i++)
        nanosleep(&tick, NULL);
    printf("stuck_tid=%d state=%c\n", (int)stuck_tid, state_of(stuck_tid));
    fflush(stdout);
    *(volatile int *)0 = 1;
    return 0;
}
