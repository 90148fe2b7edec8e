/* Crash while threads are being created and destroyed as fast as possible:
 * the crash path's /proc listing races with clone() and exit(). */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void *short_lived(void *arg) { return arg; }

static void *spawner(void *arg) {
    (void)arg;
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived, NULL) == 0) pthread_join(t, NULL);
        pthread_t d;
        if (pthread_create(&d, NULL, short_lived, NULL) == 0) pthread_detach(d);
    }
    return NULL;
}

int main(void) {
    for (int i = 0; i < 4; i++) {
        pthread_t t;
        pthread_create(&t, NULL, spawner, NULL);
    }
    struct timespec pause_for = { 0, 50 * 1000 * 1000 };
    nanosleep(&pause_for, NULL);
    printf("crash_tid=%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    *(volatile int *)8 = 1;
    return 0;
}
