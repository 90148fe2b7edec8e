#define _GNU_SOURCE
/* Six threads (main + 5); the 5th created thread crashes once all exist.
 * Prints "crash_tid=N" before crashing. */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_barrier_t all_started;

__attribute__((noinline)) static void crash_here(void) { *(volatile int *)16 = 1; }

static void *worker(void *arg) {
    long index = (long)arg;
    pthread_setname_np(pthread_self(), index == 5 ? "crasher-5" : "idle");
    pthread_barrier_wait(&all_started);
    if (index == 5) {
        printf("crash_tid=%ld\n", (long)syscall(SYS_gettid));
        fflush(stdout);
        crash_here();
    }
    for (;;) pause();
    return NULL;
}

int main(void) {
    pthread_t t[5];
    pthread_barrier_init(&all_started, NULL, 6);
    for (long i = 0; i < 5; i++) pthread_create(&t[i], NULL, worker, (void *)(i + 1));
    pthread_barrier_wait(&all_started);
    for (;;) pause();
}
